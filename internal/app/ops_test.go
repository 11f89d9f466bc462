package app_test

// Operations: /metrics after real traffic, /readyz and /healthz, the
// separate metrics listener, and the connection lifecycle logs.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	pionturn "github.com/pion/turn/v4"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/huddle-rtc/huddle/internal/app"
	"github.com/huddle-rtc/huddle/internal/apptest"
	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// httpGet fetches url and returns the status and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), appWait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// metricSet is one scrape of /metrics.
type metricSet map[string]*dto.MetricFamily

// scrape parses the text exposition at url.
func scrape(t *testing.T, url string) metricSet {
	t.Helper()
	status, body := httpGet(t, url)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// value is the value of the series name with the given label pairs
// (name, value, ...), and whether it exists. Histograms give their count.
func (m metricSet) value(name string, labels ...string) (float64, bool) {
	fam := m[name]
	if fam == nil {
		return 0, false
	}
	for _, s := range fam.GetMetric() {
		if !hasLabels(s, labels) {
			continue
		}
		switch {
		case s.Counter != nil:
			return s.Counter.GetValue(), true
		case s.Gauge != nil:
			return s.Gauge.GetValue(), true
		case s.Histogram != nil:
			return float64(s.Histogram.GetSampleCount()), true
		case s.Untyped != nil:
			return s.Untyped.GetValue(), true
		}
	}
	return 0, false
}

func hasLabels(s *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range s.GetLabel() {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// must is value, failing the test when the series is missing.
func (m metricSet) must(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	v, ok := m.value(name, labels...)
	if !ok {
		t.Fatalf("no series %s%v", name, labels)
	}
	return v
}

// wsPeer is a raw signaling connection.
type wsPeer struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialPeer(t *testing.T, wsURL string, header http.Header) *wsPeer {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: appWait, Subprotocols: []string{wire.Subprotocol}}
	ws, _, err := d.Dial(wsURL, header)
	if err != nil {
		t.Fatalf("dial %s: %v", wsURL, err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	return &wsPeer{t: t, ws: ws}
}

func (p *wsPeer) send(m map[string]any) {
	p.t.Helper()
	_ = p.ws.SetWriteDeadline(time.Now().Add(appWait))
	if err := p.ws.WriteJSON(m); err != nil {
		p.t.Fatalf("send %v: %v", m, err)
	}
}

// next reads messages until one of type typ, which it returns.
func (p *wsPeer) next(typ wire.Type) wire.Message {
	p.t.Helper()
	_ = p.ws.SetReadDeadline(time.Now().Add(appWait))
	for {
		var m wire.Message
		if err := p.ws.ReadJSON(&m); err != nil {
			p.t.Fatalf("waiting for %s: %v", typ, err)
		}
		if m.Type == typ {
			return m
		}
	}
}

// welcome is the part of welcome the tests read.
type welcome struct {
	ID         wire.PeerID      `json:"id"`
	Resume     string           `json:"resume"`
	ICEServers []wire.ICEServer `json:"iceServers"`
}

func (p *wsPeer) join(room string, extra map[string]any) welcome {
	p.t.Helper()
	m := map[string]any{"type": "join", "room": room}
	for k, v := range extra {
		m[k] = v
	}
	p.send(m)
	_ = p.ws.SetReadDeadline(time.Now().Add(appWait))
	for {
		_, data, err := p.ws.ReadMessage()
		if err != nil {
			p.t.Fatalf("waiting for welcome: %v", err)
		}
		var head struct {
			Type wire.Type `json:"type"`
		}
		_ = json.Unmarshal(data, &head)
		if head.Type == wire.TypeWelcome {
			var w welcome
			if err := json.Unmarshal(data, &w); err != nil {
				p.t.Fatal(err)
			}
			return w
		}
	}
}

// waitClosed reads until the server's close frame and returns its code.
func (p *wsPeer) waitClosed() int {
	p.t.Helper()
	_ = p.ws.SetReadDeadline(time.Now().Add(appWait))
	for {
		if _, _, err := p.ws.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				p.t.Fatalf("waiting for a close frame: %v", err)
			}
			return ce.Code
		}
	}
}

// waitMetric scrapes until cond holds for the series' value, or fails.
func waitMetric(t *testing.T, url, what string, cond func(metricSet) bool) metricSet {
	t.Helper()
	deadline := time.Now().Add(appWait)
	for {
		m := scrape(t, url)
		if cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics: no %s within %v", what, appWait)
		}
		time.Sleep(10 * time.Millisecond) // polling an endpoint, not synchronising
	}
}

// TestMetricsAfterTraffic scripts joins, relays, errors, a refused
// handshake, a failed resume, a leave and a TURN allocation relaying
// bytes, and checks that every series moved by exactly as much; then that
// no label value carries a room name, a peer id, a token or an address.
func TestMetricsAfterTraffic(t *testing.T) {
	t.Parallel()
	a := apptest.Start(t, nil)
	url := a.MetricsURL()
	before := scrape(t, url)
	for _, name := range []string{"huddle_build_info", "go_goroutines", "process_open_fds", "huddle_turn_allocations", "huddle_rooms"} {
		if _, ok := before[name]; !ok {
			t.Errorf("no %s before any traffic", name)
		}
	}
	if v := before.must(t, "huddle_build_info", "version", app.Version()); v != 1 {
		t.Errorf("huddle_build_info %v", v)
	}

	const room = "metrics-secret-room"
	alice, bob := dialPeer(t, a.WSURL(), nil), dialPeer(t, a.WSURL(), nil)
	wa := alice.join(room, map[string]any{"name": "alice"})
	wb := bob.join(room, map[string]any{"name": "bob"})
	for _, typ := range []string{"offer", "answer"} {
		alice.send(map[string]any{"type": typ, "to": string(wb.ID), "sdp": "v=0 " + typ})
		bob.next(wire.Type(typ))
	}
	alice.send(map[string]any{"type": "candidate", "to": string(wb.ID), "candidate": map[string]any{"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}})
	bob.next(wire.TypeCandidate)
	bob.send(map[string]any{"type": "message", "data": map[string]any{"hi": 1}})
	alice.next(wire.TypeMessage)
	alice.send(map[string]any{"type": "message", "to": "NOSUCHPEER", "data": 1})
	if e := alice.next(wire.TypeError); e.Code != wire.CodeUnknownPeer {
		t.Fatalf("error %+v, want unknown-peer", e)
	}

	// A refused handshake: an origin the server does not allow.
	d := websocket.Dialer{HandshakeTimeout: appWait}
	if _, resp, err := d.Dial(a.WSURL(), http.Header{"Origin": {"https://evil.example"}}); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v", err)
	}
	// A resume with a token that does not exist: a new session.
	carol := dialPeer(t, a.WSURL(), nil)
	wc := carol.join("metrics-other-room", map[string]any{"resume": "not-a-resume-token"})

	relay, user := turnRelay(t, wa.ICEServers)

	// The latency is observed once the write returned, which the reader
	// may see first; the TURN counters after the packet went out.
	latency0, _ := before.value("huddle_relay_latency_seconds")
	mid := waitMetric(t, url, "relay latencies and TURN traffic", func(m metricSet) bool {
		bytes, _ := m.value("huddle_turn_relayed_bytes_total", "direction", "to_client")
		latency, _ := m.value("huddle_relay_latency_seconds")
		return bytes > 0 && latency-latency0 >= 4
	})
	for _, c := range []struct {
		name   string
		labels []string
		delta  float64
	}{
		{"huddle_connections_open", nil, 3},
		{"huddle_peers_joined", nil, 3},
		{"huddle_rooms", nil, 2},
		{"huddle_messages_relayed_total", []string{"type", "offer"}, 1},
		{"huddle_messages_relayed_total", []string{"type", "answer"}, 1},
		{"huddle_messages_relayed_total", []string{"type", "candidate"}, 1},
		{"huddle_messages_relayed_total", []string{"type", "message"}, 1},
		{"huddle_relay_latency_seconds", nil, 4},
		{"huddle_errors_sent_total", []string{"code", string(wire.CodeUnknownPeer)}, 1},
		{"huddle_handshake_refusals_total", []string{"status", "403"}, 1},
		{"huddle_resumes_total", []string{"result", "failed"}, 1},
		{"huddle_resumes_total", []string{"result", "ok"}, 0},
		{"huddle_turn_allocations", nil, 1},
	} {
		was, _ := before.value(c.name, c.labels...)
		if got := mid.must(t, c.name, c.labels...) - was; got != c.delta {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, got, c.delta)
		}
	}
	for _, dir := range []string{"to_peer", "to_client"} {
		if v := mid.must(t, "huddle_turn_relayed_packets_total", "direction", dir); v < 1 {
			t.Errorf("TURN packets %s: %v", dir, v)
		}
		if v := mid.must(t, "huddle_turn_relayed_bytes_total", "direction", dir); v < float64(len("huddle metrics test")) {
			t.Errorf("TURN bytes %s: %v", dir, v)
		}
	}

	// Leave: a normal close; the room empties.
	bob.send(map[string]any{"type": "leave"})
	if code := bob.waitClosed(); code != websocket.CloseNormalClosure {
		t.Fatalf("leave closed with %d", code)
	}
	after := waitMetric(t, url, "the leave counted", func(m metricSet) bool {
		v, _ := m.value("huddle_connections_closed_total", "code", "1000")
		w, _ := before.value("huddle_connections_closed_total", "code", "1000")
		return v-w == 1
	})
	if got := after.must(t, "huddle_peers_joined") - before.must(t, "huddle_peers_joined"); got != 2 {
		t.Errorf("peers joined moved by %v after a leave, want 2", got)
	}

	forbidden := []string{room, "metrics-other-room", string(wa.ID), string(wb.ID), string(wc.ID), wa.Resume, wb.Resume, user,
		"127.0.0.1", relay, alice.ws.LocalAddr().String(), bob.ws.LocalAddr().String(), "evil.example", "alice", "bob"}
	scanLabels(t, after, forbidden)
}

// scanLabels fails when a label value of any series contains one of
// forbidden, or looks like an address.
func scanLabels(t *testing.T, m metricSet, forbidden []string) {
	t.Helper()
	addr := regexp.MustCompile(`\d+\.\d+\.\d+\.\d+|\[?[0-9a-fA-F]*:[0-9a-fA-F:]+\]?:\d+`)
	n := 0
	for name, fam := range m {
		for _, s := range fam.GetMetric() {
			for _, l := range s.GetLabel() {
				n++
				v := l.GetValue()
				for _, f := range forbidden {
					if f != "" && strings.Contains(v, f) {
						t.Errorf("%s{%s=%q} carries %q", name, l.GetName(), v, f)
					}
				}
				if addr.MatchString(v) && l.GetName() != "version" && l.GetName() != "goversion" {
					t.Errorf("%s{%s=%q} looks like an address", name, l.GetName(), v)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no labels scanned")
	}
}

// TestMetricsAddr: HUDDLE_METRICS_ADDR serves /metrics on its own listener,
// and the main listener no longer does.
func TestMetricsAddr(t *testing.T) {
	t.Parallel()
	a := apptest.Start(t, func(c *app.Config) { c.MetricsAddr = "127.0.0.1:0" })
	if strings.HasPrefix(a.MetricsURL(), a.URL()) {
		t.Fatalf("metrics URL %s is on the main listener %s", a.MetricsURL(), a.URL())
	}
	m := scrape(t, a.MetricsURL())
	if _, ok := m["huddle_connections_open"]; !ok {
		t.Errorf("no hub series on %s", a.MetricsURL())
	}
	if status, body := httpGet(t, a.URL()+"/metrics"); status == http.StatusOK && strings.Contains(body, "huddle_build_info") {
		t.Errorf("the main listener still serves metrics")
	}
	base := strings.TrimSuffix(a.MetricsURL(), "/metrics")
	for _, path := range []string{"/readyz", "/", "/ws"} {
		if status, _ := httpGet(t, base+path); status != http.StatusNotFound {
			t.Errorf("metrics listener %s: %d, want 404", path, status)
		}
	}
	if status, _ := httpGet(t, a.URL()+"/readyz"); status != http.StatusOK {
		t.Errorf("main listener /readyz: %d", status)
	}
}

// TestPprof: HUDDLE_PPROF serves the profiler on the metrics listener
// only, and needs one.
func TestPprof(t *testing.T) {
	t.Parallel()
	a := apptest.Start(t, func(c *app.Config) { c.MetricsAddr, c.Pprof = "127.0.0.1:0", true })
	base := strings.TrimSuffix(a.MetricsURL(), "/metrics")
	if status, body := httpGet(t, base+"/debug/pprof/heap?debug=1"); status != http.StatusOK || !strings.Contains(body, "heap profile") {
		t.Errorf("metrics listener heap profile: %d %.80q", status, body)
	}
	if status, body := httpGet(t, a.URL()+"/debug/pprof/heap?debug=1"); strings.Contains(body, "heap profile") {
		t.Errorf("the public listener serves the profiler: %d", status)
	}
	off := apptest.Start(t, func(c *app.Config) { c.MetricsAddr = "127.0.0.1:0" })
	if status, _ := httpGet(t, strings.TrimSuffix(off.MetricsURL(), "/metrics")+"/debug/pprof/heap?debug=1"); status != http.StatusNotFound {
		t.Errorf("profiler without HUDDLE_PPROF: %d, want 404", status)
	}
	if _, err := app.LoadConfig([]string{"HUDDLE_PPROF=true"}); err == nil || !strings.Contains(err.Error(), "HUDDLE_PPROF") {
		t.Errorf("HUDDLE_PPROF without HUDDLE_METRICS_ADDR: %v", err)
	}
}

// TestReadyz: ready when serving; 503 with the reason while draining (and
// /healthz stays 200) and when the TURN server stops answering.
func TestReadyz(t *testing.T) {
	t.Parallel()
	t.Run("draining", func(t *testing.T) {
		t.Parallel()
		a := apptest.Start(t, nil)
		if status, body := httpGet(t, a.URL()+"/readyz"); status != http.StatusOK || body != "ready\n" {
			t.Fatalf("readyz %d %q", status, body)
		}
		ctx, cancel := context.WithTimeout(context.Background(), appWait)
		defer cancel()
		if err := a.Signal().Drain(ctx); err != nil {
			t.Fatal(err)
		}
		status, body := httpGet(t, a.URL()+"/readyz")
		if status != http.StatusServiceUnavailable || !strings.Contains(body, "draining") || strings.Count(body, "\n") != 1 {
			t.Errorf("readyz while draining: %d %q, want 503 with one line saying draining", status, body)
		}
		if status, _ := httpGet(t, a.URL()+"/healthz"); status != http.StatusOK {
			t.Errorf("healthz while draining: %d", status)
		}
	})
	t.Run("run drains", func(t *testing.T) {
		t.Parallel()
		cfg := apptest.Config(t)
		a, err := app.New(cfg, appLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		// A peer that holds the drain open: it does not answer the
		// server's close frame, which the server then awaits for 2 s
		// (or until this peer closes).
		p := dialPeer(t, a.WSURL(), nil)
		p.ws.SetCloseHandler(func(int, string) error { return nil })
		p.join("drain", nil)
		cancel()
		if code := p.waitClosed(); code != wire.CloseRestart {
			t.Fatalf("closed with %d, want %d", code, wire.CloseRestart)
		}
		status, body := httpGet(t, a.URL()+"/readyz")
		hstatus, _ := httpGet(t, a.URL()+"/healthz")
		_ = p.ws.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if status != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
			t.Errorf("readyz during Run's drain: %d %q", status, body)
		}
		if hstatus != http.StatusOK {
			t.Errorf("healthz during Run's drain: %d", hstatus)
		}
	})
	t.Run("TURN down", func(t *testing.T) {
		t.Parallel()
		a := apptest.Start(t, nil)
		if status, _ := httpGet(t, a.URL()+"/readyz"); status != http.StatusOK {
			t.Fatalf("readyz %d", status)
		}
		if err := a.TURN().Close(); err != nil {
			t.Fatal(err)
		}
		status, body := httpGet(t, a.URL()+"/readyz")
		if status != http.StatusServiceUnavailable || !strings.Contains(body, "TURN server not answering") {
			t.Errorf("readyz with TURN closed: %d %q", status, body)
		}
	})
	t.Run("TURN off", func(t *testing.T) {
		t.Parallel()
		a := apptest.Start(t, func(c *app.Config) { c.TURN.Enabled = false })
		if status, body := httpGet(t, a.URL()+"/readyz"); status != http.StatusOK {
			t.Errorf("readyz without TURN: %d %q", status, body)
		}
	})
}

// appLogger sends a node's logs to the test at warn.
func appLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// turnRelay allocates a relay on the first turn:...?transport=udp server
// of servers with pion's TURN client, and relays a packet each way between
// it and a UDP peer on loopback. It returns the relayed address and the
// credential's username; the allocation lives until the test ends.
func turnRelay(t *testing.T, servers []wire.ICEServer) (relayAddr, user string) {
	t.Helper()
	var srv wire.ICEServer
	var addr string
	for _, s := range servers {
		for _, u := range s.URLs {
			if strings.HasPrefix(u, "turn:") && strings.HasSuffix(u, "?transport=udp") {
				srv, addr = s, strings.TrimSuffix(strings.TrimPrefix(u, "turn:"), "?transport=udp")
			}
		}
	}
	if addr == "" {
		t.Fatalf("no TURN/UDP server in %+v", servers)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: srv.Username, Password: srv.Credential,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := cl.Allocate()
	if err != nil {
		t.Fatalf("allocate on %s: %v", addr, err)
	}
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = relay.Close()
		cl.Close()
		_ = conn.Close()
		_ = peer.Close()
	})
	// Pion sends the first packet without waiting for the permission, so
	// it may be lost: send until the peer has one.
	from := relayUntilReceived(t, relay, peer, peer.LocalAddr())
	relayUntilReceived(t, peer, relay, from)
	return relay.LocalAddr().String(), srv.Username
}

// relayUntilReceived sends a packet from src to dst until dstConn reads
// one, and returns the address it came from.
func relayUntilReceived(t *testing.T, src, dstConn net.PacketConn, dst net.Addr) net.Addr {
	t.Helper()
	deadline := time.Now().Add(appWait)
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		if _, err := src.WriteTo([]byte("huddle metrics test"), dst); err != nil {
			t.Fatalf("relay write: %v", err)
		}
		_ = dstConn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, from, err := dstConn.ReadFrom(buf); err == nil {
			_ = dstConn.SetReadDeadline(time.Time{})
			return from
		}
	}
	t.Fatalf("no packet relayed to %s within %v", dst, appWait)
	return nil
}

// logLine is one JSON log record.
type logLine map[string]any

func parseLogs(t *testing.T, out string) []logLine {
	t.Helper()
	var lines []logLine
	for l := range strings.Lines(out) {
		var m logLine
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

// find returns the lines with message msg and, when conn is not empty,
// that connection id.
func find(lines []logLine, msg, conn string) []logLine {
	var out []logLine
	for _, l := range lines {
		if l["msg"] == msg && (conn == "" || l["conn"] == conn) {
			out = append(out, l)
		}
	}
	return out
}

// TestLifecycleLogs: connect, join, a dropped connection, resume, leave and
// a refused handshake are each one JSON line at info with stable keys; the
// connection's lines share its conn id; no token or SDP is logged, even at
// debug.
func TestLifecycleLogs(t *testing.T) {
	t.Parallel()
	const secret = "lifecycle logs secret, 32 bytes!"
	const sdp = "v=0 SDP-MUST-NOT-BE-LOGGED"
	cfg := apptest.Config(t)
	cfg.LogLevel, cfg.LogFormat = "debug", "json"
	cfg.Signal.JWTSecret = secret
	a, logs, stop := appRunConfig(t, cfg)

	tok, err := signal.MintToken([]byte(secret), signal.Claims{Subject: "u", Room: "*"}, time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	auth := http.Header{"Authorization": {"Bearer " + tok}}
	first := dialPeer(t, a.WSURL()+"?token="+tok, nil)
	w := first.join("logs-room", nil)
	other := dialPeer(t, a.WSURL(), auth)
	wo := other.join("logs-room", nil)
	first.send(map[string]any{"type": "offer", "to": string(wo.ID), "sdp": sdp})
	other.next(wire.TypeOffer)
	_ = first.ws.NetConn().Close() // dropped: no close frame
	second := dialPeer(t, a.WSURL(), auth)
	second.join("logs-room", map[string]any{"resume": w.Resume})
	second.send(map[string]any{"type": "leave"})
	if code := second.waitClosed(); code != websocket.CloseNormalClosure {
		t.Fatalf("leave: %d", code)
	}
	d := websocket.Dialer{HandshakeTimeout: appWait}
	if _, _, err := d.Dial(a.WSURL(), http.Header{"Origin": {"https://evil.example"}}); err == nil {
		t.Fatal("foreign origin accepted")
	}
	if _, _, err := d.Dial(a.WSURL(), nil); err == nil {
		t.Fatal("no token accepted")
	}
	_ = other.ws.Close()
	stop()

	out := logs.String()
	t.Logf("logs:\n%s", out)
	for _, leak := range []string{tok, strings.Split(tok, ".")[2], secret, "SDP-MUST-NOT-BE-LOGGED", w.Resume} {
		if strings.Contains(out, leak) {
			t.Errorf("the log shows %q", leak)
		}
	}
	lines := parseLogs(t, out)
	joined := find(lines, "joined", "")
	var conn1 string
	for _, l := range joined {
		if l["peer"] == string(w.ID) {
			conn1, _ = l["conn"].(string)
		}
	}
	if conn1 == "" {
		t.Fatalf("no joined line with a conn id for %s:\n%s", w.ID, out)
	}
	resumed := find(lines, "resumed", "")
	if len(resumed) != 1 || resumed[0]["peer"] != string(w.ID) || resumed[0]["conn"] == conn1 {
		t.Fatalf("resumed lines %v: want one, on a new conn, same peer", resumed)
	}
	conn2, _ := resumed[0]["conn"].(string)
	for _, c := range []struct {
		msg, conn string
		keys      []string
		want      map[string]any
	}{
		{"connected", conn1, []string{"addr"}, nil},
		{"joined", conn1, []string{"peer", "room", "peers"}, map[string]any{"room": "logs-room"}},
		{"connection closed", conn1, []string{"code", "reason", "peer", "room"}, map[string]any{"code": float64(1006)}},
		{"connected", conn2, []string{"addr"}, nil},
		{"resumed", conn2, []string{"peer", "room", "peers"}, nil},
		{"left", conn2, []string{"peer", "room"}, nil},
		{"connection closed", conn2, []string{"code", "reason"}, map[string]any{"code": float64(1000), "reason": "left"}},
		{"handshake refused", "", []string{"status", "reason", "addr"}, map[string]any{"status": float64(403)}},
	} {
		got := find(lines, c.msg, c.conn)
		if status, ok := c.want["status"]; ok {
			got = slices.DeleteFunc(got, func(l logLine) bool { return l["status"] != status })
		}
		if len(got) != 1 {
			t.Errorf("%q lines of conn %q: %d, want 1", c.msg, c.conn, len(got))
			continue
		}
		l := got[0]
		if l["level"] != "INFO" {
			t.Errorf("%q at %v, want INFO", c.msg, l["level"])
		}
		for _, k := range c.keys {
			if _, ok := l[k]; !ok {
				t.Errorf("%q has no %q: %v", c.msg, k, l)
			}
		}
		for k, v := range c.want {
			if l[k] != v {
				t.Errorf("%q: %s=%v, want %v", c.msg, k, l[k], v)
			}
		}
	}
	// 401 (and 429) refusals are at debug: whoever sends them must not
	// fill the logs (docs/security.md).
	for _, l := range find(lines, "handshake refused", "") {
		if l["status"] == float64(401) && l["level"] != "DEBUG" {
			t.Errorf("401 refusal at %v", l["level"])
		}
	}
}
