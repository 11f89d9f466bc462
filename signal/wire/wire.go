// Package wire is the huddle signaling protocol, version 1, as Go types: the
// messages, their one decoder and validator, the encoder, and the error and
// close codes. It is the contract shared by the hub (package signal) and the Go
// client (package client), and it imports nothing but the standard library.
//
// The protocol is described in docs/protocol.md.
package wire

import (
	"encoding/json"
)

// Subprotocol is the WebSocket subprotocol of this protocol version.
const Subprotocol = "huddle.v1"

// BearerPrefix starts a subprotocol entry that carries a JWT
// ("bearer.<JWT>"), the way browsers present a token.
const BearerPrefix = "bearer."

// ServerID is the `from` of a message sent by the server itself (an app
// backend's announcement). No peer id equals it.
const ServerID PeerID = "server"

// PeerID identifies a peer. The server chooses it; it is unguessable.
type PeerID string

// RoomID names a room: 1 to 64 characters of [A-Za-z0-9._~-].
type RoomID string

// Type is a message's `type`.
type Type string

// Message types, client to server and server to client.
const (
	TypeJoin       Type = "join"
	TypeOffer      Type = "offer"
	TypeAnswer     Type = "answer"
	TypeCandidate  Type = "candidate"
	TypeMessage    Type = "message"
	TypeLeave      Type = "leave"
	TypePing       Type = "ping"
	TypeWelcome    Type = "welcome"
	TypePeerJoined Type = "peer-joined"
	TypePeerLeft   Type = "peer-left"
	TypeError      Type = "error"
	TypePong       Type = "pong"
)

// Limits of the protocol that do not depend on the server's configuration.
const (
	MaxRoomLen = 64
	MaxNameLen = 64 // characters (runes)
	MaxMetaLen = 1024
	MaxRefLen  = 64
	// MaxResumeLen bounds a resume token a client may present.
	MaxResumeLen = 256
	// MaxPeerIDLen bounds a `to` a client may present.
	MaxPeerIDLen = 128
)

// Reasons carried by peer-left.
const (
	ReasonLeft    = "left"
	ReasonTimeout = "timeout"
	ReasonKicked  = "kicked"
)

// Message is every message of the protocol, in both directions: one flat
// envelope whose fields are used according to Type. Raw JSON fields are kept
// as sent (compacted), so the server relays them without reinterpreting them.
type Message struct {
	Type Type   `json:"type"`
	Ref  string `json:"ref,omitempty"`

	// join
	Room   RoomID          `json:"room,omitempty"`
	Name   string          `json:"name,omitempty"`
	Meta   json.RawMessage `json:"meta,omitempty"`
	Resume string          `json:"resume,omitempty"`

	// offer, answer, candidate, message
	To        PeerID          `json:"to,omitempty"`
	From      PeerID          `json:"from,omitempty"`
	SDP       string          `json:"sdp,omitempty"`
	Candidate json.RawMessage `json:"candidate,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`

	// welcome
	ID         PeerID      `json:"id,omitempty"`
	Peers      []PeerInfo  `json:"peers,omitempty"`
	ICEServers []ICEServer `json:"iceServers,omitempty"`
	Resumed    bool        `json:"resumed,omitempty"`

	// peer-joined
	Peer *PeerInfo `json:"peer,omitempty"`

	// peer-left
	Reason string `json:"reason,omitempty"`

	// error
	Code    ErrorCode `json:"code,omitempty"`
	Message string    `json:"message,omitempty"`
}

// PeerInfo describes a peer to the others in its room.
type PeerInfo struct {
	ID   PeerID          `json:"id"`
	Name string          `json:"name"`
	Meta json.RawMessage `json:"meta,omitempty"`
}

// ICEServer is an RTCIceServer, ready to pass to RTCPeerConnection.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Welcome is the answer to a successful join. Its fields are always present
// on the wire (peers and iceServers as arrays, resumed as a boolean), which
// the flat Message cannot express with omitempty.
type Welcome struct {
	Type       Type        `json:"type"`
	ID         PeerID      `json:"id"`
	Room       RoomID      `json:"room"`
	Peers      []PeerInfo  `json:"peers"`
	ICEServers []ICEServer `json:"iceServers"`
	Resume     string      `json:"resume"`
	Resumed    bool        `json:"resumed"`
}
