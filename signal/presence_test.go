package signal_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// TestWelcome: welcome carries every field, empty lists as [], and peers
// in the order they joined with their name and meta (a peer without meta
// shows {}); the members get peer-joined with the same description.
func TestWelcome(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	ada := h.dial(t)
	ada.send(map[string]any{"type": "join", "room": "welcome", "name": "Ada", "meta": map[string]any{"role": "host", "n": 1}})
	f := ada.nextRaw()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(f.raw, &raw); err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]string{"type": `"welcome"`, "room": `"welcome"`, "peers": `[]`, "iceServers": `[]`, "resumed": `false`} {
		if string(raw[field]) != want {
			t.Errorf("welcome %s = %s, want %s (frame %s)", field, raw[field], want, f.raw)
		}
	}
	ada.welcome, ada.id = f.msg, f.msg.ID
	if ada.id == "" || ada.id == wire.ServerID || f.msg.Resume == "" || len(raw) != 7 {
		t.Errorf("welcome %s: want an id, a resume secret and exactly 7 fields", f.raw)
	}

	bob := h.dial(t)
	bob.join("welcome", "name", "Bob")
	joined := ada.expect(wire.TypePeerJoined)
	if joined.Peer == nil || joined.Peer.ID != bob.id || joined.Peer.Name != "Bob" || string(joined.Peer.Meta) != "{}" {
		t.Errorf("ada got %s, want peer-joined Bob with meta {}", describe(joined))
	}
	if len(bob.welcome.Peers) != 1 {
		t.Fatalf("bob's welcome lists %d peers, want Ada", len(bob.welcome.Peers))
	}
	if p := bob.welcome.Peers[0]; p.ID != ada.id || p.Name != "Ada" || canonical(t, p.Meta) != `{"n":1,"role":"host"}` {
		t.Errorf("bob's welcome lists %+v, want Ada with her meta", p)
	}

	eve := h.dial(t)
	eve.join("welcome", "name", "Eve", "meta", nil)
	if got, want := eve.peerIDs(), []wire.PeerID{ada.id, bob.id}; !slices.Equal(got, want) {
		t.Errorf("eve's welcome lists %v, want %v (join order)", got, want)
	}
	for _, c := range []*client{ada, bob} {
		if m := c.expect(wire.TypePeerJoined); m.Peer.ID != eve.id || m.Peer.Name != "Eve" {
			t.Errorf("got %s, want peer-joined Eve", describe(m))
		}
		c.quiet()
	}
	ids := map[wire.PeerID]bool{ada.id: true, bob.id: true, eve.id: true}
	if len(ids) != 3 {
		t.Errorf("ids are not unique: %v", ids)
	}
}

// iceServers is an ICEProvider double that names the peer in its
// credentials, as the TURN package does.
type iceServers struct{}

func (iceServers) ICEServers(peer wire.PeerID) []wire.ICEServer {
	return []wire.ICEServer{
		{URLs: []string{"stun:stun.example.net:3478"}},
		{URLs: []string{"turn:turn.example.net:3478?transport=udp"}, Username: "0:" + string(peer), Credential: "c"},
	}
}

// TestWelcomeICEServers: welcome.iceServers is what the ICE provider
// gives for this peer, fresh on resume too.
func TestWelcomeICEServers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{ICE: iceServers{}})
	c := h.dial(t)
	w := c.join("ice")
	if len(w.ICEServers) != 2 || w.ICEServers[1].Username != "0:"+string(w.ID) || w.ICEServers[0].URLs[0] != "stun:stun.example.net:3478" {
		t.Errorf("iceServers %+v", w.ICEServers)
	}
	c.close()
	h.waitClosed(t, w.ID)
	again := h.dial(t)
	w2 := again.join("ice", "resume", w.Resume)
	if !w2.Resumed || len(w2.ICEServers) != 2 || w2.ICEServers[1].Username != "0:"+string(w.ID) {
		t.Errorf("resumed welcome %s", describe(w2))
	}
}

// TestPeerLeftTimeout: a peer whose connection ends without leave, with or
// without a close frame, stays for the grace, then the others get
// peer-left with reason timeout.
func TestPeerLeftTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(func(c *signal.Config) { c.ResumeGrace = 300 * time.Millisecond }), signal.Options{})
	for _, how := range []string{"dropped", "closed"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			cs := h.joinRoom(t, "timeout-"+how, 2)
			gone, stays := cs[0], cs[1]
			if how == "closed" {
				msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "page reload")
				if err := gone.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(wait)); err != nil {
					t.Fatal(err)
				}
				if code, _ := gone.closed(); code != websocket.CloseGoingAway {
					t.Errorf("the server answered the close with %d", code)
				}
			}
			gone.close()
			m := stays.expect(wire.TypePeerLeft)
			if m.ID != gone.id || m.Reason != wire.ReasonTimeout {
				t.Errorf("got %s, want peer-left %s timeout", describe(m), gone.id)
			}
			stays.quiet()
		})
	}
}

// TestRoomVanishes: a room lives while it has peers. Once everyone has
// left, a join to the same name finds no one; and the members of one room
// never hear of another's.
func TestRoomVanishes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	cs := h.joinRoom(t, "vanish", 3)
	other := h.joinRoom(t, "vanish-not", 1)[0]
	for i, c := range cs {
		c.send(map[string]any{"type": "leave"})
		c.expectClose(websocket.CloseNormalClosure)
		// When the leaver sees 1000 the others have been told.
		for _, rest := range cs[i+1:] {
			if m := rest.expect(wire.TypePeerLeft); m.ID != c.id || m.Reason != wire.ReasonLeft {
				t.Errorf("got %s, want peer-left %s left", describe(m), c.id)
			}
		}
	}
	fresh := h.dial(t)
	if w := fresh.join("vanish"); len(w.Peers) != 0 {
		t.Errorf("a fresh join of an emptied room sees %v", fresh.peerIDs())
	}
	if slices.Contains([]wire.PeerID{cs[0].id, cs[1].id, cs[2].id}, fresh.id) {
		t.Error("a fresh join got an old id")
	}
	other.quiet()
}

// TestLeaveThenRejoin: the leaver's 1000 comes after the room was told, so
// an immediate join of the same room never lists the old id.
func TestLeaveThenRejoin(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	for i := range 20 {
		room := "rejoin-" + strings.Repeat("x", i%3)
		c := h.dial(t)
		c.join(room)
		c.send(map[string]any{"type": "leave"})
		c.expectClose(websocket.CloseNormalClosure)
		again := h.dial(t)
		if w := again.join(room); len(w.Peers) != 0 {
			t.Fatalf("round %d: the room still lists %v after its only peer left", i, again.peerIDs())
		}
		again.send(map[string]any{"type": "leave"})
		again.expectClose(websocket.CloseNormalClosure)
	}
}
