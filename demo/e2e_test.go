package demo_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/huddle-rtc/huddle/internal/app"
	"github.com/huddle-rtc/huddle/internal/apptest"
	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// TestTwoTabs puts two tabs in one room: each plays the other's video, over
// a direct path, and through the bundled TURN server with &relay=1.
// Screenshots of the call go to the folder named in the log.
func TestTwoTabs(t *testing.T) {
	t.Parallel()
	for _, relay := range []bool{false, true} {
		t.Run(map[bool]string{false: "direct", true: "relay"}[relay], func(t *testing.T) {
			t.Parallel()
			n := apptest.Start(t, nil)
			b := newBrowser(t)
			room := roomName("two")
			extra := func(name string) url.Values {
				v := url.Values{"name": {name}}
				if relay {
					v.Set("relay", "1")
				}
				return v
			}
			alice := openTab(t, b, "alice", pageURL(n.URL(), room, extra("alice")))
			aliceID := alice.joined()
			bob := openTab(t, b, "bob", pageURL(n.URL(), room, extra("bob")))
			bobID := bob.joined()
			seen := map[*tab]remoteTile{alice: alice.waitPlaying(bobID), bob: bob.waitPlaying(aliceID)}
			want := map[*tab]string{alice: "bob", bob: "alice"}
			for tb, tl := range seen {
				if tl.Name != want[tb] {
					t.Errorf("%s's tile is named %q, want %q", tb.name, tl.Name, want[tb])
				}
			}
			wantPair := "host"
			if relay {
				wantPair = "relay"
			}
			for tb, id := range map[*tab]string{alice: bobID, bob: aliceID} {
				tb.waitFor("the diagnostics to show a "+wantPair+" pair",
					`document.querySelector(`+tileSel(id)+`).dataset.pair === "`+wantPair+`"`, 10*time.Second)
				pair := eval[string](tb, `(async () => {
  const s = await huddleDemo.client.peers.get(`+jsString(id)+`).stats();
  return s.local + "/" + s.remote;
})()`)
				if relay && pair != "relay/relay" {
					t.Errorf("%s: selected pair %s, want relay/relay with iceTransportPolicy relay", tb.name, pair)
				}
				t.Logf("%s: selected candidate pair %s", tb.name, pair)
			}
			if got := eval[bool](alice, `document.getElementById("relay").checked`); got != relay {
				t.Errorf("the relay-only box is %v, want %v from the URL", got, relay)
			}
			dir := screenshotDir(t)
			alice.screenshot(dir, "alice")
			bob.screenshot(dir, "bob")
			t.Logf("screenshots of the two-party call: %s", dir)
		})
	}
}

// jsRecord starts recording the client's events in window.__events.
const jsRecord = `(() => {
  window.__events = [];
  for (const type of ["peer-joined", "peer-left", "reconnecting", "welcome", "closed"]) {
    huddleDemo.client.addEventListener(type, (e) => {
      const d = e.detail || {};
      __events.push({type, id: d.id || (d.peer && d.peer.id) || "", resumed: d.resumed === true, reason: d.reason || ""});
    });
  }
  return true;
})()`

type clientEvent struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	Resumed bool   `json:"resumed"`
	Reason  string `json:"reason"`
}

// TestResume cuts one tab's signaling connection while a call runs: the
// server drops it (no close frame, as a network blip), or the page asks
// huddle.js to reconnect. The tab resumes its session, the other tab sees
// no peer-left, media keeps flowing, and chat still crosses.
func TestResume(t *testing.T) {
	t.Parallel()
	cuts := []struct {
		name string
		cut  func(t *testing.T, n *app.App, bob *tab, bobID string)
	}{
		{"server-drop", func(t *testing.T, n *app.App, _ *tab, bobID string) {
			if !n.Signal().DropConnection(wire.PeerID(bobID)) {
				t.Fatalf("the server has no connection for bob (%s)", bobID)
			}
		}},
		{"client-reconnect", func(t *testing.T, _ *app.App, bob *tab, _ string) {
			eval[bool](bob, `(huddleDemo.client.reconnect(), true)`)
		}},
	}
	for _, cut := range cuts {
		t.Run(cut.name, func(t *testing.T) {
			t.Parallel()
			n := apptest.Start(t, nil)
			b := newBrowser(t)
			room := roomName("resume")
			alice := openTab(t, b, "alice", pageURL(n.URL(), room, url.Values{"name": {"alice"}}))
			aliceID := alice.joined()
			bob := openTab(t, b, "bob", pageURL(n.URL(), room, url.Values{"name": {"bob"}}))
			bobID := bob.joined()
			alice.waitPlaying(bobID)
			bob.waitPlaying(aliceID)
			eval[bool](alice, jsRecord)
			eval[bool](bob, jsRecord)

			cut.cut(t, n, bob, bobID)
			bob.waitFor("a resumed welcome", `__events.some((e) => e.type === "welcome" && e.resumed)`, 20*time.Second)
			if id := eval[string](bob, `huddleDemo.client.id`); id != bobID {
				t.Errorf("bob's id after resume: %s, want %s", id, bobID)
			}
			evs := eval[[]clientEvent](bob, `__events`)
			if len(evs) == 0 || evs[0].Type != "reconnecting" {
				t.Errorf("bob's events after the cut: %+v; want reconnecting, then the resumed welcome", evs)
			}

			// Media keeps flowing both ways on the same peer connections.
			alice.waitFrames(bobID, 15)
			bob.waitFrames(aliceID, 15)

			// Signaling works after the resume: a chat message crosses.
			sendChat(t, bob, "back again")
			alice.waitFor("bob's chat after the resume", `[...document.querySelectorAll("#chat-log li.them")].some((li) => li.textContent === "bob: back again")`, 10*time.Second)

			for _, e := range eval[[]clientEvent](alice, `__events`) {
				t.Errorf("alice saw %+v while bob resumed; want nothing", e)
			}
			if st := alice.peerTile(bobID).State; st != "connected" {
				t.Errorf("alice's tile for bob: state %s, want connected", st)
			}
		})
	}
}

func sendChat(t *testing.T, tb *tab, text string) {
	t.Helper()
	eval[bool](tb, `(() => {
  document.getElementById("chat-input").value = `+jsString(text)+`;
  document.getElementById("chat-send").click();
  return true;
})()`)
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestRoomFull(t *testing.T) {
	t.Parallel()
	n := apptest.Start(t, func(c *app.Config) { c.Signal.MaxPeersPerRoom = 1 })
	b := newBrowser(t)
	room := roomName("full")
	alice := openTab(t, b, "alice", pageURL(n.URL(), room, url.Values{"name": {"alice"}}))
	alice.joined()
	bob := openTab(t, b, "bob", pageURL(n.URL(), room, url.Values{"name": {"bob"}}))
	bob.waitFor("the room-full notice", `[...document.querySelectorAll(".notice.error")].some((n) => n.textContent.includes("The room is full"))`, 15*time.Second)
	if st := eval[string](bob, `document.getElementById("status").dataset.state`); st != "closed" {
		t.Errorf("bob's status after room-full: %s, want closed (no retry loop)", st)
	}
	if tiles := alice.tiles(); len(tiles) != 0 {
		t.Errorf("alice has tiles %+v, want none", tiles)
	}
}

// jsNoDevices makes the page find no camera and no microphone.
const jsNoDevices = `navigator.mediaDevices.getUserMedia = () =>
  Promise.reject(new DOMException("Requested device not found", "NotFoundError"));`

// TestReceiveOnly joins a peer without camera or microphone, once as the
// newcomer (its offer only asks to receive) and once as the peer already
// there (it answers an offer with nothing to send).
func TestReceiveOnly(t *testing.T) {
	t.Parallel()
	for _, newcomer := range []bool{true, false} {
		t.Run(map[bool]string{true: "newcomer", false: "answerer"}[newcomer], func(t *testing.T) {
			t.Parallel()
			n := apptest.Start(t, nil)
			b := newBrowser(t)
			room := roomName("recvonly")
			open := func(name, script string) (*tab, string) {
				tb := openTabWith(t, b, name, pageURL(n.URL(), room, url.Values{"name": {name}}), script)
				return tb, tb.joined()
			}
			var alice, bob *tab
			var aliceID, bobID string
			if newcomer {
				alice, aliceID = open("alice", "")
				bob, bobID = open("bob", jsNoDevices)
			} else {
				bob, bobID = open("bob", jsNoDevices)
				alice, aliceID = open("alice", "")
			}
			bob.waitFor("the receive-only notice", `[...document.querySelectorAll(".notice.warn")].some((n) => n.textContent.includes("Receive-only"))`, 5*time.Second)
			bob.waitPlaying(aliceID)
			alice.waitFor("bob connected", `document.querySelector(`+tileSel(bobID)+`).dataset.state === "connected"`, 20*time.Second)
			if tl := alice.peerTile(bobID); tl.Width != 0 {
				t.Errorf("alice receives %dx%d video from a peer without a camera", tl.Width, tl.Height)
			}
			if !eval[bool](alice, `document.querySelector(`+tileSel(bobID)+`).classList.contains("novideo")`) {
				t.Error(`alice's tile for bob is not marked "novideo"`)
			}
			if got := eval[string](bob, `document.getElementById("local-badge").textContent`); got != "receive-only" {
				t.Errorf("bob's own tile says %q, want receive-only", got)
			}
		})
	}
}

// TestGlare makes both tabs restart ICE at the same moment, so that both
// offer at once: perfect negotiation must settle it (the impolite side's
// offer wins), and both must end up with new ICE credentials and media.
func TestGlare(t *testing.T) {
	t.Parallel()
	n := apptest.Start(t, nil)
	b := newBrowser(t)
	room := roomName("glare")
	alice := openTab(t, b, "alice", pageURL(n.URL(), room, url.Values{"name": {"alice"}}))
	aliceID := alice.joined()
	bob := openTab(t, b, "bob", pageURL(n.URL(), room, url.Values{"name": {"bob"}}))
	bobID := bob.joined()
	alice.waitPlaying(bobID)
	bob.waitPlaying(aliceID)

	jsUfrag := func(id string) string {
		return `(() => {
  const pc = huddleDemo.client.peers.get(` + jsString(id) + `).pc;
  return /a=ice-ufrag:(\S+)/.exec(pc.localDescription.sdp)[1] + " " + /a=ice-ufrag:(\S+)/.exec(pc.remoteDescription.sdp)[1];
})()`
	}
	const jsErrors = `window.__errors = []; huddleDemo.client.addEventListener("peer-error", (e) => __errors.push(String(e.detail.error))); true`
	eval[bool](alice, jsErrors)
	eval[bool](bob, jsErrors)
	aliceBefore, bobBefore := eval[string](alice, jsUfrag(bobID)), eval[string](bob, jsUfrag(aliceID))

	// Both restart in the same task turn of their pages; the offers cross
	// in the server.
	var wg sync.WaitGroup
	for _, tb := range []*tab{alice, bob} {
		wg.Go(func() { eval[bool](tb, `huddleDemo.client.restartIce(); true`) })
	}
	wg.Wait()

	for _, c := range []struct {
		tb     *tab
		peer   string
		before string
	}{{alice, bobID, aliceBefore}, {bob, aliceID, bobBefore}} {
		c.tb.waitFor("new ICE credentials on both sides", `(() => {
  const pc = huddleDemo.client.peers.get(`+jsString(c.peer)+`).pc;
  if (pc.signalingState !== "stable" || pc.connectionState !== "connected") return false;
  return `+jsUfrag(c.peer)+`.split(" ").every((u, i) => u !== `+jsString(c.before)+`.split(" ")[i]);
})()`, 20*time.Second)
		c.tb.waitFrames(c.peer, 15)
		if errs := eval[[]string](c.tb, `__errors`); len(errs) > 0 {
			t.Errorf("%s: peer errors during glare: %v", c.tb.name, errs)
		}
	}
}

// TestRefusedHandshake has the server refuse the page's WebSocket before
// the upgrade. The browser sees only a failed socket; the page must still
// say what to check, and stop retrying.
func TestRefusedHandshake(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(*app.Config)
		want   string
	}{
		{"origin", func(c *app.Config) { c.Signal.AllowedOrigins = []string{"https://app.example.com"} }, "HUDDLE_ALLOWED_ORIGINS"},
		{"token", func(c *app.Config) { c.Signal.JWTSecret = "a-test-secret-of-at-least-32-bytes!!" }, "token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := apptest.Start(t, tc.mutate)
			b := newBrowser(t)
			tb := openTab(t, b, "alice", pageURL(n.URL(), roomName("refused"), nil))
			tb.waitFor("an error notice naming "+tc.want, `[...document.querySelectorAll(".notice.error")].some((n) => n.textContent.includes(`+jsString(tc.want)+`))`, 20*time.Second)
			if st := eval[string](tb, `document.getElementById("status").dataset.state`); st != "closed" {
				t.Errorf("status after the refusal: %s, want closed", st)
			}
			if !eval[bool](tb, `huddleDemo.client === null`) {
				t.Error("the page keeps a client after a final refusal")
			}
			dir := screenshotDir(t)
			tb.screenshot(dir, "refused")
			t.Logf("screenshot of the refusal: %s", dir)
		})
	}
}

// TestToken joins with tokens in the URL fragment: the page presents them
// as the bearer subprotocol, and the token's name claim wins over &name=.
func TestToken(t *testing.T) {
	t.Parallel()
	secret := "a-test-secret-of-at-least-32-bytes!!"
	n := apptest.Start(t, func(c *app.Config) { c.Signal.JWTSecret = secret })
	room := roomName("token")
	mint := func(c signal.Claims) string {
		tok, err := signal.MintToken([]byte(secret), c, time.Minute, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	b := newBrowser(t)
	alice := openTab(t, b, "alice", pageURL(n.URL(), room, url.Values{"name": {"alice"}})+"#token="+mint(signal.Claims{Subject: "u1", Room: room, Name: "Ada"}))
	aliceID := alice.joined()
	bob := openTab(t, b, "bob", pageURL(n.URL(), room, url.Values{"name": {"bob"}})+"#token="+mint(signal.Claims{Subject: "u2", Room: "*"}))
	bob.joined()
	if tl := bob.waitPlaying(aliceID); tl.Name != "Ada" {
		t.Errorf("bob sees alice as %q, want Ada from her token", tl.Name)
	}
}

// jsDeafSockets lets a test silence a WebSocket of the page, as a network
// that vanished without closing it would: window.__deafen(i) drops every
// frame the i-th socket opened by the page receives from then on.
const jsDeafSockets = `(() => {
  const Native = window.WebSocket;
  const opened = [];
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      opened.push(this);
    }
    set onmessage(fn) {
      super.onmessage = fn && ((ev) => { if (!this.__deaf) fn.call(this, ev); });
    }
    get onmessage() { return super.onmessage; }
  };
  window.__deafen = (i) => { opened[i].__deaf = true; return opened.length; };
})();`

// TestClientPingTimeout uses huddle.js as an app would, with short ping
// settings and no media: when a socket goes silent, the client's pings
// find it dead, and it reconnects and resumes; the other client sees
// nothing.
func TestClientPingTimeout(t *testing.T) {
	t.Parallel()
	n := apptest.Start(t, nil)
	b := newBrowser(t)
	room := roomName("ping")
	// No autojoin: the page's own client stays idle.
	tb := openTabWith(t, b, "app", n.URL()+"/?room="+room, jsDeafSockets)
	ids := eval[[]string](tb, `(async () => {
  const { Huddle } = await import("/huddle.js");
  const url = location.origin.replace(/^http/, "ws") + "/ws";
  const make = (name) => new Huddle({ url, room: `+jsString(room)+`, name, pingInterval: 200, pingTimeout: 1000 });
  window.__a = make("a");
  await __a.join();
  window.__b = make("b");
  await __b.join();
  window.__events = [];
  window.__got = [];
  for (const [name, c] of [["a", __a], ["b", __b]]) {
    for (const type of ["peer-left", "reconnecting", "welcome", "closed"]) {
      c.addEventListener(type, (e) => __events.push({ client: name, type, resumed: !!e.detail.resumed, reason: e.detail.reason || "" }));
    }
  }
  __b.addEventListener("message", (e) => __got.push(e.detail.data));
  return [__a.id, __b.id];
})()`)
	if got := eval[int](tb, `__deafen(1)`); got != 2 {
		t.Fatalf("the page opened %d sockets, want 2", got)
	}
	tb.waitFor("b to resume", `__events.some((e) => e.client === "b" && e.type === "welcome" && e.resumed)`, 15*time.Second)
	if id := eval[string](tb, `__b.id`); id != ids[1] {
		t.Errorf("b's id after resuming: %s, want %s", id, ids[1])
	}
	eval[bool](tb, `(__a.send({ after: "resume" }, __b.id), true)`)
	tb.waitFor("a's message on b's new socket", `__got.some((d) => d.after === "resume")`, 10*time.Second)
	want := []clientEvent{{Type: "reconnecting", Reason: "ping timeout"}, {Type: "welcome", Resumed: true}}
	var got []clientEvent
	for _, e := range eval[[]struct {
		Client  string `json:"client"`
		Type    string `json:"type"`
		Resumed bool   `json:"resumed"`
		Reason  string `json:"reason"`
	}](tb, `__events`) {
		if e.Client == "a" {
			t.Errorf("a saw %s while b resumed; want nothing", e.Type)
			continue
		}
		got = append(got, clientEvent{Type: e.Type, Resumed: e.Resumed, Reason: e.Reason})
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("b's events: %+v, want %+v", got, want)
	}
	eval[bool](tb, `(__a.leave(), __b.leave(), true)`)
}
