package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/huddle-rtc/huddle/signal/wire"
	"github.com/pion/webrtc/v4"
)

// leaveTimeout bounds the wait for the server's close after leave.
const leaveTimeout = 2 * time.Second

// input is a pion callback turned into a call on the loop.
type input interface{ apply(c *Client) }

// dataInput is a message received on a data channel.
type dataInput struct {
	peer *Peer
	dc   *webrtc.DataChannel
	msg  webrtc.DataChannelMessage
}

// reconnected is the outcome of one reconnection attempt.
type reconnected struct {
	joined joined
	err    error
}

// run is the loop: the only goroutine that touches the signaling and
// negotiation state.
func (c *Client) run() {
	defer c.wg.Done()
	defer close(c.done)
	for !c.ending {
		c.step()
	}
	c.teardown()
}

func (c *Client) step() {
	var (
		evOut   chan<- Event
		evHead  Event
		outCh   chan<- []byte
		outHead []byte
		sigIn   <-chan sigFrame
		dataIn  <-chan dataInput
	)
	if len(c.pending) > 0 {
		evOut, evHead = c.events, c.pending[0]
	}
	if c.conn != nil && len(c.outbox) > 0 {
		outCh, outHead = c.conn.out, c.outbox[0]
	}
	// Backpressure: while the application lags, stop reading what the
	// network sends. The server then queues (or drops a peer too slow),
	// SCTP flow control slows the remote sender.
	if len(c.pending) < c.opts.EventBuffer {
		sigIn, dataIn = c.sigIn, c.dataIn
	}
	select {
	case evOut <- evHead:
		c.pending[0] = nil
		c.pending = c.pending[1:]
	case outCh <- outHead:
		c.outbox[0] = nil
		c.outbox = c.outbox[1:]
	case f := <-sigIn:
		c.onFrame(f)
	case d := <-dataIn:
		c.onData(d)
	case <-c.inbox.ready:
		for _, in := range c.inbox.drain() {
			in.apply(c)
		}
	case r := <-c.upCh:
		c.onReconnect(r)
	case f := <-c.cmds:
		f()
	case <-c.quit:
		c.closedByUser = true
		c.end(ErrClosed)
	}
}

func (c *Client) emit(ev Event) { c.pending = append(c.pending, ev) }

// send queues a message for the server.
func (c *Client) send(m wire.Message) error {
	frame, err := wire.Encode(m)
	if err != nil {
		return fmt.Errorf("client: encode %s: %w", m.Type, err)
	}
	if len(c.outbox) >= c.opts.OutboxLimit {
		c.log.Warn("signaling outbox full, message dropped", "type", m.Type, "to", m.To)
		return ErrOutboxFull
	}
	c.outbox = append(c.outbox, frame)
	return nil
}

// end makes the loop stop after this step, with err as the reason.
func (c *Client) end(err error) {
	if c.ending {
		return
	}
	c.ending = true
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	if !errors.Is(err, ErrClosed) {
		c.log.Warn("client stopped", "err", err)
	}
}

// teardown leaves the room when the application asked to, closes the
// connection and every peer connection, and waits for them.
func (c *Client) teardown() {
	c.stopFn()
	if c.conn != nil {
		if c.closedByUser {
			c.leave()
		}
		c.conn.close()
		c.conn = nil
	}
	c.mu.Lock()
	peers := c.peers
	c.peers = map[wire.PeerID]*Peer{}
	c.mu.Unlock()
	for _, p := range peers {
		c.closePeer(p)
	}
	c.inbox.close()
	close(c.events)
	c.peersWG.Wait()
	c.spawnMu.Lock()
	c.spawnClosed = true
	c.spawnMu.Unlock()
}

// leave flushes the outbox, sends leave and waits for the server to close
// the connection (it answers leave with 1000).
func (c *Client) leave() {
	frame, err := wire.Encode(wire.Message{Type: wire.TypeLeave})
	if err != nil {
		return
	}
	timer := time.NewTimer(leaveTimeout)
	defer timer.Stop()
	for _, f := range append(c.outbox, frame) {
		select {
		case c.conn.out <- f:
		case <-c.conn.readerDone:
			return
		case <-timer.C:
			return
		}
	}
	c.outbox = nil
	for {
		select {
		case <-c.sigIn: // whatever comes before the close
		case <-c.conn.readerDone:
			return
		case <-timer.C:
			c.log.Debug("no close after leave")
			return
		}
	}
}

func (c *Client) onFrame(f sigFrame) {
	if f.conn != c.conn {
		return
	}
	if f.err != nil {
		c.onConnLost(f.err)
		return
	}
	c.onMessage(f.msg)
}

func (c *Client) onMessage(m wire.Message) {
	switch m.Type {
	case wire.TypeOffer:
		c.onDescription(m, webrtc.SDPTypeOffer)
	case wire.TypeAnswer:
		c.onDescription(m, webrtc.SDPTypeAnswer)
	case wire.TypeCandidate:
		c.onCandidate(m)
	case wire.TypeMessage:
		c.emit(Message{From: m.From, Data: m.Data, Broadcast: m.To == ""})
	case wire.TypePeerJoined:
		if m.Peer != nil {
			c.onPeerJoined(*m.Peer)
		}
	case wire.TypePeerLeft:
		if p, ok := c.peers[m.ID]; ok {
			c.dropPeer(p, m.Reason)
		}
	case wire.TypeError:
		e := &wire.Error{Code: m.Code, Message: m.Message, Ref: m.Ref}
		c.log.Debug("server error", "code", e.Code, "msg", e.Message)
		c.emit(ServerError{Err: e})
	case wire.TypePong:
	default:
		c.log.Debug("unexpected message ignored", "type", m.Type)
	}
}

func (c *Client) onPeerJoined(info wire.PeerInfo) {
	if info.ID == "" || info.ID == c.id {
		return
	}
	if _, ok := c.peers[info.ID]; ok {
		return // already known: a resumed session learnt it from welcome
	}
	if p := c.addPeer(info, false); p != nil {
		c.emit(PeerJoined{Peer: p})
	}
}

func (c *Client) onDescription(m wire.Message, typ webrtc.SDPType) {
	p, ok := c.peers[m.From]
	if !ok {
		if typ != webrtc.SDPTypeOffer || m.From == "" || m.From == wire.ServerID || m.From == c.id {
			c.log.Debug("description from an unknown peer ignored", "peer", m.From, "type", typ)
			return
		}
		// An offer may outrun nothing the protocol orders before it, but a
		// third-party server might; treat its sender as a newcomer.
		if p = c.addPeer(wire.PeerInfo{ID: m.From}, false); p == nil {
			return
		}
		c.emit(PeerJoined{Peer: p})
	}
	p.onDescription(webrtc.SessionDescription{Type: typ, SDP: m.SDP})
}

func (c *Client) onCandidate(m wire.Message) {
	p, ok := c.peers[m.From]
	if !ok {
		c.log.Debug("candidate from an unknown peer ignored", "peer", m.From)
		return
	}
	init, err := parseCandidate(m.Candidate)
	if err != nil {
		c.log.Debug("bad candidate ignored", "peer", m.From, "err", err)
		return
	}
	p.onRemoteCandidate(init)
}

func (c *Client) onData(d dataInput) {
	if c.peers[d.peer.id] != d.peer {
		return
	}
	d.peer.announceChannel(d.dc)
	c.emit(DataMessage{Peer: d.peer, Channel: d.dc, Data: d.msg.Data, IsString: d.msg.IsString})
}

func (c *Client) addPeer(info wire.PeerInfo, offerer bool) *Peer {
	since := time.Now()
	if offerer {
		since = c.since
	}
	p, err := c.newPeer(info, offerer, since)
	if err != nil {
		c.log.Error("peer connection not created", "peer", info.ID, "err", err)
		return nil
	}
	c.mu.Lock()
	c.peers[info.ID] = p
	c.mu.Unlock()
	return p
}

// dropPeer forgets a peer, closes its connection and reports it.
func (c *Client) dropPeer(p *Peer, reason string) {
	c.mu.Lock()
	delete(c.peers, p.id)
	c.mu.Unlock()
	c.closePeer(p)
	c.emit(PeerLeft{Peer: p, Reason: reason})
}

// closePeer closes a peer connection on its own goroutine: pion's close
// waits for its goroutines, some of which may wait for this loop.
func (c *Client) closePeer(p *Peer) {
	close(p.closing)
	c.peersWG.Add(1)
	go func() {
		defer c.peersWG.Done()
		if err := p.pc.GracefulClose(); err != nil {
			p.log.Debug("peer connection close", "err", err)
		}
	}()
}
