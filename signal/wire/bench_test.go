package wire_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// The hub's per-message work on the wire types, without sockets: decode
// and validate a client frame, then encode the frame it relays. Compare
// with the encoding/json path (what Decode falls back to, and what Encode
// does) to see what the hand-written hot path saves:
//
//	go test ./signal/wire -run '^$' -bench . -benchmem

var benchFrames = map[string]string{
	"candidate": `{"type":"candidate","to":"Q5V4MGJ7GZ3DW2N6E3V5ZQKU4Y","candidate":{"candidate":"candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 0.0.0.0 rport 0 generation 0 ufrag EsAw network-cost 999","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"EsAw"}}`,
	"message":   `{"type":"message","to":"Q5V4MGJ7GZ3DW2N6E3V5ZQKU4Y","data":{"kind":"chat","text":"hello, is the call still on?","at":1767312000123}}`,
	"offer":     `{"type":"offer","to":"Q5V4MGJ7GZ3DW2N6E3V5ZQKU4Y","sdp":"` + strings.Repeat(`a=candidate:1 1 udp 2122260223 192.0.2.1 50000 typ host\r\n`, 40) + `"}`,
}

func BenchmarkDecode(b *testing.B) {
	for _, name := range []string{"candidate", "message", "offer"} {
		frame := []byte(benchFrames[name])
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if _, err := wire.Decode(frame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeEncodingJSON is what Decode cost before its fast path:
// json.Unmarshal into a Message, then Validate.
func BenchmarkDecodeEncodingJSON(b *testing.B) {
	for _, name := range []string{"candidate", "message", "offer"} {
		frame := []byte(benchFrames[name])
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				var m wire.Message
				if err := json.Unmarshal(frame, &m); err != nil {
					b.Fatal(err)
				}
				if err := m.Validate(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodeRelay(b *testing.B) {
	for _, name := range []string{"candidate", "message", "offer"} {
		m, werr := wire.Decode([]byte(benchFrames[name]))
		if werr != nil {
			b.Fatal(werr)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = wire.EncodeRelay(&m, "M2XAKZ4TCTQXW7Q6UNV3XJJ2OI")
			}
		})
	}
}

// BenchmarkEncodeEncodingJSON is what the relay's encoding cost before
// EncodeRelay: wire.Encode of the relayed Message.
func BenchmarkEncodeEncodingJSON(b *testing.B) {
	for _, name := range []string{"candidate", "message", "offer"} {
		m, werr := wire.Decode([]byte(benchFrames[name]))
		if werr != nil {
			b.Fatal(werr)
		}
		out := wire.Message{Type: m.Type, To: m.To, From: "M2XAKZ4TCTQXW7Q6UNV3XJJ2OI", SDP: m.SDP, Candidate: m.Candidate, Data: m.Data}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := wire.Encode(out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
