package client

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/huddle-rtc/huddle/signal/wire"
	"github.com/pion/webrtc/v4"
)

func TestCloseOutcome(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want error // nil: reconnect
	}{
		{errors.New("read tcp: connection reset"), nil},
		{&CloseError{Code: wire.CloseRestart}, nil},
		{&CloseError{Code: wire.CloseGoingAway}, nil},
		{&CloseError{Code: wire.CloseInternal}, nil},
		{&CloseError{Code: wire.CloseTooSlow}, nil},
		{&CloseError{Code: wire.CloseJoinTimeout}, nil},
		{&CloseError{Code: wire.CloseReplaced}, ErrReplaced},
		{&CloseError{Code: wire.CloseKicked}, ErrKicked},
		{&CloseError{Code: wire.CloseNormal}, ErrServerClosed},
		{&CloseError{Code: wire.ClosePolicy}, ErrServerClosed},
		{&CloseError{Code: wire.CloseTooBig}, ErrServerClosed},
	} {
		got := closeOutcome(tc.err)
		if (got == nil) != (tc.want == nil) || (tc.want != nil && !errors.Is(got, tc.want)) {
			t.Errorf("closeOutcome(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestRetryable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{errors.New("dial tcp: connection refused"), true},
		{&HandshakeError{Status: 503}, true},
		{&HandshakeError{Status: 429}, true},
		{&HandshakeError{Status: 401}, false},
		{&HandshakeError{Status: 403}, false},
		{&HandshakeError{Status: 400}, false},
		{errors.Join(ErrJoinRefused, wire.Errorf(wire.CodeRoomFull, "full")), false},
		{&CloseError{Code: wire.CloseReplaced}, false},
		{&CloseError{Code: wire.CloseRestart}, true},
	} {
		if got := retryable(tc.err); got != tc.want {
			t.Errorf("retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestBackoffDelay(t *testing.T) {
	t.Parallel()
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.5}
	for _, tc := range []struct {
		attempt int
		r       float64
		want    time.Duration
	}{
		{0, 0, 100 * time.Millisecond},
		{1, 0, 200 * time.Millisecond},
		{3, 0, 800 * time.Millisecond},
		{4, 0, time.Second},
		{1000, 0, time.Second},
		{0, 0.999999, 50 * time.Millisecond},
		{4, 0.5, 750 * time.Millisecond},
	} {
		got := b.Delay(tc.attempt, tc.r).Round(time.Millisecond)
		if got != tc.want {
			t.Errorf("Delay(%d, %v) = %v, want %v", tc.attempt, tc.r, got, tc.want)
		}
	}
	if d := (Backoff{}).Delay(0, 0); d != DefaultBackoffInitial {
		t.Errorf("zero Backoff: first delay %v, want %v", d, DefaultBackoffInitial)
	}
}

func TestNormalizeURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"ws://h:8080/ws":     "ws://h:8080/ws",
		"http://h:8080":      "ws://h:8080/ws",
		"https://h/":         "wss://h/ws",
		"wss://h/custom?x=1": "wss://h/custom?x=1",
		"ftp://h":            "",
		"h:8080":             "",
		"http://":            "",
		"ws://[::1]:9/ws":    "ws://[::1]:9/ws",
	} {
		got, err := NormalizeURL(in)
		if want == "" {
			if err == nil {
				t.Errorf("NormalizeURL(%q) = %q, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("NormalizeURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestConvertICEServer(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, ok := convertICEServer(wire.ICEServer{
		URLs:       []string{"stun:h:3478", "turn:h:3478?transport=udp", "bogus://x", "turns:h:5349?transport=tcp"},
		Username:   "u",
		Credential: "c",
	}, log)
	if !ok || len(s.URLs) != 3 || s.Credential != "c" || s.CredentialType != webrtc.ICECredentialTypePassword {
		t.Errorf("got %+v %v, want the three valid URLs with the password", s, ok)
	}
	s, ok = convertICEServer(wire.ICEServer{URLs: []string{"turn:h:3478"}}, log)
	if ok {
		t.Errorf("TURN without credentials kept: %+v", s)
	}
}

func TestICEUfrag(t *testing.T) {
	t.Parallel()
	sdp := "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=ice-ufrag:abcd\r\na=ice-pwd:x\r\n"
	if got := iceUfrag(sdp); got != "abcd" {
		t.Errorf("iceUfrag = %q, want abcd", got)
	}
	if got := iceUfrag("v=0\r\n"); got != "" {
		t.Errorf("iceUfrag without one = %q", got)
	}
}

func TestParseCandidate(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{"null", ""} {
		c, err := parseCandidate(json.RawMessage(raw))
		if err != nil || c.Candidate != "" {
			t.Errorf("parseCandidate(%q) = %+v, %v; want the end of candidates", raw, c, err)
		}
	}
	c, err := parseCandidate(json.RawMessage(`{"candidate":"candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}`))
	if err != nil || c.SDPMid == nil || *c.SDPMid != "0" || c.SDPMLineIndex == nil {
		t.Errorf("parseCandidate(object) = %+v, %v", c, err)
	}
	for _, raw := range []string{`"x"`, `[1]`, `{"candidate":1}`, `{`} {
		if _, err := parseCandidate(json.RawMessage(raw)); !errors.Is(err, errBadCandidate) {
			t.Errorf("parseCandidate(%s) error %v, want errBadCandidate", raw, err)
		}
	}
}

// FuzzParseCandidate feeds the decoder of the candidate field, which comes
// from another peer through the server, arbitrary bytes.
func FuzzParseCandidate(f *testing.F) {
	f.Add([]byte(`{"candidate":"candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abc"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := parseCandidate(raw)
		if err != nil {
			return
		}
		// What parses encodes again and parses to the same value.
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", c, err)
		}
		c2, err := parseCandidate(b)
		if err != nil || c2.Candidate != c.Candidate {
			t.Fatalf("round trip %q: %+v, %v", b, c2, err)
		}
	})
}
