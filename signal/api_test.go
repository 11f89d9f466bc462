package signal_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/logging"
	pionturn "github.com/pion/turn/v4"

	"github.com/huddle-rtc/huddle/internal/app"
	"github.com/huddle-rtc/huddle/internal/apptest"
	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

const testAdminToken = "test-admin-token-0123456789abcdef"

// apiConfig is testConfig with the room API on.
func apiConfig(change func(*signal.Config)) signal.Config {
	return testConfig(func(c *signal.Config) {
		c.AdminToken = testAdminToken
		c.ResumeGrace = time.Minute
		if change != nil {
			change(c)
		}
	})
}

// withAPI serves the room API under /api/ beside the WebSocket endpoint,
// as internal/app does.
func withAPI(ts *httptest.Server) {
	srv := ts.Config.Handler.(*signal.Server)
	mux := http.NewServeMux()
	mux.Handle("/api/", srv.API())
	mux.Handle("/", srv)
	ts.Config.Handler = mux
}

// apiReply is one answer of the room API.
type apiReply struct {
	status int
	header http.Header
	body   []byte
}

// apiError decodes the JSON error of a refusal.
func (r apiReply) apiError(t testing.TB) (code, message string) {
	t.Helper()
	var e struct{ Code, Message string }
	if err := json.Unmarshal(r.body, &e); err != nil || e.Code == "" || e.Message == "" {
		t.Fatalf("HTTP %d body %q: want a JSON error {code, message} (%v)", r.status, r.body, err)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error with Content-Type %q", ct)
	}
	return e.Code, e.Message
}

// call makes one API request with the admin token.
func (h *harness) call(t testing.TB, method, path, body string) apiReply {
	t.Helper()
	return h.callAs(t, "Bearer "+testAdminToken, method, path, body)
}

// callAs makes one API request with auth as its Authorization header
// (none when empty).
func (h *harness) callAs(t testing.TB, auth, method, path, body string) apiReply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, h.ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return apiReply{status: resp.StatusCode, header: resp.Header, body: b}
}

// expectStatus fails unless the reply has status; for an error status it
// also checks the JSON error's code.
func (r apiReply) expectStatus(t testing.TB, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("HTTP %d %q, want %d", r.status, r.body, status)
	}
	if code != "" {
		if got, _ := r.apiError(t); got != code {
			t.Errorf("error code %q, want %q", got, code)
		}
	}
}

// roomDetail is GET /api/rooms/{room}'s answer.
type roomDetail struct {
	Room  wire.RoomID `json:"room"`
	Peers []struct {
		ID        wire.PeerID     `json:"id"`
		Name      string          `json:"name"`
		Meta      json.RawMessage `json:"meta"`
		JoinedAt  time.Time       `json:"joinedAt"`
		Resumable bool            `json:"resumable"`
	} `json:"peers"`
}

func (h *harness) room(t testing.TB, room string) roomDetail {
	t.Helper()
	r := h.call(t, "GET", "/api/rooms/"+room, "")
	r.expectStatus(t, http.StatusOK, "")
	var d roomDetail
	if err := json.Unmarshal(r.body, &d); err != nil {
		t.Fatalf("GET room: %v in %q", err, r.body)
	}
	return d
}

// waitResumable polls the room API until peer id shows resumable as want.
// Presence state is reported to the broker after the connection's end is
// logged, so a poll under a deadline is the event to wait for.
func (h *harness) waitResumable(t testing.TB, room string, id wire.PeerID, want bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		for _, p := range h.room(t, room).Peers {
			if p.ID == id && p.Resumable == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer %s not resumable=%v within %s", id, want, wait)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// apiRoutes are one request of every route, with the status a valid call
// gets in a server where room "r" holds peer "p" (never, here).
var apiRoutes = []struct{ method, path, body string }{
	{"GET", "/api/rooms", ""},
	{"GET", "/api/rooms/r", ""},
	{"DELETE", "/api/rooms/r/peers/p", ""},
	{"POST", "/api/rooms/r/messages", `{"data":1}`},
	{"GET", "/api/events", ""},
	{"GET", "/api/nope", ""},
}

// TestAPIOff: without an admin token every /api/ route answers 404, the
// token or not.
func TestAPIOff(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{}, withAPI)
	for _, rt := range apiRoutes {
		for _, auth := range []string{"", "Bearer " + testAdminToken, "Bearer "} {
			r := h.callAs(t, auth, rt.method, rt.path, rt.body)
			if r.status != http.StatusNotFound {
				t.Errorf("%s %s (auth %q): HTTP %d, want 404", rt.method, rt.path, auth, r.status)
			}
		}
	}
	// The WebSocket endpoint beside it still works.
	h.joinRoom(t, "off", 1)
}

// TestAPIAuth: every route refuses a request without the token, with a
// wrong one, a prefix of it, or another scheme: 401 with a JSON error and
// a WWW-Authenticate challenge, and nothing done. The right token passes.
func TestAPIAuth(t *testing.T) {
	t.Parallel()
	h := newHarness(t, apiConfig(nil), signal.Options{}, withAPI)
	cs := h.joinRoom(t, "r", 1)
	for _, rt := range apiRoutes {
		for _, auth := range []string{
			"",
			"Bearer",
			"Bearer ",
			"Bearer wrong-token",
			"Bearer " + testAdminToken[:len(testAdminToken)-1],
			"Bearer " + testAdminToken + "x",
			"Basic " + testAdminToken,
			testAdminToken,
		} {
			r := h.callAs(t, auth, rt.method, rt.path, rt.body)
			r.expectStatus(t, http.StatusUnauthorized, "unauthorized")
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s: WWW-Authenticate %q", rt.method, rt.path, r.header.Get("WWW-Authenticate"))
			}
		}
	}
	cs[0].quiet() // no message reached the room
	// The scheme is case-insensitive.
	h.callAs(t, "bearer "+testAdminToken, "GET", "/api/rooms", "").expectStatus(t, http.StatusOK, "")
	if h.logs.count(func(r logRecord) bool {
		for _, v := range r.attrs {
			if strings.Contains(v, "test-admin-token") {
				return true
			}
		}
		return strings.Contains(r.msg, "test-admin-token")
	}) > 0 {
		t.Error("the admin token appears in the server's logs")
	}
}

// TestAPIRooms: the room list with counts, sorted; a room's peers with
// name, meta, join time and resumable; refusals for an unknown or invalid
// room, unknown routes and wrong methods, all as JSON.
func TestAPIRooms(t *testing.T) {
	t.Parallel()
	h := newHarness(t, apiConfig(nil), signal.Options{}, withAPI)
	r := h.call(t, "GET", "/api/rooms", "")
	r.expectStatus(t, http.StatusOK, "")
	if got := strings.TrimSpace(string(r.body)); got != `{"rooms":[]}` {
		t.Errorf("no rooms: got %s", got)
	}

	before := time.Now().Add(-time.Second) // JSON times may be rounded
	ada := h.dial(t)
	ada.join("beta", "name", "Ada", "meta", map[string]any{"role": "host"})
	bob := h.dial(t)
	bob.join("beta", "name", "Bob")
	ada.expect(wire.TypePeerJoined)
	h.joinRoom(t, "alpha", 1)
	after := time.Now().Add(time.Second)

	r = h.call(t, "GET", "/api/rooms", "")
	r.expectStatus(t, http.StatusOK, "")
	if got := strings.TrimSpace(string(r.body)); got != `{"rooms":[{"room":"alpha","peers":1},{"room":"beta","peers":2}]}` {
		t.Errorf("rooms: got %s", got)
	}

	d := h.room(t, "beta")
	if d.Room != "beta" || len(d.Peers) != 2 {
		t.Fatalf("room beta: %+v", d)
	}
	p0, p1 := d.Peers[0], d.Peers[1]
	if p0.ID != ada.id || p0.Name != "Ada" || canonical(t, p0.Meta) != `{"role":"host"}` || p0.Resumable {
		t.Errorf("first peer %+v, want Ada with her meta, connected", p0)
	}
	if p1.ID != bob.id || p1.Name != "Bob" || string(p1.Meta) != "{}" || p1.Resumable {
		t.Errorf("second peer %+v, want Bob with meta {}", p1)
	}
	for _, p := range d.Peers {
		if p.JoinedAt.Before(before) || p.JoinedAt.After(after) {
			t.Errorf("joinedAt %s not within the test", p.JoinedAt)
		}
	}
	if d.Peers[1].JoinedAt.Before(d.Peers[0].JoinedAt) {
		t.Errorf("Bob joined at %s, before Ada (%s)", p1.JoinedAt, p0.JoinedAt)
	}
	var raw struct {
		Peers []map[string]json.RawMessage `json:"peers"`
	}
	if err := json.Unmarshal(h.call(t, "GET", "/api/rooms/beta", "").body, &raw); err != nil {
		t.Fatal(err)
	}
	if jt := string(raw.Peers[0]["joinedAt"]); !strings.HasSuffix(jt, `Z"`) {
		t.Errorf("joinedAt %s: want RFC 3339 in UTC", jt)
	}
	if len(raw.Peers[0]) != 5 {
		t.Errorf("peer fields %v, want id, name, meta, joinedAt, resumable", raw.Peers[0])
	}

	h.call(t, "GET", "/api/rooms/gamma", "").expectStatus(t, http.StatusNotFound, "unknown-room")
	h.call(t, "GET", "/api/rooms/bad%20room", "").expectStatus(t, http.StatusBadRequest, "bad-request")
	h.call(t, "GET", "/api/nope", "").expectStatus(t, http.StatusNotFound, "not-found")
	h.call(t, "GET", "/api/rooms/beta/peers", "").expectStatus(t, http.StatusNotFound, "not-found")
	r = h.call(t, "POST", "/api/rooms", "{}")
	r.expectStatus(t, http.StatusMethodNotAllowed, "method-not-allowed")
	if r.header.Get("Allow") == "" {
		t.Error("405 without Allow")
	}
	h.call(t, "GET", "/api/rooms/beta/peers/"+string(ada.id), "").expectStatus(t, http.StatusMethodNotAllowed, "method-not-allowed")

	// A room is gone once its last peer left.
	bob.send(map[string]any{"type": "leave"})
	bob.expectClose(1000)
	ada.expect(wire.TypePeerLeft)
	ada.send(map[string]any{"type": "leave"})
	ada.expectClose(1000)
	h.call(t, "GET", "/api/rooms/beta", "").expectStatus(t, http.StatusNotFound, "unknown-room")
}

// TestAPIResumable: a peer whose connection dropped shows resumable while
// it waits out its grace, and not once it resumed.
func TestAPIResumable(t *testing.T) {
	t.Parallel()
	h := newHarness(t, apiConfig(nil), signal.Options{}, withAPI)
	cs := h.joinRoom(t, "grace", 2)
	a := cs[0]
	a.close()
	h.waitClosed(t, a.id)
	h.waitResumable(t, "grace", a.id, true)
	for _, p := range h.room(t, "grace").Peers {
		if p.ID == cs[1].id && p.Resumable {
			t.Error("the connected peer shows resumable")
		}
	}
	a2 := h.dial(t)
	if w := a2.join("grace", "resume", a.welcome.Resume); !w.Resumed {
		t.Fatalf("resume failed: %s", describe(w))
	}
	h.waitResumable(t, "grace", a.id, false)
}

// TestAPIKick: the kicked peer is closed with 4003, the others get
// peer-left kicked, its resume token starts a new session, and a second
// kick, a kick in another room, or of an unknown peer gets 404.
func TestAPIKick(t *testing.T) {
	t.Parallel()
	h := newHarness(t, apiConfig(nil), signal.Options{}, withAPI)
	cs := h.joinRoom(t, "kick", 3)
	a, b, c := cs[0], cs[1], cs[2]
	other := h.joinRoom(t, "other", 1)[0]

	h.call(t, "DELETE", "/api/rooms/kick/peers/"+string(b.id), "").expectStatus(t, http.StatusNoContent, "")
	b.expectClose(wire.CloseKicked)
	for _, x := range []*client{a, c} {
		if m := x.expect(wire.TypePeerLeft); m.ID != b.id || m.Reason != wire.ReasonKicked {
			t.Errorf("got %s, want peer-left %s kicked", describe(m), b.id)
		}
	}
	h.logs.wait(t, func(r logRecord) bool {
		return r.msg == "peer kicked" && r.attrs["peer"] == string(b.id) && r.attrs["room"] == "kick"
	})
	if code := h.waitClosed(t, b.id); code != wire.CloseKicked {
		t.Errorf("server logged close %d", code)
	}

	// Its resume token is void: a join with it is a new session.
	b2 := h.dial(t)
	w := b2.join("kick", "resume", b.welcome.Resume)
	if w.Resumed || w.ID == b.id {
		t.Fatalf("a kicked peer resumed: %s", describe(w))
	}
	for _, x := range []*client{a, c} {
		if m := x.expect(wire.TypePeerJoined); m.Peer.ID != w.ID {
			t.Errorf("got %s, want peer-joined %s", describe(m), w.ID)
		}
	}

	h.call(t, "DELETE", "/api/rooms/kick/peers/"+string(b.id), "").expectStatus(t, http.StatusNotFound, "unknown-peer")
	h.call(t, "DELETE", "/api/rooms/other/peers/"+string(a.id), "").expectStatus(t, http.StatusNotFound, "unknown-peer")
	h.call(t, "DELETE", "/api/rooms/kick/peers/"+string(other.id), "").expectStatus(t, http.StatusNotFound, "unknown-peer")
	h.call(t, "DELETE", "/api/rooms/kick/peers/nobody", "").expectStatus(t, http.StatusNotFound, "unknown-peer")
	h.call(t, "DELETE", "/api/rooms/nowhere/peers/nobody", "").expectStatus(t, http.StatusNotFound, "unknown-peer")
	h.call(t, "DELETE", "/api/rooms/kick/peers/"+strings.Repeat("p", wire.MaxPeerIDLen+1), "").expectStatus(t, http.StatusNotFound, "unknown-peer")
	for _, x := range []*client{a, c, b2, other} {
		x.quiet()
	}
	if d := h.room(t, "kick"); len(d.Peers) != 3 {
		t.Errorf("room after the kick: %+v", d)
	}
}

// TestAPIKickDetached: a peer waiting out its grace is kicked the same
// way: the others get peer-left kicked at once, and it cannot resume.
func TestAPIKickDetached(t *testing.T) {
	t.Parallel()
	h := newHarness(t, apiConfig(nil), signal.Options{}, withAPI)
	cs := h.joinRoom(t, "detached", 2)
	a, b := cs[0], cs[1]
	b.close()
	h.waitClosed(t, b.id)
	h.call(t, "DELETE", "/api/rooms/detached/peers/"+string(b.id), "").expectStatus(t, http.StatusNoContent, "")
	if m := a.expect(wire.TypePeerLeft); m.ID != b.id || m.Reason != wire.ReasonKicked {
		t.Errorf("got %s, want peer-left kicked", describe(m))
	}
	b2 := h.dial(t)
	if w := b2.join("detached", "resume", b.welcome.Resume); w.Resumed || w.ID == b.id {
		t.Fatalf("a kicked peer resumed: %s", describe(w))
	}
	a.expect(wire.TypePeerJoined)
	a.quiet()
}

// TestAPIMessage: a server message reaches every peer of the room, from
// "server", without to; other rooms get nothing. Bad bodies get 400, a
// body over the frame limit 413, an empty room 404.
func TestAPIMessage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, apiConfig(func(c *signal.Config) { c.MaxMessageBytes = 2048 }), signal.Options{}, withAPI)
	cs := h.joinRoom(t, "news", 3)
	other := h.joinRoom(t, "other", 1)[0]

	h.call(t, "POST", "/api/rooms/news/messages", `{"data": {"text": "hello all", "n": [1, 2]}}`).expectStatus(t, http.StatusAccepted, "")
	for _, c := range cs {
		f := c.nextRaw()
		if f.msg.Type != wire.TypeMessage || f.msg.From != wire.ServerID || f.msg.To != "" {
			t.Fatalf("got %s, want a message from server", f.raw)
		}
		if got := canonical(t, f.msg.Data); got != `{"n":[1,2],"text":"hello all"}` {
			t.Errorf("data %s", got)
		}
	}
	h.logs.wait(t, func(r logRecord) bool { return r.msg == "server message sent" && r.attrs["room"] == "news" })

	// data may be any JSON value, null included.
	h.call(t, "POST", "/api/rooms/news/messages", `{"data": null}`).expectStatus(t, http.StatusAccepted, "")
	for _, c := range cs {
		if m := c.expect(wire.TypeMessage); m.From != wire.ServerID || string(m.Data) != "null" {
			t.Errorf("got %s, want data null", describe(m))
		}
	}

	for name, body := range map[string]string{
		"empty":            ``,
		"not JSON":         `hello`,
		"array":            `[{"data": 1}]`,
		"missing data":     `{"date": 1}`,
		"trailing garbage": `{"data": 1} x`,
		"two objects":      `{"data": 1}{"data": 2}`,
		"truncated":        `{"data": `,
	} {
		r := h.call(t, "POST", "/api/rooms/news/messages", body)
		if r.status != http.StatusBadRequest {
			t.Errorf("%s: HTTP %d %q, want 400", name, r.status, r.body)
			continue
		}
		if code, _ := r.apiError(t); code != "bad-request" {
			t.Errorf("%s: code %q", name, code)
		}
	}
	big := `{"data": "` + strings.Repeat("x", 2048) + `"}`
	h.call(t, "POST", "/api/rooms/news/messages", big).expectStatus(t, http.StatusRequestEntityTooLarge, "too-large")
	h.call(t, "POST", "/api/rooms/empty/messages", `{"data": 1}`).expectStatus(t, http.StatusNotFound, "unknown-room")
	h.call(t, "POST", "/api/rooms/bad%20room/messages", `{"data": 1}`).expectStatus(t, http.StatusBadRequest, "bad-request")

	// A detached peer gets it on resume, like any message.
	a := cs[0]
	a.close()
	h.waitClosed(t, a.id)
	h.call(t, "POST", "/api/rooms/news/messages", `{"data": "while away"}`).expectStatus(t, http.StatusAccepted, "")
	a2 := h.dial(t)
	a2.join("news", "resume", a.welcome.Resume)
	if m := a2.expect(wire.TypeMessage); m.From != wire.ServerID || string(m.Data) != `"while away"` {
		t.Errorf("resumed peer got %s", describe(m))
	}
	for _, c := range append(cs[1:], a2, other) {
		if c != a2 && c != other {
			c.expect(wire.TypeMessage)
		}
		c.quiet()
	}
}

// TestAPIKickRevokesTURN: on a whole node with the bundled TURN server, a
// kicked peer's TURN credentials stop being accepted for new allocations,
// while another peer's still are.
func TestAPIKickRevokesTURN(t *testing.T) {
	t.Parallel()
	node := apptest.Start(t, func(c *app.Config) { c.Signal.AdminToken = testAdminToken })
	victim, victimICE := joinNode(t, node, "turn")
	_, otherICE := joinNode(t, node, "turn")

	if err := allocate(t, victimICE); err != nil {
		t.Fatalf("allocation before the kick: %v", err)
	}
	req, err := http.NewRequestWithContext(t.Context(), "DELETE", node.URL()+"/api/rooms/turn/peers/"+string(victim.id), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("kick: HTTP %d", resp.StatusCode)
	}
	if code, _ := victim.closed(); code != wire.CloseKicked {
		t.Errorf("kicked peer closed with %d", code)
	}
	if err := allocate(t, victimICE); err == nil {
		t.Error("a kicked peer's TURN credential made a new allocation")
	}
	if err := allocate(t, otherICE); err != nil {
		t.Errorf("another peer's allocation after the kick: %v", err)
	}
}

// joinNode joins room on a whole node and returns the client with the
// TURN server (udp URL) of its welcome.
func joinNode(t *testing.T, node *app.App, room string) (*client, wire.ICEServer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	d := &websocket.Dialer{Subprotocols: []string{wire.Subprotocol}, HandshakeTimeout: wait}
	ws, _, err := d.DialContext(ctx, node.WSURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, ws: ws, frames: make(chan frame, 64), stop: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(c.close)
	c.startReading()
	c.join(room)
	for _, s := range c.welcome.ICEServers {
		for _, u := range s.URLs {
			if strings.HasPrefix(u, "turn:") && strings.HasSuffix(u, "?transport=udp") {
				return c, wire.ICEServer{URLs: []string{u}, Username: s.Username, Credential: s.Credential}
			}
		}
	}
	t.Fatalf("welcome without a TURN udp URL: %+v", c.welcome.ICEServers)
	return nil, wire.ICEServer{}
}

// allocate asks the TURN server of ice for a relay with its credential,
// with pion's TURN client over UDP, and releases it.
func allocate(t *testing.T, ice wire.ICEServer) error {
	t.Helper()
	addr := strings.TrimSuffix(strings.TrimPrefix(ice.URLs[0], "turn:"), "?transport=udp")
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	logs := logging.NewDefaultLoggerFactory()
	logs.DefaultLogLevel = logging.LogLevelDisabled
	tc, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: addr,
		TURNServerAddr: addr,
		Conn:           conn,
		Username:       ice.Username,
		Password:       ice.Credential,
		Realm:          "huddle",
		LoggerFactory:  logs,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := tc.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := tc.Allocate()
	if err != nil {
		return err
	}
	if relay == nil {
		return errors.New("no relay")
	}
	return relay.Close()
}
