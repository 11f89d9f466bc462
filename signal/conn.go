package signal

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// closeWait is how long the server waits for a client to answer its close
// frame before it drops the TCP connection.
const closeWait = 2 * time.Second

// abuseStrikes is how many messages in a row may be refused for rate before
// the connection is closed with 1008.
const abuseStrikes = 50

// outFrame is one frame queued for a connection.
type outFrame struct {
	data []byte
	// readAt is when the hub read the message this frame relays; zero for
	// the server's own messages.
	readAt time.Time
	// ephemeral frames answer this connection alone (errors, pong, its
	// welcome): a resumed session does not replay them.
	ephemeral bool
}

// conn is one WebSocket connection: one reader (the goroutine that runs
// serve) and at most one writer goroutine, a bounded queue between the hub
// and the writer, deadlines on every read and write.
//
// The writer runs only while there is something to write (frames, a ping,
// the close frame), and lingers writerLinger after its last frames so that
// a busy connection does not start a goroutine per frame. One timer per
// connection (tick) asks for pings, retires a lingering writer, drops a
// silent connection and closes one that does not join in time: an idle
// connection costs its reader goroutine, parked, and that timer.
type conn struct {
	ws   *websocket.Conn
	hub  *Hub
	name connName // who the connection is, in its log lines

	mu          sync.Mutex // guards the fields below
	queue       []outFrame
	spare       []outFrame // the writer's last batch, emptied, for reuse
	limit       int        // the queue's bound; raised while a resume flushes
	closing     bool
	closeCode   int
	closeReason string
	flush       bool        // write what is queued before the close frame
	pingDue     bool        // the writer must send a ping
	writing     bool        // a writer runs, or has ended the connection's writes for good
	stopped     bool        // the reader has ended: no writer starts any more
	idle        bool        // the writer lingers, waiting on wake
	linger      bool        // the writer's last job had frames: it may linger
	retire      bool        // tick tells the lingering writer to end
	lastWrite   time.Time   // when the writer last ran out of work
	wake        sync.Cond   // wakes the lingering writer; L is &mu
	timer       *time.Timer // runs tick
	tickAt      time.Time   // when timer fires next
	nextPing    time.Time
	joinBy      time.Time // the join deadline (4008)
	waiting     bool      // the reader waits in waitReadable
	pongDue     bool      // the writer must answer the client's ping
	pongData    string    // the payload of the client's last ping
	readBy      time.Time // the read deadline the connection keeps (the close handshake's); zero: none
	kicked      bool      // tick has woken the waiting reader to park

	writers sync.WaitGroup // the writer goroutine, when one runs

	// Used by the writer alone (one at a time; take hands over).
	writeDeadline time.Time

	// Used by the reader goroutine alone.
	br       *bufio.Reader   // what gorilla reads the socket through; nil: unknown
	raw      syscall.RawConn // the socket, for waitReadable
	readable func(fd uintptr) bool
	peeked   bool
	midFrame bool // gorilla has not read the last message to its end
	peekBuf  [1]byte
	claims   *Claims // the handshake's token, nil when none is required
	session  *session
	limiter  *rate.Limiter
	strikes  int
	readAt   time.Time // when the message being handled was read

	joined   atomic.Bool
	lastRead atomic.Int64 // unix nanoseconds of the last message or pong
	lastMsg  atomic.Int64 // unix nanoseconds of the last message (not pong)
	fresh    atomic.Bool  // the reader parked and has read no message since
}

func newConn(ws *websocket.Conn, h *Hub, addr netip.Addr, claims *Claims) *conn {
	c := &conn{
		ws:      ws,
		claims:  claims,
		hub:     h,
		name:    connName{id: rand8(), addr: addr},
		limit:   h.cfg.SendQueue,
		limiter: rate.NewLimiter(rate.Limit(h.cfg.RateLimit), h.cfg.RateBurst),
	}
	c.wake.L = &c.mu
	return c
}

// serve runs the connection until it ends, then calls done, after the
// writer has ended. The reader may move to a fresh goroutine on the way
// (park.go): done runs on the last one.
func (c *conn) serve(done func()) {
	cfg := &c.hub.cfg
	c.ws.SetReadLimit(cfg.MaxMessageBytes)
	// No read deadline: tick drops a connection silent for two intervals,
	// which spares a runtime timer per connection and its reset per message.
	c.ws.SetPongHandler(func(string) error {
		c.lastRead.Store(time.Now().UnixNano())
		return nil
	})
	// gorilla's own ping handler writes the pong from the reader with a
	// 1 s socket deadline of its own, under the writer's frames: the
	// writer answers instead, so that one goroutine owns every write and
	// its deadline.
	c.ws.SetPingHandler(c.queuePong)
	now := time.Now()
	c.lastRead.Store(now.UnixNano())
	c.lastMsg.Store(now.UnixNano())
	c.mu.Lock()
	c.nextPing, c.joinBy = now.Add(cfg.PingInterval), now.Add(cfg.JoinTimeout)
	first := min(cfg.PingInterval, cfg.JoinTimeout)
	if c.raw != nil {
		first = min(first, parkAfter)
	}
	c.tickAt = now.Add(first)
	c.timer = time.AfterFunc(first, c.tick)
	c.mu.Unlock()
	c.run(done)
}

// run reads the connection until it ends (and then finishes it), or until
// tick has the reader park.
func (c *conn) run(done func()) {
	err := c.readLoop()
	if errors.Is(err, errPark) {
		c.fresh.Store(true)
		go c.park(done)
		return
	}
	c.finish(err)
	done()
}

// finish ends a connection whose reader has ended with err.
func (c *conn) finish(err error) {
	if errors.Is(err, websocket.ErrReadLimit) {
		// gorilla has sent 1009; read out the rest of the oversized frame
		// so that closing does not reset the connection before the client
		// has read the close frame.
		c.discardInput()
	}

	c.mu.Lock()
	c.stopped = true
	c.wake.Broadcast() // a lingering writer ends
	c.mu.Unlock()
	c.timer.Stop()
	// A writer blocked in a write fails now and ends.
	_ = c.ws.Close()
	c.writers.Wait()
	code, reason := c.closeStatus(err)
	c.hub.metrics.closed(code)
	if c.session != nil {
		c.session.detach(c, code, reason)
	}
	c.logAt(slog.LevelInfo, "connection closed", "code", code, "reason", reason)
}

func (c *conn) discardInput() {
	nc := c.ws.NetConn()
	_ = nc.SetReadDeadline(time.Now().Add(closeWait))
	_, _ = io.Copy(io.Discard, nc)
}

// closeStatus says how the connection ended: the code the server sent, or
// else what the client sent, or 1006 for a connection that just dropped.
func (c *conn) closeStatus(err error) (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return c.closeCode, c.closeReason
	}
	if errors.Is(err, websocket.ErrReadLimit) {
		return wire.CloseTooBig, "frame too large"
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code, "client closed: " + ce.Text
	}
	return websocket.CloseAbnormalClosure, "connection lost"
}

// readLoop serves the connection's frames until it fails, or until tick
// asks an idle reader to park (errPark).
func (c *conn) readLoop() error {
	cfg := &c.hub.cfg
	for {
		if c.waitReadable() {
			return errPark
		}
		kind, r, err := c.ws.NextReader()
		if err != nil {
			return err
		}
		// Until the message is read to its end, the socket is not at a
		// frame's start: waitReadable must not look for pongs.
		c.midFrame = true
		if c.isClosing() {
			continue // draining the client's last frames until its close
		}
		c.readAt = time.Now()
		c.lastRead.Store(c.readAt.UnixNano())
		c.lastMsg.Store(c.readAt.UnixNano())
		if kind != websocket.TextMessage {
			c.fail(wire.CloseUnsupported, "binary frames are not supported")
			continue
		}
		// The read limit counts bytes on the wire; a compressed message is
		// bounded again here, inflated, so a small frame cannot blow up.
		data, buf, err := readMessage(r, cfg.MaxMessageBytes+1)
		if err != nil {
			return err
		}
		c.midFrame = int64(len(data)) > cfg.MaxMessageBytes // else read to its end
		switch {
		case int64(len(data)) > cfg.MaxMessageBytes:
			c.fail(wire.CloseTooBig, "message too large")
		case !utf8.Valid(data):
			c.fail(wire.CloseInvalidPayload, "text frame is not valid UTF-8")
		default:
			c.handle(data)
		}
		releaseMessage(buf, data)
	}
}

// messageBuffers hold the messages being read: a connection keeps none of
// its own between messages. Decode copies what it keeps.
var messageBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledMessage is the largest buffer given back to the pool.
const maxPooledMessage = 32 << 10

// readMessage reads r to its end, or to limit bytes, into a pooled buffer;
// the caller gives it back with releaseMessage once done with data.
func readMessage(r io.Reader, limit int64) (data []byte, buf *[]byte, err error) {
	buf = messageBuffers.Get().(*[]byte)
	b := (*buf)[:0]
	for int64(len(b)) < limit {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		room := min(int64(cap(b)), limit) - int64(len(b))
		n, err := r.Read(b[len(b) : len(b)+int(room)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			releaseMessage(buf, b)
			return nil, nil, err
		}
	}
	return b, buf, nil
}

func releaseMessage(buf *[]byte, data []byte) {
	if cap(data) > maxPooledMessage {
		return
	}
	*buf = data[:0]
	messageBuffers.Put(buf)
}

// handle serves one text frame.
func (c *conn) handle(data []byte) {
	m, werr := wire.Decode(data)
	// Every frame counts against the rate, invalid ones too: a flood of
	// garbage must end in 1008 like any other flood.
	if !c.limiter.Allow() {
		c.hub.metrics.rateLimited.Inc()
		c.strikes++
		if c.strikes >= abuseStrikes {
			// The rate-limited errors still queued go out before the
			// close, so that the client learns why.
			c.flushBeforeClose()
			c.fail(wire.ClosePolicy, "message rate exceeded")
			return
		}
		ref := m.Ref
		if werr != nil {
			ref = werr.Ref
		}
		c.sendError(&wire.Error{Code: wire.CodeRateLimited, Message: "message rate exceeded; message dropped", Ref: ref})
		return
	}
	c.strikes = 0
	if werr != nil {
		c.logAt(slog.LevelDebug, "refused message", "code", werr.Code, "err", werr.Message)
		c.sendError(werr)
		return
	}
	if c.hub.log.Enabled(context.Background(), slog.LevelDebug) {
		c.logAt(slog.LevelDebug, "message", "type", m.Type) // boxing m.Type costs an allocation
	}
	// Direct calls, not through a func value: m then stays on the stack.
	switch m.Type {
	case wire.TypeJoin:
		c.hub.handleJoin(c, &m)
	case wire.TypePing:
		c.send(pongFrame)
	case wire.TypeLeave:
		if c.requireJoined(&m) {
			c.hub.handleLeave(c, &m)
		}
	default: // offer, answer, candidate, message: Validate admits no others
		if c.requireJoined(&m) {
			c.hub.handleRelay(c, &m)
		}
	}
}

// requireJoined answers not-joined, and reports false, before a join.
func (c *conn) requireJoined(m *wire.Message) bool {
	if c.session == nil {
		c.sendError(&wire.Error{Code: wire.CodeNotJoined, Message: "send join first", Ref: m.Ref})
		return false
	}
	return true
}

// fail closes the connection for a fault of the client's; its session, if
// any, waits out the resume grace.
func (c *conn) fail(code int, reason string) {
	// At debug: "connection closed" follows with the same code and reason.
	c.logAt(slog.LevelDebug, "closing connection", "code", code, "reason", reason)
	if c.session != nil {
		c.session.detach(c, code, reason)
		return
	}
	c.closeWith(code, reason)
}

// sendError queues an error message for this connection.
func (c *conn) sendError(e *wire.Error) {
	frame, err := wire.Encode(wire.Message{Type: wire.TypeError, Code: e.Code, Message: e.Message, Ref: e.Ref})
	if err != nil {
		c.fail(wire.CloseInternal, "internal error")
		return
	}
	c.hub.metrics.errorsSent.WithLabelValues(string(e.Code)).Inc()
	c.send(frame)
}

// send queues a frame for this connection alone (answers and errors), with
// the same bound as relayed frames.
func (c *conn) send(frame []byte) {
	switch c.push(outFrame{data: frame, ephemeral: true}) {
	case pushFull:
		c.hub.metrics.overflows.Inc()
		c.fail(wire.CloseTooSlow, "send queue overflow")
	case pushClosed, pushed:
	}
}

// pushResult says what push did with a frame.
type pushResult int

const (
	pushed     pushResult = iota
	pushFull              // the queue is full: the client is too slow
	pushClosed            // the connection is closing and takes nothing
)

// push queues frame unless the queue is full or the connection closing.
func (c *conn) push(frame outFrame) pushResult {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return pushClosed
	}
	if len(c.queue) >= c.limit {
		c.mu.Unlock()
		return pushFull
	}
	c.queue = append(c.queue, frame)
	c.startWriterLocked()
	c.mu.Unlock()
	return pushed
}

// pushAll queues first (for this connection alone) and then rest whatever
// their number (a resume's backlog), raising the bound until the writer has
// taken them.
func (c *conn) pushAll(first []byte, rest []outFrame) {
	c.mu.Lock()
	c.queue = append(c.queue, outFrame{data: first, ephemeral: true})
	c.queue = append(c.queue, rest...)
	c.limit = max(c.limit, len(c.queue)+c.hub.cfg.SendQueue)
	c.startWriterLocked()
	c.mu.Unlock()
}

// startWriterLocked starts the writer unless one runs or the connection's
// writes are over. c.mu is held.
func (c *conn) startWriterLocked() {
	if c.stopped {
		return
	}
	if c.writing {
		if c.idle {
			c.idle = false
			c.wake.Signal()
		}
		return
	}
	c.writing = true
	c.writers.Add(1)
	go c.writeLoop()
}

// tick runs on the connection's timer, at the earliest of its next ping,
// the end of two intervals of silence and the join deadline: it drops a
// connection from which nothing (no message, no pong) came for two ping
// intervals (1006, as a dropped connection), closes one that has not
// joined in time (4008), and asks the writer for a ping every interval.
func (c *conn) tick() {
	cfg := &c.hub.cfg
	now := time.Now()
	silentUntil := time.Unix(0, c.lastRead.Load()).Add(2 * cfg.PingInterval)
	c.mu.Lock()
	if c.stopped || c.closing {
		// A closing connection ends with the close handshake or at the
		// read deadline its writer set: no more ticks.
		c.mu.Unlock()
		return
	}
	if !now.Before(silentUntil) {
		c.mu.Unlock()
		c.logAt(slog.LevelDebug, "connection silent for two ping intervals")
		_ = c.ws.NetConn().Close() // the reader ends: connection lost
		return
	}
	joined := c.joined.Load()
	lateJoin := !joined && !now.Before(c.joinBy)
	if !now.Before(c.nextPing) {
		c.pingDue = true
		c.startWriterLocked()
		c.nextPing = now.Add(cfg.PingInterval)
	}
	next := c.nextPing
	if silentUntil.Before(next) {
		next = silentUntil
	}
	if !joined && !lateJoin && c.joinBy.Before(next) {
		next = c.joinBy
	}
	next = c.parkIdleReaderLocked(now, next)
	if c.idle {
		if retireAt := c.lastWrite.Add(writerLinger); now.Before(retireAt) {
			next = minTime(next, retireAt)
		} else {
			c.retire = true
			c.idle = false
			c.wake.Signal()
		}
	}
	// Under c.mu, so that serve's Stop, after it set stopped, is final.
	// Every candidate is in the future; the floor only guards against a
	// timer that would spin.
	d := max(next.Sub(now), time.Millisecond)
	c.tickAt = now.Add(d)
	c.timer.Reset(d)
	c.mu.Unlock()
	if lateJoin {
		c.closeWith(wire.CloseJoinTimeout, "no join in time")
	}
}

// closeWith asks the writer to send a close frame with code instead of
// what is queued. Only the first call counts. The frames it will not write
// stay queued for the session to take back (unsent).
func (c *conn) closeWith(code int, reason string) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.closeCode, c.closeReason = code, reason
	c.startWriterLocked()
	c.mu.Unlock()
}

// flushBeforeClose makes the coming close write what is queued first:
// those frames then stay with this connection instead of going back to
// the session (unsent returns none).
func (c *conn) flushBeforeClose() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flush = true
}

// unsent takes the frames a closing connection will not write and that a
// resume should replay (not the ephemeral ones).
func (c *conn) unsent() []outFrame {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.flush {
		return nil
	}
	var keep []outFrame
	for _, f := range c.queue {
		if !f.ephemeral {
			keep = append(keep, f)
		}
	}
	c.queue = nil
	return keep
}

func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// maxSpare bounds the batch a connection keeps for reuse: a burst's large
// slice is let go rather than held by an idle connection.
const maxSpare = 16

// queuePong asks the writer to answer a client's ping (only the last
// one, as RFC 6455 allows). It runs on the reader, inside gorilla's read.
func (c *conn) queuePong(data string) error {
	c.lastRead.Store(time.Now().UnixNano())
	c.mu.Lock()
	if !c.closing {
		c.pongDue, c.pongData = true, data
		c.startWriterLocked()
	}
	c.mu.Unlock()
	return nil
}

// writeJob is what take hands the writer.
type writeJob struct {
	frames  []outFrame
	ping    bool
	pong    bool
	pongMsg string
	closing bool
	code    int
	reason  string
}

// writerLinger is how long a writer waits for more frames after its last
// ones before it ends: a connection that relays a message a second keeps
// one writer rather than starting a goroutine (and growing its stack) per
// frame; an idle one keeps none.
const writerLinger = time.Second

// take hands the writer what it has to do and takes back the batch it
// wrote (done) for reuse. A writer whose last job had frames lingers here
// until more work comes or tick retires it. ok is false when the writer
// must end: the next push starts another.
func (c *conn) take(done []outFrame) (job writeJob, ok bool) {
	clear(done) // drop the frames, keep the slice
	c.mu.Lock()
	defer c.mu.Unlock()
	if done != nil && cap(done) <= maxSpare {
		c.spare = done[:0]
	}
	for {
		switch {
		case c.stopped:
			return job, false
		case c.closing:
			// writing stays set: no writer starts after the close frame.
			job = writeJob{closing: true, code: c.closeCode, reason: c.closeReason}
			if c.flush {
				job.frames, c.queue = c.queue, nil
			}
			return job, true
		case len(c.queue) > 0 || c.pingDue || c.pongDue:
			job.frames, job.ping = c.queue, c.pingDue
			job.pong, job.pongMsg = c.pongDue, c.pongData
			c.queue, c.spare = c.spare, nil
			c.pingDue, c.pongDue, c.pongData = false, false, ""
			c.limit = c.hub.cfg.SendQueue
			c.linger = len(job.frames) > 0
			return job, true
		case c.retire || !c.linger || c.timer == nil:
			c.retire, c.writing = false, false
			return job, false
		}
		c.lastWrite = time.Now()
		c.idle = true
		if retireAt := c.lastWrite.Add(writerLinger); retireAt.Before(c.tickAt) {
			// Rarely: the tick usually comes sooner and moves itself.
			c.tickAt = retireAt
			c.timer.Reset(writerLinger)
		}
		c.wake.Wait()
		c.idle = false
	}
}

// writeLoop is the connection's only writer of data frames, pings and the
// close frame. It runs until there is nothing left to write.
func (c *conn) writeLoop() {
	defer c.writers.Done()
	var done []outFrame
	for {
		job, ok := c.take(done)
		if !ok {
			return
		}
		if (job.pong && !c.writeControl(websocket.PongMessage, job.pongMsg, job.frames)) ||
			(job.ping && !c.writeControl(websocket.PingMessage, "", job.frames)) {
			return
		}
		if written, err := c.writeFrames(job.frames); err != nil {
			c.requeue(job.frames[written:])
			c.abort(err)
			return
		}
		if job.closing {
			msg := websocket.FormatCloseMessage(job.code, truncateReason(job.reason))
			_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeWait))
			// The reader ends when the client answers, or at this deadline,
			// which a reader woken to park restores (waitReadable).
			c.mu.Lock()
			c.readBy = time.Now().Add(closeWait)
			_ = c.ws.SetReadDeadline(c.readBy)
			c.mu.Unlock()
			return
		}
		done = job.frames
	}
}

// writeControl writes a ping or a pong. WriteControl sets the socket's
// write deadline: the writer's own, renewed. On failure the batch that was
// to follow goes back to the queue and the connection is dropped.
func (c *conn) writeControl(kind int, data string, batch []outFrame) bool {
	c.writeDeadline = time.Now().Add(c.hub.cfg.WriteTimeout)
	if err := c.ws.WriteControl(kind, []byte(data), c.writeDeadline); err != nil {
		c.requeue(batch)
		c.abort(err)
		return false
	}
	return true
}

// writeFrames writes a batch of text frames: without compression, framed
// by hand into one buffer and one write (a writer that falls behind then
// catches up with fewer system calls); with it, through gorilla, which
// compresses each.
// On an error, written is how many frames went out whole.
func (c *conn) writeFrames(frames []outFrame) (written int, err error) {
	if len(frames) == 0 {
		return 0, nil
	}
	cfg := &c.hub.cfg
	// Every write has a deadline between half a WriteTimeout and a whole
	// one away: moving it costs a runtime timer update (and may wake the
	// network poller), so not for every frame.
	// gorilla's SetWriteDeadline only records the deadline for its own
	// writes (and WriteControl sets the socket's): frames written by hand
	// need it on the socket itself.
	if now := time.Now(); c.writeDeadline.Sub(now) < cfg.WriteTimeout/2 {
		c.writeDeadline = now.Add(cfg.WriteTimeout)
		_ = c.ws.SetWriteDeadline(c.writeDeadline)
		_ = c.ws.NetConn().SetWriteDeadline(c.writeDeadline)
	}
	if cfg.Compression {
		for i, f := range frames {
			if err = c.ws.WriteMessage(websocket.TextMessage, f.data); err != nil {
				return i, err
			}
		}
	} else if written, err = writeTextFrames(c.ws.NetConn(), frames); err != nil {
		return written, err
	}
	for _, f := range frames {
		if !f.readAt.IsZero() {
			c.hub.metrics.relayLatency.Observe(time.Since(f.readAt).Seconds())
		}
	}
	return len(frames), nil
}

// requeue puts the frames a failed write did not write back at the head of
// the queue, where the session takes them back (unsent) when it detaches:
// a peer that resumes gets them. Frames the kernel took before the
// connection died are lost (the protocol has no acknowledgements).
func (c *conn) requeue(frames []outFrame) {
	if len(frames) == 0 {
		return
	}
	c.mu.Lock()
	c.queue = append(slices.Clone(frames), c.queue...)
	c.mu.Unlock()
}

// abort drops a connection the writer cannot write to; the reader then ends.
func (c *conn) abort(err error) {
	c.logAt(slog.LevelDebug, "write failed", "err", err)
	_ = c.ws.NetConn().Close()
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// truncateReason keeps a close reason within the 123 bytes RFC 6455 allows.
func truncateReason(s string) string {
	const maxReason = 123
	if len(s) <= maxReason {
		return s
	}
	for i := maxReason; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i]
		}
	}
	return ""
}
