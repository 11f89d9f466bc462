package signal_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// TestIdleReadersPark: the readers of quiet connections move to fresh
// goroutines (conn.park, which keeps an idle peer's stack at 2 KiB), and
// parked connections go on relaying both ways, quiet spell after quiet
// spell. Pings go out every 200 ms: the clients' pongs keep the parked
// connections alive (silence for two intervals would drop them) without
// waking them for good.
//
// Not parallel: it counts the process's parked readers, which are then
// its own.
func TestIdleReadersPark(t *testing.T) {
	h := newHarness(t, testConfig(func(c *signal.Config) {
		c.PingInterval = 200 * time.Millisecond
	}), signal.Options{})
	cs := h.joinRoom(t, "park", 2)
	a, b := cs[0], cs[1]
	for spell := range 3 {
		waitParked(t, 2)
		a.send(map[string]any{"type": "message", "to": b.id, "data": spell})
		if m := b.expect(wire.TypeMessage); string(m.Data) != fmt.Sprint(spell) {
			t.Fatalf("b got %s, want message %d", describe(m), spell)
		}
		b.send(map[string]any{"type": "ping"})
		b.expect(wire.TypePong)
		b.send(map[string]any{"type": "message", "to": a.id, "data": -spell})
		if m := a.expect(wire.TypeMessage); string(m.Data) != fmt.Sprint(-spell) {
			t.Fatalf("a got %s, want message %d", describe(m), -spell)
		}
	}
	a.quiet()
	b.quiet()
}

// waitParked waits until n connection readers wait parked.
func waitParked(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var buf bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
		// debug=1 groups identical stacks: "N @ ..." heads each group.
		parked := 0
		for _, group := range bytes.Split(buf.Bytes(), []byte("\n\n")) {
			// Waiting in park itself, not serving from it (run).
			if bytes.Contains(group, []byte("signal.(*conn).park+")) && !bytes.Contains(group, []byte("signal.(*conn).run+")) {
				var count int
				_, _ = fmt.Sscanf(string(group), "%d @", &count)
				parked += count
			}
		}
		if parked == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d readers parked after 10 s, want %d:\n%s", parked, n, buf.String())
		}
		time.Sleep(20 * time.Millisecond) // polling the goroutine profile
	}
}

// TestCloseWaitSurvivesParking: a connection closed as its reader is woken
// to park still ends at the close handshake's deadline when the client
// never answers. The join deadline is the parking delay here, so that the
// 4008 and the wake-up come together; the reader used to clear the close
// handshake's read deadline and park, and the connection stayed open.
func TestCloseWaitSurvivesParking(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(func(c *signal.Config) {
		c.JoinTimeout = time.Second // parkAfter
	}), signal.Options{})
	addr := h.ts.Listener.Addr().String()
	var conns []net.Conn
	for range 4 {
		c, err := bareUpgrade(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	// No join, and the close frame is read but never answered: the server
	// ends each connection 1 s (join) + 2 s (close wait) after it opened.
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(8 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("connection %d: the server did not end it: %v", i, err)
		}
	}
}
