package client_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/huddle-rtc/huddle/client"
	"github.com/huddle-rtc/huddle/internal/app"
	"github.com/huddle-rtc/huddle/internal/apptest"
	"github.com/huddle-rtc/huddle/signal/wire"
	"github.com/pion/webrtc/v4"
)

// waitTimeout bounds every wait on an event; generous for a loaded CI
// machine, never a synchronisation by itself.
const waitTimeout = 20 * time.Second

// tpeer is a client under test with a goroutine recording its events.
type tpeer struct {
	*client.Client
	name string

	mu      sync.Mutex
	events  []client.Event
	updated chan struct{} // closed and replaced on every event
	ended   chan struct{} // closed when Events is closed
}

func startNode(t testing.TB, mutate func(*app.Config)) *app.App {
	t.Helper()
	return apptest.Start(t, mutate)
}

// testLevel is the level of the clients' logs in the test output: warn,
// or HUDDLE_TEST_LOG_LEVEL.
func testLevel() slog.Level {
	level := slog.LevelWarn
	if v := os.Getenv("HUDDLE_TEST_LOG_LEVEL"); v != "" {
		_ = level.UnmarshalText([]byte(v))
	}
	return level
}

func testLogger(t testing.TB, name string) *slog.Logger {
	return slog.New(slog.NewTextHandler(apptest.Output(t), &slog.HandlerOptions{Level: testLevel()})).With("client", name)
}

// fastOptions are test options: quick reconnection, logs to the test.
func fastOptions(t testing.TB, name string) client.Options {
	return client.Options{
		Name:      name,
		Logger:    testLogger(t, name),
		Reconnect: client.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond},
	}
}

func joinPeer(t testing.TB, url string, room wire.RoomID, opts client.Options) *tpeer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := client.Join(ctx, url, room, opts)
	if err != nil {
		t.Fatalf("join %s as %q: %v", room, opts.Name, err)
	}
	tp := &tpeer{Client: c, name: opts.Name, updated: make(chan struct{}), ended: make(chan struct{})}
	go tp.record()
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close %s: %v", tp.name, err)
		}
		<-tp.ended
	})
	return tp
}

func (tp *tpeer) record() {
	defer close(tp.ended)
	for ev := range tp.Events() {
		tp.mu.Lock()
		tp.events = append(tp.events, ev)
		close(tp.updated)
		tp.updated = make(chan struct{})
		tp.mu.Unlock()
	}
}

// waitFor returns the first recorded event at or after index from that
// matches, and its index, waiting for it under waitTimeout.
func waitFor[T client.Event](t testing.TB, tp *tpeer, from int, what string, match func(T) bool) (T, int) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		tp.mu.Lock()
		for i := from; i < len(tp.events); i++ {
			if ev, ok := tp.events[i].(T); ok && (match == nil || match(ev)) {
				tp.mu.Unlock()
				return ev, i
			}
		}
		from = len(tp.events)
		updated := tp.updated
		tp.mu.Unlock()
		select {
		case <-updated:
		case <-tp.ended:
			var zero T
			t.Fatalf("%s: client ended (err %v) before %s", tp.name, tp.Err(), what)
			return zero, 0
		case <-deadline.C:
			var zero T
			t.Fatalf("%s: no %s within %v; events: %s", tp.name, what, waitTimeout, tp.describe())
			return zero, 0
		}
	}
}

// count returns how many recorded events match.
func count[T client.Event](tp *tpeer, match func(T) bool) int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	n := 0
	for _, ev := range tp.events {
		if e, ok := ev.(T); ok && (match == nil || match(e)) {
			n++
		}
	}
	return n
}

func (tp *tpeer) describe() string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	s := ""
	for _, ev := range tp.events {
		s += fmt.Sprintf("\n  %T %s", ev, brief(ev))
	}
	return s
}

func brief(ev client.Event) string {
	switch e := ev.(type) {
	case client.PeerJoined:
		return string(e.Peer.ID())
	case client.PeerLeft:
		return string(e.Peer.ID()) + " " + e.Reason
	case client.PeerStateChanged:
		return string(e.Peer.ID()) + " " + e.State.String()
	case client.PeerConnected:
		return string(e.Peer.ID()) + " " + e.Pair.Type()
	case client.DataChannelOpened:
		return string(e.Peer.ID()) + " " + e.Channel.Label()
	case client.DataMessage:
		return string(e.Peer.ID()) + " " + string(e.Data)
	case client.Disconnected:
		return fmt.Sprint(e.Err)
	case client.Reconnected:
		return fmt.Sprint(e.ID, " resumed=", e.Resumed)
	}
	return ""
}

// channelTo waits until a data channel to the current peer id is open and
// returns it.
func channelTo(t testing.TB, tp *tpeer, id wire.PeerID) *webrtc.DataChannel {
	t.Helper()
	ev, _ := waitFor(t, tp, 0, "data channel to "+string(id), func(e client.DataChannelOpened) bool {
		cur, ok := tp.Peer(id)
		return ok && e.Peer == cur
	})
	return ev.Channel
}

// connectedTo waits until the connection to peer id is connected.
func connectedTo(t testing.TB, tp *tpeer, id wire.PeerID) client.PeerConnected {
	t.Helper()
	ev, _ := waitFor(t, tp, 0, "connection to "+string(id), func(e client.PeerConnected) bool {
		return e.Peer.ID() == id
	})
	return ev
}

// roundTrip sends text from a to b on a's channel to b, and waits for b to
// receive it.
func roundTrip(t testing.TB, a, b *tpeer, text string) {
	t.Helper()
	dc := channelTo(t, a, b.ID())
	if err := dc.SendText(text); err != nil {
		t.Fatalf("%s: send to %s: %v", a.name, b.name, err)
	}
	waitFor(t, b, 0, fmt.Sprintf("message %q from %s", text, a.name), func(e client.DataMessage) bool {
		cur, ok := b.Peer(a.ID())
		return ok && e.Peer == cur && string(e.Data) == text
	})
}

// waitUntil polls cond, for state pion reports no event about, until it
// holds or waitTimeout passes.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, waitTimeout)
		}
		<-tick.C
	}
}

// eventCount is how many events were recorded so far.
func (tp *tpeer) eventCount() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return len(tp.events)
}
