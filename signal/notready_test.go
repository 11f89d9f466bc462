package signal_test

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/huddle-rtc/huddle/internal/redistest"
	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// TestHandshakeNotReady: while Redis is down, a new handshake is refused
// with 503 "not ready" (rather than upgraded only for its join to end with
// 1011), the one-line reason does not give Redis's address away, and a
// peer already connected is still served; once Redis is back, handshakes
// and joins succeed again.
func TestHandshakeNotReady(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t, "signal", "to test the Redis broker's outage handling")
	cfg := resumeConfig(nil)
	b, err := signal.NewRedisBroker(signal.RedisOptions{URL: r.URL(), Node: "n1", Prefix: "notready", Grace: cfg.ResumeGrace})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, cfg, signal.Options{Broker: b})
	room := roomName(t.Name())
	a := h.dial(t)
	a.join(room)

	r.Stop()
	waitReady(t, h.srv, false)
	_, resp, err := h.tryDial(t, dialOpts{})
	if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil {
		t.Fatalf("dial during the outage: %v, want a refused handshake", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	reason := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.HasPrefix(reason, "not ready: ") || strings.Contains(reason, "\n") {
		t.Errorf("during the outage: HTTP %d %q, want 503 and one line starting \"not ready: \"", resp.StatusCode, reason)
	}
	if strings.Contains(reason, strconv.Itoa(r.Port())) {
		t.Errorf("reason %q gives Redis's address away", reason)
	}
	// The peer connected before the outage is still served.
	a.send(map[string]any{"type": "ping"})
	a.expect(wire.TypePong)

	r.Start()
	waitReady(t, h.srv, true)
	c := h.dial(t)
	c.join(room)
	if got := c.peerIDs(); len(got) != 1 || got[0] != a.id {
		t.Fatalf("after the outage the welcome lists %v, want [%s]", got, a.id)
	}
}
