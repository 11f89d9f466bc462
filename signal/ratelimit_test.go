package signal_test

import (
	"encoding/json"
	"strconv"
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// TestRateBurst: with the default limits (50/s, burst 200), an ICE trickle
// burst passes whole: join and 199 candidates sent back to back, 200
// messages, all relayed in order. The join counts against the bucket like
// every message (docs/protocol.md, Errors).
func TestRateBurst(t *testing.T) {
	t.Parallel()
	cfg := testConfig(nil)
	h := newHarness(t, cfg, signal.Options{})
	b := h.joinRoom(t, "burst", 1)[0]
	a := h.dial(t)
	burst := make([][]byte, cfg.RateBurst-1)
	for i := range burst {
		burst[i], _ = json.Marshal(map[string]any{"type": "candidate", "to": b.id, "candidate": map[string]any{
			"candidate": candidateLine(i), "sdpMid": "0", "sdpMLineIndex": 0,
		}})
	}
	a.join("burst")
	b.expect(wire.TypePeerJoined)
	for i, frame := range burst {
		if err := a.write(websocket.TextMessage, frame); err != nil {
			t.Fatalf("candidate %d: %v", i, err)
		}
	}
	for i := range burst {
		m := b.expect(wire.TypeCandidate)
		var c struct{ Candidate string }
		if err := json.Unmarshal(m.Candidate, &c); err != nil || c.Candidate != candidateLine(i) {
			t.Fatalf("candidate %d: got %s", i, m.Candidate)
		}
	}
	b.quiet()
}

func candidateLine(i int) string {
	return "candidate:" + strconv.Itoa(i) + " 1 udp 2122260223 192.0.2.1 " + strconv.Itoa(40000+i) + " typ host"
}

// TestRateLimited: once the bucket is empty, a message is dropped and
// answered with rate-limited carrying its ref; the connection stays open.
// A bucket that refills in 1000 s makes this exact.
func TestRateLimited(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(func(c *signal.Config) { c.RateLimit, c.RateBurst = 0.001, 10 }), signal.Options{})
	b := h.joinRoom(t, "limited", 1)[0]
	a := h.dial(t)
	a.join("limited") // 1 token
	b.expect(wire.TypePeerJoined)
	for i := range 9 {
		a.send(map[string]any{"type": "message", "to": b.id, "data": i})
	}
	a.send(map[string]any{"type": "message", "to": b.id, "data": "dropped", "ref": "over"})
	a.expectError(wire.CodeRateLimited, "over")
	a.send(map[string]any{"type": "ping", "ref": "ping-too"})
	a.expectError(wire.CodeRateLimited, "ping-too")
	for i := range 9 {
		if m := b.expect(wire.TypeMessage); string(m.Data) != strconv.Itoa(i) {
			t.Fatalf("got %s, want message %d", describe(m), i)
		}
	}
	b.quiet()
}

// TestRateFlood: a peer that keeps sending after rate-limited errors is
// closed with 1008, while the others in the room keep talking, and get
// exactly what was within the rate.
func TestRateFlood(t *testing.T) {
	t.Parallel()
	const burst = 20
	h := newHarness(t, testConfig(func(c *signal.Config) { c.RateLimit, c.RateBurst = 0.001, burst }), signal.Options{})
	cs := h.joinRoom(t, "flood", 3)
	a, b, c := cs[0], cs[1], cs[2]

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 500 {
			frame, _ := json.Marshal(map[string]any{"type": "message", "to": b.id, "data": i, "ref": strconv.Itoa(i)})
			if a.write(websocket.TextMessage, frame) != nil {
				return // closed by the server
			}
		}
	}()
	// b and c talk during the flood, within their own rates.
	for i := range burst / 2 {
		b.send(map[string]any{"type": "message", "to": c.id, "data": i})
		c.send(map[string]any{"type": "message", "to": b.id, "data": i})
		if m := c.expect(wire.TypeMessage); m.From != b.id || string(m.Data) != strconv.Itoa(i) {
			t.Fatalf("c got %s", describe(m))
		}
	}
	code, before := a.closed()
	wg.Wait()
	if code != websocket.ClosePolicyViolation {
		t.Errorf("flooder closed with %d, want 1008", code)
	}
	if len(before) == 0 {
		t.Error("the flooder got no rate-limited error before 1008")
	}
	for _, m := range before {
		if m.Type != wire.TypeError || m.Code != wire.CodeRateLimited || m.Ref == "" {
			t.Fatalf("flooder got %s, want only rate-limited errors with refs", describe(m))
		}
	}
	// b got a's messages within the bucket (its join took one token) in
	// order, mixed with c's, and nothing more.
	fromA, fromC := 0, 0
	for fromA < burst-1 || fromC < burst/2 {
		m := b.expect(wire.TypeMessage)
		switch m.From {
		case a.id:
			if string(m.Data) != strconv.Itoa(fromA) {
				t.Fatalf("b got %s from a, want %d", m.Data, fromA)
			}
			fromA++
		case c.id:
			if string(m.Data) != strconv.Itoa(fromC) {
				t.Fatalf("b got %s from c, want %d", m.Data, fromC)
			}
			fromC++
		}
	}
	if code := h.waitClosed(t, a.id); code != websocket.ClosePolicyViolation {
		t.Errorf("server logged %d", code)
	}
	b.quiet() // a waits out its grace: no peer-left yet
	c.quiet()
}
