package signal

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// RedisOptions configure a RedisBroker.
type RedisOptions struct {
	// URL is the server's redis:// or rediss:// URL (go-redis ParseURL).
	URL string
	// Node names this node in Redis, logs and metrics; it must be unique
	// in the cluster and hold no spaces or newlines.
	Node string
	// Prefix starts every key and channel; "huddle" when empty.
	Prefix string
	// Grace is the hub's resume grace (Config.ResumeGrace): a session's
	// lease is the grace plus LeaseSlack, so that a detached session of a
	// dead node ends for everyone soon after its grace.
	Grace time.Duration
	// Logger receives the broker's logs; nil discards them.
	Logger *slog.Logger
}

// LeaseSlack is what a session's lease adds to the resume grace: the
// time a node may miss renewals before its peers are taken for dead.
const LeaseSlack = 2 * time.Second

// renewEvery is how often a node renews its peers' leases, reaps the
// leases that ran out and checks that Redis answers.
const renewEvery = time.Second

// RedisBroker is the Broker of a cluster of nodes sharing one Redis server
// (docs/protocol.md, Scaling out). Every frame for a peer goes to its
// bounded stream (P:inbox:<id>) and, live, to its node's channel; a
// peer resuming on another node gets what its stream holds after the last
// frame its old node had written out (at least once across a crash).
type RedisBroker struct {
	rdb    *redis.Client
	node   string
	prefix string
	lease  time.Duration
	log    *slog.Logger

	deliver Deliverer
	leftPre []byte // peer-left timeout frame around the id
	leftEnd []byte

	notReady atomic.Pointer[error] // nil: Redis answers
	dropped  atomic.Int64          // frames relayed locally during this outage
	cancel   context.CancelFunc
	ps       *redis.PubSub // closed by Close: a blocked receive returns
	done     sync.WaitGroup

	mu       sync.Mutex // guards local and barriers
	local    map[wire.PeerID]*redisPeer
	barriers map[string]chan struct{}
	kicks    chan kick // from other nodes, for kicker
	barSeq   atomic.Uint64
	closed   bool
}

// redisPeer is what the node keeps of one of its peers.
type redisPeer struct {
	room  wire.RoomID
	value string // its member record
	token string
	// last is the stream id of the last frame handed to the hub; earlier
	// ids are dropped (a replay and live frames overlap).
	last streamID
	// sent holds the ids handed to the hub, newest last, to find the
	// cursor (the last one written out) from the hub's unsent count.
	sent []streamID
	// replaying: live frames wait in held until the backlog is delivered.
	replaying bool
	held      []liveFrame
}

type liveFrame struct {
	id     streamID
	frame  []byte
	readAt time.Time
}

var _ Broker = (*RedisBroker)(nil)

// NewRedisBroker connects to Redis. It fails when the URL does not parse;
// an unreachable server only makes Ready fail until it answers.
func NewRedisBroker(o RedisOptions) (*RedisBroker, error) {
	opt, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	if o.Node == "" || strings.ContainsAny(o.Node, " \n\r\t") {
		return nil, fmt.Errorf("redis broker: invalid node id %q", o.Node)
	}
	opt.DialTimeout = cmp.Or(opt.DialTimeout, 2*time.Second)
	opt.MaxRetries = -1 // the supervisor retries; a call fails fast
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pre, end, _ := strings.Cut(string(encodePeerLeft("@ID@", wire.ReasonTimeout)), "@ID@")
	b := &RedisBroker{
		rdb:     redis.NewClient(opt),
		node:    o.Node,
		prefix:  cmp.Or(o.Prefix, "huddle"),
		lease:   o.Grace + LeaseSlack,
		log:     log.With("node", o.Node),
		leftPre: []byte(pre),
		leftEnd: []byte(end),
		local:   make(map[wire.PeerID]*redisPeer),

		barriers: make(map[string]chan struct{}),
		kicks:    make(chan kick, 256),
	}
	return b, nil
}

// Node is this node's id.
func (b *RedisBroker) Node() string { return b.node }

// Attach implements Broker: it subscribes to this node's channel and the
// events channel, and starts the lease supervisor.
func (b *RedisBroker) Attach(d Deliverer) {
	b.deliver = d
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	ps := b.rdb.Subscribe(ctx, b.key("node", b.node), b.key("events"))
	b.ps = ps
	b.done.Add(3)
	go func() {
		defer b.done.Done()
		b.kicker(ctx)
	}()
	go func() {
		defer b.done.Done()
		b.receive(ctx, ps)
	}()
	go func() {
		defer b.done.Done()
		b.supervise(ctx)
	}()
}

func (b *RedisBroker) key(parts ...string) string {
	return b.prefix + ":" + strings.Join(parts, ":")
}

func (b *RedisBroker) ms() int64 { return b.lease.Milliseconds() }

// Join implements Broker.
func (b *RedisBroker) Join(ctx context.Context, room wire.RoomID, peer wire.PeerInfo, max int) ([]wire.PeerInfo, error) {
	info, err := json.Marshal(peer)
	if err != nil {
		return nil, err
	}
	now := time.Now().UnixMilli()
	rest := strconv.FormatInt(now, 10) + "\n0\n" + string(info)
	// The hub sets the token with Remember right after; an unguessable
	// placeholder until then.
	token := rand.Text() + rand.Text()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, ErrClosed
	}
	// Registered before the script: frames for it may arrive before Join
	// returns, and must not be dropped as for an unknown peer.
	p := &redisPeer{room: room, token: token}
	b.local[peer.ID] = p
	b.mu.Unlock()
	bar := b.newBarrier()
	defer b.dropBarrier(bar)
	res, err := scriptJoin.Run(ctx, b.rdb, nil, b.prefix, string(room), string(peer.ID), rest, max, b.ms(),
		b.node, token, encodePeerJoined(peer), b.leftPre, b.leftEnd, now, bar.token).StringSlice()
	if err == nil && len(res) > 0 && res[0] == "full" {
		err = ErrRoomFull
	}
	if err == nil && len(res) < 2 {
		err = fmt.Errorf("redis join: unexpected reply %q", res)
	}
	if err != nil {
		b.forget(peer.ID, p)
		return nil, fmt.Errorf("redis join: %w", err)
	}
	b.mu.Lock()
	p.value = b.node + "\n" + res[1] + "\n" + rest
	b.mu.Unlock()
	if res[0] == "okb" {
		b.awaitBarrier(ctx, bar)
	}
	members, err := parseMembers(res[2:])
	if err != nil {
		return nil, err
	}
	return infos(members), nil
}

// Remember implements the hub's tokenKeeper: token is id's current resume
// token, which any node may resume it with.
func (b *RedisBroker) Remember(ctx context.Context, id wire.PeerID, token string) error {
	b.mu.Lock()
	if p := b.local[id]; p != nil {
		p.token = token
	}
	b.mu.Unlock()
	return scriptToken.Run(ctx, b.rdb, nil, b.prefix, string(id), token).Err()
}

// forget drops a local peer when p (nil: any) is still its record.
func (b *RedisBroker) forget(id wire.PeerID, p *redisPeer) {
	b.mu.Lock()
	if p == nil || b.local[id] == p {
		delete(b.local, id)
	}
	b.mu.Unlock()
}

// Leave implements Broker.
func (b *RedisBroker) Leave(ctx context.Context, room wire.RoomID, id wire.PeerID, reason string) error {
	b.mu.Lock()
	if p := b.local[id]; p != nil && p.room == room {
		delete(b.local, id)
	}
	b.mu.Unlock()
	bar := b.newBarrier()
	defer b.dropBarrier(bar)
	n, err := scriptLeave.Run(ctx, b.rdb, nil, b.prefix, string(room), string(id), reason,
		encodePeerLeft(id, reason), time.Now().UnixMilli(), b.node, bar.token).Int()
	if err != nil {
		return fmt.Errorf("redis leave: %w", err)
	}
	if n == 2 {
		b.awaitBarrier(ctx, bar)
	}
	return nil
}

// Members implements Broker.
func (b *RedisBroker) Members(ctx context.Context, room wire.RoomID) ([]wire.PeerInfo, error) {
	members, err := b.Roster(ctx, room)
	return infos(members), err
}

// Roster implements Broker.
func (b *RedisBroker) Roster(ctx context.Context, room wire.RoomID) ([]Member, error) {
	vals, err := b.rdb.HVals(ctx, b.key("room", string(room))).Result()
	if err != nil {
		return nil, fmt.Errorf("redis roster: %w", err)
	}
	return parseMembers(vals)
}

// parseMembers decodes member records (node, seq, joined ms, detached,
// info JSON, one per line) in join order.
func parseMembers(vals []string) ([]Member, error) {
	type rec struct {
		seq int64
		m   Member
	}
	recs := make([]rec, 0, len(vals))
	for _, v := range vals {
		parts := strings.SplitN(v, "\n", 5)
		if len(parts) != 5 {
			return nil, fmt.Errorf("redis: bad member record %q", v)
		}
		seq, _ := strconv.ParseInt(parts[1], 10, 64)
		at, _ := strconv.ParseInt(parts[2], 10, 64)
		var m Member
		if err := json.Unmarshal([]byte(parts[4]), &m.PeerInfo); err != nil {
			return nil, fmt.Errorf("redis: bad member record: %w", err)
		}
		m.JoinedAt = time.UnixMilli(at)
		m.Detached = parts[3] == "1"
		recs = append(recs, rec{seq, m})
	}
	slices.SortFunc(recs, func(x, y rec) int { return cmp.Compare(x.seq, y.seq) })
	out := make([]Member, len(recs))
	for i, r := range recs {
		out[i] = r.m
	}
	return out, nil
}

// Publish implements Broker.
func (b *RedisBroker) Publish(ctx context.Context, env Envelope) error {
	var readAt int64
	if !env.ReadAt.IsZero() {
		readAt = env.ReadAt.UnixNano()
	}
	if b.notReady.Load() != nil {
		return b.publishLocal(env)
	}
	ctx, cancel := context.WithTimeout(ctx, brokerTimeout)
	defer cancel()
	bar := b.newBarrier()
	defer b.dropBarrier(bar)
	n, err := scriptRelay.Run(ctx, b.rdb, nil, b.prefix, string(env.Room), string(env.From), string(env.To),
		env.Frame, readAt, b.node, bar.token).Int()
	if rerr := redis.Error(nil); errors.As(err, &rerr) {
		return fmt.Errorf("redis publish: %w", err)
	}
	if err != nil {
		// Redis is away: this node's peers keep talking (a peer of
		// another node gets nothing until it is back).
		return b.publishLocal(env)
	}
	if n == 0 {
		return ErrUnknownPeer
	}
	if n == 2 {
		b.awaitBarrier(ctx, bar)
	}
	return nil
}

// Rooms implements Broker.
func (b *RedisBroker) Rooms(ctx context.Context) ([]RoomCount, error) {
	names, err := b.rdb.SMembers(ctx, b.key("rooms")).Result()
	if err != nil {
		return nil, fmt.Errorf("redis rooms: %w", err)
	}
	slices.Sort(names)
	pipe := b.rdb.Pipeline()
	counts := make([]*redis.IntCmd, len(names))
	for i, n := range names {
		counts[i] = pipe.HLen(ctx, b.key("room", n))
	}
	if _, err := pipe.Exec(ctx); err != nil && len(names) > 0 {
		return nil, fmt.Errorf("redis rooms: %w", err)
	}
	out := make([]RoomCount, 0, len(names))
	for i, n := range names {
		if c := counts[i].Val(); c > 0 {
			out = append(out, RoomCount{Room: wire.RoomID(n), Peers: int(c)})
		}
	}
	return out, nil
}

// SetDetached implements Broker. A detached session's lease is not renewed
// any more: it ends the grace after now even if this node dies.
func (b *RedisBroker) SetDetached(ctx context.Context, room wire.RoomID, id wire.PeerID, detached bool) error {
	flag := "0"
	if detached {
		flag = "1"
	}
	cursor := b.cursor(id)
	if err := scriptDetach.Run(ctx, b.rdb, nil, b.prefix, string(room), string(id), flag, b.ms(), cursor).Err(); err != nil {
		return fmt.Errorf("redis detach: %w", err)
	}
	return nil
}

// Kick implements Broker.
func (b *RedisBroker) Kick(ctx context.Context, room wire.RoomID, id wire.PeerID) error {
	b.mu.Lock()
	p := b.local[id]
	b.mu.Unlock()
	if p != nil && p.room == room {
		if b.deliver.Kick(room, id) {
			return nil
		}
	}
	n, err := scriptKick.Run(ctx, b.rdb, nil, b.prefix, string(room), string(id)).Int()
	if err != nil {
		return fmt.Errorf("redis kick: %w", err)
	}
	if n <= 0 {
		return ErrUnknownPeer
	}
	return nil
}

// Ready implements Broker: Redis answered the supervisor's last ping.
func (b *RedisBroker) Ready(context.Context) error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if err := b.notReady.Load(); err != nil {
		return *err
	}
	return nil
}

// Close implements Broker: it stops renewing this node's leases (its
// sessions end for the cluster when they run out) and disconnects.
func (b *RedisBroker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	if b.cancel != nil {
		b.cancel()
		_ = b.ps.Close()
	}
	b.done.Wait()
	return b.rdb.Close()
}

// publishLocal delivers env to the peers of this node alone, while Redis is
// unreachable. Their streams miss these frames: a resume on another node
// does not replay them. A message for one peer that is not on this node
// cannot be delivered: ErrUnavailable, so the sender is told (a broadcast
// reaches this node's peers only).
func (b *RedisBroker) publishLocal(env Envelope) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped.Add(1) == 1 {
		b.log.Warn("redis unreachable: relaying between this node's peers only until it is back")
	}
	if env.To != "" {
		if p, ok := b.local[env.To]; !ok || p.room != env.Room {
			return ErrUnavailable
		}
	}
	for id, p := range b.local {
		if p.room != env.Room || id == env.From || env.To != "" && id != env.To {
			continue
		}
		b.deliver.Deliver(id, env.Frame, env.ReadAt)
	}
	return nil
}
