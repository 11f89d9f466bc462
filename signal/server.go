// Package signal is huddle's signaling hub: WebSocket peers join rooms, and
// the hub relays SDP offers, answers, ICE candidates and application
// messages between them, tells everyone who joins and leaves, and lets a
// peer whose connection dropped resume its session.
//
// The wire protocol is in package wire and docs/protocol.md.
package signal

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

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
	// Now is the clock that token expiry and handshake rates are measured
	// by; nil means time.Now. Tests inject one to expire tokens without
	// sleeping.
	Now func() time.Time
	// Registerer takes the hub's Prometheus metrics; nil keeps them
	// unregistered.
	Registerer prometheus.Registerer
	// Revoke, when set, is called with the id of every peer kicked in the
	// cluster, so that its TURN credentials stop being accepted for new
	// allocations. It must not block (a broker may hold its locks).
	Revoke func(peer wire.PeerID)
	// EventBacklog is how many presence events the room API's event
	// stream keeps for clients that reconnect; 0 means
	// DefaultEventBacklog.
	EventBacklog int
	// EventHeartbeat is how often an idle event stream gets a comment
	// line; 0 means DefaultEventHeartbeat.
	EventHeartbeat time.Duration
}

// Server is the http.Handler of the WebSocket endpoint (/ws). It owns the
// hub and every connection, and drains them on shutdown.
type Server struct {
	cfg      Config
	log      *slog.Logger
	hub      *Hub
	broker   Broker
	upgrader websocket.Upgrader
	origins  *originPolicy
	tokens   *verifier // nil: no authentication
	limits   *addrLimits
	metrics  *metrics
	api      *api

	eventHeartbeat time.Duration

	draining atomic.Bool
	stop     chan struct{} // closed by Drain or Close: event streams end
	stopOnce sync.Once
	mu       sync.Mutex // guards conns, streams, active and idle
	conns    map[*conn]struct{}
	streams  map[*stream]struct{}
	// active counts the requests being served; idle is closed when it
	// drops to zero. Not a WaitGroup: handshakes keep arriving (and get
	// 503) while Drain waits, and WaitGroup forbids an Add from zero
	// concurrent with a Wait (it panics).
	active int
	idle   chan struct{}
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
	// Validate has checked these parse.
	origins, _ := newOriginPolicy(cfg.AllowedOrigins)
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	tokens, _ := newVerifier(&cfg, now)
	limits, _ := newAddrLimits(&cfg, now)
	s := &Server{
		cfg:     cfg,
		log:     log,
		broker:  b,
		origins: origins,
		tokens:  tokens,
		limits:  limits,
		metrics: newMetrics(opts.Registerer),
		conns:   make(map[*conn]struct{}),
		streams: make(map[*stream]struct{}),
		stop:    make(chan struct{}),

		eventHeartbeat: cmp.Or(opts.EventHeartbeat, DefaultEventHeartbeat),
	}
	events := newEventLog(cmp.Or(opts.EventBacklog, DefaultEventBacklog), now())
	s.hub = newHub(cfg, log, b, opts.ICE, s.metrics, events, opts.Revoke)
	s.api = newAPI(s, opts.Registerer)
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "huddle_rooms", Help: "Rooms with at least one peer on this node.",
		}, func() float64 { return float64(s.hub.roomCount()) }))
	}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		// 0: gorilla reads through the buffer hijacker hands it.
		ReadBufferSize:    0,
		WriteBufferSize:   1024,
		WriteBufferPool:   &sync.Pool{},
		Subprotocols:      []string{wire.Subprotocol},
		EnableCompression: cfg.Compression,
		// The origin was checked before the upgrade, with a clear answer.
		CheckOrigin: func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			http.Error(w, reason.Error(), status)
		},
	}
	return s, nil
}

// ServeHTTP upgrades a request to a signaling connection and serves it
// until it ends. Every check happens before the upgrade, and a refusal is
// an HTTP status with a one-line reason.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Track the connection before anything else so Drain cannot miss it.
	s.enter()
	defer s.leave()
	addr := s.limits.clientAddr(r)
	refuse := func(status int, reason string) {
		s.metrics.refused(status)
		// Never log the request URL: it may carry ?token=. Token and rate
		// refusals are at debug (counted in metrics): whoever sends them
		// must not be able to fill the logs.
		level := slog.LevelInfo
		switch status {
		case http.StatusUnauthorized:
			level = slog.LevelDebug
			w.Header().Set("WWW-Authenticate", `Bearer realm="huddle"`)
		case http.StatusTooManyRequests:
			level = slog.LevelDebug
			w.Header().Set("Retry-After", "1")
		case http.StatusServiceUnavailable:
			// Every reconnecting client hits it during a drain or an outage.
			level = slog.LevelDebug
			w.Header().Set("Retry-After", "1")
		}
		s.log.Log(r.Context(), level, "handshake refused", "status", status, "reason", reason, "addr", addr)
		http.Error(w, reason, status)
	}
	if status, reason := s.checkRequest(r); status != 0 {
		refuse(status, reason)
		return
	}
	release, reason := s.limits.admit(addr)
	if release == nil {
		refuse(http.StatusTooManyRequests, reason)
		return
	}
	// Once upgraded, the connection's goroutine holds the address's slot.
	handedOff := false
	defer func() {
		if !handedOff {
			release()
		}
	}()
	var claims *Claims
	if s.tokens != nil {
		token := tokenFrom(r)
		if token == "" {
			refuse(http.StatusUnauthorized, "missing token")
			return
		}
		var err error
		if claims, err = s.tokens.verify(token); err != nil {
			s.log.Debug("token refused", "err", err, "addr", addr)
			refuse(http.StatusUnauthorized, tokenError(err))
			return
		}
	}
	// The request's form is checked last, so that a page that probes a
	// refused WebSocket with fetch (a browser cannot read the handshake's
	// status) learns the real reason: 401, 403, 429 or 503.
	if status, reason := checkUpgrade(r); status != 0 {
		refuse(status, reason)
		return
	}
	hj := &hijacker{ResponseWriter: w}
	ws, err := s.upgrader.Upgrade(hj, r, nil)
	if err != nil {
		s.log.Debug("upgrade failed", "err", err, "addr", addr)
		return
	}
	c := newConn(ws, s.hub, addr, claims)
	c.useReader(hj.br)
	if !s.track(c) {
		c.closeWith(wire.CloseRestart, "server is draining")
	}
	c.logAt(slog.LevelInfo, "connected")
	// Serve the connection on a goroutine of its own and return: net/http's
	// connection (its 4 KiB read and write buffers, the request, their
	// contexts) is then garbage, which more than halves what an idle peer
	// costs. The goroutine counts as a request being served, so Drain and
	// Close wait for it.
	handedOff = true
	s.enter()
	go c.serve(func() {
		s.untrack(c)
		if c.session != nil {
			// The session lost this connection (or was taken over or
			// ended): the room API shows whether it waits to resume.
			s.hub.reportDetached(c.session)
		}
		release()
		s.leave()
	})
}

// API is the room API's http.Handler, to mount at /api/ (docs/protocol.md,
// Room API). While Config.AdminToken is empty it answers 404 to
// everything.
func (s *Server) API() http.Handler { return s.api }

// checkRequest applies the cheap checks (no I/O: the broker answers Ready
// from its cached health); a non-zero status refuses the handshake.
func (s *Server) checkRequest(r *http.Request) (int, string) {
	if s.draining.Load() {
		return http.StatusServiceUnavailable, "server is draining; reconnect to another node"
	}
	// A join would fail with 1011 while the broker is away (Redis down):
	// refuse up front so that the client retries or goes to another
	// node. The detail (a Redis address) stays in the logs and /readyz.
	if err := s.broker.Ready(r.Context()); err != nil {
		return http.StatusServiceUnavailable, "not ready: cluster broker unavailable; retry shortly or reconnect to another node"
	}
	if !s.origins.check(r) {
		return http.StatusForbidden, "origin not allowed"
	}
	return 0, ""
}

// checkUpgrade checks that r is a WebSocket handshake for this protocol.
func checkUpgrade(r *http.Request) (int, string) {
	if !websocket.IsWebSocketUpgrade(r) {
		return http.StatusBadRequest, "expected a WebSocket upgrade"
	}
	if offered := websocketProtocols(r); len(offered) > 0 && !slices.Contains(offered, wire.Subprotocol) {
		return http.StatusBadRequest, "unsupported subprotocol: offer " + wire.Subprotocol
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
	s.metrics.conns.Inc()
	return !s.draining.Load()
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	s.metrics.conns.Dec()
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
	s.halt()
	s.closeAll(wire.CloseRestart, "server is restarting; reconnect and resume")
	return s.wait(ctx)
}

// Close closes every connection with 1001 (going away for good), ends
// every session, and waits for the connections to end (bounded by the
// close handshake). It closes the broker.
func (s *Server) Close() error {
	s.draining.Store(true)
	s.halt()
	s.closeAll(wire.CloseGoingAway, "server is shutting down")
	ctx, cancel := context.WithTimeout(context.Background(), closeWait+time.Second)
	defer cancel()
	err := s.wait(ctx)
	if err != nil {
		// A client that neither reads nor answers the close keeps its
		// pumps in a write or a read until their deadlines: cut it, so
		// that no pump outlives Close.
		s.abortAll()
		ctx, cancel := context.WithTimeout(context.Background(), closeWait)
		defer cancel()
		err = s.wait(ctx)
	}
	s.hub.close()
	return errors.Join(err, s.broker.Close())
}

// halt ends the event streams: they check stop between writes, and the
// write one may be blocked in fails at once. Cutting a stream is safe: a
// client reconnects with the id of the last whole event it read.
func (s *Server) halt() {
	s.stopOnce.Do(func() { close(s.stop) })
	s.mu.Lock()
	defer s.mu.Unlock()
	for st := range s.streams {
		st.abort()
	}
}

// abortAll drops every connection's network connection, close frame or not.
func (s *Server) abortAll() {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.abort(errors.New("server closed"))
	}
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

// openStream counts an event stream as a request being served, unless
// the server is draining.
func (s *Server) openStream(st *stream) bool {
	s.enter()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		s.activeDone()
		return false
	}
	s.streams[st] = struct{}{}
	s.api.streams.Inc()
	return true
}

func (s *Server) closeStream(st *stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.streams, st)
	s.api.streams.Dec()
	s.activeDone()
}

func (s *Server) enter() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == 0 {
		s.idle = make(chan struct{})
	}
	s.active++
}

func (s *Server) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.activeDone()
}

// activeDone ends a request; s.mu is held.
func (s *Server) activeDone() {
	s.active--
	if s.active == 0 {
		close(s.idle)
	}
}

// wait returns once no request is being served, or with ctx's error.
func (s *Server) wait(ctx context.Context) error {
	s.mu.Lock()
	if s.active == 0 {
		s.mu.Unlock()
		return nil
	}
	idle := s.idle
	s.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("connections still open: %w", ctx.Err())
	}
}

// rand8 names a connection in logs.
func rand8() string { return strings.Clone(rand.Text()[:8]) }
