package wire

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// fastSeeds are frames of every shape the fast decoder meets, and some it
// must decline.
var fastSeeds = []string{
	`{"type":"candidate","to":"PEER","candidate":{"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 40000 typ host","sdpMid":"0","sdpMLineIndex":0}}`,
	`{"type":"offer","to":"P","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n","ref":"o1"}`,
	`{"type":"message","data":{"text":"<b>&</b>","n":[1,-2.5e3,true,false,null,{}],"s":"\u2028\"\\"}}`,
	`{"type":"message","to":null,"data":null}`,
	` { "type" : "ping" , "ref" : "r" } ` + "\n",
	`{"type":"join","room":"r","name":"Ada é","meta":{"role":"host"},"resume":"tok"}`,
	`{"type":"leave"}`,
	`{}`,
	`{"type":"message","data":"x","data":[1,2]}`,
	`{"type":"message","to":"a","to":null,"data":1}`,
	`{"TYPE":"ping"}`,
	`{"type":"ping","extra":1}`,
	`{"type":5}`,
	`{"type":"ping","ref":"\u00e9"}`,
	`{"type":"candidate","to":"p","candidate":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
	`{"type":"message","data":01}`,
	`{"type":"message","data":{"a":1,}}`,
	`{"type":"ping"} x`,
	"{\"type\":\"message\",\"data\":\"\xff\"}",
	"{\"type\":\"p\xffing\"}",
	`{"type":"message","data":"\ud800"}`,
	`[{"type":"ping"}]`,
	``,
}

// TestDecodeFastMatchesEncodingJSON: on every seed the fast decoder either
// declines or gives exactly what json.Unmarshal gives.
func TestDecodeFastMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	accepted := 0
	for _, s := range fastSeeds {
		if checkDecodeFast(t, []byte(s)) {
			accepted++
		}
	}
	if accepted < 10 {
		t.Errorf("the fast decoder took only %d of the seeds", accepted)
	}
}

func checkDecodeFast(t *testing.T, data []byte) bool {
	t.Helper()
	var fast Message
	if !decodeFast(data, &fast) {
		return false
	}
	var slow Message
	if err := json.Unmarshal(data, &slow); err != nil {
		t.Fatalf("decodeFast(%q) accepted what encoding/json refuses: %v", data, err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("decodeFast(%q)\n got %+v\nwant %+v", data, fast, slow)
	}
	return true
}

// FuzzDecodeFast compares the fast decoder with encoding/json on any input.
// The seed corpus is committed in testdata/fuzz/FuzzDecodeFast.
func FuzzDecodeFast(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecodeFast(t, data)
	})
}

// FuzzEncodeRelay compares EncodeRelay with encoding/json for any relayed
// message the decoder accepts.
func FuzzEncodeRelay(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s), "FROM")
	}
	f.Add([]byte(`{"type":"offer","to":"p","sdp":"a\u0001b\u2029c\ud83d\ude00 <&>"}`), "F\x00<")
	f.Fuzz(func(t *testing.T, data []byte, from string) {
		m, werr := Decode(data)
		if werr != nil {
			return
		}
		switch m.Type {
		case TypeOffer, TypeAnswer, TypeCandidate, TypeMessage:
		default:
			return
		}
		checkEncodeRelay(t, &m, PeerID(from))
	})
}

func checkEncodeRelay(t *testing.T, m *Message, from PeerID) {
	t.Helper()
	out := Message{Type: m.Type, To: m.To, From: from}
	switch m.Type {
	case TypeOffer, TypeAnswer:
		out.SDP = m.SDP
	case TypeCandidate:
		out.Candidate = m.Candidate
	default:
		out.Data = m.Data
	}
	want, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := EncodeRelay(m, from); !bytes.Equal(got, want) {
		t.Fatalf("EncodeRelay(%+v)\n got %s\nwant %s", m, got, want)
	}
}

// TestEncodeRelayEscapes covers every escape encoding/json writes.
func TestEncodeRelayEscapes(t *testing.T) {
	t.Parallel()
	var all strings.Builder
	for c := range 0x80 {
		all.WriteByte(byte(c))
	}
	all.WriteString("\u2028\u2029é\xff\xc3")
	s := all.String()
	checkEncodeRelay(t, &Message{Type: TypeOffer, To: PeerID(s), SDP: s}, PeerID(s))
	checkEncodeRelay(t, &Message{Type: TypeMessage, Data: json.RawMessage(" { \"a\" : [ 1 , \"<\u2028&\\\"\" ] }\n")}, "F")
	checkEncodeRelay(t, &Message{Type: TypeCandidate, To: "p", Candidate: json.RawMessage(`null`)}, "F")
}
