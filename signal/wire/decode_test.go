package wire_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// decodeCase is one frame and what Decode must make of it: an error code
// (with the ref it must echo), or a message whose fields check verifies.
type decodeCase struct {
	name    string
	in      string
	code    wire.ErrorCode // "" when the frame is valid
	ref     string         // the ref the error must carry
	check   func(t *testing.T, m wire.Message)
	msgPart string // a substring of the error's message
}

var (
	room64  = strings.Repeat("r", 64)
	name64  = strings.Repeat("é", 64) // 64 runes, 128 bytes
	ref64   = strings.Repeat("ü", 64)
	to128   = strings.Repeat("p", 128)
	meta1K  = `{"k":"` + strings.Repeat("m", 1024-8) + `"}` // 1024 bytes compacted
	metaBig = `{"k":"` + strings.Repeat("m", 1024-7) + `"}` // 1025
)

func decodeCases() []decodeCase {
	return []decodeCase{
		// Not JSON, not an object.
		{name: "empty", in: ``, code: wire.CodeBadMessage, msgPart: "not JSON"},
		{name: "blank", in: " \n\t", code: wire.CodeBadMessage, msgPart: "not JSON"},
		{name: "garbage", in: `hello`, code: wire.CodeBadMessage, msgPart: "not JSON"},
		{name: "truncated object", in: `{"type":"ping"`, code: wire.CodeBadMessage, msgPart: "not JSON"},
		{name: "two objects", in: `{"type":"ping"}{"type":"ping"}`, code: wire.CodeBadMessage, msgPart: "not JSON"},
		{name: "trailing garbage", in: `{"type":"ping"} x`, code: wire.CodeBadMessage, msgPart: "not JSON"},
		{name: "array", in: `[{"type":"ping"}]`, code: wire.CodeBadMessage, msgPart: "not a JSON object"},
		{name: "string", in: `"ping"`, code: wire.CodeBadMessage, msgPart: "not a JSON object"},
		{name: "number", in: `42`, code: wire.CodeBadMessage, msgPart: "not a JSON object"},
		{name: "null", in: `null`, code: wire.CodeBadMessage, msgPart: "not a JSON object"},
		{name: "bad array", in: `[1,`, code: wire.CodeBadMessage, msgPart: "not JSON"},

		// type.
		{name: "empty object", in: `{}`, code: wire.CodeBadMessage, msgPart: "type"},
		{name: "missing type with ref", in: `{"ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1"},
		{name: "empty type", in: `{"type":"","ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1"},
		{name: "type number", in: `{"type":5,"ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "type"},
		{name: "type null", in: `{"type":null,"ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1"},
		{name: "unknown type", in: `{"type":"bogus","ref":"r1"}`, code: wire.CodeUnknownType, ref: "r1", msgPart: "bogus"},
		{name: "unknown type long", in: `{"type":"` + strings.Repeat("x", 500) + `"}`, code: wire.CodeUnknownType},
		{name: "type case matters", in: `{"type":"PING","ref":"r1"}`, code: wire.CodeUnknownType, ref: "r1"},
		{name: "server type welcome", in: `{"type":"welcome","ref":"r1"}`, code: wire.CodeUnknownType, ref: "r1"},
		{name: "server type pong", in: `{"type":"pong","ref":"r1"}`, code: wire.CodeUnknownType, ref: "r1"},
		{name: "server type error", in: `{"type":"error","ref":"r1"}`, code: wire.CodeUnknownType, ref: "r1"},
		{name: "server type peer-joined", in: `{"type":"peer-joined","ref":"r1"}`, code: wire.CodeUnknownType, ref: "r1"},
		{name: "server type peer-left", in: `{"type":"peer-left","ref":"r1"}`, code: wire.CodeUnknownType, ref: "r1"},
		{name: "unknown type with ill-typed field", in: `{"type":"bogus","room":5,"ref":"r1"}`, code: wire.CodeUnknownType, ref: "r1"},

		// ref.
		{name: "ref 64 runes", in: `{"type":"ping","ref":"` + ref64 + `"}`, check: func(t *testing.T, m wire.Message) {
			if m.Ref != ref64 {
				t.Errorf("ref = %q", m.Ref)
			}
		}},
		{name: "ref too long", in: `{"type":"ping","ref":"` + ref64 + `x"}`, code: wire.CodeBadMessage, msgPart: "ref"},
		{name: "ref not string", in: `{"type":"ping","ref":7}`, code: wire.CodeBadMessage, msgPart: "ref"},
		{name: "ref too long on bad join", in: `{"type":"join","ref":"` + ref64 + `x"}`, code: wire.CodeBadMessage},

		// ping, leave.
		{name: "ping", in: `{"type":"ping"}`, check: wantType(wire.TypePing)},
		{name: "ping with whitespace", in: " \r\n{ \"type\" : \"ping\" }\n", check: wantType(wire.TypePing)},
		{name: "leave", in: `{"type":"leave","ref":"bye"}`, check: func(t *testing.T, m wire.Message) {
			if m.Type != wire.TypeLeave || m.Ref != "bye" {
				t.Errorf("got %+v", m)
			}
		}},
		{name: "unknown fields ignored", in: `{"type":"ping","x":{"y":[1,2,3]},"z":null}`, check: wantType(wire.TypePing)},
		{name: "duplicate key last wins", in: `{"type":"bogus","type":"ping"}`, check: wantType(wire.TypePing)},

		// join.
		{name: "join", in: `{"type":"join","room":"a.B_c~-9","name":"Ada","meta":{ "role" : "host" },"resume":"tok"}`, check: func(t *testing.T, m wire.Message) {
			if m.Room != "a.B_c~-9" || m.Name != "Ada" || m.Resume != "tok" {
				t.Errorf("got %+v", m)
			}
			if string(m.Meta) != `{"role":"host"}` {
				t.Errorf("meta = %s, want it compacted", m.Meta)
			}
		}},
		{name: "join room 64", in: `{"type":"join","room":"` + room64 + `"}`, check: wantType(wire.TypeJoin)},
		{name: "join name 64 runes", in: `{"type":"join","room":"r","name":"` + name64 + `"}`, check: func(t *testing.T, m wire.Message) {
			if m.Name != name64 {
				t.Errorf("name = %q", m.Name)
			}
		}},
		{name: "join meta null", in: `{"type":"join","room":"r","meta":null}`, check: func(t *testing.T, m wire.Message) {
			if m.Meta != nil {
				t.Errorf("meta = %s, want none", m.Meta)
			}
		}},
		{name: "join meta 1024", in: `{"type":"join","room":"r","meta":` + meta1K + `}`, check: wantType(wire.TypeJoin)},
		{name: "join meta 1024 once compacted", in: `{"type":"join","room":"r","meta":{ "k" : "` + strings.Repeat("m", 1024-8) + `" }}`, check: wantType(wire.TypeJoin)},
		{name: "join missing room", in: `{"type":"join","ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "room"},
		{name: "join empty room", in: `{"type":"join","room":"","ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1"},
		{name: "join room number", in: `{"type":"join","room":5,"ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "room"},
		{name: "join room space", in: `{"type":"join","room":"a b","ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1"},
		{name: "join room slash", in: `{"type":"join","room":"a/b","ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1"},
		{name: "join room non-ASCII", in: `{"type":"join","room":"café","ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1"},
		{name: "join room 65", in: `{"type":"join","room":"` + room64 + `x","ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1"},
		{name: "join name 65 runes", in: `{"type":"join","room":"r","name":"` + name64 + `é","ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "name"},
		{name: "join name number", in: `{"type":"join","room":"r","name":1,"ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "name"},
		{name: "join meta array", in: `{"type":"join","room":"r","meta":[1],"ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "meta"},
		{name: "join meta string", in: `{"type":"join","room":"r","meta":"x","ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "meta"},
		{name: "join meta number", in: `{"type":"join","room":"r","meta":1,"ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "meta"},
		{name: "join meta true", in: `{"type":"join","room":"r","meta":true,"ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "meta"},
		{name: "join meta 1025", in: `{"type":"join","room":"r","meta":` + metaBig + `,"ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "meta"},
		{name: "join meta 1024 once escaped", in: `{"type":"join","room":"r","meta":{"k":"<` + strings.Repeat("m", 1024-9) + `"},"ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "meta"},
		{name: "join resume number", in: `{"type":"join","room":"r","resume":1,"ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1"},

		// offer, answer.
		{name: "offer", in: `{"type":"offer","to":"B","sdp":"v=0\r\n","from":"forged"}`, check: func(t *testing.T, m wire.Message) {
			if m.To != "B" || m.SDP != "v=0\r\n" {
				t.Errorf("got %+v", m)
			}
		}},
		{name: "answer", in: `{"type":"answer","to":"B","sdp":"v=0"}`, check: wantType(wire.TypeAnswer)},
		{name: "offer to 128", in: `{"type":"offer","to":"` + to128 + `","sdp":"v=0"}`, check: wantType(wire.TypeOffer)},
		{name: "offer missing to", in: `{"type":"offer","sdp":"v=0","ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "to"},
		{name: "offer to null", in: `{"type":"offer","to":null,"sdp":"v=0","ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "to"},
		{name: "offer to number", in: `{"type":"offer","to":1,"sdp":"v=0","ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "to"},
		{name: "offer to 129", in: `{"type":"offer","to":"` + to128 + `p","sdp":"v=0","ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "to"},
		{name: "offer missing sdp", in: `{"type":"offer","to":"B","ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "sdp"},
		{name: "offer empty sdp", in: `{"type":"offer","to":"B","sdp":"","ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "sdp"},
		{name: "offer sdp object", in: `{"type":"offer","to":"B","sdp":{},"ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "sdp"},
		{name: "answer missing sdp", in: `{"type":"answer","to":"B","ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "sdp"},

		// candidate.
		{name: "candidate", in: `{"type":"candidate","to":"B","candidate":{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host", "sdpMid":"0","sdpMLineIndex":0,"usernameFragment":null}}`, check: func(t *testing.T, m wire.Message) {
			var c map[string]any
			if err := json.Unmarshal(m.Candidate, &c); err != nil || c["sdpMid"] != "0" {
				t.Errorf("candidate = %s (%v)", m.Candidate, err)
			}
		}},
		{name: "candidate null", in: `{"type":"candidate","to":"B","candidate":null}`, check: func(t *testing.T, m wire.Message) {
			if string(m.Candidate) != "null" {
				t.Errorf("candidate = %q, want null", m.Candidate)
			}
		}},
		{name: "candidate missing", in: `{"type":"candidate","to":"B","ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "candidate"},
		{name: "candidate string", in: `{"type":"candidate","to":"B","candidate":"x","ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "candidate"},
		{name: "candidate array", in: `{"type":"candidate","to":"B","candidate":[],"ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "candidate"},
		{name: "candidate number", in: `{"type":"candidate","to":"B","candidate":0,"ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "candidate"},
		{name: "candidate false", in: `{"type":"candidate","to":"B","candidate":false,"ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "candidate"},
		{name: "candidate missing to", in: `{"type":"candidate","candidate":null,"ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "to"},

		// message.
		{name: "message to one", in: `{"type":"message","to":"B","data":{"a":[1,2]}}`, check: func(t *testing.T, m wire.Message) {
			if m.To != "B" || !jsonEqual(m.Data, []byte(`{"a":[1,2]}`)) {
				t.Errorf("got %+v", m)
			}
		}},
		{name: "message to all", in: `{"type":"message","data":"hi"}`, check: func(t *testing.T, m wire.Message) {
			if m.To != "" {
				t.Errorf("to = %q", m.To)
			}
		}},
		{name: "message to null", in: `{"type":"message","to":null,"data":1}`, check: func(t *testing.T, m wire.Message) {
			if m.To != "" {
				t.Errorf("to = %q", m.To)
			}
		}},
		{name: "message data null", in: `{"type":"message","data":null}`, check: func(t *testing.T, m wire.Message) {
			if string(m.Data) != "null" {
				t.Errorf("data = %q", m.Data)
			}
		}},
		{name: "message data false", in: `{"type":"message","data":false}`, check: wantType(wire.TypeMessage)},
		{name: "message missing data", in: `{"type":"message","to":"B","ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "data"},
		{name: "message to number", in: `{"type":"message","to":3,"data":1,"ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "to"},
		{name: "message to 129", in: `{"type":"message","to":"` + to128 + `p","data":1,"ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1", msgPart: "to"},
		{name: "server field ill-typed", in: `{"type":"message","data":1,"resumed":"yes","ref":"r1"}`, code: wire.CodeBadMessage, ref: "r1"},
	}
}

func wantType(typ wire.Type) func(*testing.T, wire.Message) {
	return func(t *testing.T, m wire.Message) {
		t.Helper()
		if m.Type != typ {
			t.Errorf("type = %q, want %q", m.Type, typ)
		}
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	for _, tc := range decodeCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, werr := wire.Decode([]byte(tc.in))
			if tc.code != "" {
				if werr == nil {
					t.Fatalf("Decode(%.80q) = %+v, want error %s", tc.in, m, tc.code)
				}
				if werr.Code != tc.code || werr.Ref != tc.ref {
					t.Errorf("Decode(%.80q) error = %+v, want code %s ref %q", tc.in, werr, tc.code, tc.ref)
				}
				if werr.Message == "" || !strings.Contains(werr.Message, tc.msgPart) {
					t.Errorf("error message %q, want it to mention %q", werr.Message, tc.msgPart)
				}
				if m.Type != "" {
					t.Errorf("Decode returned a message with an error: %+v", m)
				}
				return
			}
			if werr != nil {
				t.Fatalf("Decode(%.80q): %v", tc.in, werr)
			}
			tc.check(t, m)
			assertRoundTrip(t, m)
		})
	}
}

// TestDecodeRefSurvivesTypeError: encoding/json keeps decoding after a
// type error, so a well-formed ref that comes after the bad field is
// echoed.
func TestDecodeRefSurvivesTypeError(t *testing.T) {
	t.Parallel()
	_, werr := wire.Decode([]byte(`{"type":"offer","to":"B","sdp":5,"ref":"later"}`))
	if werr == nil || werr.Code != wire.CodeBadMessage || werr.Ref != "later" {
		t.Fatalf("got %+v, want bad-message with ref later", werr)
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`{"type":"welcome","id":"A","room":"r","peers":[],"iceServers":[],"resume":"t","resumed":false}`, true},
		{`{"type":"peer-joined","peer":{"id":"A","name":"","meta":{}}}`, true},
		{`{"type":"error","code":"bad-message","message":"x","ref":"r"}`, true},
		{`{"type":"anything-new"}`, true},
		{`{}`, false},
		{`{"type":1}`, false},
		{`[]`, false},
		{`nope`, false},
	} {
		m, err := wire.Parse([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("Parse(%s) = %+v, %v; want ok=%v", tc.in, m, err, tc.ok)
		}
	}
	m, err := wire.Parse([]byte(`{"type":"welcome","id":"A","room":"r","peers":[{"id":"B","name":"b","meta":{"x":1}}],"iceServers":[{"urls":["stun:x"]}],"resume":"t","resumed":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "A" || m.Room != "r" || len(m.Peers) != 1 || m.Peers[0].ID != "B" || m.Resume != "t" || !m.Resumed || len(m.ICEServers) != 1 {
		t.Errorf("Parse(welcome) = %+v", m)
	}
}

// TestEncodeWelcome: every field of welcome is on the wire, empty lists
// as [] and resumed as false.
func TestEncodeWelcome(t *testing.T) {
	t.Parallel()
	b, err := wire.Encode(wire.Welcome{Type: wire.TypeWelcome, ID: "A", Room: "r", Peers: []wire.PeerInfo{}, ICEServers: []wire.ICEServer{}, Resume: "t"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"welcome","id":"A","room":"r","peers":[],"iceServers":[],"resume":"t","resumed":false}`
	if string(b) != want {
		t.Errorf("Encode(welcome) = %s, want %s", b, want)
	}
}

func TestEncodeOmitsUnusedFields(t *testing.T) {
	t.Parallel()
	b, err := wire.Encode(wire.Message{Type: wire.TypeMessage, From: "A", Data: json.RawMessage(`{ "x" : 1 }`)})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"type":"message","from":"A","data":{"x":1}}`; string(b) != want {
		t.Errorf("Encode = %s, want %s", b, want)
	}
	b, err = wire.Encode(wire.Message{Type: wire.TypeCandidate, From: "A", To: "B", Candidate: json.RawMessage("null")})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"type":"candidate","to":"B","from":"A","candidate":null}`; string(b) != want {
		t.Errorf("Encode = %s, want %s", b, want)
	}
}

func TestValidRoom(t *testing.T) {
	t.Parallel()
	for room, want := range map[wire.RoomID]bool{
		"a": true, room64Typed(): true, "A-Z.a_z~0-9": true,
		"": false, room64Typed() + "x": false, "a b": false, "a/b": false, "a%20": false,
		"ä": false, "a\x00": false, "a:b": false, "..": true,
	} {
		if got := wire.ValidRoom(room); got != want {
			t.Errorf("ValidRoom(%q) = %v, want %v", room, got, want)
		}
	}
}

func room64Typed() wire.RoomID { return wire.RoomID(room64) }

func TestErrorValue(t *testing.T) {
	t.Parallel()
	e := wire.Errorf(wire.CodeUnknownPeer, "no peer %s", "X")
	if e.Error() != "unknown-peer: no peer X" {
		t.Errorf("Error() = %q", e.Error())
	}
	var err error = e
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeUnknownPeer {
		t.Errorf("errors.As failed for %v", err)
	}
}

// assertRoundTrip checks the property FuzzDecode explores: an accepted
// message re-encodes to a frame that Decode accepts with the same meaning,
// and encoding is then stable.
func assertRoundTrip(t *testing.T, m wire.Message) {
	t.Helper()
	b, err := wire.Encode(m)
	if err != nil {
		t.Fatalf("Encode(%+v): %v", m, err)
	}
	m2, werr := wire.Decode(b)
	if werr != nil {
		t.Fatalf("Decode(Encode(m)) refused %s: %v", b, werr)
	}
	if diff := sameMeaning(m, m2); diff != "" {
		t.Fatalf("re-decoded message differs in %s:\n first %+v\nsecond %+v", diff, m, m2)
	}
	b2, err := wire.Encode(m2)
	if err != nil {
		t.Fatalf("Encode(m2): %v", err)
	}
	if !bytes.Equal(b, b2) {
		t.Fatalf("encoding is not stable:\n%s\n%s", b, b2)
	}
}

// sameMeaning names the first field where a and b differ, comparing raw
// JSON fields by value.
func sameMeaning(a, b wire.Message) string {
	switch {
	case a.Type != b.Type:
		return "type"
	case a.Ref != b.Ref:
		return "ref"
	case a.Room != b.Room:
		return "room"
	case a.Name != b.Name:
		return "name"
	case a.Resume != b.Resume:
		return "resume"
	case a.To != b.To:
		return "to"
	case a.From != b.From:
		return "from"
	case a.SDP != b.SDP:
		return "sdp"
	case !jsonEqual(a.Meta, b.Meta):
		return "meta"
	case !jsonEqual(a.Candidate, b.Candidate):
		return "candidate"
	case !jsonEqual(a.Data, b.Data):
		return "data"
	}
	return ""
}

// jsonEqual compares two raw JSON values by meaning; two absent values are
// equal.
func jsonEqual(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	va, errA := decodeAny(a)
	vb, errB := decodeAny(b)
	if errA != nil || errB != nil {
		return false
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return bytes.Equal(ja, jb)
}

func decodeAny(raw []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}
