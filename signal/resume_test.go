package signal_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// resumeConfig keeps sessions for a minute: tests end long before.
func resumeConfig(change func(*signal.Config)) signal.Config {
	return testConfig(func(c *signal.Config) {
		c.ResumeGrace = time.Minute
		c.RateLimit, c.RateBurst = 1e6, 1e6
		if change != nil {
			change(c)
		}
	})
}

// TestResumeQueued: a peer whose connection dropped resumes with its
// token: welcome{resumed: true} with the same id and the current peers,
// then what was sent to it meanwhile, in order. The others see no
// presence change. The token rotates: the old one starts a new session.
func TestResumeQueued(t *testing.T) {
	t.Parallel()
	h := newHarness(t, resumeConfig(nil), signal.Options{})
	cs := h.joinRoom(t, "resume", 3)
	a, b, c := cs[0], cs[1], cs[2]
	old := a.welcome.Resume

	a.close()
	if code := h.waitClosed(t, a.id); code != websocket.CloseAbnormalClosure {
		t.Errorf("server logged %d for a dropped connection", code)
	}
	// Barriers between senders fix the order across them.
	for i := range 5 {
		b.send(map[string]any{"type": "message", "to": a.id, "data": i})
	}
	b.quiet()
	c.send(map[string]any{"type": "candidate", "to": a.id, "candidate": nil})
	c.quiet()
	b.send(map[string]any{"type": "message", "data": "all"})
	c.expect(wire.TypeMessage) // the broadcast
	b.quiet()
	c.quiet()

	a2 := h.dial(t)
	w := a2.join("resume", "resume", old, "name", "ignored")
	if !w.Resumed || w.ID != a.id {
		t.Fatalf("welcome %s, want resumed with id %s", describe(w), a.id)
	}
	if got := a2.peerIDs(); len(got) != 2 || got[0] != b.id || got[1] != c.id {
		t.Errorf("resumed welcome lists %v, want [%s %s]", got, b.id, c.id)
	}
	if w.Resume == "" || w.Resume == old {
		t.Errorf("resume token did not rotate: %q", w.Resume)
	}
	for i := range 5 {
		if m := a2.expect(wire.TypeMessage); m.From != b.id || string(m.Data) != strconv.Itoa(i) {
			t.Fatalf("queued message %d: got %s", i, describe(m))
		}
	}
	if m := a2.expect(wire.TypeCandidate); m.From != c.id || string(m.Candidate) != "null" {
		t.Errorf("got %s, want c's end of candidates", describe(m))
	}
	if m := a2.expect(wire.TypeMessage); m.From != b.id || string(m.Data) != `"all"` {
		t.Errorf("got %s, want b's broadcast", describe(m))
	}
	a2.quiet()
	b.quiet() // no peer-left, no peer-joined
	c.quiet()

	// The resumed session works both ways, and keeps the name the others know.
	a2.send(map[string]any{"type": "message", "to": b.id, "data": "back"})
	if m := b.expect(wire.TypeMessage); m.From != a.id {
		t.Errorf("b got %s from %s, want from %s", describe(m), m.From, a.id)
	}

	// The old token is spent: it starts a new session, and a2 keeps its own.
	a3 := h.dial(t)
	w3 := a3.join("resume", "resume", old)
	if w3.Resumed || w3.ID == a.id {
		t.Errorf("a spent token resumed: %s", describe(w3))
	}
	for _, other := range []*client{a2, b, c} {
		if m := other.expect(wire.TypePeerJoined); m.Peer.ID != w3.ID {
			t.Errorf("got %s, want peer-joined %s", describe(m), w3.ID)
		}
	}
	a2.quiet()
}

// TestResumeTakeover: resuming a session whose connection is still open
// closes that connection with 4010; the new one carries the session and
// the others see nothing.
func TestResumeTakeover(t *testing.T) {
	t.Parallel()
	h := newHarness(t, resumeConfig(nil), signal.Options{})
	cs := h.joinRoom(t, "takeover", 2)
	a, b := cs[0], cs[1]
	a2 := h.dial(t)
	w := a2.join("takeover", "resume", a.welcome.Resume)
	if !w.Resumed || w.ID != a.id {
		t.Fatalf("welcome %s, want resumed %s", describe(w), a.id)
	}
	a.expectClose(wire.CloseReplaced)
	b.send(map[string]any{"type": "message", "to": a.id, "data": "which one?"})
	if m := a2.expect(wire.TypeMessage); m.From != b.id {
		t.Errorf("got %s", describe(m))
	}
	a2.quiet()
	b.quiet()
}

// TestResumeFresh: an unknown token, one for another room, and one whose
// grace ran out are ignored: the join is a new session with a new id.
func TestResumeFresh(t *testing.T) {
	t.Parallel()
	t.Run("unknown", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, resumeConfig(nil), signal.Options{})
		c := h.dial(t)
		if w := c.join("fresh", "resume", "NOT-A-TOKEN"); w.Resumed {
			t.Errorf("welcome %s", describe(w))
		}
	})
	t.Run("other room", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, resumeConfig(nil), signal.Options{})
		cs := h.joinRoom(t, "fresh-a", 2)
		cs[0].close()
		h.waitClosed(t, cs[0].id)
		c := h.dial(t)
		if w := c.join("fresh-b", "resume", cs[0].welcome.Resume); w.Resumed || w.ID == cs[0].id {
			t.Errorf("a token of another room resumed: %s", describe(w))
		}
		cs[1].quiet()
	})
	t.Run("expired", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, resumeConfig(func(c *signal.Config) { c.ResumeGrace = 200 * time.Millisecond }), signal.Options{})
		cs := h.joinRoom(t, "fresh-expired", 2)
		a, b := cs[0], cs[1]
		a.close()
		if m := b.expect(wire.TypePeerLeft); m.ID != a.id || m.Reason != wire.ReasonTimeout {
			t.Fatalf("got %s, want peer-left timeout", describe(m))
		}
		a2 := h.dial(t)
		w := a2.join("fresh-expired", "resume", a.welcome.Resume)
		if w.Resumed || w.ID == a.id {
			t.Errorf("an expired token resumed: %s", describe(w))
		}
		if got := a2.peerIDs(); len(got) != 1 || got[0] != b.id {
			t.Errorf("welcome lists %v", got)
		}
		if m := b.expect(wire.TypePeerJoined); m.Peer.ID != w.ID {
			t.Errorf("got %s", describe(m))
		}
	})
	t.Run("after leave", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, resumeConfig(nil), signal.Options{})
		a := h.joinRoom(t, "fresh-left", 1)[0]
		a.send(map[string]any{"type": "leave"})
		a.expectClose(websocket.CloseNormalClosure)
		a2 := h.dial(t)
		if w := a2.join("fresh-left", "resume", a.welcome.Resume); w.Resumed || w.ID == a.id || len(w.Peers) != 0 {
			t.Errorf("a token of a peer that left resumed: %s", describe(w))
		}
	})
}

// TestResumeQueueBound: a vanished peer's queue holds ResumeQueue (256)
// messages, all delivered in order on resume; one more drops the peer as
// timeout, and its token then starts a new session.
func TestResumeQueueBound(t *testing.T) {
	t.Parallel()
	t.Run("full queue resumes", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, resumeConfig(nil), signal.Options{})
		cs := h.joinRoom(t, "bound-ok", 2)
		a, b := cs[0], cs[1]
		a.close()
		h.waitClosed(t, a.id)
		for i := range signal.ResumeQueue {
			b.send(map[string]any{"type": "message", "to": a.id, "data": i})
		}
		b.quiet()
		a2 := h.dial(t)
		if w := a2.join("bound-ok", "resume", a.welcome.Resume); !w.Resumed {
			t.Fatalf("welcome %s, want resumed", describe(w))
		}
		for i := range signal.ResumeQueue {
			if m := a2.expect(wire.TypeMessage); string(m.Data) != strconv.Itoa(i) {
				t.Fatalf("message %d: got %s", i, describe(m))
			}
		}
		a2.quiet()
		b.quiet()
	})
	t.Run("overflow drops", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, resumeConfig(nil), signal.Options{})
		cs := h.joinRoom(t, "bound-over", 3)
		a, b, c := cs[0], cs[1], cs[2]
		a.close()
		h.waitClosed(t, a.id)
		for i := range signal.ResumeQueue + 1 {
			b.send(map[string]any{"type": "message", "to": a.id, "data": i})
		}
		for _, other := range []*client{b, c} {
			if m := other.expect(wire.TypePeerLeft); m.ID != a.id || m.Reason != wire.ReasonTimeout {
				t.Fatalf("got %s, want peer-left %s timeout", describe(m), a.id)
			}
			other.quiet()
		}
		a2 := h.dial(t)
		if w := a2.join("bound-over", "resume", a.welcome.Resume); w.Resumed || w.ID == a.id {
			t.Errorf("a dropped session resumed: %s", describe(w))
		}
	})
}
