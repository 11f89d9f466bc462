package signal

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// ICEProvider gives each peer its ICE servers (STUN and TURN URLs with
// credentials for that peer). The TURN package implements it.
type ICEProvider interface {
	ICEServers(peer wire.PeerID) []wire.ICEServer
}

// brokerTimeout bounds one call into the broker.
const brokerTimeout = 5 * time.Second

// Hub holds this node's sessions and serves the messages of their
// connections. Rooms and presence live in the Broker.
//
// Lock order: broker locks, then Hub.mu, then session.mu, then conn.mu.
// The hub never calls the broker while holding its own locks.
type Hub struct {
	cfg     Config
	log     *slog.Logger
	broker  Broker
	ice     ICEProvider
	metrics *metrics
	events  *eventLog         // presence events for the room API
	revoke  func(wire.PeerID) // nil: no TURN credentials to revoke

	mu       sync.RWMutex // guards the fields below
	sessions map[wire.PeerID]*session
	tokens   map[string]*session // by current resume token
	closed   bool
}

var _ Deliverer = (*Hub)(nil)

func newHub(cfg Config, log *slog.Logger, b Broker, ice ICEProvider, m *metrics, events *eventLog, revoke func(wire.PeerID)) *Hub {
	h := &Hub{
		cfg:      cfg,
		log:      log,
		broker:   b,
		ice:      ice,
		metrics:  m,
		events:   events,
		revoke:   revoke,
		sessions: make(map[wire.PeerID]*session),
		tokens:   make(map[string]*session),
	}
	b.Attach(h)
	return h
}

// Deliver implements Deliverer: it queues frame for a local peer.
func (h *Hub) Deliver(to wire.PeerID, frame []byte, readAt time.Time) {
	h.mu.RLock()
	s := h.sessions[to]
	h.mu.RUnlock()
	if s != nil {
		s.enqueue(outFrame{data: frame, readAt: readAt})
	}
}

func (h *Hub) handleJoin(c *conn, m *wire.Message) {
	if c.session != nil {
		c.sendError(&wire.Error{Code: wire.CodeAlreadyJoined, Message: "this connection has joined already", Ref: m.Ref})
		return
	}
	if c.claims != nil {
		if !c.claims.allows(m.Room) {
			msg := "the token does not allow room " + string(m.Room)
			if c.claims.Room == "" {
				msg = `the token has no room claim (use "*" for any room)`
			}
			c.sendError(&wire.Error{Code: wire.CodeForbidden, Message: msg, Ref: m.Ref})
			return
		}
		// The token's name overrides join.name; its subject is the default.
		if c.claims.Name != "" {
			m.Name = c.claims.Name
		} else if m.Name == "" {
			m.Name = c.claims.Subject
		}
	}
	if m.Resume != "" {
		if h.resume(c, m) {
			h.metrics.resumes.WithLabelValues("ok").Inc()
			return
		}
		h.metrics.resumes.WithLabelValues("failed").Inc()
	}
	h.join(c, m)
}

// join starts a new session in m.Room.
func (h *Hub) join(c *conn, m *wire.Message) {
	info := wire.PeerInfo{ID: wire.PeerID(rand.Text()), Name: m.Name, Meta: m.Meta}
	if info.Meta == nil {
		info.Meta = json.RawMessage("{}")
	}
	s := &session{
		id:     info.ID,
		room:   m.Room,
		info:   info,
		joined: time.Now(),
		grace:  h.cfg.ResumeGrace,
		state:  sessionPending,
		expire: h.expire,
	}
	token, ok := h.register(s)
	if !ok {
		c.fail(wire.CloseGoingAway, "server is shutting down")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	others, err := h.broker.Join(ctx, m.Room, info, h.cfg.MaxPeersPerRoom)
	if err != nil {
		h.unregister(s)
		s.end(0, "")
		if errors.Is(err, ErrRoomFull) {
			c.sendError(&wire.Error{Code: wire.CodeRoomFull, Message: "the room is full", Ref: m.Ref})
			return
		}
		h.log.Error("join failed", "room", m.Room, "err", err)
		c.fail(wire.CloseInternal, "internal error")
		return
	}
	h.remember(s.id, token)
	c.name.joined(s.id, s.room)
	if !h.welcome(c, s, others, token, false) {
		// The session ended before its welcome: it was kicked (or the
		// server is closing, whose own close code then wins).
		c.closeWith(wire.CloseKicked, "kicked")
		return
	}
	c.logAt(slog.LevelInfo, "joined", "peers", len(others))
}

// resume takes an earlier session back for c. It reports false when the
// token is unknown or expired, so the join proceeds as a new session.
func (h *Hub) resume(c *conn, m *wire.Message) bool {
	token := rand.Text() + rand.Text()
	h.mu.Lock()
	s := h.tokens[m.Resume]
	if s == nil || s.room != m.Room || h.sessions[s.id] != s {
		h.mu.Unlock()
		// Another node of the cluster may hold it.
		return h.claim(c, m, token)
	}
	delete(h.tokens, m.Resume)
	h.tokens[token] = s
	s.resume = token
	h.mu.Unlock()
	h.remember(s.id, token)

	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	return h.welcomeBack(ctx, c, s, token, "resumed")
}

// welcomeBack attaches a resumed session s to c with its welcome, which
// lists the room's other members, and logs msg. It reports false when the
// session ended meanwhile (as welcome does), true otherwise.
func (h *Hub) welcomeBack(ctx context.Context, c *conn, s *session, token, msg string) bool {
	members, err := h.broker.Members(ctx, s.room)
	if err != nil {
		h.log.Error("resume failed", "room", s.room, "err", err)
		c.fail(wire.CloseInternal, "internal error")
		return true
	}
	others := make([]wire.PeerInfo, 0, len(members))
	for _, p := range members {
		if p.ID != s.id {
			others = append(others, p)
		}
	}
	c.name.joined(s.id, s.room)
	if !h.welcome(c, s, others, token, true) {
		return false
	}
	h.reportDetached(s)
	c.logAt(slog.LevelInfo, msg, "peers", len(others))
	return true
}

// welcome attaches s to c with its welcome first. It fails when the
// session ended meanwhile.
func (h *Hub) welcome(c *conn, s *session, others []wire.PeerInfo, token string, resumed bool) bool {
	if others == nil {
		others = []wire.PeerInfo{}
	}
	ice := []wire.ICEServer{}
	if h.ice != nil {
		ice = append(ice, h.ice.ICEServers(s.id)...)
	}
	frame, err := wire.Encode(wire.Welcome{
		Type: wire.TypeWelcome, ID: s.id, Room: s.room, Peers: others,
		ICEServers: ice, Resume: token, Resumed: resumed,
	})
	if err != nil {
		h.log.Error("encode welcome", "err", err)
		c.fail(wire.CloseInternal, "internal error")
		return false
	}
	if !s.attach(c, frame) {
		return false
	}
	c.session = s
	c.joined.Store(true)
	return true
}

func (h *Hub) handleLeave(c *conn, _ *wire.Message) {
	s := c.session
	// Tell the room before closing: once the client sees 1000, a join to
	// the same room must not find it there. Leaving twice is harmless.
	h.leave(s, wire.ReasonLeft)
	if s.end(wire.CloseNormal, "left") {
		c.logAt(slog.LevelInfo, "left")
	}
}

func (h *Hub) handleRelay(c *conn, m *wire.Message) {
	s := c.session
	if m.To == s.id {
		c.sendError(&wire.Error{Code: wire.CodeUnknownPeer, Message: "to names this peer itself", Ref: m.Ref})
		return
	}
	ref := m.Ref
	// Relay the type's own fields and no others: a client must not slip
	// fields of the server's messages (peer, reason, code, ...) or its ref
	// into what the others get. EncodeRelay writes what wire.Encode would,
	// without reflection.
	frame := wire.EncodeRelay(m, s.id)
	// No deadline of our own on this hot path: a broker that talks to a
	// network bounds its calls itself.
	err := h.broker.Publish(context.Background(), Envelope{Room: s.room, From: s.id, To: m.To, Frame: frame, ReadAt: c.readAt})
	switch {
	case err == nil:
		h.metrics.relayedOf(m.Type).Inc()
	case errors.Is(err, ErrUnknownPeer):
		c.sendError(&wire.Error{Code: wire.CodeUnknownPeer, Message: "no peer " + string(m.To) + " in this room", Ref: ref})
	case errors.Is(err, ErrUnavailable):
		c.sendError(&wire.Error{Code: wire.CodeUnavailable, Message: "peer " + string(m.To) + " is on a node this one cannot reach now; try again", Ref: ref})
	default:
		h.log.Error("relay failed", "err", err)
		c.fail(wire.CloseInternal, "internal error")
	}
}

// expire ends a detached session whose grace ran out, telling the room.
func (h *Hub) expire(s *session) {
	if !s.expireIfDetached() {
		return
	}
	h.leave(s, wire.ReasonTimeout)
	h.log.Info("session expired", "peer", s.id, "room", s.room)
}

// leave forgets an ended session and tells its room.
func (h *Hub) leave(s *session, reason string) {
	h.unregister(s)
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	if err := h.broker.Leave(ctx, s.room, s.id, reason); err != nil {
		h.log.Error("leave failed", "peer", s.id, "room", s.room, "err", err)
	}
}

// Kick implements Deliverer: it removes a session of this node from room.
// Its resume token stops working at once; its connection, if it has one,
// is closed with 4003; the room gets peer-left with reason kicked.
func (h *Hub) Kick(room wire.RoomID, id wire.PeerID) bool {
	h.mu.Lock()
	s := h.sessions[id]
	if s == nil || s.room != room {
		h.mu.Unlock()
		return false
	}
	delete(h.sessions, id)
	delete(h.tokens, s.resume)
	h.metrics.peers.Dec()
	h.mu.Unlock()
	// Close before telling the room: a kicked peer's frames still being
	// read must not reach the others after they saw it leave.
	s.end(wire.CloseKicked, "kicked")
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	if err := h.broker.Leave(ctx, room, id, wire.ReasonKicked); err != nil {
		h.log.Error("leave after kick failed", "peer", id, "room", room, "err", err)
	}
	h.log.Info("peer kicked", "peer", id, "room", room)
	return true
}

// Presence implements Deliverer: it records the event for the room API's
// stream and refuses a kicked peer's TURN credentials. The broker may hold
// its locks: neither blocks.
func (h *Hub) Presence(ev PresenceEvent) {
	h.events.append(ev)
	if ev.Kind == PeerLeft && ev.Reason == wire.ReasonKicked && h.revoke != nil {
		h.revoke(ev.Peer.ID)
	}
}

// reportDetached tells the broker whether s waits out its resume grace,
// when that changed since it last did. It runs after every change of
// connection (the end of one, a resume), with no lock held; reports of one
// session are serialized and each reads the state anew, so the last one
// tells the final state.
func (h *Hub) reportDetached(s *session) {
	s.reportMu.Lock()
	defer s.reportMu.Unlock()
	detached, live := s.detached()
	if !live || detached == s.reported {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	if err := h.broker.SetDetached(ctx, s.room, s.id, detached); err != nil {
		h.log.Warn("presence update failed", "peer", s.id, "room", s.room, "err", err)
		return
	}
	s.reported = detached
}

// register adds a new session and returns its resume token.
func (h *Hub) register(s *session) (string, bool) {
	token := rand.Text() + rand.Text()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return "", false
	}
	s.resume = token
	h.sessions[s.id] = s
	h.tokens[token] = s
	h.metrics.peers.Inc()
	return token, true
}

func (h *Hub) unregister(s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sessions[s.id] == s {
		delete(h.sessions, s.id)
		delete(h.tokens, s.resume)
		h.metrics.peers.Dec()
	}
}

// roomCount is the number of rooms with a session on this node.
func (h *Hub) roomCount() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	rooms := make(map[wire.RoomID]struct{})
	for _, s := range h.sessions {
		rooms[s.room] = struct{}{}
	}
	return len(rooms)
}

// close ends every session without telling the broker (the node is going
// away; its presence goes with it) and stops their timers.
func (h *Hub) close() {
	h.mu.Lock()
	h.closed = true
	sessions := h.sessions
	h.sessions = make(map[wire.PeerID]*session)
	h.tokens = make(map[string]*session)
	h.metrics.peers.Sub(float64(len(sessions)))
	h.mu.Unlock()
	for _, s := range sessions {
		s.end(wire.CloseGoingAway, "server is shutting down")
	}
}

var pongFrame = mustEncode(wire.Message{Type: wire.TypePong})

func encodePeerJoined(p wire.PeerInfo) []byte {
	return mustEncode(wire.Message{Type: wire.TypePeerJoined, Peer: &p})
}

func encodePeerLeft(id wire.PeerID, reason string) []byte {
	return mustEncode(wire.Message{Type: wire.TypePeerLeft, ID: id, Reason: reason})
}

// mustEncode encodes messages built by the server from valid parts.
func mustEncode(m wire.Message) []byte {
	b, err := wire.Encode(m)
	if err != nil {
		panic(err)
	}
	return b
}
