package signal_test

import (
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// TestVanishedPeer: a client that still reads but answers no ping (its
// ping handler does nothing, so no pong is sent) and sends nothing is
// treated as vanished after two ping intervals: the server drops the
// connection without a close frame, waits out the grace, and the others
// get peer-left timeout. A client that answers pings stays through it all.
func TestVanishedPeer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(func(c *signal.Config) {
		c.PingInterval = 500 * time.Millisecond
		c.ResumeGrace = 300 * time.Millisecond
	}), signal.Options{})
	alive := h.dial(t)
	alive.join("liveness")
	mute := h.dialWith(t, dialOpts{setup: func(ws *websocket.Conn) {
		ws.SetPingHandler(func(string) error { return nil })
	}})
	mute.join("liveness")
	alive.expect(wire.TypePeerJoined)

	if code, before := mute.closed(); code != websocket.CloseAbnormalClosure || len(before) != 0 {
		t.Errorf("the mute client's connection ended with %d after %d messages, want a drop (1006) and none", code, len(before))
	}
	if code := h.waitClosed(t, mute.id); code != websocket.CloseAbnormalClosure {
		t.Errorf("server logged %d", code)
	}
	m := alive.expect(wire.TypePeerLeft)
	if m.ID != mute.id || m.Reason != wire.ReasonTimeout {
		t.Errorf("got %s, want peer-left %s timeout", describe(m), mute.id)
	}
	// alive has sent nothing since its join, more than two intervals
	// ago, and is still connected: it answered every ping.
	alive.quiet()
}

// TestAppPing: ping is answered with pong before and after join, ref or
// not, and counts as life.
func TestAppPing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	c := h.dial(t)
	c.send(map[string]any{"type": "ping", "ref": "p1"})
	if m := c.next(); m.Type != wire.TypePong {
		t.Fatalf("got %s, want pong", describe(m))
	}
	c.join("ping")
	for range 3 {
		c.quiet()
	}
}
