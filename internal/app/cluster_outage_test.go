package app_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/huddle-rtc/huddle/client"
	"github.com/huddle-rtc/huddle/internal/app"
	"github.com/huddle-rtc/huddle/internal/apptest"
	"github.com/huddle-rtc/huddle/internal/redistest"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// outageWait bounds every wait of the outage test: the supervisor checks
// Redis every second, peers connect in a few hundred milliseconds.
const outageWait = 20 * time.Second

// waitReadyz polls a's /readyz until it answers want.
func waitReadyz(t *testing.T, a *app.App, want int) string {
	t.Helper()
	deadline := time.Now().Add(outageWait)
	for {
		status, body := readyz(t, a)
		if status == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %q, want %d", status, body, want)
		}
		time.Sleep(50 * time.Millisecond) // no event for readiness; the supervisor checks every second
	}
}

// recorder keeps a client's events for the test to wait on.
type recorder struct {
	*client.Client
	name string

	mu      sync.Mutex
	events  []client.Event
	updated chan struct{} // closed and replaced on every event
	ended   chan struct{}
}

func joinRecorded(t *testing.T, wsURL string, room wire.RoomID, name string) *recorder {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), outageWait)
	defer cancel()
	c, err := client.Join(ctx, wsURL, room, client.Options{
		Name:      name,
		Logger:    slog.New(slog.NewTextHandler(apptest.Output(t), &slog.HandlerOptions{Level: slog.LevelWarn})).With("client", name),
		Reconnect: client.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond},
	})
	if err != nil {
		t.Fatalf("join %s as %s: %v", room, name, err)
	}
	r := &recorder{Client: c, name: name, updated: make(chan struct{}), ended: make(chan struct{})}
	go func() {
		defer close(r.ended)
		for ev := range c.Events() {
			r.mu.Lock()
			r.events = append(r.events, ev)
			close(r.updated)
			r.updated = make(chan struct{})
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = c.Close()
		<-r.ended
	})
	return r
}

// await returns the first event of type T that matches, waiting for it.
func await[T client.Event](t *testing.T, r *recorder, what string, match func(T) bool) T {
	t.Helper()
	deadline := time.NewTimer(outageWait)
	defer deadline.Stop()
	from := 0
	for {
		r.mu.Lock()
		for ; from < len(r.events); from++ {
			if ev, ok := r.events[from].(T); ok && match(ev) {
				r.mu.Unlock()
				return ev
			}
		}
		updated := r.updated
		r.mu.Unlock()
		select {
		case <-updated:
		case <-r.ended:
			t.Fatalf("%s ended (%v) before %s", r.name, r.Err(), what)
		case <-deadline.C:
			t.Fatalf("%s: no %s within %v", r.name, what, outageWait)
		}
	}
}

// roundTrip sends text from a to b on their data channel and waits for it.
func (r *recorder) roundTrip(t *testing.T, to *recorder, text string) {
	t.Helper()
	opened := await(t, r, "data channel to "+to.name, func(e client.DataChannelOpened) bool { return e.Peer.ID() == to.ID() })
	if err := opened.Channel.SendText(text); err != nil {
		t.Fatalf("%s: send to %s: %v", r.name, to.name, err)
	}
	await(t, to, fmt.Sprintf("%q from %s", text, r.name), func(e client.DataMessage) bool {
		return e.Peer.ID() == r.ID() && string(e.Data) == text
	})
}

// TestClusterRedisOutageMidCall: two Go client peers on two nodes are in a
// call when Redis dies. Media and data do not go through huddle, so their
// data channel keeps working; both nodes say not ready on /readyz (while
// /healthz stays 200) and refuse new handshakes with 503. Once Redis is
// back (empty: it kept nothing), the nodes are ready again and signaling
// crosses nodes again: a message, and a third peer who sees both.
func TestClusterRedisOutageMidCall(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("a call through a Redis outage takes seconds")
	}
	r := redistest.Start(t, "internal/app", "to test a cluster through a Redis outage")
	prefix := "huddle-outage-" + strings.ToLower(rand.Text()[:10])
	node := func(id string) *app.App {
		return apptest.Start(t, func(c *app.Config) {
			c.RedisURL, c.RedisPrefix, c.NodeID = r.URL(), prefix, id
		})
	}
	n1, n2 := node("outage-1"), node("outage-2")
	for _, n := range []*app.App{n1, n2} {
		waitReadyz(t, n, http.StatusOK)
	}
	if v := scrape(t, n1.MetricsURL()).must(t, "huddle_build_info", "node", "outage-1"); v != 1 {
		t.Errorf("huddle_build_info{node=\"outage-1\"} = %v, want 1", v)
	}
	const room = "outage-call"
	a := joinRecorded(t, n1.WSURL(), room, "a")
	b := joinRecorded(t, n2.WSURL(), room, "b")
	a.roundTrip(t, b, "before a->b")
	b.roundTrip(t, a, "before b->a")

	r.Stop()
	for _, n := range []*app.App{n1, n2} {
		body := waitReadyz(t, n, http.StatusServiceUnavailable)
		if !strings.Contains(body, "redis") {
			t.Errorf("/readyz during the outage says %q, want it to name redis", body)
		}
		if status, _ := httpGet(t, n.URL()+"/healthz"); status != http.StatusOK {
			t.Errorf("/healthz during the outage: %d, want 200", status)
		}
		d := websocket.Dialer{Subprotocols: []string{wire.Subprotocol}, HandshakeTimeout: outageWait}
		ws, resp, err := d.Dial(n.WSURL(), nil)
		if err == nil {
			ws.Close()
			t.Fatal("a handshake during the outage was upgraded, want 503")
		}
		if !errors.Is(err, websocket.ErrBadHandshake) || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("handshake during the outage: %v, want 503", err)
		}
		resp.Body.Close()
	}
	for i := range 5 {
		a.roundTrip(t, b, "during a->b "+strconv.Itoa(i))
		b.roundTrip(t, a, "during b->a "+strconv.Itoa(i))
	}

	r.Start()
	for _, n := range []*app.App{n1, n2} {
		waitReadyz(t, n, http.StatusOK)
	}
	if err := a.Send(b.ID(), "after"); err != nil {
		t.Fatal(err)
	}
	await(t, b, "the message across nodes after the outage", func(m client.Message) bool {
		return m.From == a.ID() && string(m.Data) == `"after"`
	})
	c := joinRecorded(t, n1.WSURL(), room, "c")
	var ids []wire.PeerID
	for _, p := range c.Peers() {
		ids = append(ids, p.ID())
	}
	if len(ids) != 2 || !(ids[0] == a.ID() || ids[1] == a.ID()) || !(ids[0] == b.ID() || ids[1] == b.ID()) {
		t.Fatalf("a peer joining after the outage sees %v, want %s and %s", ids, a.ID(), b.ID())
	}
	for _, p := range []*recorder{a, b} {
		await(t, p, "peer-joined of c", func(e client.PeerJoined) bool { return e.Peer.ID() == c.ID() })
	}
	a.roundTrip(t, b, "after a->b")
	c.roundTrip(t, b, "after c->b")
}

// TestBuildInfoNode: huddle_build_info names the node when HUDDLE_NODE_ID
// is set, and has no node label on a lone node without one.
func TestBuildInfoNode(t *testing.T) {
	t.Parallel()
	named := apptest.Start(t, func(c *app.Config) { c.NodeID, c.TURN.Enabled = "named-node", false })
	if v := scrape(t, named.MetricsURL()).must(t, "huddle_build_info", "node", "named-node", "version", app.Version()); v != 1 {
		t.Errorf("huddle_build_info{node=\"named-node\"} = %v, want 1", v)
	}
	lone := apptest.Start(t, func(c *app.Config) { c.TURN.Enabled = false })
	for _, s := range scrape(t, lone.MetricsURL())["huddle_build_info"].GetMetric() {
		for _, l := range s.GetLabel() {
			if l.GetName() == "node" {
				t.Errorf("a lone node without HUDDLE_NODE_ID has huddle_build_info{node=%q}", l.GetValue())
			}
		}
	}
}
