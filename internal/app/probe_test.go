package app_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/huddle-rtc/huddle/client"
	"github.com/huddle-rtc/huddle/internal/app"
	"github.com/huddle-rtc/huddle/internal/apptest"
)

// probeOn turns the probe on, at an interval long enough that the test's
// own Probe calls and the one at start-up are all that run.
func probeOn(c *app.Config) { c.ProbeInterval = time.Hour }

// probeNow runs a probe and returns its report.
func probeNow(t *testing.T, a *app.App) client.CheckReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := a.Probe(ctx)
	if (err == nil) != (res.Report.Err == nil) || res.At.IsZero() {
		t.Fatalf("probe: %v, result %+v", err, res)
	}
	return res.Report
}

// readyz returns /readyz's status and body.
func readyz(t *testing.T, a *app.App) (int, string) {
	t.Helper()
	return httpGet(t, a.URL()+"/readyz")
}

// TestProbeRelay: the probe connects its two peers through the bundled
// TURN server, relay only, and says so in metrics and /readyz.
func TestProbeRelay(t *testing.T) {
	t.Parallel()
	a := apptest.Start(t, probeOn)
	// The loop probes once at start-up.
	waitMetric(t, a.MetricsURL(), "the start-up probe", func(m metricSet) bool {
		v, _ := m.value("huddle_probe_last_run_timestamp_seconds")
		return v > 0
	})
	rep := probeNow(t, a)
	if !rep.OK || rep.PairType != "relay" || rep.Pair.Local.Type != "relay" || !strings.HasPrefix(string(rep.Room), "huddle-probe-") {
		t.Fatalf("report %+v, want ok through the relay", rep)
	}
	t.Logf("probe on loopback: connected in %v, rtt %v", rep.ConnectTime, rep.RTT)
	m := scrape(t, a.MetricsURL())
	if v := m.must(t, "huddle_probe_success"); v != 1 {
		t.Errorf("huddle_probe_success %v", v)
	}
	if v := m.must(t, "huddle_probe_runs_total", "result", "ok"); v != 2 {
		t.Errorf("huddle_probe_runs_total{ok} %v, want 2 (start-up and ours)", v)
	}
	if v := m.must(t, "huddle_probe_runs_total", "result", "turn"); v != 0 {
		t.Errorf("huddle_probe_runs_total{turn} %v", v)
	}
	if v := m.must(t, "huddle_probe_connect_seconds"); v != rep.ConnectTime.Seconds() {
		t.Errorf("huddle_probe_connect_seconds %v, report %v", v, rep.ConnectTime)
	}
	if v := m.must(t, "huddle_probe_rtt_seconds"); v <= 0 || v != rep.RTT.Seconds() {
		t.Errorf("huddle_probe_rtt_seconds %v, report %v", v, rep.RTT)
	}
	if v := m.must(t, "huddle_probe_last_run_timestamp_seconds"); time.Since(time.Unix(int64(v), 0)) > time.Minute {
		t.Errorf("last run %v", v)
	}
	if status, body := readyz(t, a); status != http.StatusOK {
		t.Errorf("readyz %d %q", status, body)
	}
	scanLabels(t, m, []string{string(rep.Room), "127.0.0.1"})
}

// TestProbeOff: without HUDDLE_PROBE_INTERVAL there is no probe and no
// huddle_probe_* series.
func TestProbeOff(t *testing.T) {
	t.Parallel()
	a := apptest.Start(t, nil)
	if _, err := a.Probe(context.Background()); !errors.Is(err, app.ErrProbeOff) {
		t.Errorf("Probe: %v, want ErrProbeOff", err)
	}
	for name := range scrape(t, a.MetricsURL()) {
		if strings.HasPrefix(name, "huddle_probe_") {
			t.Errorf("series %s with the probe off", name)
		}
	}
}

// TestProbeFailures: a probe that fails makes /readyz 503 with the stage and
// the reason, counts the stage, and a success makes the node ready again.
func TestProbeFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(*app.Config)
		stage  client.CheckStage
		reason string
	}{
		{"TURN disabled", func(c *app.Config) { c.TURN.Enabled = false }, client.StageTURN, "offered no TURN server"},
		// The relay allocates, but may not reach the peers' (loopback)
		// relay addresses. The probe's timeout is the interval's, 5 s.
		{"TURN blocked", func(c *app.Config) {
			c.TURN.AllowPeers, c.TURN.DenyPeers = nil, []string{"127.0.0.0/8"}
			c.ProbeInterval = app.MinProbeInterval
		}, client.StageICE, "no connection within 5s"},
		{"public URL unreachable", func(c *app.Config) { c.PublicURL = apptest.ClosedURL(t) }, client.StageSignaling, "connection refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := apptest.Start(t, func(c *app.Config) { probeOn(c); tc.mutate(c) })
			rep := probeNow(t, a)
			if rep.OK || rep.Stage != tc.stage {
				t.Fatalf("report %+v, want a failure at %s", rep, tc.stage)
			}
			status, body := readyz(t, a)
			if status != http.StatusServiceUnavailable || !strings.Contains(body, "relay self-probe failed") ||
				!strings.Contains(body, string(tc.stage)) || !strings.Contains(body, tc.reason) || strings.Count(body, "\n") != 1 {
				t.Errorf("readyz %d %q: want 503, one line naming %s and %q", status, body, tc.stage, tc.reason)
			}
			m := scrape(t, a.MetricsURL())
			if v := m.must(t, "huddle_probe_success"); v != 0 {
				t.Errorf("huddle_probe_success %v", v)
			}
			if v := m.must(t, "huddle_probe_runs_total", "result", string(tc.stage)); v < 1 {
				t.Errorf("huddle_probe_runs_total{%s} %v", tc.stage, v)
			}
			if v := m.must(t, "huddle_probe_runs_total", "result", "ok"); v != 0 {
				t.Errorf("huddle_probe_runs_total{ok} %v", v)
			}
			if status, _ := httpGet(t, a.URL()+"/healthz"); status != http.StatusOK {
				t.Errorf("healthz %d: a failed probe is no liveness failure", status)
			}
		})
	}
}

// TestProbePublicURL: the probe goes through HUDDLE_PUBLIC_URL (here
// another node, with its TURN server), and fails once that TURN server is
// down.
func TestProbePublicURL(t *testing.T) {
	t.Parallel()
	good := apptest.Start(t, nil)
	// The probe goes through HUDDLE_PUBLIC_URL, here the other node.
	a := apptest.Start(t, func(c *app.Config) {
		probeOn(c)
		c.TURN.Enabled = false
		c.PublicURL = good.URL()
	})
	rep := probeNow(t, a)
	if !rep.OK || rep.URL != good.URL() || rep.PairType != "relay" {
		t.Fatalf("probe via %s: %+v", good.URL(), rep)
	}
	if status, body := readyz(t, a); status != http.StatusOK {
		t.Fatalf("readyz %d %q", status, body)
	}
	if err := good.TURN().Close(); err != nil {
		t.Fatal(err)
	}
	if rep := probeNow(t, a); rep.OK || rep.Stage != client.StageTURN {
		t.Fatalf("with the TURN server down: %+v", rep)
	}
	if status, _ := readyz(t, a); status != http.StatusServiceUnavailable {
		t.Fatalf("readyz %d after a failed probe", status)
	}
}

// TestProbeAuthAndTLS: with tokens required the probe signs its own, and
// over TLS it dials its listener with its own certificate pinned.
func TestProbeAuthAndTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, _ := appCert(t)
	a := apptest.Start(t, func(c *app.Config) {
		probeOn(c)
		c.Signal.JWTSecret = strings.Repeat("k", 32)
		c.TLSCert, c.TLSKey = certFile, keyFile
	})
	rep := probeNow(t, a)
	if !rep.OK || rep.PairType != "relay" || !strings.HasPrefix(rep.URL, "wss://127.0.0.1:") {
		t.Fatalf("report %+v", rep)
	}
}

// TestProbeEndsWithRun: draining stops the probe loop and its peers (the
// package's goleak check sees any left), and a drain mid-probe records no
// failure.
func TestProbeEndsWithRun(t *testing.T) {
	t.Parallel()
	cfg := apptest.Config(t)
	probeOn(&cfg)
	logs := &appLogs{}
	a, err := app.New(cfg, app.NewLogger(cfg, logs))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	// Stop as soon as the start-up probe's first peer is in its room.
	waitMetric(t, a.MetricsURL(), "the probe's peer", func(m metricSet) bool {
		v, _ := m.value("huddle_peers_joined")
		return v > 0
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	if strings.Contains(logs.String(), "probe failed") {
		t.Errorf("the drain was taken for a probe failure:\n%s", logs)
	}
}

// TestProbeConfig: the probe's settings are checked at start-up.
func TestProbeConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"HUDDLE_PROBE_INTERVAL=1s"}, "HUDDLE_PROBE_INTERVAL: must be 0 (off) or at least 5s"},
		{[]string{"HUDDLE_PROBE_INTERVAL=-1m"}, "HUDDLE_PROBE_INTERVAL"},
		{[]string{"HUDDLE_PROBE_INTERVAL=soon"}, "HUDDLE_PROBE_INTERVAL"},
		{[]string{"HUDDLE_PUBLIC_URL=ftp://example.com"}, "HUDDLE_PUBLIC_URL"},
		{[]string{"HUDDLE_PROBE_INTERVAL=1m", "HUDDLE_JWT_PUBLIC_KEY=" + edPublicKey}, "HUDDLE_PROBE_INTERVAL: the probe signs"},
	} {
		if _, err := app.LoadConfig(tc.env); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.env, err, tc.want)
		}
	}
	cfg, err := app.LoadConfig([]string{"HUDDLE_PROBE_INTERVAL=1m", "HUDDLE_PUBLIC_URL=https://huddle.example.com"})
	if err != nil || cfg.ProbeInterval != time.Minute || cfg.PublicURL != "https://huddle.example.com" {
		t.Errorf("config %v %q: %v", cfg.ProbeInterval, cfg.PublicURL, err)
	}
}

// edPublicKey is an Ed25519 public key.
const edPublicKey = `-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAPvL9z155ivPuZilO8dakFUHdaNSjVL6X5kctb+byyCI=
-----END PUBLIC KEY-----`
