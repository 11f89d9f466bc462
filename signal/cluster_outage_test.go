package signal_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/huddle-rtc/huddle/internal/redistest"
	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// waitReady waits until srv's readiness is want (nil: ready).
func waitReady(t *testing.T, srv *signal.Server, ready bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := srv.Ready(context.Background())
		if (err == nil) == ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("readiness did not become %v: %v", ready, err)
		}
		time.Sleep(50 * time.Millisecond) // the supervisor checks every second
	}
}

// TestClusterRedisOutage: Redis goes away mid-call: nodes report not
// ready, peers on one node keep talking, and once Redis is back (empty:
// it kept nothing) the nodes resync presence and relay across again.
func TestClusterRedisOutage(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t, "signal", "to test the Redis broker's outage handling")
	cfg := resumeConfig(nil)
	node := func(name string) *harness {
		b, err := signal.NewRedisBroker(signal.RedisOptions{URL: r.URL(), Node: name, Prefix: "outage", Grace: cfg.ResumeGrace})
		if err != nil {
			t.Fatal(err)
		}
		return newHarness(t, cfg, signal.Options{Broker: b})
	}
	h1, h2 := node("n1"), node("n2")
	room := roomName(t.Name())
	a := h1.dial(t)
	a.join(room)
	b := h1.dial(t)
	b.join(room)
	a.expect(wire.TypePeerJoined)
	c := h2.dial(t)
	c.join(room)
	a.expect(wire.TypePeerJoined)
	b.expect(wire.TypePeerJoined)

	r.Stop()
	waitReady(t, h1.srv, false)
	waitReady(t, h2.srv, false)
	for i := range 5 {
		a.send(map[string]any{"type": "message", "to": b.id, "data": i})
	}
	for i := range 5 {
		if m := b.expect(wire.TypeMessage); string(m.Data) != strconv.Itoa(i) {
			t.Fatalf("during the outage: %s", describe(m))
		}
	}
	// A peer of the other node cannot be reached: the sender is told.
	a.send(map[string]any{"type": "message", "to": c.id, "data": "lost?", "ref": "x"})
	if m := a.expect(wire.TypeError); m.Code != wire.CodeUnavailable || m.Ref != "x" {
		t.Fatalf("message to another node during the outage: %s, want error unavailable", describe(m))
	}

	r.Start()
	waitReady(t, h1.srv, true)
	waitReady(t, h2.srv, true)
	// Presence was restored by each node: the room lists all three.
	d := h2.dial(t)
	d.join(room)
	if got := len(d.welcome.Peers); got != 3 {
		t.Fatalf("after the outage the room lists %d peers, want 3: %v", got, d.peerIDs())
	}
	for _, cl := range []*client{a, b, c} {
		if m := cl.expect(wire.TypePeerJoined); m.Peer == nil || m.Peer.ID != d.id {
			t.Fatalf("after the outage: %s, want peer-joined %s", describe(m), d.id)
		}
	}
	a.send(map[string]any{"type": "message", "to": c.id, "data": "across"})
	if m := c.expect(wire.TypeMessage); string(m.Data) != `"across"` {
		t.Fatalf("after the outage: %s", describe(m))
	}
}
