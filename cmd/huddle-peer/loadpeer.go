package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// loadPeer is one connection of a load run. The handshake is gorilla's;
// after it the tool reads and writes frames itself: a receiver (one epoll
// loop for all peers on Linux, else a goroutine per peer) reads and
// answers the signaling, and the sender shard writes the messages once
// the signaling is done. Writes are serialised by wmu. Reading through
// one epoll loop costs one read per message, no goroutine switch: the
// tool can then drive a server harder than it loads itself.
type loadPeer struct {
	l      *loader
	phase  *loadPhase
	idx    int // the peer's number in the run, carried in its messages
	room   wire.RoomID
	active bool // plays a call; idle peers only join and read

	nc        net.Conn // set before the reader starts and the sender uses it
	conn      atomic.Pointer[websocket.Conn]
	upgraded  time.Time
	id        wire.PeerID
	dead      atomic.Bool // the connection failed or left: send nothing more
	readyFlag atomic.Bool // the signaling is done: the sender may start
	hasJoined atomic.Bool // welcome arrived: leave makes sense
	joined    sync.Once   // marks the join phase done (phase.joinWG)
	ready     sync.Once   // marks the signaling done (phase.readyWG)
	finished  sync.Once   // the connection's end is recorded (l.live)

	wmu     sync.Mutex // guards writes to nc, wbuf and payload
	wbuf    []byte
	payload []byte

	// Used by the reader alone, then (targets) by the sender shard once
	// ready has been marked: the reader adds no target after.
	frames    frameReader
	targets   []loadTarget
	signalGot int
	isReady   bool
	seen      []seqTrack

	next int // the sender's round-robin position in targets

	// The epoll receiver's raw read (loadrecv_linux.go). Stored before the
	// socket is registered and loaded by the loop: the atomic orders what
	// the dialling goroutine wrote before the loop reads the peer.
	raw    atomic.Pointer[rawReader]
	rspace []byte
	rn     int
	rerr   error
}

// rawReader reads a peer's socket without the runtime's poller.
type rawReader struct {
	conn syscall.RawConn
	read func(fd uintptr) bool // the peer's readRaw, bound once
}

// loadTarget is another peer of an active peer's room.
type loadTarget struct {
	id      wire.PeerID
	offerAt time.Time // when this peer sent its offer to it (newcomers)
	seq     int64     // the sender's next message number to it
}

// seqTrack is the next message number expected from one sender.
type seqTrack struct {
	from int
	next int64
}

// markJoined ends the join phase of this peer, joined or failed.
func (p *loadPeer) markJoined() { p.joined.Do(p.phase.joinWG.Done) }

// markReady ends the signaling phase of an active peer, done or failed.
func (p *loadPeer) markReady() {
	if p.active {
		p.ready.Do(p.phase.readyWG.Done)
	}
}

// fail records why the peer stopped and releases the phases waiting on it.
func (p *loadPeer) fail(kind string) {
	if !p.dead.Swap(true) {
		p.l.errs.add(kind)
	}
	p.markJoined()
	p.markReady()
}

// run dials and sends join; the receiver takes it from there. dialSlot is
// released once the dial is over, so that the ramp bounds dials in flight.
func (p *loadPeer) run(ctx context.Context, dialSlot <-chan struct{}) {
	l := p.l
	start := time.Now()
	ws, resp, err := l.dialers[p.idx%len(l.dialers)].DialContext(ctx, l.url, l.header)
	if err == nil {
		// Counted before the slot is released: once every slot is back,
		// the run knows every live connection.
		p.nc = ws.NetConn()
		l.live.Add(1)
		p.conn.Store(ws)
	}
	<-dialSlot
	if err != nil {
		kind := errorKind("dial", err)
		if resp != nil {
			kind = "handshake-" + strconv.Itoa(resp.StatusCode)
			_ = resp.Body.Close()
		}
		p.fail(kind)
		return
	}
	p.upgraded = time.Now()
	l.dialLat.record(p.upgraded.Sub(start))
	l.conns.Add(1)
	if err := p.write(opText, []byte(`{"type":"join","room":"`+string(p.room)+`"}`)); err != nil {
		p.finish(err)
		return
	}
	if l.recv != nil && l.recv.add(p) == nil {
		return
	}
	p.readLoop() // TLS, or no epoll: a goroutine of its own
}

// readLoop reads the connection until it ends, for peers the epoll loop
// does not serve.
func (p *loadPeer) readLoop() {
	for {
		n, err := p.nc.Read(p.frames.space())
		if n > 0 && !p.frames.fill(n, p.frame) {
			p.finish(nil)
			return
		}
		if err != nil {
			p.finish(err)
			return
		}
	}
}

// finish records the end of the connection once and closes it: after
// leave, the 1000 the server answers with; else the error of its kind.
func (p *loadPeer) finish(err error) {
	p.finished.Do(func() {
		l := p.l
		if l.recv != nil {
			l.recv.remove(p)
		}
		_ = p.nc.Close()
		if p.frames.bad {
			p.fail("read-bad-frame")
		}
		switch {
		case err == nil, p.dead.Load() && l.leaving.Load():
		case !p.hasJoined.Load():
			p.fail(errorKind("join", err))
		default:
			p.fail(errorKind("read", err))
		}
		p.dead.Store(true)
		p.markJoined()
		p.markReady()
		l.live.Done()
	})
}

// frame serves one frame from the server; false ends the connection.
func (p *loadPeer) frame(op byte, payload []byte) bool {
	switch op {
	case opText:
		if p.id == "" {
			return p.welcome(payload)
		}
		p.handle(payload)
	case opPing:
		if err := p.write(opPong, payload); err != nil {
			p.fail(errorKind("write", err))
			return false
		}
	case opClose:
		p.closed(payload)
		return false
	case opPong:
	default:
		p.l.errs.add("frame-unexpected")
	}
	return true
}

// closed takes the server's close frame: expected (1000) after leave,
// else an error; it answers with the same code, as RFC 6455 asks.
func (p *loadPeer) closed(payload []byte) {
	code := websocket.CloseNoStatusReceived
	if len(payload) >= 2 {
		code = int(binary.BigEndian.Uint16(payload))
	}
	p.l.closes.add(strconv.Itoa(code))
	if code != websocket.CloseNormalClosure || !p.l.leaving.Load() {
		p.fail("close-" + strconv.Itoa(code))
	}
	p.dead.Store(true)
	_ = p.write(opClose, binary.BigEndian.AppendUint16(nil, uint16(code)))
}

// welcome takes the answer to join: it records the join latency, and an
// active newcomer sends its offers.
func (p *loadPeer) welcome(frame []byte) bool {
	l := p.l
	m, err := wire.Parse(frame)
	if err != nil || m.Type != wire.TypeWelcome {
		kind := "join-unexpected-frame"
		if err == nil && m.Type == wire.TypeError {
			kind = "error-" + string(m.Code)
		}
		p.fail(kind)
		return false
	}
	l.joinLat.record(time.Since(p.upgraded))
	p.id = m.ID
	p.hasJoined.Store(true)
	l.joined.Add(1)
	p.markJoined()
	if !p.active {
		return true
	}
	for _, peer := range m.Peers {
		p.targets = append(p.targets, loadTarget{id: peer.ID, offerAt: time.Now()})
		if !p.sendSignaling(peer.ID, wire.TypeOffer) {
			return false
		}
	}
	p.checkReady()
	return true
}

// handle serves one text frame after welcome.
func (p *loadPeer) handle(frame []byte) {
	if s, n, t, ok := parseLoadMessage(frame); ok {
		p.received(s, n, t)
		return
	}
	m, err := wire.Parse(frame)
	if err != nil {
		p.l.errs.add("unparsable-frame")
		return
	}
	switch m.Type {
	case wire.TypePeerJoined:
		if p.active && !p.isReady && m.Peer != nil {
			p.targets = append(p.targets, loadTarget{id: m.Peer.ID})
		}
	case wire.TypeOffer, wire.TypeAnswer, wire.TypeCandidate:
		p.signaling(&m)
	case wire.TypeError:
		p.l.errs.add("error-" + string(m.Code))
	case wire.TypeMessage:
		p.l.errs.add("message-unexpected")
	}
}

// signaling answers an offer and counts what the signaling must bring.
func (p *loadPeer) signaling(m *wire.Message) {
	if !p.active || p.isReady {
		p.l.errs.add("signaling-unexpected")
		return
	}
	p.signalGot++
	switch m.Type {
	case wire.TypeOffer:
		p.sendSignaling(m.From, wire.TypeAnswer)
	case wire.TypeAnswer:
		for i := range p.targets {
			if p.targets[i].id == m.From && !p.targets[i].offerAt.IsZero() {
				p.l.signalLat.record(time.Since(p.targets[i].offerAt))
			}
		}
	}
	p.checkReady()
}

// checkReady marks the peer ready once every other peer of its room has
// sent it an offer or an answer and its burst of candidates.
func (p *loadPeer) checkReady() {
	l := p.l
	others := l.f.peersPerRoom - 1
	if len(p.targets) == others && p.signalGot == others*(1+l.f.candidates) {
		p.isReady = true
		p.readyFlag.Store(true)
		l.ready.Add(1)
		p.markReady()
	}
}

// sendSignaling sends an offer or answer to peer, then its candidates.
func (p *loadPeer) sendSignaling(to wire.PeerID, typ wire.Type) bool {
	frames := [][]byte{signalFrame(typ, to)}
	for i := range p.l.f.candidates {
		frames = append(frames, candidateFrame(to, i, i == p.l.f.candidates-1))
	}
	for _, f := range frames {
		if err := p.write(opText, f); err != nil {
			p.fail(errorKind("write", err))
			return false
		}
	}
	return true
}

// received counts one relayed message of the run: its latency and order.
func (p *loadPeer) received(from int, n, sentAt int64) {
	l := p.l
	l.received.Add(1)
	l.relayLat.record(time.Since(l.epoch) - time.Duration(sentAt))
	for i := range p.seen {
		if p.seen[i].from == from {
			switch {
			case n < p.seen[i].next:
				l.reordered.Add(1)
			default:
				p.seen[i].next = n + 1
			}
			return
		}
	}
	p.seen = append(p.seen, seqTrack{from: from, next: n + 1})
}

// sendMessage sends the next timestamped message to the next target.
func (p *loadPeer) sendMessage() {
	if p.dead.Load() || len(p.targets) == 0 {
		return
	}
	t := &p.targets[p.next%len(p.targets)]
	p.next++
	p.wmu.Lock()
	b := append(p.payload[:0], `{"type":"message","to":"`...)
	b = append(b, t.id...)
	b = append(b, `","data":{"s":`...)
	b = strconv.AppendInt(b, int64(p.idx), 10)
	b = append(b, `,"n":`...)
	b = strconv.AppendInt(b, t.seq, 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, int64(time.Since(p.l.epoch)), 10)
	b = append(b, "}}"...)
	p.payload = b
	err := p.writeLocked(opText, b)
	p.wmu.Unlock()
	if err != nil {
		p.fail(errorKind("write", err))
		return
	}
	t.seq++
	p.l.sent.Add(1)
}

// leave sends leave; the server answers with a 1000 close.
func (p *loadPeer) leave() {
	if !p.hasJoined.Load() || p.dead.Load() {
		return
	}
	if err := p.write(opText, []byte(`{"type":"leave"}`)); err != nil {
		p.fail(errorKind("write", err))
	}
}

// closeNow drops the connection of a peer the server did not close.
func (p *loadPeer) closeNow() {
	if p.conn.Load() == nil {
		return
	}
	if !p.hasJoined.Load() {
		p.fail("join-timeout")
	} else {
		p.fail("close-timeout")
	}
	p.finish(nil)
}

func (p *loadPeer) write(op byte, payload []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return p.writeLocked(op, payload)
}

// writeLocked writes one client frame. net.Conn writes whole buffers, so
// frames never interleave. No write deadline: the run's end closes the
// connections, which ends any write.
func (p *loadPeer) writeLocked(op byte, payload []byte) error {
	p.wbuf = appendClientFrame(p.wbuf[:0], op, payload)
	_, err := p.nc.Write(p.wbuf)
	return err
}

// loadSDP stands for a real offer's size (about 2 KB: audio, video and a
// data channel).
var loadSDP = func() string {
	var b bytes.Buffer
	b.WriteString("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n")
	b.WriteString("a=group:BUNDLE 0 1 2\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n")
	for i, media := range []string{"audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
		"video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101 45 46", "application 9 UDP/DTLS/SCTP webrtc-datachannel"} {
		fmt.Fprintf(&b, "m=%s\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n", media)
		b.WriteString("a=ice-ufrag:EsAw\r\na=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\r\na=ice-options:trickle\r\n")
		b.WriteString("a=fingerprint:sha-256 0F:74:31:25:CB:A2:13:EC:28:6F:6D:2C:61:FF:5D:C2:BC:B9:DB:3D:98:14:8D:1A:BB:EA:33:0C:A4:60:A8:8E\r\n")
		fmt.Fprintf(&b, "a=setup:actpass\r\na=mid:%d\r\na=sendrecv\r\na=rtcp-mux\r\n", i)
		for pt := range 6 {
			fmt.Fprintf(&b, "a=rtpmap:%d codec%d/90000\r\na=rtcp-fb:%d nack\r\n", 96+pt, pt, 96+pt)
		}
	}
	return b.String()
}()

// signalFrame is an offer or answer to peer.
func signalFrame(typ wire.Type, to wire.PeerID) []byte {
	b, _ := json.Marshal(wire.Message{Type: typ, To: to, SDP: loadSDP})
	return b
}

// candidateFrame is candidate i to peer; the last one is null (the end of
// candidates).
func candidateFrame(to wire.PeerID, i int, last bool) []byte {
	c := json.RawMessage("null")
	if !last {
		c = json.RawMessage(fmt.Sprintf(
			`{"candidate":"candidate:%d 1 udp 2122260223 192.0.2.%d %d typ host generation 0 ufrag EsAw network-id 1","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"EsAw"}`,
			i+1, i+1, 50000+i))
	}
	b, _ := json.Marshal(wire.Message{Type: wire.TypeCandidate, To: to, Candidate: c})
	return b
}

var (
	loadMessagePrefix = []byte(`{"type":"message",`)
	loadDataMarker    = []byte(`"data":{"s":`)
)

// parseLoadMessage reads a relayed message of this tool without a JSON
// decoder: the server writes `{"type":"message",...,"data":{"s":S,"n":N,"t":T}}`.
func parseLoadMessage(b []byte) (from int, n, sentAt int64, ok bool) {
	if !bytes.HasPrefix(b, loadMessagePrefix) {
		return 0, 0, 0, false
	}
	i := bytes.Index(b, loadDataMarker)
	if i < 0 {
		return 0, 0, 0, false
	}
	b = b[i+len(loadDataMarker):]
	s, b, ok1 := cutInt(b, `,"n":`)
	n, b, ok2 := cutInt(b, `,"t":`)
	t, _, ok3 := cutInt(b, `}}`)
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, 0, false
	}
	return int(s), n, t, true
}

// cutInt parses the decimal integer at the start of b, which must be
// followed by sep, and returns what follows sep.
func cutInt(b []byte, sep string) (int64, []byte, bool) {
	i := 0
	var v int64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' && i < 19 {
		v = v*10 + int64(b[i]-'0')
		i++
	}
	if i == 0 || !bytes.HasPrefix(b[i:], []byte(sep)) {
		return 0, nil, false
	}
	return v, b[i+len(sep):], true
}

// newDialers returns one dialer per source address (none given: the
// system's choice).
func newDialers(sources []string, timeout time.Duration, pool websocket.BufferPool) []*websocket.Dialer {
	base := websocket.Dialer{
		HandshakeTimeout: timeout,
		ReadBufferSize:   1024,
		WriteBufferSize:  1024,
		WriteBufferPool:  pool,
		Subprotocols:     []string{wire.Subprotocol},
		Proxy:            http.ProxyFromEnvironment,
	}
	if len(sources) == 0 {
		d := base
		return []*websocket.Dialer{&d}
	}
	out := make([]*websocket.Dialer, len(sources))
	for i, src := range sources {
		d := base
		d.Proxy = nil
		d.NetDialContext = sourceDialer(src, timeout)
		out[i] = &d
	}
	return out
}
