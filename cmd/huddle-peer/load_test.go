package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/huddle-rtc/huddle/internal/app"
	"github.com/huddle-rtc/huddle/internal/apptest"
)

// loadNode starts a node for load runs: one source address may open many
// connections quickly, and peers may send faster than a person types.
func loadNode(t *testing.T) *app.App {
	t.Helper()
	return apptest.Start(t, func(c *app.Config) {
		c.Signal.MaxConnsPerIP = 0
		c.Signal.HandshakeRate = 0
		c.Signal.RateLimit = 1000
		c.Signal.RateBurst = 1000
	})
}

// runLoadJSON runs load with --json and returns its exit code and result.
func runLoadJSON(t *testing.T, args ...string) (int, map[string]any, string) {
	t.Helper()
	code, out, errOut := runCmd(t, context.Background(), append([]string{"load", "--json"}, args...)...)
	res := findEvent(jsonLines(t, out), "result")
	if res == nil {
		t.Fatalf("load printed no result (exit %d)\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	return code, res, out
}

// TestLoadSmoke is the CI smoke run: 200 peers (100 in calls, 100 idle)
// messaging for 5 s. It fails on any error or lost message, never on
// timings.
func TestLoadSmoke(t *testing.T) {
	t.Parallel()
	node := loadNode(t)
	code, res, out := runLoadJSON(t, "--url", node.WSURL(), "--rooms", "50", "--peers-per-room", "2",
		"--rate", "20", "--idle", "100", "--ramp", "1s", "--duration", "5s", "--settle", "0s",
		"--metrics", node.MetricsURL(), "--progress", "1s")
	if code != exitOK || res["ok"] != true {
		t.Fatalf("load: exit %d\n%s", code, out)
	}
	if errs := res["errors"].(map[string]any); len(errs) != 0 {
		t.Errorf("errors: %v", errs)
	}
	num := func(k string) float64 { return res[k].(float64) }
	if num("joined") != 200 || num("ready") != 100 {
		t.Errorf("joined %v of 200, ready %v of 100", res["joined"], res["ready"])
	}
	if num("sent") == 0 || num("received") != num("sent") || num("lost") != 0 || num("reordered") != 0 {
		t.Errorf("sent %v, received %v, lost %v, reordered %v", res["sent"], res["received"], res["lost"], res["reordered"])
	}
	for _, k := range []string{"joinMs", "relayMs", "signalingMs"} {
		if lat := res[k].(map[string]any); lat["count"].(float64) == 0 || lat["p99"].(float64) < lat["p50"].(float64) {
			t.Errorf("%s: %v", k, lat)
		}
	}
	if closes := res["closes"].(map[string]any); closes["1000"] != float64(200) {
		t.Errorf("closes %v, want 200 normal closes after leave", closes)
	}
	srv, ok := res["server"].(map[string]any)
	if !ok || srv["error"] != nil || srv["rssAfter"].(float64) <= 0 || srv["peers"] != float64(100) {
		t.Errorf("server memory not measured: %v", res["server"])
	}
	if findEvent(jsonLines(t, out), "progress") == nil {
		t.Errorf("no progress line in %s", out)
	}
}

// TestLoadReportsFailures: a refused handshake and a room too small are
// reported by kind, and the run fails.
func TestLoadReportsFailures(t *testing.T) {
	t.Parallel()
	node := apptest.Start(t, func(c *app.Config) {
		c.Signal.MaxConnsPerIP = 0
		c.Signal.HandshakeRate = 0
		c.Signal.MaxPeersPerRoom = 2
	})
	code, res, out := runLoadJSON(t, "--url", node.WSURL(), "--rooms", "2", "--peers-per-room", "3",
		"--rate", "5", "--duration", "200ms", "--ramp", "0s", "--timeout", "2s", "--progress", "0")
	errs := res["errors"].(map[string]any)
	if code != exitFailed || res["ok"] != false || errs["error-room-full"] != float64(2) {
		t.Errorf("exit %d, errors %v; want 1 and two room-full\n%s", code, errs, out)
	}
	code, res, _ = runLoadJSON(t, "--url", apptest.ClosedURL(t), "--rooms", "0", "--idle", "3", "--timeout", "2s",
		"--metrics", "off", "--progress", "0")
	errs = res["errors"].(map[string]any)
	if code != exitFailed || errs["dial-refused"] != float64(3) {
		t.Errorf("closed port: exit %d, errors %v; want 1 and three dial-refused", code, errs)
	}
}

// TestLoadText checks the report people read.
func TestLoadText(t *testing.T) {
	t.Parallel()
	node := loadNode(t)
	code, out, errOut := runCmd(t, context.Background(), "load", "--url", node.URL(), "--rooms", "2",
		"--rate", "10", "--duration", "500ms", "--ramp", "100ms", "--idle", "4", "--settle", "0s")
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"OK: 8 of 8 peers joined (4 idle), 4 of 4 call peers ready",
		"relay      p50", "errors     none", "closes     1000 8", "KiB RSS per idle peer"} {
		if !strings.Contains(out, want) {
			t.Errorf("the report has no %q:\n%s", want, out)
		}
	}
}

func TestLoadUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"load"},
		{"load", "--url", "ws://x/ws", "--rooms", "0"},
		{"load", "--url", "ws://x/ws", "--peers-per-room", "1"},
		{"load", "--url", "ws://x/ws", "--rate", "-1"},
		{"load", "--url", "ws://x/ws", "--idle", "-5"},
		{"load", "--url", "ws://x/ws", "--rooms", "1000000"},
		{"load", "--url", "ws://x/ws", "--duration", "2h"},
		{"load", "--url", "ftp://x", "--rooms", "1"},
		{"load", "--url", "ws://x/ws", "extra"},
	} {
		if code, _, _ := runCmd(t, context.Background(), args...); code != exitUsage {
			t.Errorf("%q: exit code %d, want %d", args, code, exitUsage)
		}
	}
	code, _, errOut := runCmd(t, context.Background(), "load", "--help")
	for _, flag := range []string{"-rooms", "-peers-per-room", "-rate", "-idle", "-duration", "-ramp", "-json"} {
		if code != exitOK || !strings.Contains(errOut, flag) {
			t.Errorf("load --help (exit %d) does not explain %s", code, flag)
		}
	}
}

// TestHistogram: quantiles within the buckets' precision, max exact.
func TestHistogram(t *testing.T) {
	t.Parallel()
	var h histogram
	for i := 1; i <= 10000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	s := h.snapshot()
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5 * time.Millisecond}, {0.9, 9 * time.Millisecond}, {0.99, 9900 * time.Microsecond}} {
		got := s.quantile(c.q)
		if diff := float64(got-c.want) / float64(c.want); diff < -0.02 || diff > 0.02 {
			t.Errorf("p%v = %v, want %v within 2%%", c.q*100, got, c.want)
		}
	}
	if s.max != 10*time.Millisecond || s.total != 10000 {
		t.Errorf("max %v, total %d", s.max, s.total)
	}
	later := h.snapshot()
	h.record(time.Second)
	if d := h.snapshot().since(later); d.total != 1 || d.quantile(0.99) < 990*time.Millisecond {
		t.Errorf("window: total %d, p99 %v", d.total, d.quantile(0.99))
	}
	for _, v := range []int64{0, 1, 63, 64, 65, 127, 128, 1 << 40, 1<<62 + 12345} {
		if i := histIndex(v); histLow(i) > v || (i+1 < histBuckets && histLow(i+1) <= v) {
			t.Errorf("value %d in bucket %d [%d, %d)", v, i, histLow(i), histLow(i+1))
		}
	}
}

// TestParseLoadMessage reads what the server relays, and nothing else.
func TestParseLoadMessage(t *testing.T) {
	t.Parallel()
	s, n, ts, ok := parseLoadMessage([]byte(`{"type":"message","to":"A","from":"B","data":{"s":12,"n":345,"t":6789}}`))
	if !ok || s != 12 || n != 345 || ts != 6789 {
		t.Errorf("got %d %d %d %v", s, n, ts, ok)
	}
	for _, bad := range []string{
		`{"type":"message","from":"B","data":{"s":12,"n":345}}`,
		`{"type":"message","from":"B","data":{"text":"hi"}}`,
		`{"type":"candidate","data":{"s":1,"n":2,"t":3}}`,
		`{"type":"message","data":{"s":-1,"n":2,"t":3}}`,
	} {
		if _, _, _, ok := parseLoadMessage([]byte(bad)); ok {
			t.Errorf("parsed %s", bad)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(signalFrame("offer", "P"), &m); err != nil || m["sdp"] == "" {
		t.Errorf("offer frame: %v %v", m, err)
	}
	if err := json.Unmarshal(candidateFrame("P", 0, false), &m); err != nil || m["candidate"] == nil {
		t.Errorf("candidate frame: %v %v", m, err)
	}
}
