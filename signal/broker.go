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
//
// The room API (api.go) added Rooms, Roster, SetDetached and Kick, the
// Member record behind Roster, and Deliverer.Kick and Deliverer.Presence.
// What a clustered broker must do for them:
//   - Rooms and Roster answer for the whole cluster, not this node.
//   - Member.JoinedAt is stamped by the broker when Join admits the peer;
//     Member.Detached is what the holding node last told SetDetached.
//   - Kick reaches the node that holds the peer (its Deliverer.Kick), which
//     ends the session there and calls Leave with reason kicked.
//   - Presence reaches the Deliverer of every node for every change in the
//     cluster (each node keeps its own event log and revokes the TURN
//     credentials of a kicked peer on its own TURN server).
type Broker interface {
	// Attach tells the broker where to deliver frames for this node's peers.
	// It is called once, before any other method.
	Attach(d Deliverer)
	// Join adds peer to room unless the room already has max members
	// (ErrRoomFull), tells the members already there (peer-joined), and
	// returns them in the order they joined. It reports room-created (when
	// peer is the first member) then peer-joined to Deliverer.Presence.
	Join(ctx context.Context, room wire.RoomID, peer wire.PeerInfo, max int) ([]wire.PeerInfo, error)
	// Leave removes a peer from room and tells the others (peer-left with
	// reason). Leaving twice is not an error. It reports peer-left, then
	// room-closed when the room is left empty, to Deliverer.Presence.
	Leave(ctx context.Context, room wire.RoomID, id wire.PeerID, reason string) error
	// Members returns room's members in the order they joined.
	Members(ctx context.Context, room wire.RoomID) ([]wire.PeerInfo, error)
	// Publish delivers env to its one addressee (ErrUnknownPeer when it is
	// not in the room) or, without one, to every member but the sender.
	Publish(ctx context.Context, env Envelope) error
	// Rooms lists the rooms that have members, sorted by name.
	Rooms(ctx context.Context) ([]RoomCount, error)
	// Roster returns room's member records in the order they joined; none
	// for an empty or unknown room.
	Roster(ctx context.Context, room wire.RoomID) ([]Member, error)
	// SetDetached records whether member id of room has lost its connection
	// and waits out its resume grace (Member.Detached). An unknown member
	// is not an error.
	SetDetached(ctx context.Context, room wire.RoomID, id wire.PeerID, detached bool) error
	// Kick asks the node that holds peer id to remove it from room
	// (Deliverer.Kick there): ErrUnknownPeer when id is not a member of
	// room, or when no node holds it any more.
	Kick(ctx context.Context, room wire.RoomID, id wire.PeerID) error
	// Ready reports whether the broker can serve (nil) or why not. It is
	// called on every handshake: it answers from cached state, without
	// I/O.
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

// Member is one peer's presence record in a room.
type Member struct {
	wire.PeerInfo
	// JoinedAt is when the broker admitted the peer (a resume keeps it).
	JoinedAt time.Time
	// Detached is true while the peer's connection is gone and it may
	// still resume (it waits out its grace).
	Detached bool
}

// RoomCount is a room and its number of members.
type RoomCount struct {
	Room  wire.RoomID
	Peers int
}

// PresenceKind names a presence change; the names are those of the room
// API's event stream.
type PresenceKind string

// Presence changes.
const (
	RoomCreated PresenceKind = "room-created"
	RoomClosed  PresenceKind = "room-closed"
	PeerJoined  PresenceKind = "peer-joined"
	PeerLeft    PresenceKind = "peer-left"
)

// PresenceEvent is one presence change in a room.
type PresenceEvent struct {
	Kind PresenceKind
	Room wire.RoomID
	// Peer is the newcomer of peer-joined; for peer-left only its ID is set.
	Peer wire.PeerInfo
	// Reason is peer-left's: wire.ReasonLeft, ReasonTimeout or ReasonKicked.
	Reason string
	// Time is when the broker made the change.
	Time time.Time
}

// Deliverer is what a broker calls on this node: it takes frames for this
// node's peers, removes them when kicked, and observes presence.
type Deliverer interface {
	// Deliver queues frame for peer to; it never blocks. readAt is the
	// Envelope's.
	Deliver(to wire.PeerID, frame []byte, readAt time.Time)
	// Kick removes peer id of room held by this node: its connection, if
	// any, is closed with 4003, its session ends, and it leaves the room
	// with reason kicked. It reports false when this node does not hold
	// it. The broker must not hold its own locks while calling it.
	Kick(room wire.RoomID, id wire.PeerID) bool
	// Presence observes every presence change of the cluster, in order
	// within a room. It never blocks and never calls the broker, so a
	// broker may call it under its own locks.
	Presence(ev PresenceEvent)
}
