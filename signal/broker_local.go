package signal

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// LocalBroker is the in-process Broker of a single node.
type LocalBroker struct {
	deliver Deliverer

	mu     sync.Mutex // guards rooms and closed
	rooms  map[wire.RoomID][]wire.PeerInfo
	closed bool
}

var _ Broker = (*LocalBroker)(nil)

// NewLocalBroker returns an empty in-process broker.
func NewLocalBroker() *LocalBroker {
	return &LocalBroker{rooms: make(map[wire.RoomID][]wire.PeerInfo)}
}

// Attach implements Broker.
func (b *LocalBroker) Attach(d Deliverer) { b.deliver = d }

// Join implements Broker.
func (b *LocalBroker) Join(_ context.Context, room wire.RoomID, peer wire.PeerInfo, max int) ([]wire.PeerInfo, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, ErrClosed
	}
	members := b.rooms[room]
	if len(members) >= max {
		b.mu.Unlock()
		return nil, ErrRoomFull
	}
	others := slices.Clone(members)
	b.rooms[room] = append(members, peer)
	// Deliver under the lock: a concurrent Leave or Join of the same room
	// must not reorder presence events for any member.
	if len(others) > 0 {
		frame := encodePeerJoined(peer)
		for _, m := range others {
			b.deliver.Deliver(m.ID, frame, time.Time{})
		}
	}
	b.mu.Unlock()
	return others, nil
}

// Leave implements Broker.
func (b *LocalBroker) Leave(_ context.Context, room wire.RoomID, id wire.PeerID, reason string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	members := b.rooms[room]
	i := slices.IndexFunc(members, func(p wire.PeerInfo) bool { return p.ID == id })
	if i < 0 {
		return nil
	}
	members = slices.Delete(members, i, i+1)
	if len(members) == 0 {
		delete(b.rooms, room)
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
	return slices.Clone(b.rooms[room]), nil
}

// Publish implements Broker.
func (b *LocalBroker) Publish(_ context.Context, env Envelope) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	members := b.rooms[env.Room]
	if env.To != "" {
		if !slices.ContainsFunc(members, func(p wire.PeerInfo) bool { return p.ID == env.To }) {
			return ErrUnknownPeer
		}
		b.deliver.Deliver(env.To, env.Frame, env.ReadAt)
		return nil
	}
	for _, m := range members {
		if m.ID != env.From {
			b.deliver.Deliver(m.ID, env.Frame, env.ReadAt)
		}
	}
	return nil
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
	b.rooms = make(map[wire.RoomID][]wire.PeerInfo)
	b.mu.Unlock()
	return nil
}
