package client

import (
	"maps"
	"time"

	"github.com/huddle-rtc/huddle/signal/wire"
	"github.com/pion/webrtc/v4"
)

// Candidate is one end of a candidate pair.
type Candidate struct {
	// Type is host, srflx, prflx or relay.
	Type     string `json:"type"`
	Protocol string `json:"protocol"`
	Address  string `json:"address"`
	Port     uint16 `json:"port"`
}

// CandidatePair is the pair of candidates ICE selected for a peer.
type CandidatePair struct {
	Local  Candidate `json:"local"`
	Remote Candidate `json:"remote"`
}

// Type is relay when either end is relayed (the media goes through TURN),
// else the local candidate's type; empty for no pair.
func (cp CandidatePair) Type() string {
	if cp.Local.Type == "relay" || cp.Remote.Type == "relay" {
		return "relay"
	}
	return cp.Local.Type
}

func candidateOf(c *webrtc.ICECandidate) Candidate {
	if c == nil {
		return Candidate{}
	}
	return Candidate{Type: c.Typ.String(), Protocol: c.Protocol.String(), Address: c.Address, Port: c.Port}
}

// selectedPair is ICE's selected pair, or nil before there is one.
func (p *Peer) selectedPair() *CandidatePair {
	sctp := p.pc.SCTP()
	if sctp == nil || sctp.Transport() == nil {
		return nil
	}
	pair, err := sctp.Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		return nil
	}
	return &CandidatePair{Local: candidateOf(pair.Local), Remote: candidateOf(pair.Remote)}
}

// PeerStats describes the connection to one peer.
type PeerStats struct {
	ID    wire.PeerID
	Name  string
	State webrtc.PeerConnectionState
	// Pair is the selected candidate pair, nil before ICE selected one.
	Pair *CandidatePair
	// RTT is the round-trip time ICE last measured on the selected pair.
	RTT time.Duration
	// TimeToConnect is the time from this client's join (or the peer's,
	// when it came later) to the first connected state; 0 before.
	TimeToConnect time.Duration
	// DataChannels is how many data channels are open.
	DataChannels int
	// Gathered counts the local candidates gathered for this peer by type
	// (host, srflx, prflx, relay).
	Gathered map[string]int
}

// Stats returns the current statistics of the connection to this peer.
func (p *Peer) Stats() PeerStats {
	s := PeerStats{ID: p.id, Name: p.name, State: p.pc.ConnectionState()}
	p.mu.Lock()
	connected := !p.st.connectedAt.IsZero()
	s.TimeToConnect = p.st.elapsed
	s.DataChannels = p.st.openChannels
	s.Gathered = maps.Clone(p.st.gathered)
	p.mu.Unlock()
	// pion's ICETransport reads its gatherer without its lock, and ICE's
	// start writes it: ask for the pair only once this peer has connected,
	// which happens after the start (there is no selected pair before).
	if !connected {
		return s
	}
	s.Pair = p.selectedPair()
	if sctp := p.pc.SCTP(); sctp != nil && sctp.Transport() != nil {
		if ps, ok := sctp.Transport().ICETransport().GetSelectedCandidatePairStats(); ok {
			s.RTT = time.Duration(ps.CurrentRoundTripTime * float64(time.Second))
		}
	}
	return s
}

// Stats returns the statistics of every peer, sorted by id.
func (c *Client) Stats() []PeerStats {
	peers := c.Peers()
	out := make([]PeerStats, len(peers))
	for i, p := range peers {
		out[i] = p.Stats()
	}
	return out
}
