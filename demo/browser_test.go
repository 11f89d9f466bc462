package demo_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// Browser tests drive Debian's chromium through chromedp against a whole
// huddle node on loopback. Chromium's fake camera and microphone stand in for
// devices (--use-fake-device-for-media-stream), and its fake permission UI
// grants them (--use-fake-ui-for-media-stream), which also makes it expose
// real host addresses instead of mDNS names.

// chromium finds the browser, or skips (fails when CI=true).
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HUDDLE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed: the browser tests need the Debian package chromium (apt-get install chromium)")
	}
	t.Skip("chromium is not installed; install the Debian package chromium to run the browser tests")
	return ""
}

// browserSlots bounds the Chromium processes running at once: each encodes
// and decodes video in software, and the machine may have two cores.
var browserSlots = make(chan struct{}, 2)

// newBrowser starts one Chromium with a fresh profile for the test and
// returns its context; tabs are children of it. Everything is stopped when
// the test ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromium(t)
	browserSlots <- struct{}{}
	t.Cleanup(func() { <-browserSlots })
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.WindowSize(1280, 800),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		// Every tab plays video: none may be throttled as hidden.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		bcancel()
		acancel()
	})
	// The first run starts the browser and ties it to the context it is
	// given, so it must be bctx itself, not a shorter-lived child.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// tab is one page of the demo in its own window.
type tab struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu         sync.Mutex
	exceptions []string
}

// openTab opens url in a new window of the browser. The page's console goes
// to the test log; uncaught exceptions fail the test.
func openTab(t *testing.T, browser context.Context, name, url string) *tab {
	t.Helper()
	return openTabWith(t, browser, name, url, "")
}

// openTabWith is openTab with a script that runs before the page's own
// scripts in every document of the tab.
func openTabWith(t *testing.T, browser context.Context, name, url, initScript string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	tb := &tab{t: t, name: name, ctx: ctx}
	console := chromedp.Console(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for m, err := range console {
			if err != nil {
				return
			}
			t.Logf("[%s console] %s", name, m)
			if m.IsException() {
				tb.mu.Lock()
				tb.exceptions = append(tb.exceptions, m.Text)
				tb.mu.Unlock()
			}
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		tb.mu.Lock()
		defer tb.mu.Unlock()
		for _, e := range tb.exceptions {
			t.Errorf("%s: uncaught exception in the page: %s", name, e)
		}
	})
	nav, ncancel := context.WithTimeout(ctx, 20*time.Second)
	defer ncancel()
	if initScript != "" {
		if _, err := chromedp.Call(nav, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: initScript}); err != nil {
			t.Fatalf("%s: add init script: %v", name, err)
		}
	}
	if err := chromedp.Do(nav, chromedp.Navigate(url)); err != nil {
		t.Fatalf("%s: open %s: %v", name, url, err)
	}
	return tb
}

// eval evaluates a JavaScript expression in the page (promises awaited).
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("%s: evaluate %s: %v\npage: %s", tb.name, expr, err, tb.describe())
	}
	return v
}

// waitFor polls a JavaScript predicate until it is truthy, failing the test
// with the page's state when it is not within the timeout.
func (tb *tab) waitFor(what, predicate string, timeout time.Duration) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		tb.t.Fatalf("%s: waiting %s for %s: %v\npage: %s", tb.name, timeout, what, err, tb.describe())
	}
}

// describe summarises the page's state for failure messages.
func (tb *tab) describe() string {
	ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](jsDescribe))
	if err != nil {
		return fmt.Sprintf("(cannot describe the page: %v)", err)
	}
	return s
}

const jsDescribe = `JSON.stringify({
  url: location.href,
  state: window.huddleDemo && huddleDemo.client ? huddleDemo.client.state : null,
  id: window.huddleDemo && huddleDemo.client ? huddleDemo.client.id : null,
  status: document.getElementById("status").textContent,
  notices: [...document.querySelectorAll(".notice span")].map((n) => n.textContent),
  tiles: [...document.querySelectorAll("#grid [data-peer-id]")].map((t) => {
    const v = t.querySelector("video");
    return {id: t.dataset.peerId, state: t.dataset.state, pair: t.dataset.pair,
      name: t.querySelector(".name").textContent, width: v.videoWidth, time: v.currentTime,
      frames: v.getVideoPlaybackQuality().totalVideoFrames, dropped: v.getVideoPlaybackQuality().droppedVideoFrames};
  }),
  pcs: window.huddleDemo && huddleDemo.client ? [...huddleDemo.client.peers.values()].map((p) => p.pc && {
    id: p.id, polite: p.polite, signaling: p.pc.signalingState, connection: p.pc.connectionState,
    ice: p.pc.iceConnectionState,
    ufrags: [p.pc.localDescription, p.pc.remoteDescription].map((d) => d && (/a=ice-ufrag:(\S+)/.exec(d.sdp) || [])[1]),
  }) : [],
})`

// remoteTile describes one remote peer's tile.
type remoteTile struct {
	ID     string  `json:"id"`
	State  string  `json:"state"`
	Pair   string  `json:"pair"`
	Name   string  `json:"name"`
	Width  int     `json:"width"`
	Height int     `json:"height"`
	Frames int     `json:"frames"`
	Time   float64 `json:"time"`
}

func (tb *tab) tiles() []remoteTile {
	tb.t.Helper()
	return eval[[]remoteTile](tb, `[...document.querySelectorAll("#grid [data-peer-id]")].map((t) => {
  const v = t.querySelector("video");
  return {id: t.dataset.peerId, state: t.dataset.state, pair: t.dataset.pair,
    name: t.querySelector(".name").textContent, width: v.videoWidth, height: v.videoHeight,
    frames: v.getVideoPlaybackQuality().totalVideoFrames, time: v.currentTime};
})`)
}

// peerTile returns the tile of one remote peer.
func (tb *tab) peerTile(id string) remoteTile {
	tb.t.Helper()
	for _, tl := range tb.tiles() {
		if tl.ID == id {
			return tl
		}
	}
	tb.t.Fatalf("%s: no tile for peer %s\npage: %s", tb.name, id, tb.describe())
	return remoteTile{}
}

// tileSel is the CSS selector of a remote peer's tile.
func tileSel(id string) string {
	b, _ := json.Marshal(`#grid [data-peer-id="` + id + `"]`)
	return string(b)
}

// joined waits until the page is in its room and returns its peer id.
func (tb *tab) joined() string {
	tb.t.Helper()
	tb.waitFor("joining the room", `window.huddleDemo && huddleDemo.client && huddleDemo.client.state === "joined"`, 15*time.Second)
	return eval[string](tb, `huddleDemo.client.id`)
}

// waitPlaying waits until the tile of peer id is connected and plays video
// whose frames advance.
func (tb *tab) waitPlaying(id string) remoteTile {
	tb.t.Helper()
	sel := tileSel(id)
	tb.waitFor("peer "+id+" connected with video", `(() => {
  const t = document.querySelector(`+sel+`);
  return t && t.dataset.state === "connected" && t.querySelector("video").videoWidth > 0;
})()`, 30*time.Second)
	tb.waitFrames(id, 10)
	return tb.peerTile(id)
}

// waitFrames waits until n more frames of peer id's video were rendered and
// its playback time moved.
func (tb *tab) waitFrames(id string, n int) {
	tb.t.Helper()
	before := tb.peerTile(id)
	tb.waitFor(fmt.Sprintf("%d more video frames from %s", n, id), fmt.Sprintf(`(() => {
  const v = document.querySelector(%s + " video");
  return v && v.getVideoPlaybackQuality().totalVideoFrames >= %d && v.currentTime > %g;
})()`, tileSel(id), before.Frames+n, before.Time), 20*time.Second)
}

// screenshot writes the page as PNG to dir/name.png.
func (tb *tab) screenshot(dir, name string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Fatalf("%s: screenshot: %v", tb.name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

// screenshotDir is where tests leave screenshots for people to look at:
// $HUDDLE_SCREENSHOT_DIR, or huddle-screenshots/<test> in the temp dir. Each
// run overwrites the last.
func screenshotDir(t *testing.T) string {
	t.Helper()
	base := os.Getenv("HUDDLE_SCREENSHOT_DIR")
	if base == "" {
		base = filepath.Join(os.TempDir(), "huddle-screenshots")
	}
	dir := filepath.Join(base, strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func roomName(prefix string) string {
	return prefix + "-" + strings.ToLower(rand.Text()[:10])
}

func pageURL(base, room string, extra url.Values) string {
	q := url.Values{"room": {room}, "autojoin": {"1"}}
	for k, v := range extra {
		q[k] = v
	}
	return base + "/?" + q.Encode()
}
