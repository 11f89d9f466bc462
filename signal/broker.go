package signal

import (
	"context"
	"time"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// Broker carries presence and messages between this node's hub and the
// rest of the cluster. The hub reaches other peers only through it, even on
// one node, so the single-node and clustered paths are the same code.
//
// A broker delivers to this node's peers by calling the Deliverer it was
// attached to. Delivery to one peer keeps the order of Publish calls made by
// one sender.
type Broker interface {
	// Attach tells the broker where to deliver frames for this node's peers.
	// It is called once, before any other method.
	Attach(d Deliverer)
	// Join adds peer to room unless the room already has max members
	// (ErrRoomFull), tells the members already there (peer-joined), and
	// returns them in the order they joined.
	Join(ctx context.Context, room wire.RoomID, peer wire.PeerInfo, max int) ([]wire.PeerInfo, error)
	// Leave removes a peer from room and tells the others (peer-left with
	// reason). Leaving twice is not an error.
	Leave(ctx context.Context, room wire.RoomID, id wire.PeerID, reason string) error
	// Members returns room's members in the order they joined.
	Members(ctx context.Context, room wire.RoomID) ([]wire.PeerInfo, error)
	// Publish delivers env to its one addressee (ErrUnknownPeer when it is
	// not in the room) or, without one, to every member but the sender.
	Publish(ctx context.Context, env Envelope) error
	// Ready reports whether the broker can serve (nil) or why not.
	Ready(ctx context.Context) error
	// Close releases the broker's resources.
	Close() error
}

// Envelope is one encoded frame on its way to one or all peers of a room.
type Envelope struct {
	Room wire.RoomID
	// From is the sender, never delivered to by a broadcast. Empty for the
	// server's own frames.
	From wire.PeerID
	// To is the one addressee; empty means every member but From.
	To wire.PeerID
	// Frame is the encoded message, shared by every recipient: never modify.
	Frame []byte
	// ReadAt is when the hub read the message (for the relay latency
	// metric); zero for the server's own messages.
	ReadAt time.Time
}

// Deliverer takes frames for peers of this node.
type Deliverer interface {
	// Deliver queues frame for peer to; it never blocks. readAt is the
	// Envelope's.
	Deliver(to wire.PeerID, frame []byte, readAt time.Time)
}
