package signal_test

import (
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// TestErrorBadMessage: every kind of malformed frame gets bad-message with
// its ref, and the connection stays open and usable: a join after the
// error succeeds.
func TestErrorBadMessage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	long := func(s string, n int) string { return strings.Repeat(s, n) }
	for _, tc := range []struct {
		name   string
		frame  string
		ref    string
		joined bool // send it after a successful join
	}{
		{name: "not JSON", frame: `{"type":`},
		{name: "garbage", frame: `hello`},
		{name: "not an object", frame: `[{"type":"ping"}]`},
		{name: "a string", frame: `"join"`},
		{name: "missing type", frame: `{"room":"r","ref":"a"}`, ref: "a"},
		{name: "type not a string", frame: `{"type":1,"ref":"b"}`, ref: "b"},
		{name: "ref too long", frame: `{"type":"ping","ref":"` + long("x", 65) + `"}`},
		{name: "ref not a string", frame: `{"type":"ping","ref":1}`},
		{name: "join missing room", frame: `{"type":"join","ref":"c"}`, ref: "c"},
		{name: "join room not a string", frame: `{"type":"join","room":["r"],"ref":"d"}`, ref: "d"},
		{name: "join room with space", frame: `{"type":"join","room":"a b","ref":"e"}`, ref: "e"},
		{name: "join room with slash", frame: `{"type":"join","room":"a/b","ref":"e"}`, ref: "e"},
		{name: "join room of 65", frame: `{"type":"join","room":"` + long("r", 65) + `","ref":"f"}`, ref: "f"},
		{name: "join name of 65", frame: `{"type":"join","room":"r","name":"` + long("n", 65) + `","ref":"g"}`, ref: "g"},
		{name: "join name not a string", frame: `{"type":"join","room":"r","name":{},"ref":"g"}`, ref: "g"},
		{name: "join meta not an object", frame: `{"type":"join","room":"r","meta":[1,2],"ref":"h"}`, ref: "h"},
		{name: "join meta a string", frame: `{"type":"join","room":"r","meta":"{}","ref":"h"}`, ref: "h"},
		{name: "join meta too big", frame: `{"type":"join","room":"r","meta":{"k":"` + long("m", 1100) + `"},"ref":"i"}`, ref: "i"},
		{name: "offer missing to", frame: `{"type":"offer","sdp":"v=0","ref":"j"}`, ref: "j", joined: true},
		{name: "offer missing sdp", frame: `{"type":"offer","to":"X","ref":"k"}`, ref: "k", joined: true},
		{name: "answer sdp not a string", frame: `{"type":"answer","to":"X","sdp":1,"ref":"l"}`, ref: "l", joined: true},
		{name: "candidate missing", frame: `{"type":"candidate","to":"X","ref":"m"}`, ref: "m", joined: true},
		{name: "candidate a string", frame: `{"type":"candidate","to":"X","candidate":"c","ref":"n"}`, ref: "n", joined: true},
		{name: "message missing data", frame: `{"type":"message","ref":"o"}`, ref: "o", joined: true},
		{name: "message to not a string", frame: `{"type":"message","to":5,"data":1,"ref":"p"}`, ref: "p", joined: true},
		{name: "join after join, bad", frame: `{"type":"join","ref":"q"}`, ref: "q", joined: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := h.dial(t)
			room := roomName("bad-" + tc.name)
			if tc.joined {
				c.join(room)
			}
			c.sendRaw(websocket.TextMessage, []byte(tc.frame))
			c.expectError(wire.CodeBadMessage, tc.ref)
			if !tc.joined {
				c.join(room)
			}
			c.quiet()
		})
	}
}

// TestErrorUnknownType: unknown types, server-to-client types included,
// get unknown-type with their ref.
func TestErrorUnknownType(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	c := h.dial(t)
	for _, typ := range []string{"bogus", "welcome", "pong", "error", "peer-joined", "peer-left", "JOIN"} {
		c.send(map[string]any{"type": typ, "ref": "u-" + typ})
		c.expectError(wire.CodeUnknownType, "u-"+typ)
	}
	c.join("unknown-type")
	c.send(map[string]any{"type": "kick", "ref": "k"})
	c.expectError(wire.CodeUnknownType, "k")
	c.quiet()
}

// TestErrorNotJoined: anything but join and ping before a join gets
// not-joined; ping is answered.
func TestErrorNotJoined(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	c := h.dial(t)
	for _, m := range []map[string]any{
		{"type": "offer", "to": "X", "sdp": "v=0", "ref": "1"},
		{"type": "answer", "to": "X", "sdp": "v=0", "ref": "2"},
		{"type": "candidate", "to": "X", "candidate": nil, "ref": "3"},
		{"type": "message", "data": "hi", "ref": "4"},
		{"type": "message", "to": "X", "data": "hi", "ref": "5"},
		{"type": "leave", "ref": "6"},
	} {
		c.send(m)
		c.expectError(wire.CodeNotJoined, m["ref"].(string))
	}
	c.quiet() // ping before join is answered
	c.join("not-joined")
	c.quiet()
}

// TestErrorAlreadyJoined: a second join, to any room or with a resume
// token, gets already-joined and changes nothing.
func TestErrorAlreadyJoined(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	cs := h.joinRoom(t, "already", 2)
	a, b := cs[0], cs[1]
	a.send(map[string]any{"type": "join", "room": "already", "ref": "again"})
	a.expectError(wire.CodeAlreadyJoined, "again")
	a.send(map[string]any{"type": "join", "room": "elsewhere", "ref": "other"})
	a.expectError(wire.CodeAlreadyJoined, "other")
	a.quiet()
	b.quiet() // no presence change
	a.send(map[string]any{"type": "message", "to": b.id, "data": "still here"})
	if m := b.expect(wire.TypeMessage); m.From != a.id {
		t.Errorf("from %s, want %s", m.From, a.id)
	}
}

// TestErrorUnknownPeer: a to that names no peer of the room, a peer of
// another room, or the sender itself gets unknown-peer.
func TestErrorUnknownPeer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	a := h.joinRoom(t, "unknown-peer", 1)[0]
	stranger := h.joinRoom(t, "unknown-peer-elsewhere", 1)[0]
	for i, m := range []map[string]any{
		{"type": "offer", "to": "NOPE", "sdp": "v=0"},
		{"type": "answer", "to": stranger.id, "sdp": "v=0"},
		{"type": "candidate", "to": "NOPE", "candidate": nil},
		{"type": "message", "to": a.id, "data": 1},
		{"type": "message", "to": string(wire.ServerID), "data": 1},
	} {
		ref := string(rune('a' + i))
		m["ref"] = ref
		a.send(m)
		a.expectError(wire.CodeUnknownPeer, ref)
	}
	a.quiet()
	stranger.quiet()
}

// TestErrorRoomFull: the room holds MaxPeersPerRoom peers; one more gets
// room-full, stays connected, and may join another room; once a member
// leaves, the room takes a newcomer again.
func TestErrorRoomFull(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(func(c *signal.Config) { c.MaxPeersPerRoom = 3 }), signal.Options{})
	members := h.joinRoom(t, "full", 3)
	late := h.dial(t)
	late.send(map[string]any{"type": "join", "room": "full", "ref": "let-me-in"})
	late.expectError(wire.CodeRoomFull, "let-me-in")
	for _, m := range members {
		m.quiet() // nobody saw the refused peer
	}
	members[0].send(map[string]any{"type": "leave"})
	members[0].expectClose(websocket.CloseNormalClosure)
	late.join("full")
	if len(late.peerIDs()) != 2 {
		t.Errorf("welcome after a leave lists %v", late.peerIDs())
	}
}
