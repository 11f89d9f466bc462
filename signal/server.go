// Package signal is huddle's signaling hub: WebSocket peers join rooms, and
// the hub relays SDP offers, answers, ICE candidates and application
// messages between them, tells everyone who joins and leaves, and lets a
// peer whose connection dropped resume its session.
//
// The wire protocol is in package wire and docs/protocol.md.
package signal

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// Options are the hub's collaborators.
type Options struct {
	// Logger receives the hub's logs; nil discards them.
	Logger *slog.Logger
	// Broker reaches the other nodes; nil means a LocalBroker (one node).
	Broker Broker
	// ICE gives each peer its ICE servers; nil gives none.
	ICE ICEProvider
	// CheckOrigin decides whether a browser page's Origin may connect; nil
	// accepts the server's own origin and clients that send no Origin.
	CheckOrigin func(r *http.Request) bool
}

// Server is the http.Handler of the WebSocket endpoint (/ws). It owns the
// hub and every connection, and drains them on shutdown.
type Server struct {
	cfg      Config
	log      *slog.Logger
	hub      *Hub
	broker   Broker
	upgrader websocket.Upgrader
	origin   func(r *http.Request) bool

	draining atomic.Bool
	mu       sync.Mutex // guards conns
	conns    map[*conn]struct{}
	wg       sync.WaitGroup // one per connection being served
}

// New builds a Server from a validated configuration.
func New(cfg Config, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("signal: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := opts.Broker
	if b == nil {
		b = NewLocalBroker()
	}
	origin := opts.CheckOrigin
	if origin == nil {
		origin = SameOrigin
	}
	s := &Server{
		cfg:    cfg,
		log:    log,
		broker: b,
		origin: origin,
		conns:  make(map[*conn]struct{}),
	}
	s.hub = newHub(cfg, log, b, opts.ICE)
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   1024,
		WriteBufferSize:  1024,
		WriteBufferPool:  &sync.Pool{},
		Subprotocols:     []string{wire.Subprotocol},
		// The origin was checked before the upgrade, with a clear answer.
		CheckOrigin: func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			http.Error(w, reason.Error(), status)
		},
	}
	return s, nil
}

// ServeHTTP upgrades a request to a signaling connection and serves it
// until it ends.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if status, reason := s.refuse(r); status != 0 {
		s.log.Info("handshake refused", "status", status, "reason", reason, "remote", r.RemoteAddr)
		http.Error(w, reason, status)
		return
	}
	// Track the connection before the upgrade so Drain cannot miss it.
	s.wg.Add(1)
	defer s.wg.Done()
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.log.Info("upgrade failed", "err", err, "remote", r.RemoteAddr)
		return
	}
	c := newConn(ws, s.hub, s.log.With("conn", rand8(), "remote", r.RemoteAddr))
	if !s.track(c) {
		c.closeWith(wire.CloseRestart, "server is draining")
	}
	c.log.Info("connected")
	c.serve()
	s.untrack(c)
}

// refuse checks a handshake before the upgrade; a non-zero status refuses it.
func (s *Server) refuse(r *http.Request) (int, string) {
	if s.draining.Load() {
		return http.StatusServiceUnavailable, "server is draining; reconnect to another node"
	}
	if !websocket.IsWebSocketUpgrade(r) {
		return http.StatusBadRequest, "expected a WebSocket upgrade"
	}
	if offered := websocket.Subprotocols(r); len(offered) > 0 {
		ok := false
		for _, p := range offered {
			if p == wire.Subprotocol {
				ok = true
			}
		}
		if !ok {
			return http.StatusBadRequest, "unsupported subprotocol: offer " + wire.Subprotocol
		}
	}
	if !s.origin(r) {
		return http.StatusForbidden, "origin not allowed"
	}
	return 0, ""
}

// SameOrigin accepts requests without an Origin header (non-browser
// clients) and those whose Origin host equals the request's Host.
func SameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	_, host, ok := strings.Cut(origin, "://")
	return ok && strings.EqualFold(host, r.Host)
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[c] = struct{}{}
	return !s.draining.Load()
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// Ready reports whether the server takes new peers: not draining and its
// broker reachable.
func (s *Server) Ready(ctx context.Context) error {
	if s.draining.Load() {
		return errors.New("draining")
	}
	if err := s.broker.Ready(ctx); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	return nil
}

// Drain refuses new connections (503) and closes every open one with 1012
// so that clients reconnect and resume elsewhere, then waits for them to
// end or for ctx.
func (s *Server) Drain(ctx context.Context) error {
	s.draining.Store(true)
	s.closeAll(wire.CloseRestart, "server is restarting; reconnect and resume")
	return s.wait(ctx)
}

// Close closes every connection with 1001 (going away for good), ends
// every session, and waits for the connections to end (bounded by the
// close handshake). It closes the broker.
func (s *Server) Close() error {
	s.draining.Store(true)
	s.closeAll(wire.CloseGoingAway, "server is shutting down")
	ctx, cancel := context.WithTimeout(context.Background(), closeWait+time.Second)
	defer cancel()
	err := s.wait(ctx)
	s.hub.close()
	return errors.Join(err, s.broker.Close())
}

func (s *Server) closeAll(code int, reason string) {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.closeWith(code, reason)
	}
}

func (s *Server) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("connections still open: %w", ctx.Err())
	}
}

// rand8 names a connection in logs.
func rand8() string { return rand.Text()[:8] }
