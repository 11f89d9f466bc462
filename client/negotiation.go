package client

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/huddle-rtc/huddle/signal/wire"
	"github.com/pion/webrtc/v4"
)

// This file is the negotiation state machine of a Peer, run by the loop:
// offers and answers (the newcomer offers, perfect negotiation after),
// candidates held until the remote description is set, ICE restarts.

// maxHeldCandidates bounds the candidates held for a peer before its remote
// description is set.
const maxHeldCandidates = 256

func (p *Peer) onNegotiationNeeded() {
	if p.awaitingOffer {
		// The newcomer offers first; pion asks again once the answer made
		// the pair stable, if there is still something to negotiate.
		return
	}
	if p.sentOffer != nil || p.pc.SignalingState() != webrtc.SignalingStateStable {
		return // pion asks again once the pair is stable
	}
	p.offer(false)
}

// offer creates and sends an offer.
//
// The polite side cannot roll back an offer it lost a collision with: pion
// implements no rollback (its signaling state machine refuses it). So the
// polite side sends a renegotiation offer without setting it as its local
// description, staying stable; it sets the offer when the answer comes, or
// drops it when the impolite side's offer comes instead. Its first offer,
// which no offer can cross (the others wait for the newcomer's), is set at
// once so that gathering starts early.
func (p *Peer) offer(restart bool) {
	if p.polite {
		p.assignMids()
	}
	opts := &webrtc.OfferOptions{ICERestart: restart}
	opts.ICETricklingSupported = true
	o, err := p.pc.CreateOffer(opts)
	if err != nil {
		p.log.Warn("create offer failed", "err", err)
		return
	}
	if p.polite && p.pc.RemoteDescription() != nil {
		p.sentOffer = &o
	} else if err := p.pc.SetLocalDescription(o); err != nil {
		p.log.Warn("set local offer failed", "err", err)
		return
	}
	p.restartOffered = restart
	p.log.Debug("offer sent", "restart", restart)
	_ = p.c.send(wire.Message{Type: wire.TypeOffer, To: p.id, SDP: o.SDP})
}

// assignMids names the polite side's new transceivers outside the numeric
// mids pion and browsers give, before its offer. Pion cannot unassign a
// mid: if this offer loses a collision, its transceivers must not be
// matched with the impolite side's new m-lines, numbered alike.
func (p *Peer) assignMids() {
	for _, t := range p.pc.GetTransceivers() {
		if t.Mid() != "" {
			continue
		}
		p.midSeq++
		if err := t.SetMid(fmt.Sprintf("p%d", p.midSeq)); err != nil {
			p.log.Debug("set mid", "err", err)
		}
	}
}

// onDescription applies a remote offer or answer with perfect negotiation
// (https://w3c.github.io/webrtc-pc/#perfect-negotiation-example): on a
// collision the impolite side ignores the remote offer, the polite side
// drops its own (see offer) and answers.
func (p *Peer) onDescription(sd webrtc.SessionDescription) {
	state := p.pc.SignalingState()
	offering := state == webrtc.SignalingStateHaveLocalOffer || p.sentOffer != nil
	collision := sd.Type == webrtc.SDPTypeOffer && offering
	p.ignoreOffer = collision && !p.polite
	if p.ignoreOffer {
		p.log.Debug("offer collision: impolite, remote offer ignored")
		return
	}
	if sd.Type == webrtc.SDPTypeAnswer && !p.answersPendingOffer(sd) {
		p.log.Debug("answer not matching the pending offer ignored")
		return
	}
	switch {
	case sd.Type == webrtc.SDPTypeAnswer && p.sentOffer != nil:
		offer := *p.sentOffer
		p.sentOffer = nil
		if err := p.pc.SetLocalDescription(offer); err != nil {
			p.log.Warn("set local offer failed", "err", err)
			p.offer(p.restartOffered)
			return
		}
	case sd.Type == webrtc.SDPTypeAnswer && state != webrtc.SignalingStateHaveLocalOffer:
		p.log.Debug("answer without a pending offer ignored", "state", state)
		return
	case collision && p.sentOffer != nil:
		p.log.Debug("offer collision: polite, own offer dropped")
		p.sentOffer = nil
		p.reoffer = true
		if p.restartOffered {
			p.restartPending = true // unless the winning offer restarts too
		}
	case collision:
		// Only an offer crossing a first offer: the protocol has the others
		// wait for the newcomer's, and pion cannot roll back.
		p.ignoreOffer = true
		p.log.Warn("offer crossed the first offer; ignored")
		return
	}
	var oldUfrag string
	if prev := p.pc.RemoteDescription(); prev != nil {
		oldUfrag = iceUfrag(prev.SDP)
	}
	if err := p.pc.SetRemoteDescription(sd); err != nil {
		p.log.Warn("set remote description failed", "type", sd.Type, "err", err)
		return
	}
	if collision && oldUfrag != "" && iceUfrag(sd.SDP) != oldUfrag {
		p.restartPending = false // the winning offer restarts ICE
	}
	p.awaitingOffer = false
	p.flushCandidates()
	if sd.Type == webrtc.SDPTypeOffer {
		p.answer()
		if p.sendsUnreceived(sd) {
			p.reoffer = true
		}
	}
	if p.reoffer {
		p.reoffer = false
		restart := p.restartPending
		p.restartPending = false
		p.offer(restart)
		return
	}
	p.maybeRestart()
}

// sendsUnreceived reports whether this side sends a track on an m-line the
// remote offered as sendonly or inactive. Pion as an offerer does not start
// receiving a track that first appears in the answer (it even turns its
// own transceiver sendonly after a recvonly offer), so such a track needs
// an offer of this side's own.
func (p *Peer) sendsUnreceived(offer webrtc.SessionDescription) bool {
	parsed, err := offer.Unmarshal()
	if err != nil {
		return false
	}
	closed := map[string]bool{}
	for _, m := range parsed.MediaDescriptions {
		mid, _ := m.Attribute("mid")
		_, sendonly := m.Attribute("sendonly")
		_, inactive := m.Attribute("inactive")
		if sendonly || inactive {
			closed[mid] = true
		}
	}
	for _, t := range p.pc.GetTransceivers() {
		if s := t.Sender(); s != nil && s.Track() != nil && closed[t.Mid()] {
			return true
		}
	}
	return false
}

func (p *Peer) answer() {
	a, err := p.pc.CreateAnswer(nil)
	if err != nil {
		p.log.Warn("create answer failed", "err", err)
		return
	}
	if err := p.pc.SetLocalDescription(a); err != nil {
		p.log.Warn("set local answer failed", "err", err)
		return
	}
	_ = p.c.send(wire.Message{Type: wire.TypeAnswer, To: p.id, SDP: a.SDP})
}

func (p *Peer) onRemoteCandidate(init webrtc.ICECandidateInit) {
	if p.pc.RemoteDescription() == nil {
		if len(p.heldCandidates) >= maxHeldCandidates {
			p.log.Debug("too many early candidates, one dropped")
			return
		}
		p.heldCandidates = append(p.heldCandidates, init)
		return
	}
	p.addCandidate(init)
}

func (p *Peer) flushCandidates() {
	held := p.heldCandidates
	p.heldCandidates = nil
	for _, init := range held {
		p.addCandidate(init)
	}
}

func (p *Peer) addCandidate(init webrtc.ICECandidateInit) {
	if err := p.pc.AddICECandidate(init); err != nil && !p.ignoreOffer {
		p.log.Warn("remote candidate refused", "candidate", init.Candidate, "err", err)
	}
}

func (p *Peer) onLocalCandidate(cand *webrtc.ICECandidate) {
	if cand != nil {
		p.mu.Lock()
		p.st.gathered[cand.Typ.String()]++
		p.mu.Unlock()
	}
	raw, err := encodeCandidate(cand)
	if err != nil {
		p.log.Warn("encode candidate", "err", err)
		return
	}
	_ = p.c.send(wire.Message{Type: wire.TypeCandidate, To: p.id, Candidate: raw})
}

func (p *Peer) onStateChange() {
	state := p.pc.ConnectionState()
	if state == p.lastState {
		return
	}
	p.lastState = state
	p.c.emit(PeerStateChanged{Peer: p, State: state})
	switch state {
	case webrtc.PeerConnectionStateConnected:
		pair := p.selectedPair()
		p.mu.Lock()
		if p.st.connectedAt.IsZero() {
			p.st.connectedAt = time.Now()
			p.st.elapsed = p.st.connectedAt.Sub(p.st.since)
		}
		p.st.pair = pair
		elapsed := p.st.elapsed
		p.mu.Unlock()
		var cp CandidatePair
		if pair != nil {
			cp = *pair
		}
		p.log.Debug("connected", "pair", cp.Type(), "elapsed", elapsed)
		p.c.emit(PeerConnected{Peer: p, Pair: cp, Elapsed: elapsed})
	case webrtc.PeerConnectionStateFailed:
		p.restartPending = true
		p.maybeRestart()
	}
}

// maybeRestart performs a pending ICE restart once the pair is stable and
// the signaling connection is up.
func (p *Peer) maybeRestart() {
	if !p.restartPending || p.c.conn == nil || p.pc.RemoteDescription() == nil ||
		p.sentOffer != nil || p.pc.SignalingState() != webrtc.SignalingStateStable {
		return
	}
	p.restartPending = false
	p.log.Info("restarting ICE", "state", p.pc.ConnectionState())
	p.offer(true)
}

// afterResume takes the resumed welcome's ICE servers (fresh TURN
// credentials), sends a pending offer again (it, or its answer, may have
// been lost with the connection; a duplicate is answered twice and the
// second answer ignored), and restarts ICE if the path was lost meanwhile.
func (p *Peer) afterResume(cfg webrtc.Configuration) {
	if err := p.pc.SetConfiguration(cfg); err != nil {
		p.log.Debug("update ICE servers", "err", err)
	}
	if offer := p.pendingOffer(); offer != nil {
		p.log.Debug("pending offer sent again after the resume")
		_ = p.c.send(wire.Message{Type: wire.TypeOffer, To: p.id, SDP: offer.SDP})
	}
	switch p.pc.ConnectionState() {
	case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateDisconnected:
		p.restartPending = true
	}
	p.maybeRestart()
}

// pendingOffer is the offer this side sent and awaits an answer to, or nil.
func (p *Peer) pendingOffer() *webrtc.SessionDescription {
	if p.sentOffer != nil {
		return p.sentOffer
	}
	if p.pc.SignalingState() == webrtc.SignalingStateHaveLocalOffer {
		return p.pc.PendingLocalDescription()
	}
	return nil
}

// answersPendingOffer reports whether an answer has the m-lines of the
// pending offer (JSEP: the same mids, in the same order). A stale answer,
// to an offer sent twice or superseded, is thus told apart from the one
// awaited, at least when the m-lines changed in between.
func (p *Peer) answersPendingOffer(answer webrtc.SessionDescription) bool {
	offer := p.pendingOffer()
	if offer == nil {
		return true // handled as an answer without an offer
	}
	return slices.Equal(mids(offer.SDP), mids(answer.SDP))
}

// mids lists the a=mid values of an SDP in order.
func mids(sdp string) []string {
	var out []string
	for line := range strings.Lines(sdp) {
		if v, ok := strings.CutPrefix(line, "a=mid:"); ok {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// iceUfrag is the first ice-ufrag of an SDP, or "".
func iceUfrag(sdp string) string {
	for line := range strings.Lines(sdp) {
		if v, ok := strings.CutPrefix(line, "a=ice-ufrag:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
