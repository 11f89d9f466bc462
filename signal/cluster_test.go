package signal_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// cluster is n hubs sharing one Redis key prefix.
func newCluster(t *testing.T, n int, cfg signal.Config) []*harness {
	t.Helper()
	prefix := redisPrefix(t)
	hs := make([]*harness, n)
	for i := range hs {
		hs[i] = newHarness(t, cfg, signal.Options{Broker: newRedisNode(t, prefix, cfg.ResumeGrace)})
	}
	return hs
}

// TestClusterPresenceAndRelay: peers on three nodes share a room: welcome
// lists those of other nodes, peer-joined and peer-left cross nodes, and
// directed and room-wide messages cross in order per pair.
func TestClusterPresenceAndRelay(t *testing.T) {
	t.Parallel()
	hs := newCluster(t, 3, resumeConfig(nil))
	room := roomName(t.Name())
	a := hs[0].dial(t)
	a.join(room)
	b := hs[1].dial(t)
	b.join(room)
	if got := b.peerIDs(); !slices.Equal(got, []wire.PeerID{a.id}) {
		t.Fatalf("welcome on node 2 lists %v, want [%s]", got, a.id)
	}
	if m := a.expect(wire.TypePeerJoined); m.Peer == nil || m.Peer.ID != b.id {
		t.Fatalf("peer-joined %s, want %s", describe(m), b.id)
	}
	c := hs[2].dial(t)
	c.join(room)
	if got := c.peerIDs(); !slices.Equal(got, []wire.PeerID{a.id, b.id}) {
		t.Fatalf("welcome on node 3 lists %v, want [%s %s] in join order", got, a.id, b.id)
	}
	a.expect(wire.TypePeerJoined)
	b.expect(wire.TypePeerJoined)

	const n = 200
	for i := range n {
		a.send(map[string]any{"type": "message", "to": b.id, "data": i})
	}
	a.send(map[string]any{"type": "message", "data": "all"})
	for i := range n {
		m := b.expect(wire.TypeMessage)
		if m.From != a.id || string(m.Data) != strconv.Itoa(i) {
			t.Fatalf("message %d on node 2: %s", i, describe(m))
		}
	}
	for _, cl := range []*client{b, c} {
		if m := cl.expect(wire.TypeMessage); string(m.Data) != `"all"` || m.From != a.id {
			t.Fatalf("broadcast: %s", describe(m))
		}
	}
	a.quiet()

	b.send(map[string]any{"type": "leave"})
	b.expectClose(1000)
	for _, cl := range []*client{a, c} {
		if m := cl.expect(wire.TypePeerLeft); m.ID != b.id || m.Reason != wire.ReasonLeft {
			t.Fatalf("peer-left %s, want %s left", describe(m), b.id)
		}
	}
}

// TestClusterUnknownPeerAndRoomFull: unknown-peer and room-full hold
// cluster-wide.
func TestClusterUnknownPeerAndRoomFull(t *testing.T) {
	t.Parallel()
	hs := newCluster(t, 2, resumeConfig(func(c *signal.Config) { c.MaxPeersPerRoom = 2 }))
	room := roomName(t.Name())
	a := hs[0].dial(t)
	a.join(room)
	b := hs[1].dial(t)
	b.join(room)
	a.expect(wire.TypePeerJoined)

	a.send(map[string]any{"type": "message", "to": b.id, "data": 1})
	if m := b.expect(wire.TypeMessage); m.From != a.id {
		t.Fatalf("got %s", describe(m))
	}
	a.send(map[string]any{"type": "message", "to": "NOSUCHPEER", "data": 1, "ref": "r1"})
	a.expectError(wire.CodeUnknownPeer, "r1")

	c := hs[1].dial(t)
	c.send(map[string]any{"type": "join", "room": room, "ref": "j"})
	c.expectError(wire.CodeRoomFull, "j")
	d := hs[0].dial(t)
	d.send(map[string]any{"type": "join", "room": room, "ref": "j"})
	d.expectError(wire.CodeRoomFull, "j")

	// Once b left (node 2), a peer of node 2 addressing it gets unknown-peer.
	b.send(map[string]any{"type": "leave"})
	b.expectClose(1000)
	a.expect(wire.TypePeerLeft)
	a.send(map[string]any{"type": "message", "to": b.id, "data": 1, "ref": "r2"})
	a.expectError(wire.CodeUnknownPeer, "r2")
}

// TestClusterResumeOnAnotherNode: a peer whose node drains resumes on
// another node with the same id; what was sent to it meanwhile comes in
// order after the welcome, once; the others see no presence change.
func TestClusterResumeOnAnotherNode(t *testing.T) {
	t.Parallel()
	hs := newCluster(t, 3, resumeConfig(nil))
	room := roomName(t.Name())
	a := hs[0].dial(t)
	a.join(room)
	b := hs[1].dial(t)
	b.join(room)
	a.expect(wire.TypePeerJoined)
	// Some frames a has seen before its node goes.
	for i := range 3 {
		b.send(map[string]any{"type": "message", "to": a.id, "data": i})
		a.expect(wire.TypeMessage)
	}
	a.quiet()

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	go func() { _ = hs[0].srv.Drain(ctx) }()
	a.expectClose(wire.CloseRestart)
	hs[0].waitClosed(t, a.id)
	for i := 3; i < 10; i++ {
		b.send(map[string]any{"type": "message", "to": a.id, "data": i})
	}
	b.quiet()

	a2 := hs[2].dial(t)
	w := a2.join(room, "resume", a.welcome.Resume)
	if !w.Resumed || w.ID != a.id {
		t.Fatalf("welcome %s, want resumed %s", describe(w), a.id)
	}
	if got := a2.peerIDs(); !slices.Equal(got, []wire.PeerID{b.id}) {
		t.Errorf("resumed welcome lists %v, want [%s]", got, b.id)
	}
	for i := 3; i < 10; i++ {
		m := a2.expect(wire.TypeMessage)
		if string(m.Data) != strconv.Itoa(i) {
			t.Fatalf("replayed message: %s, want data %d", describe(m), i)
		}
	}
	a2.quiet()
	// Live relay both ways after the resume.
	b.send(map[string]any{"type": "message", "to": a.id, "data": "live"})
	if m := a2.expect(wire.TypeMessage); string(m.Data) != `"live"` {
		t.Fatalf("got %s", describe(m))
	}
	a2.send(map[string]any{"type": "message", "to": b.id, "data": "back"})
	if m := b.expect(wire.TypeMessage); string(m.Data) != `"back"` || m.From != a.id {
		t.Fatalf("got %s", describe(m))
	}
	b.quiet()
	// The old token is spent.
	a3 := hs[1].dial(t)
	if w := a3.join(room, "resume", a.welcome.Resume); w.Resumed {
		t.Errorf("the old token resumed again: %s", describe(w))
	}
}

// TestClusterNodeDeath: when a node goes without its peers leaving (its
// leases are no longer renewed), the others see them leave with reason
// timeout soon after the grace.
func TestClusterNodeDeath(t *testing.T) {
	t.Parallel()
	grace := time.Second
	hs := newCluster(t, 2, resumeConfig(func(c *signal.Config) { c.ResumeGrace = grace }))
	room := roomName(t.Name())
	a := hs[0].dial(t)
	a.join(room)
	b := hs[1].dial(t)
	b.join(room)
	a.expect(wire.TypePeerJoined)

	start := time.Now()
	if err := hs[0].srv.Close(); err != nil {
		t.Fatal(err)
	}
	m := b.expect(wire.TypePeerLeft)
	if m.ID != a.id || m.Reason != wire.ReasonTimeout {
		t.Fatalf("got %s, want %s left with timeout", describe(m), a.id)
	}
	if took := time.Since(start); took > grace+signal.LeaseSlack+5*time.Second {
		t.Errorf("peer-left came %s after the node died", took)
	}
	// The room lists b alone.
	c := hs[1].dial(t)
	c.join(room)
	if got := c.peerIDs(); !slices.Equal(got, []wire.PeerID{b.id}) {
		t.Errorf("welcome lists %v, want [%s]", got, b.id)
	}
}

// BenchmarkRelayHop measures one relayed message at a time (sent, then
// read by the addressee before the next): its latency per hop, p50 and
// p99, with the in-process broker and with the Redis broker, the two
// peers on one node or on two.
func BenchmarkRelayHop(b *testing.B) {
	b.Run("local", func(b *testing.B) {
		h := newHarness(b, benchConfig(), signal.Options{Broker: signal.NewLocalBroker()})
		benchHop(b, h, h)
	})
	b.Run("redis-same-node", func(b *testing.B) {
		h := newHarness(b, benchConfig(), signal.Options{Broker: newRedisNode(b, redisPrefix(b), time.Second)})
		benchHop(b, h, h)
	})
	b.Run("redis-two-nodes", func(b *testing.B) {
		prefix := redisPrefix(b)
		h1 := newHarness(b, benchConfig(), signal.Options{Broker: newRedisNode(b, prefix, time.Second)})
		h2 := newHarness(b, benchConfig(), signal.Options{Broker: newRedisNode(b, prefix, time.Second)})
		benchHop(b, h1, h2)
	})
}

func benchHop(b *testing.B, hs, hr *harness) {
	recv := rawJoin(b, hr, "hop")
	send := rawJoin(b, hs, "hop")
	waitPeerJoined(b, recv, send.id)
	frame := fmt.Appendf(nil, `{"type":"candidate","to":%q,"candidate":{"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 40000 typ host","sdpMid":"0","sdpMLineIndex":0}}`, recv.id)
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		t0 := time.Now()
		_ = send.ws.SetWriteDeadline(time.Now().Add(wait))
		if err := send.ws.WriteMessage(websocket.TextMessage, frame); err != nil {
			b.Fatal(err)
		}
		if err := discardNext(recv.ws); err != nil {
			b.Fatalf("message %d: %v", i, err)
		}
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// TestClusterKick: a kick asked of one node reaches the node that holds
// the peer: its connection closes with 4003 and everyone sees peer-left
// kicked; a peer no node holds is unknown.
func TestClusterKick(t *testing.T) {
	t.Parallel()
	prefix := redisPrefix(t)
	cfg := resumeConfig(nil)
	b1, b2 := newRedisNode(t, prefix, cfg.ResumeGrace), newRedisNode(t, prefix, cfg.ResumeGrace)
	h1 := newHarness(t, cfg, signal.Options{Broker: b1})
	h2 := newHarness(t, cfg, signal.Options{Broker: b2})
	room := roomName(t.Name())
	a := h1.dial(t)
	a.join(room)
	b := h2.dial(t)
	b.join(room)
	a.expect(wire.TypePeerJoined)

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := b1.Kick(ctx, wire.RoomID(room), b.id); err != nil {
		t.Fatalf("Kick: %v", err)
	}
	b.expectClose(wire.CloseKicked)
	if m := a.expect(wire.TypePeerLeft); m.ID != b.id || m.Reason != wire.ReasonKicked {
		t.Fatalf("got %s, want %s kicked", describe(m), b.id)
	}
	if err := b1.Kick(ctx, wire.RoomID(room), b.id); err != signal.ErrUnknownPeer {
		t.Errorf("second Kick: %v, want ErrUnknownPeer", err)
	}
	if got, _ := b2.Roster(ctx, wire.RoomID(room)); len(got) != 1 || got[0].ID != a.id {
		t.Errorf("roster after the kick: %v", got)
	}
}

// TestClusterEventsAndAnnounce: every node's event stream carries the
// presence events of peers on every node, in order, and a server message
// posted to one node reaches the room's peers on all of them.
func TestClusterEventsAndAnnounce(t *testing.T) {
	t.Parallel()
	prefix := redisPrefix(t)
	cfg := apiConfig(nil)
	h1 := newHarness(t, cfg, signal.Options{Broker: newRedisNode(t, prefix, cfg.ResumeGrace)}, withAPI)
	h2 := newHarness(t, cfg, signal.Options{Broker: newRedisNode(t, prefix, cfg.ResumeGrace)}, withAPI)
	room := roomName(t.Name())
	s1 := h1.openEvents(t, streamOpts{query: "room=" + room})
	s2 := h2.openEvents(t, streamOpts{query: "room=" + room})

	a := h1.dial(t)
	a.join(room)
	b := h2.dial(t)
	b.join(room)
	a.expect(wire.TypePeerJoined)
	for _, s := range []*sseClient{s1, s2} {
		s.expect("room-created", room)
		s.expectJoined(room, a.id)
		s.expectJoined(room, b.id)
	}

	if r := h2.call(t, "POST", "/api/rooms/"+room+"/messages", `{"data":{"notice":"hello"}}`); r.status != 202 {
		t.Fatalf("POST messages on node 2: HTTP %d %s", r.status, r.body)
	}
	for _, cl := range []*client{a, b} {
		if m := cl.expect(wire.TypeMessage); m.From != wire.ServerID || string(m.Data) != `{"notice":"hello"}` {
			t.Fatalf("announcement: %s", describe(m))
		}
	}

	b.send(map[string]any{"type": "leave"})
	b.expectClose(1000)
	if m := a.expect(wire.TypePeerLeft); m.ID != b.id {
		t.Fatalf("peer-left %s, want %s", describe(m), b.id)
	}
	a.send(map[string]any{"type": "leave"})
	a.expectClose(1000)
	for _, s := range []*sseClient{s1, s2} {
		s.expectLeft(room, b.id, wire.ReasonLeft)
		s.expectLeft(room, a.id, wire.ReasonLeft)
		s.expect("room-closed", room)
	}
}
