package client_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/huddle-rtc/huddle/client"
	"github.com/huddle-rtc/huddle/internal/app"
	"github.com/huddle-rtc/huddle/signal/wire"
	"github.com/pion/webrtc/v4"
)

// b's WebSocket drops without a close frame, cut by the server or by the
// network under b: b reconnects and resumes its session, a sees no
// peer-left, messages sent meanwhile arrive (b's outbox kept b's, the
// server queued a's), and the data channel between them, which never
// depended on the signaling, keeps working.
func TestResumeAfterDrop(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"server", "network"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			testResume(t, how)
		})
	}
}

func testResume(t *testing.T, how string) {
	node := startNode(t, nil)
	var conns connRecorder
	optsB := fastOptions(t, "b")
	// Long enough for the test to send while b is away.
	optsB.Reconnect = client.Backoff{Initial: 300 * time.Millisecond, Jitter: 0.01}
	optsB.Dialer = &websocket.Dialer{NetDialContext: conns.dial}
	a := joinPeer(t, node.WSURL(), "resume", fastOptions(t, "a"))
	b := joinPeer(t, node.WSURL(), "resume", optsB)
	roundTrip(t, a, b, "before")
	roundTrip(t, b, a, "before")
	bID := b.ID()
	peerBefore, _ := b.Peer(a.ID())

	switch how {
	case "server":
		if !node.Signal().DropConnection(bID) {
			t.Fatal("the server had no connection for b")
		}
	case "network":
		conns.closeLast(t)
	}
	_, i := waitFor(t, b, 0, "disconnection", func(client.Disconnected) bool { return true })
	if err := b.Send(a.ID(), "from b's outbox"); err != nil {
		t.Fatal(err)
	}
	// Only when the server cut the connection does it know b is away
	// before a's message comes; after a network cut, a message may still
	// go to the dead socket (the protocol has no acknowledgements).
	if how == "server" {
		if err := a.Send(bID, "queued for b"); err != nil {
			t.Fatal(err)
		}
	}
	re, _ := waitFor(t, b, i, "reconnection", func(client.Reconnected) bool { return true })
	if !re.Resumed || re.ID != bID || b.ID() != bID {
		t.Fatalf("b reconnected as %s resumed=%v, want %s resumed", re.ID, re.Resumed, bID)
	}
	waitFor(t, a, 0, "b's message from its outbox", func(e client.Message) bool {
		return e.From == bID && string(e.Data) == `"from b's outbox"`
	})
	if how == "server" {
		waitFor(t, b, 0, "a's message queued by the server", func(e client.Message) bool {
			return e.From == a.ID() && string(e.Data) == `"queued for b"`
		})
	}
	if n := count(a, func(client.PeerLeft) bool { return true }); n != 0 {
		t.Errorf("a saw %d peer-left, want none", n)
	}
	if n := count(b, func(client.PeerLeft) bool { return true }); n != 0 {
		t.Errorf("b saw %d peer-left, want none", n)
	}
	if p, _ := b.Peer(a.ID()); p != peerBefore {
		t.Error("b's peer connection to a was replaced by the resume")
	}
	roundTrip(t, a, b, "after")
	roundTrip(t, b, a, "after")
}

// connRecorder is a dialer that keeps the connections it made, so a test
// can cut one as a network failure would.
type connRecorder struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (r *connRecorder) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err == nil {
		r.mu.Lock()
		r.conns = append(r.conns, c)
		r.mu.Unlock()
	}
	return c, err
}

func (r *connRecorder) closeLast(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.conns) == 0 {
		t.Fatal("no connection dialed")
	}
	_ = r.conns[len(r.conns)-1].Close()
}

// A draining server closes with 1012: the client reconnects at once, and
// gives up after MaxAttempts refused handshakes (503 while draining).
func TestDrainReconnectsAtOnceThenGivesUp(t *testing.T) {
	t.Parallel()
	node := startNode(t, func(c *app.Config) { c.DrainTimeout = 5 * time.Second })
	opts := fastOptions(t, "a")
	opts.Reconnect.MaxAttempts = 3
	a := joinPeer(t, node.WSURL(), "drain", opts)

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := node.Signal().Drain(ctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
	first, i := waitFor(t, a, 0, "disconnection", func(client.Disconnected) bool { return true })
	var ce *client.CloseError
	if !errors.As(first.Err, &ce) || ce.Code != wire.CloseRestart {
		t.Errorf("disconnected by %v, want close code %d", first.Err, wire.CloseRestart)
	}
	if first.Delay != 0 {
		t.Errorf("first reconnection after %v, want at once", first.Delay)
	}
	next, _ := waitFor(t, a, i+1, "failed attempt", func(client.Disconnected) bool { return true })
	var he *client.HandshakeError
	if !errors.As(next.Err, &he) || he.Status != 503 {
		t.Errorf("attempt failed with %v, want a 503 handshake", next.Err)
	}
	select {
	case <-a.Done():
	case <-time.After(waitTimeout):
		t.Fatal("client still running after MaxAttempts refused reconnections")
	}
	if err := a.Err(); !errors.Is(err, client.ErrGaveUp) {
		t.Errorf("client ended with %v, want ErrGaveUp", err)
	}
}

// b comes back after the resume grace: the server has dropped its session,
// so b joins as a new peer. b reports the old peers gone (reset), a sees
// the old b leave (timeout) and the new b join, and they connect afresh.
func TestRejoinAfterGrace(t *testing.T) {
	t.Parallel()
	node := startNode(t, func(c *app.Config) { c.Signal.ResumeGrace = 200 * time.Millisecond })
	optsB := fastOptions(t, "b")
	optsB.Reconnect = client.Backoff{Initial: time.Second, Jitter: 0.01}
	a := joinPeer(t, node.WSURL(), "rejoin", fastOptions(t, "a"))
	b := joinPeer(t, node.WSURL(), "rejoin", optsB)
	roundTrip(t, a, b, "before")
	oldB := b.ID()

	if !node.Signal().DropConnection(oldB) {
		t.Fatal("the server had no connection for b")
	}
	left, _ := waitFor(t, a, 0, "the old b leaving", func(e client.PeerLeft) bool { return e.Peer.ID() == oldB })
	if left.Reason != wire.ReasonTimeout {
		t.Errorf("a saw b leave with %q, want %q", left.Reason, wire.ReasonTimeout)
	}
	re, _ := waitFor(t, b, 0, "reconnection", func(client.Reconnected) bool { return true })
	if re.Resumed || re.ID == oldB || b.ID() != re.ID {
		t.Fatalf("b reconnected as %s resumed=%v, want a new id, not resumed", re.ID, re.Resumed)
	}
	reset, _ := waitFor(t, b, 0, "a reported gone", func(e client.PeerLeft) bool { return e.Peer.ID() == a.ID() })
	if reset.Reason != client.ReasonReset {
		t.Errorf("b saw a leave with %q, want %q", reset.Reason, client.ReasonReset)
	}
	waitFor(t, a, 0, "the new b joining", func(e client.PeerJoined) bool { return e.Peer.ID() == re.ID })
	roundTrip(t, b, a, "after")
	roundTrip(t, a, b, "after")
}

// b adds a track just as its connection drops, so its offer may be lost,
// queued, or sent twice after the resume: either way a gets the track and
// the pair stays usable.
func TestRenegotiationAcrossDrop(t *testing.T) {
	t.Parallel()
	node := startNode(t, nil)
	a := joinPeer(t, node.WSURL(), "reneg", fastOptions(t, "a"))
	b := joinPeer(t, node.WSURL(), "reneg", fastOptions(t, "b"))
	roundTrip(t, a, b, "before")
	pb, _ := b.Peer(a.ID())

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	tr := newTrack(t, webrtc.MimeTypeVP8, "across")
	if _, err := pb.AddTrack(tr); err != nil {
		t.Fatal(err)
	}
	node.Signal().DropConnection(b.ID())
	wg.Add(1)
	go func() { defer wg.Done(); feed(ctx, tr) }()

	waitFor(t, b, 0, "reconnection", func(client.Reconnected) bool { return true })
	waitFor(t, a, 0, "b's track", func(e client.TrackReceived) bool { return e.Track.StreamID() == "across" })
	roundTrip(t, a, b, "after")
	roundTrip(t, b, a, "after")
}
