package wire_test

import (
	"testing"
	"unicode/utf8"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// FuzzDecode feeds the decoder of untrusted client frames. The seed corpus
// is committed in testdata/fuzz/FuzzDecode. Properties: Decode never
// panics; a refused frame gets bad-message or unknown-type with a valid
// ref; an accepted message is a client type and re-encodes to a frame that
// Decode accepts again with the same meaning.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"type":"join","room":"r","name":"n","meta":{"a":1},"ref":"1"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, werr := wire.Decode(data)
		if werr != nil {
			if werr.Code != wire.CodeBadMessage && werr.Code != wire.CodeUnknownType {
				t.Fatalf("Decode(%q): unexpected code %s", data, werr.Code)
			}
			if werr.Message == "" || !utf8.ValidString(werr.Message) {
				t.Fatalf("Decode(%q): bad error message %q", data, werr.Message)
			}
			if utf8.RuneCountInString(werr.Ref) > wire.MaxRefLen {
				t.Fatalf("Decode(%q): error echoes an over-long ref", data)
			}
			return
		}
		switch m.Type {
		case wire.TypeJoin:
			if !wire.ValidRoom(m.Room) || utf8.RuneCountInString(m.Name) > wire.MaxNameLen || len(m.Meta) > wire.MaxMetaLen {
				t.Fatalf("Decode(%q) accepted an invalid join: %+v", data, m)
			}
		case wire.TypeOffer, wire.TypeAnswer, wire.TypeCandidate, wire.TypeMessage, wire.TypeLeave, wire.TypePing:
		default:
			t.Fatalf("Decode(%q) accepted type %q", data, m.Type)
		}
		assertRoundTrip(t, m)
	})
}

// FuzzParse feeds the client's decoder of server frames: it never panics,
// and what it accepts has a type.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"type":"welcome","id":"A","room":"r","peers":[{"id":"B","name":"","meta":{}}],"iceServers":[],"resume":"t","resumed":false}`))
	f.Add([]byte(`{"type":"peer-left","id":"A","reason":"timeout"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := wire.Parse(data)
		if err == nil && m.Type == "" {
			t.Fatalf("Parse(%q) accepted a message without type", data)
		}
	})
}
