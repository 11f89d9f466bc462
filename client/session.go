package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// This file is the session across connections, run by the loop: the first
// welcome, reconnection with backoff after a drop, and the welcome of a
// reconnection, resumed or not.

// startSession sets up a new session from its welcome: this client is the
// newcomer and offers to everyone already there.
func (c *Client) startSession(w wire.Message) {
	c.setID(w.ID)
	for _, info := range w.Peers {
		if info.ID == "" || info.ID == c.id {
			continue
		}
		if _, dup := c.peers[info.ID]; dup {
			continue
		}
		if p := c.addPeer(info, true); p != nil {
			c.emit(PeerJoined{Peer: p})
		}
	}
}

// onConnLost handles the end of the signaling connection: stop for good,
// or reconnect (at once after 1012).
func (c *Client) onConnLost(err error) {
	c.conn.close()
	c.conn = nil
	if terminal := closeOutcome(err); terminal != nil {
		c.end(terminal)
		return
	}
	c.attempt = 0
	var delay time.Duration
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != wire.CloseRestart {
		delay = c.opts.Reconnect.next(0)
	}
	c.log.Info("signaling connection lost, reconnecting", "err", err, "delay", delay)
	c.emit(Disconnected{Err: err, Attempt: 1, Delay: delay})
	c.reconnectAfter(delay)
}

// closeOutcome is the terminal error for a close code after which the
// client must not reconnect, or nil.
func closeOutcome(err error) error {
	var ce *CloseError
	if !errors.As(err, &ce) {
		return nil
	}
	switch ce.Code {
	case wire.CloseReplaced:
		return fmt.Errorf("%w: %w", ErrReplaced, ce)
	case wire.CloseKicked:
		return fmt.Errorf("%w: %w", ErrKicked, ce)
	case wire.CloseNormal, wire.CloseUnsupported, wire.CloseInvalidPayload, wire.ClosePolicy, wire.CloseTooBig:
		return fmt.Errorf("%w: %w", ErrServerClosed, ce)
	}
	return nil
}

// retryable reports whether a failed reconnection attempt may be retried.
func retryable(err error) bool {
	var he *HandshakeError
	switch {
	case errors.As(err, &he):
		return he.Retryable()
	case errors.Is(err, ErrJoinRefused), errors.Is(err, ErrProtocol):
		return false
	}
	return closeOutcome(err) == nil
}

// reconnectAfter makes one reconnection attempt after delay, on its own
// goroutine; the loop gets the outcome on upCh.
func (c *Client) reconnectAfter(delay time.Duration) {
	resume := c.resume
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.stop:
			return
		}
		j, err := c.connect(c.stopCtx, resume)
		select {
		case c.upCh <- reconnected{joined: j, err: err}:
		case <-c.stop:
			if err == nil {
				_ = j.ws.Close()
			}
		}
	}()
}

func (c *Client) onReconnect(r reconnected) {
	if r.err != nil {
		if !retryable(r.err) {
			c.end(r.err)
			return
		}
		c.attempt++
		if max := c.opts.Reconnect.MaxAttempts; max > 0 && c.attempt >= max {
			c.end(fmt.Errorf("%w after %d attempts: %w", ErrGaveUp, c.attempt, r.err))
			return
		}
		delay := c.opts.Reconnect.next(c.attempt)
		c.log.Info("reconnection failed", "err", r.err, "attempt", c.attempt, "delay", delay)
		c.emit(Disconnected{Err: r.err, Attempt: c.attempt + 1, Delay: delay})
		c.reconnectAfter(delay)
		return
	}
	w := r.joined.welcome
	c.conn = startConn(r.joined.ws, c.sigIn, c.opts, c.log)
	c.attempt = 0
	c.resume = w.Resume
	c.setICEServers(w.ICEServers)
	if w.Resumed && w.ID == c.id {
		c.resumeSession(w)
	} else {
		c.resetSession(w)
	}
}

// resumeSession reconciles the peers with a resumed welcome and restarts
// ICE where the path was lost while the signaling was down.
func (c *Client) resumeSession(w wire.Message) {
	c.log.Info("session resumed", "peers", len(w.Peers))
	present := map[wire.PeerID]bool{}
	for _, info := range w.Peers {
		present[info.ID] = true
	}
	for id, p := range c.peers {
		if !present[id] {
			c.dropPeer(p, ReasonGone)
		}
	}
	c.emit(Reconnected{ID: c.id, Resumed: true})
	for _, info := range w.Peers {
		// Joined while this client was away: its offer is queued.
		c.onPeerJoined(info)
	}
	cfg := c.rtcConfig()
	for _, p := range c.peers {
		p.afterResume(cfg)
	}
}

// resetSession starts over after a reconnection that could not resume:
// the old peers are gone for this client, which is now a newcomer.
func (c *Client) resetSession(w wire.Message) {
	c.log.Info("session not resumed, joined as a new peer", "peer", w.ID)
	for _, p := range c.peers {
		c.dropPeer(p, ReasonReset)
	}
	c.outbox = nil
	c.since = time.Now()
	c.emit(Reconnected{ID: w.ID, Resumed: false})
	c.startSession(w)
}
