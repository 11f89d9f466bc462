package signal

import "errors"

// Errors a Broker returns; the hub turns them into wire errors.
var (
	// ErrRoomFull means the room already holds the maximum number of peers.
	ErrRoomFull = errors.New("room is full")
	// ErrUnknownPeer means the addressed peer is not in the room.
	ErrUnknownPeer = errors.New("unknown peer")
	// ErrUnavailable means the addressee could not be reached now (its node
	// is unreachable while the cluster broker is down).
	ErrUnavailable = errors.New("peer unreachable")
	// ErrClosed means the hub or broker has been closed.
	ErrClosed = errors.New("closed")
)

// ErrNoSession means no session of the cluster answers a resume token.
var ErrNoSession = errors.New("no such session")
