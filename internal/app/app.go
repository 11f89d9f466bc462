// Package app composes huddle's server from its components: it reads the
// configuration, binds the listeners, wires the signaling hub, the bundled
// TURN server and the demo page into one HTTP server, and drains them on
// shutdown. cmd/huddle is a thin main around it; tests start whole servers
// with it (see internal/apptest).
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/huddle-rtc/huddle/signal"
)

// App is one running huddle node.
type App struct {
	cfg  Config
	log  *slog.Logger
	ln   net.Listener
	http *http.Server
	sig  *signal.Server
}

// New builds a node and binds its listeners, so that a taken port fails
// here, before anything serves.
func New(cfg Config, log *slog.Logger) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	sig, err := signal.New(cfg.Signal, signal.Options{Logger: log.With("component", "signal")})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on HUDDLE_ADDR %s: %w", cfg.Addr, err)
	}
	a := &App{cfg: cfg, log: log, ln: ln, sig: sig}
	a.http = &http.Server{
		Handler:           a.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
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
	return mux
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

// Ready reports whether the node takes new peers.
func (a *App) Ready(ctx context.Context) error {
	return a.sig.Ready(ctx)
}

// Addr is the address the HTTP server listens on.
func (a *App) Addr() net.Addr { return a.ln.Addr() }

// URL is the node's base HTTP URL on loopback-friendly form.
func (a *App) URL() string { return "http://" + a.ln.Addr().String() }

// WSURL is the node's signaling endpoint.
func (a *App) WSURL() string { return "ws://" + a.ln.Addr().String() + "/ws" }

// Signal is the node's signaling server (tests drop connections with it).
func (a *App) Signal() *signal.Server { return a.sig }

// Run serves until ctx is done, then drains: new handshakes get 503, open
// connections are closed with 1012, and Run waits for them (bounded by
// HUDDLE_DRAIN_TIMEOUT) before it returns.
func (a *App) Run(ctx context.Context) error {
	a.log.Info("huddle listening", a.features()...)
	serveErr := make(chan error, 1)
	go func() { serveErr <- a.http.Serve(a.ln) }()
	select {
	case err := <-serveErr:
		return errors.Join(fmt.Errorf("serve: %w", err), a.close())
	case <-ctx.Done():
	}
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

// close releases everything Run did not already stop.
func (a *App) close() error {
	return a.sig.Close()
}

// Close stops a node that is not running, or forcefully stops one that
// is: connections are closed with 1001.
func (a *App) Close() error {
	err := a.http.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, a.close())
}

func (a *App) features() []any {
	return []any{
		"addr", a.ln.Addr().String(),
		"ws", "/ws",
		"turn", "off",
		"broker", "local",
		"auth", "open (no HUDDLE_JWT_SECRET)",
		"demo", "/",
	}
}
