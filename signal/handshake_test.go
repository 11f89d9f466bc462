package signal_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// TestSubprotocol: huddle.v1 is selected when offered, no offer means v1,
// and offering only other protocols is refused with 400 before any upgrade.
func TestSubprotocol(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	for _, tc := range []struct {
		name    string
		offer   []string
		status  int    // 0: upgraded
		want    string // the selected subprotocol
		inError string // in the refusal's body
	}{
		{name: "none", offer: nil},
		{name: "huddle.v1", offer: []string{"huddle.v1"}, want: "huddle.v1"},
		{name: "huddle.v1 among others", offer: []string{"chat", "huddle.v1", "huddle.v2"}, want: "huddle.v1"},
		{name: "others only", offer: []string{"huddle.v2", "chat"}, status: http.StatusBadRequest, inError: "subprotocol"},
		{name: "bearer only", offer: []string{wire.BearerPrefix + "abc"}, status: http.StatusBadRequest, inError: "subprotocol"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := &websocket.Dialer{Subprotocols: tc.offer, HandshakeTimeout: wait}
			c, resp, err := h.tryDial(t, dialOpts{dialer: d})
			if tc.status != 0 {
				assertRefused(t, resp, err, tc.status, tc.inError)
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			if c.proto != tc.want {
				t.Errorf("selected subprotocol %q, want %q", c.proto, tc.want)
			}
			c.quiet()
			c.join(roomName("proto-" + tc.name))
		})
	}
}

// TestOriginDefault: with no allowed origins configured, a page of the
// server's own origin and a client without Origin are accepted; any other
// origin gets 403.
func TestOriginDefault(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	own := "http://" + strings.TrimPrefix(h.ts.URL, "http://")
	for _, tc := range []struct {
		origin string
		status int
	}{
		{origin: ""},
		{origin: own},
		{origin: "http://evil.example", status: http.StatusForbidden},
		{origin: "http://127.0.0.1", status: http.StatusForbidden},    // another port
		{origin: own + ".evil.example", status: http.StatusForbidden}, // a suffix
		{origin: "null", status: http.StatusForbidden},
	} {
		t.Run("origin="+tc.origin, func(t *testing.T) {
			t.Parallel()
			header := http.Header{}
			if tc.origin != "" {
				header.Set("Origin", tc.origin)
			}
			c, resp, err := h.tryDial(t, dialOpts{header: header})
			if tc.status != 0 {
				assertRefused(t, resp, err, tc.status, "origin")
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			c.quiet()
		})
	}
}

// TestNotAnUpgrade: a plain GET is refused with 400 and a reason.
func TestNotAnUpgrade(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, h.ts.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "WebSocket") {
		t.Errorf("GET: %d %q, want 400 naming WebSocket", resp.StatusCode, body)
	}
}

// assertRefused checks a handshake refusal: an HTTP status and a one-line
// plain-text reason, never an upgrade.
func assertRefused(t *testing.T, resp *http.Response, err error, status int, inBody string) {
	t.Helper()
	if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil {
		t.Fatalf("dial: %v, want a refused handshake (HTTP %d)", err, status)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Errorf("HTTP %d %q, want %d", resp.StatusCode, body, status)
	}
	if !strings.Contains(strings.ToLower(string(body)), inBody) {
		t.Errorf("reason %q does not mention %q", body, inBody)
	}
	if strings.Count(strings.TrimSpace(string(body)), "\n") != 0 {
		t.Errorf("reason %q is not one line", body)
	}
}
