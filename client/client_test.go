package client_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/huddle-rtc/huddle/client"
	"github.com/huddle-rtc/huddle/signal/wire"
	"github.com/pion/webrtc/v4"
)

func TestTwoPeersExchangeData(t *testing.T) {
	t.Parallel()
	node := startNode(t, nil)
	a := joinPeer(t, node.WSURL(), "two", fastOptions(t, "a"))
	b := joinPeer(t, node.WSURL(), "two", fastOptions(t, "b"))

	joined, _ := waitFor(t, a, 0, "b joined", func(e client.PeerJoined) bool { return e.Peer.ID() == b.ID() })
	if joined.Peer.Name() != "b" {
		t.Errorf("a sees b named %q, want b", joined.Peer.Name())
	}
	for _, pair := range [][2]*tpeer{{a, b}, {b, a}} {
		ev := connectedTo(t, pair[0], pair[1].ID())
		if ev.Pair.Type() == "" {
			t.Errorf("%s: connected to %s without a selected pair", pair[0].name, pair[1].name)
		}
	}
	roundTrip(t, a, b, "hello b")
	roundTrip(t, b, a, "hello a")

	st, ok := b.Peer(a.ID())
	if !ok {
		t.Fatal("b does not know a")
	}
	stats := st.Stats()
	if stats.TimeToConnect <= 0 || stats.DataChannels != 1 {
		t.Errorf("b's stats of a: time to connect %v, %d channels; want > 0 and 1", stats.TimeToConnect, stats.DataChannels)
	}
}

func TestThreePeersMesh(t *testing.T) {
	t.Parallel()
	node := startNode(t, nil)
	var peers []*tpeer
	for _, name := range []string{"a", "b", "c"} {
		peers = append(peers, joinPeer(t, node.WSURL(), "mesh", fastOptions(t, name)))
	}
	for _, from := range peers {
		for _, to := range peers {
			if from == to {
				continue
			}
			connectedTo(t, from, to.ID())
			roundTrip(t, from, to, fmt.Sprintf("%s to %s", from.name, to.name))
		}
	}
	for _, p := range peers {
		if n := len(p.Peers()); n != 2 {
			t.Errorf("%s knows %d peers, want 2", p.name, n)
		}
	}
}

func TestSignalingMessages(t *testing.T) {
	t.Parallel()
	node := startNode(t, nil)
	a := joinPeer(t, node.WSURL(), "msg", fastOptions(t, "a"))
	b := joinPeer(t, node.WSURL(), "msg", fastOptions(t, "b"))
	waitFor(t, a, 0, "b joined", func(e client.PeerJoined) bool { return e.Peer.ID() == b.ID() })

	if err := a.Send(b.ID(), map[string]string{"hi": "b"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Send("", "to all"); err != nil {
		t.Fatal(err)
	}
	got, _ := waitFor(t, b, 0, "a's message", func(e client.Message) bool { return e.From == a.ID() })
	if string(got.Data) != `{"hi":"b"}` || got.Broadcast {
		t.Errorf("b got %s broadcast=%v, want {\"hi\":\"b\"} directed", got.Data, got.Broadcast)
	}
	got, _ = waitFor(t, a, 0, "b's broadcast", func(e client.Message) bool { return e.From == b.ID() })
	if string(got.Data) != `"to all"` || !got.Broadcast {
		t.Errorf("a got %s broadcast=%v, want \"to all\" broadcast", got.Data, got.Broadcast)
	}
	if err := a.Send("nobody", 1); err != nil {
		t.Fatal(err)
	}
	e, _ := waitFor(t, a, 0, "unknown-peer error", func(e client.ServerError) bool { return true })
	if e.Err.Code != wire.CodeUnknownPeer {
		t.Errorf("error code %s, want %s", e.Err.Code, wire.CodeUnknownPeer)
	}
}

// Two peers with ICETransportPolicyRelay connect through the bundled TURN
// server using only the ICE servers of welcome, and their data channel
// round-trips over the relay.
func TestRelayOnly(t *testing.T) {
	t.Parallel()
	node := startNode(t, nil)
	optsA, optsB := fastOptions(t, "a"), fastOptions(t, "b")
	optsA.RelayOnly, optsB.RelayOnly = true, true
	a := joinPeer(t, node.WSURL(), "relay", optsA)
	b := joinPeer(t, node.WSURL(), "relay", optsB)
	if !hasTURN(a.ICEServers()) {
		t.Fatalf("welcome gave no TURN server: %+v", a.ICEServers())
	}
	for _, pair := range [][2]*tpeer{{a, b}, {b, a}} {
		ev := connectedTo(t, pair[0], pair[1].ID())
		if ev.Pair.Local.Type != "relay" || ev.Pair.Type() != "relay" {
			t.Errorf("%s: selected pair %+v, want a relayed local candidate", pair[0].name, ev.Pair)
		}
	}
	roundTrip(t, a, b, "via TURN")
	roundTrip(t, b, a, "via TURN too")
	p, _ := a.Peer(b.ID())
	st := p.Stats()
	if st.Pair == nil || st.Pair.Local.Type != "relay" {
		t.Errorf("a's stats: pair %+v, want a relayed local candidate", st.Pair)
	}
	for typ, n := range st.Gathered {
		if typ != "relay" && n > 0 {
			t.Errorf("relay only, yet a gathered %d %s candidates", n, typ)
		}
	}
}

func hasTURN(servers []webrtc.ICEServer) bool {
	for _, s := range servers {
		for _, u := range s.URLs {
			if strings.HasPrefix(u, "turn:") || strings.HasPrefix(u, "turns:") {
				return true
			}
		}
	}
	return false
}
