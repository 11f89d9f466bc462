package client

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/huddle-rtc/huddle/signal/wire"
	"github.com/pion/webrtc/v4"
)

// Peer is another peer of the room and the PeerConnection to it. Its
// methods are safe for concurrent use.
type Peer struct {
	c       *Client
	id      wire.PeerID
	name    string
	meta    json.RawMessage
	polite  bool
	pc      *webrtc.PeerConnection
	log     *slog.Logger
	closing chan struct{} // closed when the client forgets this peer

	// Owned by the loop: the negotiation state.
	awaitingOffer  bool                       // the newcomer's first offer has not come yet
	ignoreOffer    bool                       // the last remote offer lost a collision
	restartPending bool                       // restart ICE once stable and signaling is up
	restartOffered bool                       // the current local offer restarts ICE
	sentOffer      *webrtc.SessionDescription // polite: sent, not yet set
	reoffer        bool                       // offer once the answer is sent
	heldCandidates []webrtc.ICECandidateInit
	lastState      webrtc.PeerConnectionState
	announced      map[*webrtc.DataChannel]bool
	midSeq         int

	mu sync.Mutex // guards the statistics below
	st peerStats
}

type peerStats struct {
	since        time.Time
	connectedAt  time.Time
	elapsed      time.Duration
	pair         *CandidatePair
	openChannels int
	gathered     map[string]int
}

// ID is the peer's id.
func (p *Peer) ID() wire.PeerID { return p.id }

// Name is the peer's display name (empty when it gave none, or when its
// offer came before the server announced it).
func (p *Peer) Name() string { return p.name }

// Meta is the peer's meta object as it sent it, or nil.
func (p *Peer) Meta() json.RawMessage { return p.meta }

// Polite reports whether this client is the polite side of the pair: the
// one that yields when both offer at once.
func (p *Peer) Polite() bool { return p.polite }

// PeerConnection is the pion PeerConnection to this peer, for what the
// client does not wrap (stats, transceivers, ...). Leave its descriptions,
// candidates and event handlers to the client.
func (p *Peer) PeerConnection() *webrtc.PeerConnection { return p.pc }

// CreateDataChannel opens a data channel to this peer. Its opening and its
// messages arrive as events, like those of channels the peer opens.
func (p *Peer) CreateDataChannel(label string, init *webrtc.DataChannelInit) (*webrtc.DataChannel, error) {
	dc, err := p.pc.CreateDataChannel(label, init)
	if err != nil {
		return nil, fmt.Errorf("client: create data channel %q for %s: %w", label, p.id, err)
	}
	p.watchChannel(dc)
	return dc, nil
}

// AddTrack sends a local track to this peer; the client renegotiates. The
// RTCP the peer sends back is read and handed to the interceptors.
func (p *Peer) AddTrack(track webrtc.TrackLocal) (*webrtc.RTPSender, error) {
	sender, err := p.pc.AddTrack(track)
	if err != nil {
		return nil, fmt.Errorf("client: add track for %s: %w", p.id, err)
	}
	p.c.spawn(func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	})
	return sender, nil
}

// RemoveTrack stops sending a track added with AddTrack; the client
// renegotiates.
func (p *Peer) RemoveTrack(sender *webrtc.RTPSender) error {
	if err := p.pc.RemoveTrack(sender); err != nil {
		return fmt.Errorf("client: remove track for %s: %w", p.id, err)
	}
	return nil
}

// RestartICE restarts ICE with this peer (new candidates, a new path), for
// example after a network change. The client does it by itself when the
// connection fails, and after a resumed session for connections that
// failed or disconnected meanwhile. The offer goes out once the pair is
// stable and the signaling connection is up.
func (p *Peer) RestartICE() error {
	return p.c.do(func() {
		if p.c.current(p) {
			p.restartPending = true
			p.maybeRestart()
		}
	})
}

// Send sends an application message to this peer through the server.
func (p *Peer) Send(data any) error { return p.c.Send(p.id, data) }

func (c *Client) newPeer(info wire.PeerInfo, offerer bool, since time.Time) (*Peer, error) {
	pc, err := c.api.NewPeerConnection(c.rtcConfig())
	if err != nil {
		return nil, err
	}
	p := &Peer{
		c:             c,
		id:            info.ID,
		name:          info.Name,
		meta:          info.Meta,
		polite:        c.id < info.ID,
		pc:            pc,
		log:           c.log.With("peer", string(info.ID)),
		closing:       make(chan struct{}),
		awaitingOffer: !offerer,
		announced:     map[*webrtc.DataChannel]bool{},
		st:            peerStats{since: since, gathered: map[string]int{}},
	}
	p.hook()
	if offerer {
		// The offer needs something to negotiate; a channel also lets the
		// pair exchange data at once. Creating it fires negotiationneeded,
		// which makes the offer.
		if _, err := p.CreateDataChannel(c.opts.DataChannel, nil); err != nil {
			_ = pc.Close()
			return nil, err
		}
	}
	return p, nil
}

// hook funnels pion's callbacks into the loop.
func (p *Peer) hook() {
	q := &p.c.inbox
	p.pc.OnNegotiationNeeded(func() { q.push(inNegotiation{p}) })
	p.pc.OnICECandidate(func(cand *webrtc.ICECandidate) { q.push(inCandidate{p, cand}) })
	p.pc.OnConnectionStateChange(func(webrtc.PeerConnectionState) { q.push(inState{p}) })
	p.pc.OnSignalingStateChange(func(webrtc.SignalingState) { q.push(inSignaling{p}) })
	p.pc.OnDataChannel(p.watchChannel)
	p.pc.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) { q.push(inTrack{p, t, r}) })
}

// watchChannel sends a channel's opening, closing and messages to the
// loop. Messages wait for the loop (flow control for a slow application)
// unless the peer or the client goes away.
func (p *Peer) watchChannel(dc *webrtc.DataChannel) {
	q := &p.c.inbox
	dc.OnOpen(func() { q.push(inChannelOpen{p, dc}) })
	dc.OnClose(func() { q.push(inChannelClose{p, dc}) })
	dc.OnMessage(func(msg webrtc.DataChannelMessage) {
		select {
		case p.c.dataIn <- dataInput{peer: p, dc: dc, msg: msg}:
		case <-p.closing:
		case <-p.c.stop:
		}
	})
}

// The loop's handlers of pion's callbacks. Each runs only while its peer
// is still current (a closing PeerConnection keeps calling back).

type (
	inNegotiation struct{ p *Peer }
	inCandidate   struct {
		p    *Peer
		cand *webrtc.ICECandidate
	}
	inState       struct{ p *Peer }
	inSignaling   struct{ p *Peer }
	inChannelOpen struct {
		p  *Peer
		dc *webrtc.DataChannel
	}
	inChannelClose struct {
		p  *Peer
		dc *webrtc.DataChannel
	}
	inTrack struct {
		p *Peer
		t *webrtc.TrackRemote
		r *webrtc.RTPReceiver
	}
)

func (c *Client) current(p *Peer) bool { return c.peers[p.id] == p }

func (in inNegotiation) apply(c *Client) {
	if c.current(in.p) {
		in.p.onNegotiationNeeded()
	}
}

func (in inCandidate) apply(c *Client) {
	if c.current(in.p) {
		in.p.onLocalCandidate(in.cand)
	}
}

func (in inState) apply(c *Client) {
	if c.current(in.p) {
		in.p.onStateChange()
	}
}

func (in inSignaling) apply(c *Client) {
	if c.current(in.p) {
		in.p.maybeRestart()
	}
}

func (in inChannelOpen) apply(c *Client) {
	if c.current(in.p) {
		in.p.announceChannel(in.dc)
	}
}

func (in inChannelClose) apply(c *Client) {
	p := in.p
	if !c.current(p) || !p.announced[in.dc] {
		return
	}
	delete(p.announced, in.dc)
	p.mu.Lock()
	p.st.openChannels--
	p.mu.Unlock()
	c.emit(DataChannelClosed{Peer: p, Channel: in.dc})
}

func (in inTrack) apply(c *Client) {
	if c.current(in.p) {
		c.emit(TrackReceived{Peer: in.p, Track: in.t, Receiver: in.r})
	}
}

// announceChannel reports a channel open once: its first message may beat
// pion's open callback, which runs on a goroutine of its own.
func (p *Peer) announceChannel(dc *webrtc.DataChannel) {
	if p.announced[dc] {
		return
	}
	p.announced[dc] = true
	p.mu.Lock()
	p.st.openChannels++
	p.mu.Unlock()
	p.c.emit(DataChannelOpened{Peer: p, Channel: dc})
}
