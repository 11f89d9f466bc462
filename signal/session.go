package signal

import (
	"sync"
	"time"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// sessionState is where a session is in its life.
type sessionState int

const (
	// sessionPending: joined in the broker, welcome not yet queued; frames
	// wait in pending so that welcome comes first.
	sessionPending sessionState = iota
	// sessionAttached: a connection carries the session.
	sessionAttached
	// sessionDetached: the connection is gone; the peer may resume within
	// the grace, and frames wait in pending.
	sessionDetached
	// sessionGone: the peer has left the room; frames to it are dropped.
	sessionGone
)

// session is one peer's membership of a room. It outlives connections: when
// a connection ends without leave, the session waits out the resume grace.
type session struct {
	id     wire.PeerID
	room   wire.RoomID
	info   wire.PeerInfo
	joined time.Time
	grace  time.Duration // how long a detached session waits for a resume

	mu      sync.Mutex // guards the fields below; taken before conn.mu
	state   sessionState
	conn    *conn
	pending []outFrame
	resume  string      // the current resume token
	timer   *time.Timer // the grace timer, while detached
	expiry  time.Time   // when the grace of a detached session ends
	// expire runs when the grace ends or the pending queue overflows; it
	// must not be called with mu held (it talks to the broker).
	expire func(*session)

	// reportMu serializes telling the broker whether the session is
	// detached (Hub.reportDetached); taken before mu, never under it.
	reportMu sync.Mutex
	reported bool // what the broker was last told; guarded by reportMu
}

// enqueue queues frame for the peer; it never blocks. It reports whether
// the frame was kept.
func (s *session) enqueue(frame outFrame) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case sessionAttached:
		switch s.conn.push(frame) {
		case pushed:
			return true
		case pushFull:
			// Close the connection (4011) and keep what it had not written
			// for a resume.
			s.conn.hub.metrics.overflows.Inc()
			s.detachLocked(wire.CloseTooSlow, "send queue overflow")
		case pushClosed:
			// The connection is closing for another reason; its reader
			// has not detached yet.
			s.detachLocked(0, "")
		}
		return s.appendPendingLocked(frame)
	case sessionPending, sessionDetached:
		return s.appendPendingLocked(frame)
	default:
		return false
	}
}

func (s *session) appendPendingLocked(frame outFrame) bool {
	if len(s.pending) >= ResumeQueue {
		if s.state == sessionDetached {
			// Beyond the resume queue the peer is dropped as timeout.
			s.expiry = time.Now()
			s.timer.Reset(0)
		}
		return false
	}
	s.pending = append(s.pending, frame)
	return true
}

// attach hands the session to c, queuing first (the welcome, for c
// alone), then what waited in pending. It fails when the session is gone.
func (s *session) attach(c *conn, first []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == sessionGone {
		return false
	}
	if s.state == sessionAttached && s.conn != c {
		s.detachLocked(wire.CloseReplaced, "replaced by a resumed session")
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	c.pushAll(first, s.pending)
	s.pending = nil
	s.conn = c
	s.state = sessionAttached
	return true
}

// detach ends the session's use of c (if it still carries it) and starts
// the resume grace.
func (s *session) detach(c *conn, code int, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == sessionAttached && s.conn == c {
		s.detachLocked(code, reason)
	}
}

// detachLocked closes the current connection with code and moves its
// unwritten frames back to pending. s.mu is held.
func (s *session) detachLocked(code int, reason string) {
	s.conn.closeWith(code, reason)
	s.pending = append(s.conn.unsent(), s.pending...)
	s.conn = nil
	s.state = sessionDetached
	wait := s.grace
	if len(s.pending) > ResumeQueue {
		wait = 0
	}
	s.expiry = time.Now().Add(wait)
	// Never create the timer with a zero duration and stop it: it may fire
	// before Stop and expire the session at once.
	if s.timer == nil {
		s.timer = time.AfterFunc(wait, func() { s.expire(s) })
	} else {
		s.timer.Reset(wait)
	}
}

// end marks the session gone, closing its connection with code when it has
// one. It reports whether this call ended it (false: it was gone already).
func (s *session) end(code int, reason string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == sessionGone {
		return false
	}
	if s.state == sessionAttached {
		s.conn.closeWith(code, reason)
		s.conn = nil
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	s.pending = nil
	s.state = sessionGone
	return true
}

// detached reports whether the session waits out its resume grace, and
// whether it is still live (not gone).
func (s *session) detached() (detached, live bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == sessionDetached, s.state != sessionGone
}

// expireIfDetached ends a detached session whose grace ran out (or whose
// queue overflowed). It reports whether it ended it.
func (s *session) expireIfDetached() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A timer of an earlier detach may fire late, after a resume and a new
	// detach: only the current expiry counts.
	if s.state != sessionDetached || time.Now().Before(s.expiry) {
		return false
	}
	s.pending = nil
	s.state = sessionGone
	return true
}
