package signal_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// TestConcurrentRooms: 50 rooms at once, in each six peers that connect
// and join at the same moment, two of which leave as soon as they are
// welcomed, racing the others' joins. In the end every remaining peer's
// view (its welcome, then each peer-joined and peer-left in order) is
// exactly the other remaining peers, no event was ever inconsistent
// (joined twice, left unseen, another room's peer), and nothing more
// arrives.
func TestConcurrentRooms(t *testing.T) {
	t.Parallel()
	const rooms, peers = 50, 6
	h := newHarness(t, testConfig(nil), signal.Options{})
	errs := make(chan error, rooms)
	var wg sync.WaitGroup
	for r := range rooms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := raceRoom(t, h, fmt.Sprintf("race-%02d", r), peers); err != nil {
				errs <- fmt.Errorf("room %d: %w", r, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// raceRoom runs one room of TestConcurrentRooms. It runs off the test
// goroutine, so it returns errors instead of failing the test.
func raceRoom(t *testing.T, h *harness, room string, n int) error {
	leaves := func(i int) bool { return i%3 == 1 }
	clients := make([]*client, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = func() error {
				c, _, err := h.tryDial(t, dialOpts{})
				if err != nil {
					return err
				}
				clients[i] = c
				if err := c.trySend(map[string]any{"type": "join", "room": room}); err != nil {
					return err
				}
				f, err := c.recv(wait)
				if err != nil || f.msg.Type != wire.TypeWelcome {
					return fmt.Errorf("peer %d: want welcome, got %s (%v)", i, f.raw, err)
				}
				c.id, c.welcome = f.msg.ID, f.msg
				if leaves(i) {
					return c.trySend(map[string]any{"type": "leave"})
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}

	everyone := map[wire.PeerID]bool{}
	var stayers []wire.PeerID
	for i, c := range clients {
		everyone[c.id] = true
		if !leaves(i) {
			stayers = append(stayers, c.id)
		}
	}
	// Once every leaver has its 1000, every join and leave of the room is
	// done (the hub tells the room before it closes a leaver).
	for i, c := range clients {
		if leaves(i) {
			if err := c.checkLeft(everyone); err != nil {
				return fmt.Errorf("leaver %d: %w", i, err)
			}
		}
	}
	for i, c := range clients {
		if !leaves(i) {
			if err := c.converge(everyone, stayers); err != nil {
				return fmt.Errorf("peer %d: %w", i, err)
			}
		}
	}
	return nil
}

// checkLeft reads a leaver's last messages (presence of its room only)
// and its 1000.
func (c *client) checkLeft(everyone map[wire.PeerID]bool) error {
	for {
		f, err := c.recv(wait)
		if err != nil {
			if code := closeCode(err); code != websocket.CloseNormalClosure {
				return fmt.Errorf("closed with %d (%v), want 1000", code, err)
			}
			return nil
		}
		switch m := f.msg; {
		case m.Type == wire.TypePeerJoined && everyone[m.Peer.ID]:
		case m.Type == wire.TypePeerLeft && everyone[m.ID]:
		default:
			return fmt.Errorf("got %s", f.raw)
		}
	}
}

// converge applies a remaining peer's presence events, checking each, to
// its welcome's list, up to the pong of a ping sent after every join and
// leave of the room was done; the list must then be exactly the other
// remaining peers.
func (c *client) converge(everyone map[wire.PeerID]bool, stayers []wire.PeerID) error {
	view := map[wire.PeerID]bool{}
	for _, p := range c.welcome.Peers {
		if !everyone[p.ID] || view[p.ID] || p.ID == c.id {
			return fmt.Errorf("welcome lists %s wrongly", p.ID)
		}
		view[p.ID] = true
	}
	want := map[wire.PeerID]bool{}
	for _, id := range stayers {
		if id != c.id {
			want[id] = true
		}
	}
	if err := c.trySend(map[string]any{"type": "ping"}); err != nil {
		return err
	}
	for {
		f, err := c.recv(wait)
		if err != nil {
			return fmt.Errorf("view %v, want %v: %w", view, want, err)
		}
		switch m := f.msg; m.Type {
		case wire.TypePeerJoined:
			if m.Peer == nil || !everyone[m.Peer.ID] || view[m.Peer.ID] || m.Peer.ID == c.id {
				return fmt.Errorf("inconsistent %s with view %v", f.raw, view)
			}
			view[m.Peer.ID] = true
		case wire.TypePeerLeft:
			if !view[m.ID] || want[m.ID] || m.Reason != wire.ReasonLeft {
				return fmt.Errorf("inconsistent %s with view %v", f.raw, view)
			}
			delete(view, m.ID)
		case wire.TypePong:
			if !sameSet(view, want) {
				return fmt.Errorf("final view %v, want %v", view, want)
			}
			return nil
		default:
			return fmt.Errorf("got %s", f.raw)
		}
	}
}

func sameSet(a, b map[wire.PeerID]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
