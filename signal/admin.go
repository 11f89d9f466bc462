package signal

import (
	"errors"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// DropConnection cuts the network connection that carries peer id on this
// node, without a close frame, as a network blip would: the peer's session
// waits out the resume grace. It reports whether such a connection existed.
// Operators and tests use it to exercise resume.
func (s *Server) DropConnection(id wire.PeerID) bool {
	s.hub.mu.RLock()
	sess := s.hub.sessions[id]
	s.hub.mu.RUnlock()
	if sess == nil {
		return false
	}
	sess.mu.Lock()
	c := sess.conn
	sess.mu.Unlock()
	if c == nil {
		return false
	}
	c.abort(errors.New("dropped by DropConnection"))
	return true
}
