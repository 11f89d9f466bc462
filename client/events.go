package client

import (
	"encoding/json"
	"time"

	"github.com/huddle-rtc/huddle/signal/wire"
	"github.com/pion/webrtc/v4"
)

// Event is something that happened to a Client, delivered in order on
// Client.Events. It is one of the types in this file; switch on them.
type Event interface{ event() }

// PeerJoined reports a peer the client now knows: one listed in welcome
// (the client offers to it) or a newcomer (it will offer to the client).
type PeerJoined struct {
	Peer *Peer
}

// PeerLeft reports a peer gone for good: Reason is wire.ReasonLeft,
// wire.ReasonTimeout or wire.ReasonKicked from the server, or ReasonReset
// or ReasonGone from the client.
type PeerLeft struct {
	Peer   *Peer
	Reason string
}

// Client-side PeerLeft reasons, beside the server's wire.Reason* ones.
const (
	// ReasonReset is the reason for every peer of an old session when a
	// reconnection could not resume it and joined as a new peer.
	ReasonReset = "reset"
	// ReasonGone is the reason for a peer missing from the welcome of a
	// resumed session: it left while this client was away.
	ReasonGone = "gone"
)

// PeerStateChanged reports a new connection state of a peer's
// PeerConnection.
type PeerStateChanged struct {
	Peer  *Peer
	State webrtc.PeerConnectionState
}

// PeerConnected reports a peer connection that reached the connected state
// (ICE connected and DTLS up): the selected candidate pair, and the time
// since this client joined, or since the peer joined when it came later.
// It is reported again after an ICE restart reconnects the pair.
type PeerConnected struct {
	Peer    *Peer
	Pair    CandidatePair
	Elapsed time.Duration
}

// DataChannelOpened reports a data channel ready to send, opened by either
// side. Its messages arrive as DataMessage events unless the application
// replaces the channel's OnMessage handler.
type DataChannelOpened struct {
	Peer    *Peer
	Channel *webrtc.DataChannel
}

// DataChannelClosed reports a data channel that closed.
type DataChannelClosed struct {
	Peer    *Peer
	Channel *webrtc.DataChannel
}

// DataMessage is a message received on a data channel.
type DataMessage struct {
	Peer     *Peer
	Channel  *webrtc.DataChannel
	Data     []byte
	IsString bool
}

// TrackReceived reports a remote media track. The application reads its
// RTP packets (Track.ReadRTP) until it returns an error.
type TrackReceived struct {
	Peer     *Peer
	Track    *webrtc.TrackRemote
	Receiver *webrtc.RTPReceiver
}

// Message is an application message relayed by the signaling server.
// From is wire.ServerID for an announcement of the server itself;
// Broadcast is true when it was sent to the whole room.
type Message struct {
	From      wire.PeerID
	Data      json.RawMessage
	Broadcast bool
}

// ServerError is an error message from the server about something this
// client sent; the connection stays open.
type ServerError struct {
	Err *wire.Error
}

// Disconnected reports a dropped signaling connection; the client will
// reconnect after Delay. Peer connections stay up meanwhile.
type Disconnected struct {
	Err     error
	Attempt int
	Delay   time.Duration
}

// Reconnected reports a new signaling connection. Resumed is true when the
// session was resumed (same id, same peers); otherwise the client joined as
// a new peer with ID and every earlier peer was reported PeerLeft.
type Reconnected struct {
	ID      wire.PeerID
	Resumed bool
}

func (PeerJoined) event()        {}
func (PeerLeft) event()          {}
func (PeerStateChanged) event()  {}
func (PeerConnected) event()     {}
func (DataChannelOpened) event() {}
func (DataChannelClosed) event() {}
func (DataMessage) event()       {}
func (TrackReceived) event()     {}
func (Message) event()           {}
func (ServerError) event()       {}
func (Disconnected) event()      {}
func (Reconnected) event()       {}
