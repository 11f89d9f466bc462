// Package app composes huddle's server from its components: it reads the
// configuration, binds the listeners, wires the signaling hub, the bundled
// TURN server and the demo page into one HTTP server, and drains them on
// shutdown. cmd/huddle is a thin main around it; tests start whole servers
// with it (see internal/apptest).
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-rtc/huddle/demo"
	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
	"github.com/huddle-rtc/huddle/turn"
)

// maxHeaderBytes bounds a request's headers (431 beyond): a handshake
// needs a few hundred bytes, a token a few more.
const maxHeaderBytes = 32 << 10

// App is one running huddle node.
type App struct {
	cfg  Config
	log  *slog.Logger
	ln   net.Listener
	http *http.Server
	sig  *signal.Server
	turn *turn.Server // nil when the bundled TURN server is off
	reg  *prometheus.Registry

	metricsLn   net.Listener // nil: /metrics is served on ln
	metricsHTTP *http.Server

	turnUDP net.Addr // the bundled TURN server's UDP address; nil when off
	node    string   // HUDDLE_NODE_ID, or a random id
	probe   *prober  // the relay self-probe; nil when off
}

// New builds a node and binds its listeners, so that a taken port fails
// here, before anything serves.
func New(cfg Config, log *slog.Logger) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	a := &App{cfg: cfg, log: log, node: nodeID(cfg)}
	a.reg = newRegistry(a.metricsNode())
	a.http = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("HUDDLE_TLS_CERT/HUDDLE_TLS_KEY: %w", err)
		}
		a.http.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ice, err := a.startTURN()
	if err != nil {
		return nil, err
	}
	if a.turn != nil {
		a.reg.MustRegister(newTURNCollector(a.turn))
	}
	broker, err := a.newBroker()
	if err != nil {
		return nil, errors.Join(err, a.closeTURN())
	}
	a.sig, err = signal.New(cfg.Signal, signal.Options{
		Logger:     log.With("component", "signal", "node", a.node),
		Broker:     broker,
		ICE:        iceServers{ice},
		Registerer: a.reg,
		Revoke:     a.revoker(),
	})
	if err != nil {
		if broker != nil {
			err = errors.Join(err, broker.Close())
		}
		return nil, errors.Join(err, a.closeTURN())
	}
	if cfg.MetricsAddr != "" {
		if a.metricsLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return nil, errors.Join(fmt.Errorf("listen on HUDDLE_METRICS_ADDR %s: %w", cfg.MetricsAddr, err), a.closeTURN())
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metricsHandler(a.reg))
		if cfg.Pprof {
			mountPprof(mux)
		}
		a.metricsHTTP = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("listen on HUDDLE_ADDR %s: %w", cfg.Addr, err), a.closeTURN(), a.closeMetrics())
	}
	if a.http.TLSConfig != nil {
		ln = tls.NewListener(ln, a.http.TLSConfig)
	}
	a.ln = ln
	a.http.Handler = a.routes()
	a.newProbe()
	return a, nil
}

func (a *App) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /ws", a.sig)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", a.serveReady)
	if a.metricsLn == nil {
		mux.Handle("GET /metrics", metricsHandler(a.reg))
	}
	mux.Handle("GET /", demo.Handler())
	// The room API takes every method under /api/, which one mux cannot
	// hold beside "GET /" (neither pattern is more specific).
	api := a.sig.API()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			api.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (a *App) serveReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.Ready(ctx); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// Ready reports whether the node takes new peers: the hub is not draining
// and reaches its broker, the bundled TURN server (when on) answers on its
// UDP port, and the last relay self-probe (when on) succeeded.
func (a *App) Ready(ctx context.Context) error {
	if err := a.sig.Ready(ctx); err != nil {
		return err
	}
	if a.cfg.TURN.Enabled && a.turn == nil {
		return errors.New("TURN server not running")
	}
	if err := a.turnReady(ctx); err != nil {
		return err
	}
	return a.probe.ready()
}

// Addr is the address the HTTP server listens on.
func (a *App) Addr() net.Addr { return a.ln.Addr() }

// URL is the node's base HTTP URL (https with TLS).
func (a *App) URL() string {
	if a.cfg.TLSCert != "" {
		return "https://" + a.ln.Addr().String()
	}
	return "http://" + a.ln.Addr().String()
}

// WSURL is the node's signaling endpoint (wss with TLS).
func (a *App) WSURL() string {
	if a.cfg.TLSCert != "" {
		return "wss://" + a.ln.Addr().String() + "/ws"
	}
	return "ws://" + a.ln.Addr().String() + "/ws"
}

// Signal is the node's signaling server (tests drop connections with it).
func (a *App) Signal() *signal.Server { return a.sig }

// Run serves until ctx is done, then drains: new handshakes get 503, open
// connections are closed with 1012, and Run waits for them (bounded by
// HUDDLE_DRAIN_TIMEOUT) before it returns.
func (a *App) Run(ctx context.Context) error {
	a.log.Info("huddle listening", a.features()...)
	for _, w := range a.warnings() {
		a.log.Warn(w)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- a.http.Serve(a.ln) }()
	metricsDone := make(chan struct{})
	go func() {
		defer close(metricsDone)
		if a.metricsHTTP != nil {
			if err := a.metricsHTTP.Serve(a.metricsLn); !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("metrics listener failed", "err", err)
			}
		}
	}()
	defer func() { <-metricsDone }()
	probeCtx, stopProbe := context.WithCancel(ctx)
	waitProbe := a.startProbe(probeCtx)
	select {
	case err := <-serveErr:
		stopProbe()
		waitProbe()
		return errors.Join(fmt.Errorf("serve: %w", err), a.close())
	case <-ctx.Done():
	}
	// The probe's peers leave before the drain, which they would
	// otherwise take for a restart to reconnect through.
	stopProbe()
	waitProbe()
	a.log.Info("draining", "timeout", a.cfg.DrainTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), a.cfg.DrainTimeout)
	defer cancel()
	err := a.sig.Drain(dctx)
	// Shutdown closes the listener and waits for plain HTTP requests; the
	// WebSockets were hijacked and drained above.
	err = errors.Join(err, a.http.Shutdown(dctx))
	<-serveErr
	err = errors.Join(err, a.close())
	a.log.Info("stopped")
	return err
}

// revoker refuses a kicked peer's credentials on the bundled TURN server
// for as long as any credential minted for it may live. An external TURN
// server sharing the secret cannot be told: it accepts them until expiry.
func (a *App) revoker() func(wire.PeerID) {
	if a.turn == nil {
		return nil
	}
	ttl := a.cfg.TURN.CredentialTTL
	return func(id wire.PeerID) { a.turn.Revoke(string(id), time.Now().Add(ttl)) }
}

// startTURN binds and starts the bundled TURN server when it is on, and
// returns the ICE servers provider (which works without it, for external
// TURN servers sharing the secret).
func (a *App) startTURN() (*turn.ICE, error) {
	if a.cfg.TURN.Enabled {
		ln, err := turn.Listen(a.cfg.TURN)
		if err != nil {
			return nil, fmt.Errorf("TURN: %w", err)
		}
		a.turn, err = turn.NewServer(a.cfg.TURN, ln, a.log.With("component", "turn"))
		if err != nil {
			return nil, fmt.Errorf("TURN: %w", err)
		}
		a.turnUDP = ln.UDP[0].LocalAddr()
	}
	ice, err := turn.NewICE(a.cfg.TURN, a.turn)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("TURN: %w", err), a.closeTURN())
	}
	return ice, nil
}

func (a *App) closeTURN() error {
	if a.turn == nil {
		return nil
	}
	return a.turn.Close()
}

// close releases everything Run did not already stop.
func (a *App) close() error {
	return errors.Join(a.sig.Close(), a.closeTURN(), a.closeMetrics())
}

func (a *App) closeMetrics() error {
	if a.metricsLn == nil {
		return nil
	}
	// The server first, so that Serve returns ErrServerClosed rather than
	// an accept error; then the listener, in case Serve never took it.
	err := a.metricsHTTP.Close()
	_ = a.metricsLn.Close()
	return err
}

// MetricsURL is where /metrics is served.
func (a *App) MetricsURL() string {
	if a.metricsLn != nil {
		return "http://" + a.metricsLn.Addr().String() + "/metrics"
	}
	return a.URL() + "/metrics"
}

// iceServers adapts the TURN package's ICE servers to the wire's.
type iceServers struct{ ice *turn.ICE }

func (p iceServers) ICEServers(peer wire.PeerID) []wire.ICEServer {
	servers := p.ice.ICEServers(string(peer))
	out := make([]wire.ICEServer, len(servers))
	for i, s := range servers {
		out[i] = wire.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential}
	}
	return out
}

// TURN is the bundled TURN server, nil when it is off.
func (a *App) TURN() *turn.Server { return a.turn }

// Close stops a node that is not running, or forcefully stops one that
// is: connections are closed with 1001.
func (a *App) Close() error {
	err := a.http.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, a.close())
}

func (a *App) turnFeature() string {
	if a.turn == nil {
		return "off"
	}
	return strings.Join(a.turn.URLs(), " ")
}

// minSecretBytes is the shortest HS256 key worth the name (RFC 7518
// section 3.2: at least the hash's 256 bits).
const minSecretBytes = 32

// warnings name the settings that work but weaken security.
func (a *App) warnings() []string {
	var w []string
	if n := len(a.cfg.Signal.JWTSecret); n > 0 && n < minSecretBytes {
		w = append(w, fmt.Sprintf("HUDDLE_JWT_SECRET is %d bytes: use at least %d random bytes (openssl rand -base64 32)", n, minSecretBytes))
	}
	if n := len(a.cfg.Signal.AdminToken); n > 0 && n < minSecretBytes {
		w = append(w, fmt.Sprintf("HUDDLE_ADMIN_TOKEN is %d bytes: use at least %d random bytes (openssl rand -base64 32)", n, minSecretBytes))
	}
	if slices.Contains(a.cfg.Signal.AllowedOrigins, "*") && !a.cfg.Signal.AuthRequired() {
		w = append(w, "HUDDLE_ALLOWED_ORIGINS=* with no token key: any website can use this server")
	}
	return w
}

func (a *App) features() []any {
	auth := "open: anyone may join (set HUDDLE_JWT_SECRET or HUDDLE_JWT_PUBLIC_KEY to require tokens)"
	if a.cfg.Signal.AuthRequired() {
		auth = "jwt"
	}
	return []any{
		"version", Version(),
		"url", a.URL(),
		"ws", a.WSURL(),
		"tls", a.cfg.TLSCert != "",
		"turn", a.turnFeature(),
		"broker", a.brokerFeature(),
		"node", a.node,
		"auth", auth,
		"compression", a.cfg.Signal.Compression,
		"api", a.cfg.Signal.AdminToken != "",
		"demo", a.URL() + "/",
		"metrics", a.MetricsURL(),
		"probe", a.probeFeature(),
	}
}
