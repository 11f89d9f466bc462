package signal

import (
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
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
// serve) and one writer goroutine, a bounded queue between the hub and the
// writer, deadlines on every read and write.
type conn struct {
	ws  *websocket.Conn
	hub *Hub
	log *slog.Logger

	mu          sync.Mutex // guards the fields below
	queue       []outFrame
	limit       int // the queue's bound; raised while a resume flushes
	closing     bool
	closeCode   int
	closeReason string
	flush       bool // write what is queued before the close frame

	notify chan struct{} // wakes the writer; capacity 1
	done   chan struct{} // closed when the reader has ended

	// Used by the reader goroutine alone.
	claims  *Claims // the handshake's token, nil when none is required
	session *session
	limiter *rate.Limiter
	strikes int
	readAt  time.Time // when the message being handled was read

	joined    atomic.Bool
	joinTimer *time.Timer
}

func newConn(ws *websocket.Conn, h *Hub, log *slog.Logger, claims *Claims) *conn {
	return &conn{
		ws:      ws,
		claims:  claims,
		hub:     h,
		log:     log,
		limit:   h.cfg.SendQueue,
		notify:  make(chan struct{}, 1),
		done:    make(chan struct{}),
		limiter: rate.NewLimiter(rate.Limit(h.cfg.RateLimit), h.cfg.RateBurst),
	}
}

// serve runs the connection until it ends; it returns after the writer.
func (c *conn) serve() {
	cfg := &c.hub.cfg
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	c.joinTimer = time.AfterFunc(cfg.JoinTimeout, func() {
		if !c.joined.Load() {
			c.closeWith(wire.CloseJoinTimeout, "no join in time")
		}
	})

	err := c.readLoop()
	if errors.Is(err, websocket.ErrReadLimit) {
		// gorilla has sent 1009; read out the rest of the oversized frame
		// so that closing does not reset the connection before the client
		// has read the close frame.
		c.discardInput()
	}

	c.joinTimer.Stop()
	close(c.done)
	_ = c.ws.Close()
	<-writerDone
	code, reason := c.closeStatus(err)
	c.hub.metrics.closed(code)
	if c.session != nil {
		c.session.detach(c, code, reason)
	}
	c.log.Info("connection closed", "code", code, "reason", reason)
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

func (c *conn) readLoop() error {
	cfg := &c.hub.cfg
	alive := 2 * cfg.PingInterval
	c.ws.SetReadLimit(cfg.MaxMessageBytes)
	_ = c.ws.SetReadDeadline(time.Now().Add(alive))
	c.ws.SetPongHandler(func(string) error {
		if !c.isClosing() {
			_ = c.ws.SetReadDeadline(time.Now().Add(alive))
		}
		return nil
	})
	for {
		kind, r, err := c.ws.NextReader()
		if err != nil {
			return err
		}
		if c.isClosing() {
			continue // draining the client's last frames until its close
		}
		c.readAt = time.Now()
		_ = c.ws.SetReadDeadline(c.readAt.Add(alive))
		if kind != websocket.TextMessage {
			c.fail(wire.CloseUnsupported, "binary frames are not supported")
			continue
		}
		// The read limit counts bytes on the wire; a compressed message is
		// bounded again here, inflated, so a small frame cannot blow up.
		data, err := io.ReadAll(io.LimitReader(r, cfg.MaxMessageBytes+1))
		if err != nil {
			return err
		}
		if int64(len(data)) > cfg.MaxMessageBytes {
			c.fail(wire.CloseTooBig, "message too large")
			continue
		}
		if !utf8.Valid(data) {
			c.fail(wire.CloseInvalidPayload, "text frame is not valid UTF-8")
			continue
		}
		c.handle(data)
	}
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
		c.log.Debug("refused message", "code", werr.Code, "err", werr.Message)
		c.sendError(werr)
		return
	}
	c.log.Debug("message", "type", m.Type)
	switch m.Type {
	case wire.TypeJoin:
		c.hub.handleJoin(c, &m)
	case wire.TypePing:
		c.send(pongFrame)
	case wire.TypeLeave:
		c.requireJoined(&m, c.hub.handleLeave)
	default: // offer, answer, candidate, message: Validate admits no others
		c.requireJoined(&m, c.hub.handleRelay)
	}
}

func (c *conn) requireJoined(m *wire.Message, handler func(*conn, *wire.Message)) {
	if c.session == nil {
		c.sendError(&wire.Error{Code: wire.CodeNotJoined, Message: "send join first", Ref: m.Ref})
		return
	}
	handler(c, m)
}

// fail closes the connection for a fault of the client's; its session, if
// any, waits out the resume grace.
func (c *conn) fail(code int, reason string) {
	c.log.Info("closing connection", "code", code, "reason", reason)
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
	c.mu.Unlock()
	c.wake()
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
	c.mu.Unlock()
	c.wake()
}

func (c *conn) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
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
	c.mu.Unlock()
	c.wake()
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

// take hands the writer what it has to do: frames to write, or a close.
func (c *conn) take() (frames []outFrame, closing bool, code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		if c.flush {
			frames, c.queue = c.queue, nil
		}
		return frames, true, c.closeCode, c.closeReason
	}
	frames = c.queue
	c.queue = nil
	c.limit = c.hub.cfg.SendQueue
	return frames, false, 0, ""
}

// writeLoop is the connection's only writer of data frames and pings.
func (c *conn) writeLoop() {
	cfg := &c.hub.cfg
	ping := time.NewTicker(cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(cfg.WriteTimeout)); err != nil {
				c.abort(err)
				return
			}
			continue
		case <-c.notify:
		}
		frames, closing, code, reason := c.take()
		for _, f := range frames {
			_ = c.ws.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
			if err := c.ws.WriteMessage(websocket.TextMessage, f.data); err != nil {
				c.abort(err)
				return
			}
			if !f.readAt.IsZero() {
				c.hub.metrics.relayLatency.Observe(time.Since(f.readAt).Seconds())
			}
		}
		if closing {
			msg := websocket.FormatCloseMessage(code, truncateReason(reason))
			_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeWait))
			// The reader ends when the client answers, or at this deadline.
			_ = c.ws.SetReadDeadline(time.Now().Add(closeWait))
			return
		}
	}
}

// abort drops a connection the writer cannot write to; the reader then ends.
func (c *conn) abort(err error) {
	c.log.Debug("write failed", "err", err)
	_ = c.ws.NetConn().Close()
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
