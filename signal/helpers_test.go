package signal_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// wait bounds every wait of these tests. It is generous: the machine is
// shared and -race is slow; a passing test never waits this long.
const wait = 15 * time.Second

// harness is one hub served on loopback by httptest.
type harness struct {
	srv  *signal.Server
	ts   *httptest.Server
	url  string // ws://127.0.0.1:port/
	logs *logSink
}

// testConfig is the default configuration with the per-address limits
// off (every test client comes from 127.0.0.1), with changes.
func testConfig(change func(*signal.Config)) signal.Config {
	cfg := signal.DefaultConfig()
	cfg.MaxConnsPerIP = 0
	cfg.HandshakeRate = 0
	if change != nil {
		change(&cfg)
	}
	return cfg
}

// harnessOption changes the HTTP server before it starts.
type harnessOption func(*httptest.Server)

// smallSendBuffers gives every accepted connection a small, fixed kernel
// send buffer (no autotuning), so that a client that stops reading makes
// the hub's writer block after a few kilobytes.
func smallSendBuffers(ts *httptest.Server) {
	ts.Listener = smallSendBufferListener{ts.Listener}
}

type smallSendBufferListener struct{ net.Listener }

func (l smallSendBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(16 << 10)
	}
	return c, err
}

// newHarness starts a hub. Cleanup closes it after every client of the
// test (cleanups run last-in first-out), then the HTTP server.
func newHarness(t testing.TB, cfg signal.Config, opts signal.Options, hopts ...harnessOption) *harness {
	t.Helper()
	logs := newLogSink()
	if opts.Logger == nil {
		opts.Logger = slog.New(logs.handler())
	}
	if opts.Broker == nil {
		opts.Broker = suiteBroker(t, cfg) // HUDDLE_TEST_BROKER=redis
	}
	srv, err := signal.New(cfg, opts)
	if err != nil {
		t.Fatalf("signal.New: %v", err)
	}
	ts := httptest.NewUnstartedServer(srv)
	for _, o := range hopts {
		o(ts)
	}
	ts.Start()
	t.Cleanup(ts.Close)
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Server.Close: %v", err)
		}
		if t.Failed() {
			logs.dump(t)
		}
	})
	return &harness{srv: srv, ts: ts, url: "ws" + strings.TrimPrefix(ts.URL, "http"), logs: logs}
}

// dialOpts changes how a test client connects.
type dialOpts struct {
	dialer *websocket.Dialer // nil: subprotocol huddle.v1
	header http.Header
	setup  func(ws *websocket.Conn) // before the reader starts
	noRead bool                     // do not start the reader: startReading does
}

// dial connects a client offering huddle.v1 and starts its reader.
func (h *harness) dial(t testing.TB) *client {
	t.Helper()
	return h.dialWith(t, dialOpts{})
}

func (h *harness) dialWith(t testing.TB, o dialOpts) *client {
	t.Helper()
	c, resp, err := h.tryDial(t, o)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (HTTP %d)", err, status)
	}
	return c
}

// tryDial connects; on a refused handshake it returns the response.
func (h *harness) tryDial(t testing.TB, o dialOpts) (*client, *http.Response, error) {
	t.Helper()
	d := o.dialer
	if d == nil {
		d = &websocket.Dialer{Subprotocols: []string{wire.Subprotocol}, HandshakeTimeout: wait}
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ws, resp, err := d.DialContext(ctx, h.url, o.header)
	if err != nil {
		return nil, resp, err
	}
	c := &client{
		t:      t,
		ws:     ws,
		proto:  resp.Header.Get("Sec-WebSocket-Protocol"),
		frames: make(chan frame, 4096),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if o.setup != nil {
		o.setup(ws)
	}
	t.Cleanup(c.close)
	if !o.noRead {
		c.startReading()
	}
	return c, resp, nil
}

// client is one test WebSocket client. A reader goroutine parses frames
// into a channel (gorilla answers the server's pings while it reads); the
// test goroutine reads them with deadlines.
type client struct {
	t     testing.TB
	ws    *websocket.Conn
	proto string // the subprotocol the server selected

	frames  chan frame
	stop    chan struct{} // closed by close: the reader stops
	done    chan struct{} // closed when the reader has ended
	started sync.Once
	err     error // why the reader ended; read after done

	id      wire.PeerID  // after join
	welcome wire.Message // the last welcome
}

// frame is one message received, raw and parsed.
type frame struct {
	raw []byte
	msg wire.Message
}

func (c *client) startReading() {
	c.started.Do(func() { go c.readLoop() })
}

func (c *client) readLoop() {
	defer close(c.done)
	for {
		kind, data, err := c.ws.ReadMessage()
		if err != nil {
			c.err = err
			return
		}
		if kind != websocket.TextMessage {
			c.err = fmt.Errorf("server sent a non-text frame (%d)", kind)
			return
		}
		m, err := wire.Parse(data)
		if err != nil {
			c.err = fmt.Errorf("server sent %q: %w", data, err)
			return
		}
		select {
		case c.frames <- frame{raw: data, msg: m}:
		case <-c.stop:
			return
		}
	}
}

// close drops the connection (no close frame) and waits for the reader.
func (c *client) close() {
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	_ = c.ws.Close()
	c.startReading() // so that done is closed
	<-c.done
}

// recv returns the next frame, or the reader's error once it has ended.
func (c *client) recv(timeout time.Duration) (frame, error) {
	select {
	case f := <-c.frames:
		return f, nil
	default:
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case f := <-c.frames:
		return f, nil
	case <-c.done:
		select {
		case f := <-c.frames: // frames the reader queued before it ended
			return f, nil
		default:
			return frame{}, c.err
		}
	case <-timer.C:
		return frame{}, fmt.Errorf("no frame within %s", timeout)
	}
}

// next returns the next message, failing the test if none arrives in time.
func (c *client) next() wire.Message {
	c.t.Helper()
	f, err := c.recv(wait)
	if err != nil {
		c.t.Fatalf("%s: waiting for a frame: %v", c.name(), err)
	}
	return f.msg
}

// nextRaw is next with the frame's bytes.
func (c *client) nextRaw() frame {
	c.t.Helper()
	f, err := c.recv(wait)
	if err != nil {
		c.t.Fatalf("%s: waiting for a frame: %v", c.name(), err)
	}
	return f
}

// expect returns the next message and fails unless it has type typ.
func (c *client) expect(typ wire.Type) wire.Message {
	c.t.Helper()
	m := c.next()
	if m.Type != typ {
		c.t.Fatalf("%s: got %s, want %s", c.name(), describe(m), typ)
	}
	return m
}

// expectError fails unless the next message is an error with code and ref.
func (c *client) expectError(code wire.ErrorCode, ref string) wire.Message {
	c.t.Helper()
	m := c.next()
	if m.Type != wire.TypeError || m.Code != code || m.Ref != ref {
		c.t.Fatalf("%s: got %s, want error %s with ref %q", c.name(), describe(m), code, ref)
	}
	if m.Message == "" {
		c.t.Errorf("%s: error %s without a message", c.name(), code)
	}
	return m
}

// quiet is the barrier that proves nothing else was sent to this client:
// it sends ping, and the very next frame must be pong. Anything the server
// had queued for this client before it read the ping comes first.
func (c *client) quiet() {
	c.t.Helper()
	c.send(map[string]any{"type": "ping"})
	m := c.next()
	if m.Type != wire.TypePong {
		c.t.Fatalf("%s: got %s, want nothing before pong", c.name(), describe(m))
	}
}

// tryQuiet is quiet for goroutines other than the test's.
func (c *client) tryQuiet() error {
	if err := c.trySend(map[string]any{"type": "ping"}); err != nil {
		return err
	}
	f, err := c.recv(wait)
	if err != nil {
		return err
	}
	if f.msg.Type != wire.TypePong {
		return fmt.Errorf("got %s, want nothing before pong", f.raw)
	}
	return nil
}

// closed waits for the connection to end and returns the close code the
// server sent (1006 when it sent none), with the messages that came first.
func (c *client) closed() (int, []wire.Message) {
	c.t.Helper()
	var before []wire.Message
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case f := <-c.frames:
			before = append(before, f.msg)
		case <-c.done:
			for {
				select {
				case f := <-c.frames: // queued before the reader ended
					before = append(before, f.msg)
				default:
					return closeCode(c.err), before
				}
			}
		case <-timer.C:
			got := make([]string, len(before))
			for i, m := range before {
				got[i] = describe(m)
			}
			c.t.Fatalf("%s: connection still open after %s; got %v", c.name(), wait, got)
		}
	}
}

// expectClose fails unless the server closes the connection with code and
// sends nothing else first.
func (c *client) expectClose(code int) {
	c.t.Helper()
	got, before := c.closed()
	if len(before) > 0 {
		c.t.Errorf("%s: got %s before the close", c.name(), describe(before[0]))
	}
	if got != code {
		c.t.Fatalf("%s: closed with %d (%v), want %d", c.name(), got, c.err, code)
	}
}

func closeCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return websocket.CloseAbnormalClosure
}

// send writes v as one text frame.
func (c *client) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatalf("marshal: %v", err)
	}
	c.sendRaw(websocket.TextMessage, b)
}

// trySend is send for goroutines other than the test's.
func (c *client) trySend(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.write(websocket.TextMessage, b)
}

// sendRaw writes one frame of kind.
func (c *client) sendRaw(kind int, b []byte) {
	c.t.Helper()
	if err := c.write(kind, b); err != nil {
		c.t.Fatalf("%s: write: %v", c.name(), err)
	}
}

func (c *client) write(kind int, b []byte) error {
	_ = c.ws.SetWriteDeadline(time.Now().Add(wait))
	return c.ws.WriteMessage(kind, b)
}

// join sends join and returns the welcome.
func (c *client) join(room string, fields ...any) wire.Message {
	c.t.Helper()
	m := map[string]any{"type": "join", "room": room}
	for i := 0; i+1 < len(fields); i += 2 {
		m[fields[i].(string)] = fields[i+1]
	}
	c.send(m)
	w := c.expect(wire.TypeWelcome)
	if w.ID == "" || w.Room != wire.RoomID(room) || w.Resume == "" {
		c.t.Fatalf("%s: incomplete welcome %s", c.name(), describe(w))
	}
	c.id, c.welcome = w.ID, w
	return w
}

// peerIDs lists the peers of the last welcome.
func (c *client) peerIDs() []wire.PeerID {
	ids := make([]wire.PeerID, len(c.welcome.Peers))
	for i, p := range c.welcome.Peers {
		ids[i] = p.ID
	}
	return ids
}

func (c *client) name() string {
	if c.id != "" {
		return "client " + string(c.id)[:6]
	}
	return "client"
}

// roomName makes a valid room name of a test's name.
func roomName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.') {
			b[i] = '-'
		}
	}
	return string(b[:min(len(b), wire.MaxRoomLen)])
}

// describe prints a message for failure output.
func describe(m wire.Message) string {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Sprintf("%+v", m)
	}
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// joinRoom connects n clients to room one after the other; each sees the
// others join, so that all of them know everyone when it returns.
func (h *harness) joinRoom(t testing.TB, room string, n int) []*client {
	t.Helper()
	cs := make([]*client, n)
	for i := range cs {
		cs[i] = h.dial(t)
		cs[i].join(room)
		for _, prev := range cs[:i] {
			if m := prev.expect(wire.TypePeerJoined); m.Peer == nil || m.Peer.ID != cs[i].id {
				t.Fatalf("peer-joined %s, want %s", describe(m), cs[i].id)
			}
		}
	}
	return cs
}

// waitClosed waits until the server has finished with the connection of
// peer id (its session detached or ended) and returns the close code it
// logged: the server's "connection closed" line is the event.
func (h *harness) waitClosed(t testing.TB, id wire.PeerID) int {
	t.Helper()
	rec := h.logs.wait(t, func(r logRecord) bool {
		return r.msg == "connection closed" && r.attrs["peer"] == string(id)
	})
	var code int
	_, _ = fmt.Sscan(rec.attrs["code"], &code)
	return code
}

// logSink records the server's log lines (info and above) so that tests
// can wait for server-side events and print the log when they fail.
type logSink struct {
	mu      sync.Mutex
	recs    []logRecord
	changed chan struct{} // closed and replaced on every record
}

type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func newLogSink() *logSink { return &logSink{changed: make(chan struct{})} }

func (s *logSink) handler() slog.Handler { return sinkHandler{sink: s} }

func (s *logSink) add(r logRecord) {
	s.mu.Lock()
	s.recs = append(s.recs, r)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// wait returns the first record that matches, waiting for it.
func (s *logSink) wait(t testing.TB, match func(logRecord) bool) logRecord {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	seen := 0
	for {
		s.mu.Lock()
		recs, changed := s.recs[seen:], s.changed
		seen = len(s.recs)
		s.mu.Unlock()
		if i := slices.IndexFunc(recs, match); i >= 0 {
			return recs[i]
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no matching server log line within %s", wait)
		}
	}
}

// count returns how many records match.
func (s *logSink) count(match func(logRecord) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.recs {
		if match(r) {
			n++
		}
	}
	return n
}

func (s *logSink) dump(t testing.TB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.recs {
		t.Logf("server log: %s %s %v", r.level, r.msg, r.attrs)
	}
}

type sinkHandler struct {
	sink  *logSink
	attrs []slog.Attr
}

func (h sinkHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h sinkHandler) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: make(map[string]string, len(h.attrs)+r.NumAttrs())}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	h.sink.add(rec)
	return nil
}

func (h sinkHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return sinkHandler{sink: h.sink, attrs: append(slices.Clip(h.attrs), as...)}
}

func (h sinkHandler) WithGroup(string) slog.Handler { return h }
