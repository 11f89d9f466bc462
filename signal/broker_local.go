package signal

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// LocalBroker is the in-process Broker of a single node.
type LocalBroker struct {
	deliver Deliverer

	mu     sync.Mutex // guards rooms and closed
	rooms  map[wire.RoomID][]Member
	closed bool
}

var _ Broker = (*LocalBroker)(nil)

// NewLocalBroker returns an empty in-process broker.
func NewLocalBroker() *LocalBroker {
	return &LocalBroker{rooms: make(map[wire.RoomID][]Member)}
}

// Attach implements Broker.
func (b *LocalBroker) Attach(d Deliverer) { b.deliver = d }

// Join implements Broker.
func (b *LocalBroker) Join(_ context.Context, room wire.RoomID, peer wire.PeerInfo, max int) ([]wire.PeerInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	members := b.rooms[room]
	if len(members) >= max {
		return nil, ErrRoomFull
	}
	others := infos(members)
	now := time.Now()
	b.rooms[room] = append(members, Member{PeerInfo: peer, JoinedAt: now})
	// Deliver and report under the lock: a concurrent Leave or Join of the
	// same room must not reorder presence events for any member or observer.
	if len(others) == 0 {
		b.deliver.Presence(PresenceEvent{Kind: RoomCreated, Room: room, Time: now})
	} else {
		frame := encodePeerJoined(peer)
		for _, m := range others {
			b.deliver.Deliver(m.ID, frame, time.Time{})
		}
	}
	b.deliver.Presence(PresenceEvent{Kind: PeerJoined, Room: room, Peer: peer, Time: now})
	return others, nil
}

// Leave implements Broker.
func (b *LocalBroker) Leave(_ context.Context, room wire.RoomID, id wire.PeerID, reason string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	members := b.rooms[room]
	i := b.index(room, id)
	if i < 0 {
		return nil
	}
	now := time.Now()
	members = slices.Delete(members, i, i+1)
	b.deliver.Presence(PresenceEvent{Kind: PeerLeft, Room: room, Peer: wire.PeerInfo{ID: id}, Reason: reason, Time: now})
	if len(members) == 0 {
		delete(b.rooms, room)
		b.deliver.Presence(PresenceEvent{Kind: RoomClosed, Room: room, Time: now})
		return nil
	}
	b.rooms[room] = members
	frame := encodePeerLeft(id, reason)
	for _, m := range members {
		b.deliver.Deliver(m.ID, frame, time.Time{})
	}
	return nil
}

// Members implements Broker.
func (b *LocalBroker) Members(_ context.Context, room wire.RoomID) ([]wire.PeerInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return infos(b.rooms[room]), nil
}

// Publish implements Broker.
func (b *LocalBroker) Publish(_ context.Context, env Envelope) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if env.To != "" {
		if b.index(env.Room, env.To) < 0 {
			return ErrUnknownPeer
		}
		b.deliver.Deliver(env.To, env.Frame, env.ReadAt)
		return nil
	}
	for _, m := range b.rooms[env.Room] {
		if m.ID != env.From {
			b.deliver.Deliver(m.ID, env.Frame, env.ReadAt)
		}
	}
	return nil
}

// Rooms implements Broker.
func (b *LocalBroker) Rooms(context.Context) ([]RoomCount, error) {
	b.mu.Lock()
	rooms := make([]RoomCount, 0, len(b.rooms))
	for room, members := range b.rooms {
		rooms = append(rooms, RoomCount{Room: room, Peers: len(members)})
	}
	b.mu.Unlock()
	slices.SortFunc(rooms, func(x, y RoomCount) int { return strings.Compare(string(x.Room), string(y.Room)) })
	return rooms, nil
}

// Roster implements Broker.
func (b *LocalBroker) Roster(_ context.Context, room wire.RoomID) ([]Member, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.rooms[room]), nil
}

// SetDetached implements Broker.
func (b *LocalBroker) SetDetached(_ context.Context, room wire.RoomID, id wire.PeerID, detached bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i := b.index(room, id); i >= 0 {
		b.rooms[room][i].Detached = detached
	}
	return nil
}

// Kick implements Broker: on one node the holder is this node's hub.
func (b *LocalBroker) Kick(_ context.Context, room wire.RoomID, id wire.PeerID) error {
	b.mu.Lock()
	member := b.index(room, id) >= 0
	b.mu.Unlock()
	// The hub's kick calls Leave: not under b.mu.
	if !member || !b.deliver.Kick(room, id) {
		return ErrUnknownPeer
	}
	return nil
}

// index is the position of member id in room, or -1. b.mu is held.
func (b *LocalBroker) index(room wire.RoomID, id wire.PeerID) int {
	return slices.IndexFunc(b.rooms[room], func(m Member) bool { return m.ID == id })
}

// Ready implements Broker: an in-process broker is always ready until closed.
func (b *LocalBroker) Ready(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	return nil
}

// Close implements Broker.
func (b *LocalBroker) Close() error {
	b.mu.Lock()
	b.closed = true
	b.rooms = make(map[wire.RoomID][]Member)
	b.mu.Unlock()
	return nil
}

// infos returns the peers of member records, nil for none.
func infos(members []Member) []wire.PeerInfo {
	if len(members) == 0 {
		return nil
	}
	out := make([]wire.PeerInfo, len(members))
	for i, m := range members {
		out[i] = m.PeerInfo
	}
	return out
}
