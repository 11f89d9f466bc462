package signal

import (
	"context"
	"errors"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// What the hub asks of a broker that keeps sessions for the whole cluster
// (RedisBroker), found by type assertion: LocalBroker needs none of it,
// since the hub's own maps hold every session of one node.
type (
	// tokenKeeper learns each session's current resume token.
	tokenKeeper interface {
		Remember(ctx context.Context, id wire.PeerID, token string) error
	}
	// sessionClaimer takes over, for this node, a session that another
	// node held, then replays what its peer missed.
	sessionClaimer interface {
		Claim(ctx context.Context, token string, room wire.RoomID, newToken string) (Member, error)
		Replay(ctx context.Context, id wire.PeerID) error
	}
)

// remember tells a cluster broker the session's resume token.
func (h *Hub) remember(id wire.PeerID, token string) {
	tk, ok := h.broker.(tokenKeeper)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	if err := tk.Remember(ctx, id, token); err != nil {
		h.log.Warn("resume token not shared: resuming on another node will fail", "peer", id, "err", err)
	}
}

// claim resumes, on this node, a session another node held. It reports
// false when the cluster has no session for the token.
func (h *Hub) claim(c *conn, m *wire.Message, token string) bool {
	cl, ok := h.broker.(sessionClaimer)
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	member, err := cl.Claim(ctx, m.Resume, m.Room, token)
	if err != nil {
		if !errors.Is(err, ErrNoSession) {
			h.log.Warn("cluster resume failed", "room", m.Room, "err", err)
		}
		return false
	}
	s := &session{
		id:     member.ID,
		room:   m.Room,
		info:   member.PeerInfo,
		joined: member.JoinedAt,
		grace:  h.cfg.ResumeGrace,
		state:  sessionPending,
		expire: h.expire,
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		c.fail(wire.CloseGoingAway, "server is shutting down")
		return true
	}
	if old := h.sessions[s.id]; old != nil {
		// A stale copy of the same session (it came back here): replace.
		delete(h.tokens, old.resume)
		h.metrics.peers.Dec()
		defer old.end(wire.CloseReplaced, "replaced by a resumed session")
	}
	s.resume = token
	h.sessions[s.id] = s
	h.tokens[token] = s
	h.metrics.peers.Inc()
	h.mu.Unlock()
	if err := cl.Replay(ctx, s.id); err != nil {
		h.log.Warn("cluster resume: backlog not replayed", "peer", s.id, "err", err)
	}
	return h.welcomeBack(ctx, c, s, token, "resumed from another node")
}

// endLocal ends session id on this node without telling the room: the
// cluster moved it elsewhere or lost it.
func (h *Hub) endLocal(id wire.PeerID, code int, reason string) {
	h.mu.Lock()
	s := h.sessions[id]
	if s != nil {
		delete(h.sessions, id)
		delete(h.tokens, s.resume)
		h.metrics.peers.Dec()
	}
	h.mu.Unlock()
	if s != nil && s.end(code, reason) {
		h.log.Info("session ended on this node", "peer", id, "room", s.room, "reason", reason)
	}
}

// unsentCount is how many frames for id wait unwritten on this node, -1
// when it holds no such session.
func (h *Hub) unsentCount(id wire.PeerID) int {
	h.mu.RLock()
	s := h.sessions[id]
	h.mu.RUnlock()
	if s == nil {
		return -1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.pending)
	if s.state == sessionAttached && s.conn != nil {
		n += s.conn.queued()
	}
	return n
}

// isDetached reports whether session id of this node waits out its grace.
func (h *Hub) isDetached(id wire.PeerID) bool {
	h.mu.RLock()
	s := h.sessions[id]
	h.mu.RUnlock()
	if s == nil {
		return false
	}
	d, _ := s.detached()
	return d
}

// queued is the number of frames waiting for the writer.
func (c *conn) queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}
