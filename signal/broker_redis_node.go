package signal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// streamID is a Redis stream entry id (ms-seq), ordered.
type streamID struct{ ms, seq uint64 }

func parseStreamID(s string) (streamID, bool) {
	a, c, ok := strings.Cut(s, "-")
	if !ok {
		ms, err := strconv.ParseUint(s, 10, 64)
		return streamID{ms: ms}, err == nil
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(c, 10, 64)
	return streamID{ms, seq}, err1 == nil && err2 == nil
}

func (id streamID) after(o streamID) bool {
	return id.ms > o.ms || id.ms == o.ms && id.seq > o.seq
}

func (id streamID) String() string {
	return strconv.FormatUint(id.ms, 10) + "-" + strconv.FormatUint(id.seq, 10)
}

// maxSent bounds redisPeer.sent: the most frames a session may hold
// unwritten (its send queue and resume queue).
const maxSent = 2 * ResumeQueue

// receive runs the node's subscription until ctx ends. go-redis reconnects
// and resubscribes after an outage.
func (b *RedisBroker) receive(ctx context.Context, ps *redis.PubSub) {
	defer ps.Close()
	for {
		msg, err := ps.ReceiveMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// Reconnecting: the supervisor reports the outage.
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if msg.Channel == b.key("events") {
			b.onEvent(msg.Payload)
			continue
		}
		b.onNode(msg.Payload)
	}
}

// onNode handles a message on this node's channel: a frame for a peer
// ("m to id readAt frame"), a takeover ("t id") or a kick ("k room id").
func (b *RedisBroker) onNode(payload string) {
	kind, rest, _ := strings.Cut(payload, " ")
	switch kind {
	case "m":
		parts := strings.SplitN(rest, " ", 4)
		if len(parts) != 4 {
			return
		}
		sid, ok := parseStreamID(parts[1])
		if !ok {
			return
		}
		var readAt time.Time
		if ns, _ := strconv.ParseInt(parts[2], 10, 64); ns != 0 {
			readAt = time.Unix(0, ns)
		}
		b.deliverFrame(wire.PeerID(parts[0]), liveFrame{id: sid, frame: []byte(parts[3]), readAt: readAt})
	case "t":
		id := wire.PeerID(rest)
		b.mu.Lock()
		delete(b.local, id)
		b.mu.Unlock()
		if e, ok := b.deliver.(localEnder); ok {
			e.endLocal(id, wire.CloseReplaced, "resumed on another node")
		}
	case "b":
		b.mu.Lock()
		if ch := b.barriers[rest]; ch != nil {
			close(ch)
			delete(b.barriers, rest)
		}
		b.mu.Unlock()
	case "k":
		// Not on this goroutine: the kick's Leave waits for a barrier
		// that this goroutine receives.
		room, id, _ := strings.Cut(rest, " ")
		select {
		case b.kicks <- kick{wire.RoomID(room), wire.PeerID(id)}:
		default:
			b.log.Warn("kick dropped: too many at once", "peer", id, "room", room)
		}
	}
}

// deliverFrame hands a frame to the hub once, in stream order.
func (b *RedisBroker) deliverFrame(to wire.PeerID, f liveFrame) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.local[to]
	if p == nil {
		return
	}
	if p.replaying {
		p.held = append(p.held, f)
		return
	}
	b.handLocked(to, p, f)
}

// handLocked delivers f unless it was delivered already. b.mu is held: the
// hub's Deliver never blocks nor calls the broker.
func (b *RedisBroker) handLocked(to wire.PeerID, p *redisPeer, f liveFrame) {
	if !f.id.after(p.last) {
		return
	}
	p.last = f.id
	if len(p.sent) == maxSent {
		p.sent = append(p.sent[:0], p.sent[1:]...)
	}
	p.sent = append(p.sent, f.id)
	b.deliver.Deliver(to, f.frame, f.readAt)
}

// onEvent reports a presence event of the cluster.
func (b *RedisBroker) onEvent(payload string) {
	parts := strings.SplitN(payload, "\n", 6)
	if len(parts) != 6 {
		return
	}
	ms, _ := strconv.ParseInt(parts[4], 10, 64)
	ev := PresenceEvent{Kind: PresenceKind(parts[0]), Room: wire.RoomID(parts[1]), Reason: parts[3], Time: time.UnixMilli(ms)}
	ev.Peer.ID = wire.PeerID(parts[2])
	if ev.Kind == PeerJoined && parts[5] != "" {
		var info wire.PeerInfo
		if err := json.Unmarshal([]byte(parts[5]), &info); err == nil {
			ev.Peer = info
		}
	}
	b.deliver.Presence(ev)
}

// cursor is the stream id of the last frame of id written out (all the
// hub still holds are after it); "" when id is not a peer of this node.
func (b *RedisBroker) cursor(id wire.PeerID) string {
	unsent := -1
	if q, ok := b.deliver.(unsentCounter); ok {
		unsent = q.unsentCount(id)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.local[id]
	if p == nil {
		return ""
	}
	switch {
	case unsent < 0:
		return p.last.String()
	case unsent >= len(p.sent):
		// Older than what we remember: replay the whole stream.
		return "0-0"
	default:
		i := len(p.sent) - unsent - 1
		return p.sent[i].String()
	}
}

// Claim implements the hub's sessionClaimer: it takes over, for this node,
// the session that token resumes in room, wherever it was. It returns
// ErrNoSession when there is none (unknown, expired, or another room).
// The caller registers the session with the hub, then calls Replay.
func (b *RedisBroker) Claim(ctx context.Context, token string, room wire.RoomID, newToken string) (Member, error) {
	res, err := scriptClaim.Run(ctx, b.rdb, nil, b.prefix, token, string(room), b.node, newToken, b.ms()).StringSlice()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return Member{}, ErrNoSession
		}
		return Member{}, fmt.Errorf("redis claim: %w", err)
	}
	if len(res) != 3 {
		return Member{}, ErrNoSession
	}
	members, err := parseMembers(res[1:2])
	if err != nil {
		return Member{}, err
	}
	cursor, _ := parseStreamID(res[2])
	b.mu.Lock()
	b.local[wire.PeerID(res[0])] = &redisPeer{room: room, value: res[1], token: newToken, last: cursor, replaying: true}
	b.mu.Unlock()
	return members[0], nil
}

// Replay delivers what id's stream holds after its cursor, then the live
// frames that came meanwhile, and lets live frames through.
func (b *RedisBroker) Replay(ctx context.Context, id wire.PeerID) error {
	b.mu.Lock()
	p := b.local[id]
	if p == nil {
		b.mu.Unlock()
		return nil
	}
	from := "(" + p.last.String()
	b.mu.Unlock()
	entries, err := b.rdb.XRange(ctx, b.key("inbox", string(id)), from, "+").Result()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.local[id] != p {
		return nil
	}
	for _, e := range entries {
		sid, ok := parseStreamID(e.ID)
		f, _ := e.Values["f"].(string)
		if ok {
			b.handLocked(id, p, liveFrame{id: sid, frame: []byte(f)})
		}
	}
	for _, f := range p.held {
		b.handLocked(id, p, f)
	}
	p.held, p.replaying = nil, false
	if err != nil {
		return fmt.Errorf("redis replay: %w", err)
	}
	return nil
}

// supervise checks Redis every renewEvery, renews this node's leases,
// reaps those that ran out, and resyncs after an outage.
func (b *RedisBroker) supervise(ctx context.Context) {
	t := time.NewTicker(renewEvery)
	defer t.Stop()
	down := false
	for {
		err := b.tick(ctx, down)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !down:
			down = true
			e := fmt.Errorf("redis unreachable: %w", err)
			b.notReady.Store(&e)
			b.log.Warn("redis unreachable", "err", err)
		case err == nil && down:
			down = false
			b.notReady.Store(nil)
			b.log.Info("redis back", "relayed_locally", b.dropped.Swap(0))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// tick pings, resyncs after an outage, renews and reaps.
func (b *RedisBroker) tick(ctx context.Context, resync bool) error {
	ctx, cancel := context.WithTimeout(ctx, renewEvery)
	defer cancel()
	if err := b.rdb.Ping(ctx).Err(); err != nil {
		return err
	}
	if resync {
		if err := b.restore(ctx); err != nil {
			return err
		}
	}
	if err := b.renew(ctx); err != nil {
		return err
	}
	return scriptReap.Run(ctx, b.rdb, nil, b.prefix, b.leftPre, b.leftEnd).Err()
}

// renew extends the leases of this node's attached peers, records their
// cursors, and ends locally those the cluster no longer has.
func (b *RedisBroker) renew(ctx context.Context) error {
	args := []any{b.prefix, b.ms(), b.node}
	b.mu.Lock()
	ids := make([]wire.PeerID, 0, len(b.local))
	for id, p := range b.local {
		if p.value != "" && !p.replaying {
			ids = append(ids, id)
		}
	}
	b.mu.Unlock()
	d, _ := b.deliver.(detachedChecker)
	for _, id := range ids {
		if d != nil && d.isDetached(id) {
			continue // its lease runs out after the grace
		}
		args = append(args, string(id), b.cursor(id))
	}
	if len(args) == 3 {
		return nil
	}
	gone, err := scriptRenew.Run(ctx, b.rdb, nil, args...).StringSlice()
	if err != nil {
		return err
	}
	for _, id := range gone {
		b.log.Warn("session lost in the cluster", "peer", id)
		b.forget(wire.PeerID(id), nil)
		if e, ok := b.deliver.(localEnder); ok {
			// The client reconnects and joins anew: its resume fails.
			e.endLocal(wire.PeerID(id), wire.CloseRestart, "session lost; reconnect")
		}
	}
	return nil
}

// restore recreates this node's sessions Redis lost while it was away.
func (b *RedisBroker) restore(ctx context.Context) error {
	args := []any{b.prefix, b.ms()}
	b.mu.Lock()
	for id, p := range b.local {
		if p.value != "" {
			args = append(args, string(p.room), string(id), p.value, p.token)
		}
	}
	b.mu.Unlock()
	if len(args) == 2 {
		return nil
	}
	return scriptRestore.Run(ctx, b.rdb, nil, args...).Err()
}

// The hub's side of the Redis broker, found by type assertion so that the
// Deliverer interface stays what every broker needs.
type (
	localEnder interface {
		// endLocal ends session id on this node, closing its connection
		// with code, without telling the room (the cluster knows).
		endLocal(id wire.PeerID, code int, reason string)
	}
	unsentCounter interface {
		// unsentCount is how many frames for id the hub holds unwritten;
		// -1 when it has no such session.
		unsentCount(id wire.PeerID) int
	}
	detachedChecker interface {
		isDetached(id wire.PeerID) bool
	}
)

// barrier is a token a script publishes to this node after the frames it
// sent to this node's peers: once it comes back, they are delivered, so
// that a call returns with the same-node effects done (as on one node).
type barrier struct {
	token string
	done  chan struct{}
}

// barrierWait bounds the wait for a barrier: a lost one (an outage right
// after the script) must not hold a peer's reader.
const barrierWait = 2 * time.Second

func (b *RedisBroker) newBarrier() barrier {
	bar := barrier{token: strconv.FormatUint(b.barSeq.Add(1), 36), done: make(chan struct{})}
	b.mu.Lock()
	b.barriers[bar.token] = bar.done
	b.mu.Unlock()
	return bar
}

func (b *RedisBroker) dropBarrier(bar barrier) {
	b.mu.Lock()
	delete(b.barriers, bar.token)
	b.mu.Unlock()
}

func (b *RedisBroker) awaitBarrier(ctx context.Context, bar barrier) {
	t := time.NewTimer(barrierWait)
	defer t.Stop()
	select {
	case <-bar.done:
	case <-t.C:
	case <-ctx.Done():
	}
}

type kick struct {
	room wire.RoomID
	id   wire.PeerID
}

// kicker carries out the kicks other nodes send, until ctx ends.
func (b *RedisBroker) kicker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case k := <-b.kicks:
			b.deliver.Kick(k.room, k.id)
		}
	}
}
