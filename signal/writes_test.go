package signal_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// TestWritesLongAfterPing: frames relayed well after a ping still get a
// write deadline of their own. The writer frames messages by hand on the
// socket, and gorilla's SetWriteDeadline only records a deadline for
// gorilla's own writes, while its ping leaves one on the socket: a frame
// written once that one had passed used to fail with an i/o timeout and
// drop the peer. Here the ping's deadline passes between every two pings.
func TestWritesLongAfterPing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(func(c *signal.Config) {
		c.PingInterval = 400 * time.Millisecond
		c.WriteTimeout = 100 * time.Millisecond
	}), signal.Options{})
	cs := h.joinRoom(t, "late", 2)
	a, b := cs[0], cs[1]
	// Spread over two ping intervals, most messages go out more than a
	// WriteTimeout after the last ping.
	for i := range 16 {
		time.Sleep(50 * time.Millisecond) // the time between messages is the test
		a.send(map[string]any{"type": "message", "to": b.id, "data": i})
		if m := b.expect(wire.TypeMessage); string(m.Data) != fmt.Sprint(i) {
			t.Fatalf("b got %s, want message %d", describe(m), i)
		}
	}
	b.quiet()
	a.quiet()
}

// TestClientPings: a client that pings the server (keep-alives of many
// WebSocket libraries) gets its pong and stays. gorilla's own ping handler
// wrote the pong with a 1 s socket deadline under the writer's frames, so
// a frame relayed between 1 s and half a WriteTimeout later failed and
// the peer was dropped.
func TestClientPings(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	cs := h.joinRoom(t, "pinger", 2)
	a, b := cs[0], cs[1]
	for i := range 2 {
		if err := b.write(websocket.PingMessage, []byte("keep-alive")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond) // past the 1 s deadline gorilla's pong left: the time is the test
		a.send(map[string]any{"type": "message", "to": b.id, "data": i})
		if m := b.expect(wire.TypeMessage); string(m.Data) != fmt.Sprint(i) {
			t.Fatalf("b got %s, want message %d", describe(m), i)
		}
	}
	b.quiet()
	a.quiet()
}
