package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-rtc/huddle/client"
	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// The relay self-probe: every HUDDLE_PROBE_INTERVAL, two in-process Pion
// peers (package client) join a fresh room through the node's own
// signaling URL, connect relay-only through the TURN servers it hands
// out, and round-trip data channel messages. The outcome goes to metrics
// (huddle_probe_*) and to /readyz, so that an operator learns that TURN is
// broken before the users do.
//
// The probe is a real call: its two peers count in huddle_connections_open,
// huddle_peers_joined, huddle_rooms, the relayed messages and the TURN
// series while it runs (tens of milliseconds on a healthy node), the room
// API sees its room (named huddle-probe-...) come and go, and the hub logs
// its connections.

const (
	// MinProbeInterval is the shortest HUDDLE_PROBE_INTERVAL: each probe
	// is two peer connections and TURN allocations.
	MinProbeInterval = 5 * time.Second
	// maxProbeTimeout bounds one probe (and the interval, if shorter).
	maxProbeTimeout = 20 * time.Second
	// probeRoomPrefix starts the name of every probe's room.
	probeRoomPrefix = "huddle-probe-"
	// probeTokenTTL is the lifetime of the probe's join tokens.
	probeTokenTTL = time.Minute
)

// ProbeResult is the outcome of one relay self-probe.
type ProbeResult struct {
	// At is when the probe ended.
	At time.Time
	// Report is what the probe's peers observed; Report.Err is nil when
	// the probe succeeded.
	Report client.CheckReport
}

// prober runs the relay self-probe.
type prober struct {
	url      string
	interval time.Duration
	timeout  time.Duration
	opts     client.Options
	secret   []byte // HS256 key to sign the probe's tokens; nil: none needed
	log      *slog.Logger
	metrics  *probeMetrics

	run sync.Mutex // one probe at a time

	mu   sync.Mutex // guards last
	last *ProbeResult
}

// newProber builds the probe of a node whose signaling endpoint is wsURL
// (the local listener's, used when HUDDLE_PUBLIC_URL is unset).
func newProber(cfg Config, wsURL string, leaf []byte, log *slog.Logger, reg prometheus.Registerer) *prober {
	p := &prober{
		url:      wsURL,
		interval: cfg.ProbeInterval,
		timeout:  min(cfg.ProbeInterval, maxProbeTimeout),
		log:      log,
		metrics:  newProbeMetrics(reg),
	}
	if cfg.Signal.JWTSecret != "" {
		p.secret = []byte(cfg.Signal.JWTSecret)
	}
	p.opts = client.Options{
		Name:      "huddle-probe",
		RelayOnly: true,
		// The peers' own logs (pion's included) at warn and above only.
		Logger: slog.New(minLevel{log.Handler(), slog.LevelWarn}),
	}
	if cfg.PublicURL != "" {
		p.url = cfg.PublicURL
	} else if leaf != nil {
		// The local listener's address is not a name its certificate
		// has: trust exactly that certificate instead.
		p.opts.Dialer = pinnedDialer(leaf)
	}
	return p
}

// loop probes at once, then every interval, until ctx is done.
func (p *prober) loop(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		_, _ = p.probe(ctx) // recorded, and logged when it fails
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probe runs one probe and records its outcome, unless ctx ended first
// (the node is draining: that says nothing about TURN).
func (p *prober) probe(ctx context.Context) (ProbeResult, error) {
	p.run.Lock()
	defer p.run.Unlock()
	room := wire.RoomID(probeRoomPrefix + strings.ToLower(rand.Text()[:12]))
	opts := p.opts
	if p.secret != nil {
		opts.TokenSource = func(context.Context) (string, error) {
			return signal.MintToken(p.secret, signal.Claims{Subject: "huddle-probe", Room: string(room)}, probeTokenTTL, time.Now())
		}
	}
	rep, err := client.Check(ctx, p.url, client.CheckOptions{Options: opts, Room: room, Timeout: p.timeout})
	res := ProbeResult{At: time.Now(), Report: rep}
	if ctx.Err() != nil {
		return res, fmt.Errorf("probe canceled: %w", ctx.Err())
	}
	p.record(res)
	return res, err
}

func (p *prober) record(res ProbeResult) {
	p.mu.Lock()
	prev := p.last
	p.last = &res
	p.mu.Unlock()
	p.metrics.observe(res)
	rep := res.Report
	switch {
	case rep.Err != nil:
		p.log.Warn("relay self-probe failed", "url", p.url, "stage", string(rep.Stage), "err", oneLine(rep.Err))
	case prev != nil && prev.Report.Err != nil:
		p.log.Info("relay self-probe ok again", "url", p.url, "connect", rep.ConnectTime, "rtt", rep.RTT)
	default:
		p.log.Debug("relay self-probe ok", "url", p.url, "connect", rep.ConnectTime, "rtt", rep.RTT)
	}
}

// ready is nil before the first result, after a successful probe, and
// when the probe is off (p nil).
func (p *prober) ready() error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last == nil || p.last.Report.Err == nil {
		return nil
	}
	return fmt.Errorf("relay self-probe failed %s ago: %s",
		time.Since(p.last.At).Round(time.Second), oneLine(p.last.Report.Err))
}

// oneLine flattens an error for a log line or the /readyz answer.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// probeURL is the local listener's signaling URL, dialable from this host:
// an unspecified listen address (":8080") is dialed on loopback.
func probeURL(addr net.Addr, tls bool) string {
	u := url.URL{Scheme: "ws", Host: loopbackIfUnspecified(addr), Path: "/ws"}
	if tls {
		u.Scheme = "wss"
	}
	return u.String()
}

// pinnedDialer dials a TLS server that must present the certificate leaf
// (DER), whatever names it has.
func pinnedDialer(leaf []byte) *websocket.Dialer {
	return &websocket.Dialer{
		HandshakeTimeout: 10 * time.Second,
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			// Verification is VerifyConnection's: the exact certificate.
			InsecureSkipVerify: true, //nolint:gosec // pinned below
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, leaf) {
					return errors.New("not this node's certificate")
				}
				return nil
			},
		},
	}
}

// minLevel is a handler that drops records below its level.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(attrs), h.level}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.level}
}

// probeMetrics are the huddle_probe_* series, registered only when the
// probe is on.
type probeMetrics struct {
	runs    *prometheus.CounterVec
	success prometheus.Gauge
	connect prometheus.Gauge
	rtt     prometheus.Gauge
	lastRun prometheus.Gauge
}

func newProbeMetrics(reg prometheus.Registerer) *probeMetrics {
	m := &probeMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "huddle_probe_runs_total",
			Help: "Relay self-probes by result: ok, or the stage that failed (signaling, turn, ice, data).",
		}, []string{"result"}),
		success: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "huddle_probe_success", Help: "1 when the last relay self-probe connected through TURN, else 0.",
		}),
		connect: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "huddle_probe_connect_seconds", Help: "Time the last successful relay self-probe took to connect its peers.",
		}),
		rtt: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "huddle_probe_rtt_seconds", Help: "Data channel round trip through TURN of the last successful relay self-probe.",
		}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "huddle_probe_last_run_timestamp_seconds", Help: "When the last relay self-probe ended (Unix time).",
		}),
	}
	m.runs.WithLabelValues("ok")
	for _, s := range []client.CheckStage{client.StageSignaling, client.StageTURN, client.StageICE, client.StageData} {
		m.runs.WithLabelValues(string(s))
	}
	reg.MustRegister(m.runs, m.success, m.connect, m.rtt, m.lastRun)
	return m
}

func (m *probeMetrics) observe(res ProbeResult) {
	m.lastRun.Set(float64(res.At.UnixNano()) / 1e9)
	rep := res.Report
	if rep.Err != nil {
		m.runs.WithLabelValues(string(rep.Stage)).Inc()
		m.success.Set(0)
		return
	}
	m.runs.WithLabelValues("ok").Inc()
	m.success.Set(1)
	m.connect.Set(rep.ConnectTime.Seconds())
	m.rtt.Set(rep.RTT.Seconds())
}

// newProbe builds the node's probe when HUDDLE_PROBE_INTERVAL is set; it
// needs the listener bound.
func (a *App) newProbe() {
	if a.cfg.ProbeInterval <= 0 {
		return
	}
	var leaf []byte
	if a.http.TLSConfig != nil {
		leaf = a.http.TLSConfig.Certificates[0].Certificate[0]
	}
	url := probeURL(a.ln.Addr(), leaf != nil)
	a.probe = newProber(a.cfg, url, leaf, a.log.With("component", "probe"), a.reg)
}

// startProbe runs the probe loop until ctx is done; wait returns once it
// has ended (its peers closed).
func (a *App) startProbe(ctx context.Context) (wait func()) {
	if a.probe == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.probe.loop(ctx)
	}()
	return func() { <-done }
}

// Probe runs a relay self-probe now and records it as the periodic ones
// are (metrics, /readyz). It fails with ErrProbeOff when
// HUDDLE_PROBE_INTERVAL is unset, and with ctx's error, unrecorded, when
// ctx ends first.
func (a *App) Probe(ctx context.Context) (ProbeResult, error) {
	if a.probe == nil {
		return ProbeResult{}, ErrProbeOff
	}
	return a.probe.probe(ctx)
}

// ErrProbeOff is Probe's error when the probe is off.
var ErrProbeOff = errors.New("relay self-probe is off (HUDDLE_PROBE_INTERVAL unset)")

// probeFeature describes the probe for the start-up line.
func (a *App) probeFeature() string {
	if a.probe == nil {
		return "off"
	}
	return fmt.Sprintf("every %s via %s", a.probe.interval, a.probe.url)
}
