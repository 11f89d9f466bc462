package signal_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// TestCloseAfterLeave: leave is answered with 1000 and the others get
// peer-left with reason left.
func TestCloseAfterLeave(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	cs := h.joinRoom(t, "leave", 3)
	a, b, c := cs[0], cs[1], cs[2]
	b.send(map[string]any{"type": "leave"})
	b.expectClose(websocket.CloseNormalClosure)
	for _, other := range []*client{a, c} {
		m := other.expect(wire.TypePeerLeft)
		if m.ID != b.id || m.Reason != wire.ReasonLeft {
			t.Errorf("got %s, want peer-left %s left", describe(m), b.id)
		}
		other.quiet()
	}
	if code := h.waitClosed(t, b.id); code != websocket.CloseNormalClosure {
		t.Errorf("server logged code %d", code)
	}
}

// TestCloseServerClose: Close closes every connection, joined or not, with
// 1001, and a second Close is harmless.
func TestCloseServerClose(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	joined := h.joinRoom(t, "close", 2)
	idle := h.dial(t)
	idle.quiet()
	if err := h.srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, c := range append(joined, idle) {
		c.expectClose(websocket.CloseGoingAway)
	}
	if _, resp, err := h.tryDial(t, dialOpts{}); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial after Close: %v, want 503", err)
	}
}

// TestCloseBinary: a binary frame closes with 1003, before or after join.
func TestCloseBinary(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	c := h.dial(t)
	c.sendRaw(websocket.BinaryMessage, []byte(`{"type":"ping"}`))
	c.expectClose(websocket.CloseUnsupportedData)

	cs := h.joinRoom(t, "binary", 2)
	cs[0].sendRaw(websocket.BinaryMessage, []byte{1, 2, 3})
	cs[0].expectClose(websocket.CloseUnsupportedData)
	if code := h.waitClosed(t, cs[0].id); code != websocket.CloseUnsupportedData {
		t.Errorf("server logged code %d", code)
	}
	cs[1].quiet() // the peer waits out its resume grace: no peer-left yet
}

// TestCloseInvalidUTF8: a text frame that is not UTF-8 closes with 1007.
func TestCloseInvalidUTF8(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	c := h.dial(t)
	c.sendRaw(websocket.TextMessage, []byte("{\"type\":\"ping\",\"x\":\"\xff\xfe\"}"))
	c.expectClose(websocket.CloseInvalidFramePayloadData)

	j := h.joinRoom(t, "utf8", 1)[0]
	j.sendRaw(websocket.TextMessage, []byte("{\"type\":\"message\",\"data\":\"\xc3\"}"))
	j.expectClose(websocket.CloseInvalidFramePayloadData)
}

// TestCloseTooBig: a frame of exactly the limit is served; one byte more,
// or much more, closes with 1009, and the client does receive the code.
func TestCloseTooBig(t *testing.T) {
	t.Parallel()
	const limit = 1024
	h := newHarness(t, testConfig(func(c *signal.Config) { c.MaxMessageBytes = limit }), signal.Options{})
	padded := func(n int) []byte {
		prefix, suffix := `{"type":"ping","pad":"`, `"}`
		return []byte(prefix + strings.Repeat("x", n-len(prefix)-len(suffix)) + suffix)
	}
	c := h.dial(t)
	c.sendRaw(websocket.TextMessage, padded(limit))
	c.expect(wire.TypePong)
	c.sendRaw(websocket.TextMessage, padded(limit+1))
	c.expectClose(websocket.CloseMessageTooBig)

	big := h.joinRoom(t, "too-big", 1)[0]
	// The server closes in the middle of the message: the write may fail
	// (the client's reader has answered the close), but the code arrives.
	_ = big.write(websocket.TextMessage, padded(4<<20))
	big.expectClose(websocket.CloseMessageTooBig)
	if code := h.waitClosed(t, big.id); code != websocket.CloseMessageTooBig {
		t.Errorf("server logged code %d", code)
	}
}

// failingBroker is the LocalBroker with switchable faults: a test double
// of our own interface, to reach the hub's internal-error paths.
type failingBroker struct {
	signal.Broker
	failJoin, failPublish, failMembers atomic.Bool
}

var errBrokerDown = errors.New("broker down (test)")

func newFailingBroker() *failingBroker { return &failingBroker{Broker: signal.NewLocalBroker()} }

func (b *failingBroker) Join(ctx context.Context, room wire.RoomID, p wire.PeerInfo, max int) ([]wire.PeerInfo, error) {
	if b.failJoin.Load() {
		return nil, errBrokerDown
	}
	return b.Broker.Join(ctx, room, p, max)
}

func (b *failingBroker) Publish(ctx context.Context, env signal.Envelope) error {
	if b.failPublish.Load() {
		return errBrokerDown
	}
	return b.Broker.Publish(ctx, env)
}

func (b *failingBroker) Members(ctx context.Context, room wire.RoomID) ([]wire.PeerInfo, error) {
	if b.failMembers.Load() {
		return nil, errBrokerDown
	}
	return b.Broker.Members(ctx, room)
}

// TestCloseInternalError: when the broker fails, the connection whose
// message could not be served is closed with 1011; the others are not.
func TestCloseInternalError(t *testing.T) {
	t.Parallel()
	t.Run("publish", func(t *testing.T) {
		t.Parallel()
		b := newFailingBroker()
		h := newHarness(t, testConfig(nil), signal.Options{Broker: b})
		cs := h.joinRoom(t, "internal", 2)
		b.failPublish.Store(true)
		cs[0].send(map[string]any{"type": "message", "to": cs[1].id, "data": "lost"})
		cs[0].expectClose(websocket.CloseInternalServerErr)
		cs[1].quiet()
	})
	t.Run("join", func(t *testing.T) {
		t.Parallel()
		b := newFailingBroker()
		h := newHarness(t, testConfig(nil), signal.Options{Broker: b})
		b.failJoin.Store(true)
		c := h.dial(t)
		c.send(map[string]any{"type": "join", "room": "internal"})
		c.expectClose(websocket.CloseInternalServerErr)
	})
	t.Run("resume", func(t *testing.T) {
		t.Parallel()
		b := newFailingBroker()
		h := newHarness(t, testConfig(nil), signal.Options{Broker: b})
		cs := h.joinRoom(t, "internal", 2)
		cs[0].close()
		h.waitClosed(t, cs[0].id)
		b.failMembers.Store(true)
		again := h.dial(t)
		again.send(map[string]any{"type": "join", "room": "internal", "resume": cs[0].welcome.Resume})
		again.expectClose(websocket.CloseInternalServerErr)
		cs[1].quiet()
	})
}

// TestCloseDrain: Drain closes every connection with 1012 and returns once
// they are gone; then handshakes get 503 and Ready fails. The others see
// no peer-left: the sessions wait for a resume elsewhere.
func TestCloseDrain(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	joined := h.joinRoom(t, "drain", 3)
	idle := h.dial(t)
	idle.quiet()
	if err := h.srv.Ready(context.Background()); err != nil {
		t.Fatalf("Ready before Drain: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := h.srv.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	for _, c := range append(joined, idle) {
		c.expectClose(websocket.CloseServiceRestart)
	}
	if err := h.srv.Ready(context.Background()); err == nil {
		t.Error("Ready after Drain: nil, want an error")
	}
	_, resp, err := h.tryDial(t, dialOpts{})
	assertRefused(t, resp, err, http.StatusServiceUnavailable, "draining")
}

// TestCloseJoinTimeout: a connection that does not join in time is closed
// with 4008, pings notwithstanding; one that joined is not.
func TestCloseJoinTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(func(c *signal.Config) { c.JoinTimeout = 2 * time.Second }), signal.Options{})
	early := h.joinRoom(t, "join-timeout", 1)[0] // its timer would fire before the late one's
	late := h.dial(t)
	late.quiet()
	late.expectClose(wire.CloseJoinTimeout)
	early.quiet()
}
