package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/huddle-rtc/huddle/signal/wire"
	"github.com/pion/webrtc/v4"
)

// CheckStage names the stage of a check that failed.
type CheckStage string

// The stages of a check, in order.
const (
	// StageSignaling: a peer could not connect to the server and join.
	StageSignaling CheckStage = "signaling"
	// StageTURN: relay only, and no TURN server allocated a relay (or no
	// relay candidate was gathered).
	StageTURN CheckStage = "turn"
	// StageICE: the peers did not connect, or not through the relay when
	// relay only.
	StageICE CheckStage = "ice"
	// StageData: connected, but no data channel round trip.
	StageData CheckStage = "data"
)

// Defaults of CheckOptions.
const (
	DefaultCheckTimeout = 20 * time.Second
	DefaultCheckPings   = 5
)

// CheckOptions configures Check.
type CheckOptions struct {
	// Options are both peers' options: token, dialer, logger, setting
	// engine, ... Their names get the suffixes "-a" and "-b" (default
	// names "check-a", "check-b").
	Options Options
	// Room is the room both peers join; default "check-" and 12 random
	// characters, a room nobody else is in.
	Room wire.RoomID
	// Timeout bounds the whole check (default DefaultCheckTimeout).
	Timeout time.Duration
	// Pings is how many data channel round trips are measured; RTT is
	// their median (default DefaultCheckPings).
	Pings int
}

// CheckReport is what Check observed. On failure, the fields of the stages
// that completed are filled in.
type CheckReport struct {
	// OK is true when the peers connected and round-tripped data (through
	// the relay when relay only).
	OK bool
	// Stage is the stage that failed, empty when OK.
	Stage CheckStage
	// Err is why it failed, nil when OK (the same error Check returns).
	Err error
	// URL is the server's signaling URL, as given.
	URL string
	// Room is the room the peers joined.
	Room wire.RoomID
	// RelayOnly is Options.RelayOnly.
	RelayOnly bool
	// Signaling is true once the first peer was welcomed.
	Signaling bool
	// ICEServers are the URLs of the ICE servers the first peer received.
	ICEServers []string
	// TURN lists one allocation attempt per TURN URL received.
	TURN []TURNProbe
	// Candidates counts the local candidates both peers gathered, by type.
	Candidates map[string]int
	// Pair is the candidate pair the second peer's connection selected,
	// nil before it connected.
	Pair *CandidatePair
	// PairType is Pair's type: relay when relayed.
	PairType string
	// ConnectTime is from the second peer's join to both peers connected.
	ConnectTime time.Duration
	// RTT is the median data channel round trip.
	RTT time.Duration
}

// CheckError is the error of a failed check: the stage and the cause.
type CheckError struct {
	Stage CheckStage
	Err   error
}

func (e *CheckError) Error() string { return fmt.Sprintf("check failed at %s: %v", e.Stage, e.Err) }

// Unwrap returns the cause.
func (e *CheckError) Unwrap() error { return e.Err }

// Check smoke-tests a huddle server the way a call uses it: two peers join
// a fresh room at serverURL, connect (through TURN only when
// opts.Options.RelayOnly) and round-trip data channel messages. Relay only,
// it first tries an allocation on every TURN URL the server hands out. It
// returns the report and, when the check failed, a *CheckError naming the
// stage. Both peers have left and stopped when it returns.
func Check(ctx context.Context, serverURL string, opts CheckOptions) (CheckReport, error) {
	opts = opts.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	ck := &checker{opts: opts, r: &CheckReport{
		URL: serverURL, Room: opts.Room, RelayOnly: opts.Options.RelayOnly,
		ICEServers: []string{}, TURN: []TURNProbe{}, Candidates: map[string]int{},
	}}
	ck.run(ctx, serverURL)
	return *ck.r, ck.r.Err
}

func (o CheckOptions) withDefaults() CheckOptions {
	if o.Room == "" {
		o.Room = wire.RoomID("check-" + strings.ToLower(rand.Text()[:12]))
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultCheckTimeout
	}
	if o.Pings <= 0 {
		o.Pings = DefaultCheckPings
	}
	if o.Options.Name == "" {
		o.Options.Name = "check"
	}
	return o
}

// checker is one run of Check.
type checker struct {
	opts CheckOptions
	r    *CheckReport
}

func (ck *checker) fail(stage CheckStage, err error) {
	ck.r.OK, ck.r.Stage = false, stage
	ck.r.Err = &CheckError{Stage: stage, Err: err}
}

func (ck *checker) peerOptions(suffix string) Options {
	o := ck.opts.Options
	o.Name += suffix
	return o
}

func (ck *checker) run(ctx context.Context, serverURL string) {
	m := newMerger()
	defer m.close() // after the clients' Close: their events end first
	a, err := Join(ctx, serverURL, ck.r.Room, ck.peerOptions("-a"))
	if err != nil {
		ck.fail(StageSignaling, err)
		return
	}
	defer a.Close()
	m.add("a", a)
	ck.r.Signaling = true
	for _, s := range a.ICEServers() {
		ck.r.ICEServers = append(ck.r.ICEServers, s.URLs...)
	}
	if !ck.turnStage(ctx, a) {
		return
	}
	start := time.Now()
	b, err := Join(ctx, serverURL, ck.r.Room, ck.peerOptions("-b"))
	if err != nil {
		ck.fail(StageSignaling, err)
		return
	}
	defer b.Close()
	m.add("b", b)
	ck.connectStage(ctx, m, a, b, start)
}

// turnStage tries an allocation on every TURN server; relay only, the
// check needs one that allocates.
func (ck *checker) turnStage(ctx context.Context, a *Client) bool {
	lf := NewPionLoggerFactory(a.opts.Logger)
	if se := ck.opts.Options.SettingEngine; se != nil && se.LoggerFactory != nil {
		lf = se.LoggerFactory
	}
	ck.r.TURN = append(ck.r.TURN, probeTURNServers(ctx, a.ICEServers(), lf)...)
	if !ck.r.RelayOnly {
		return true
	}
	if len(ck.r.TURN) == 0 {
		ck.fail(StageTURN, errors.New("the server offered no TURN server, and relay only needs one"))
		return false
	}
	if !slices.ContainsFunc(ck.r.TURN, func(p TURNProbe) bool { return p.OK }) {
		ck.fail(StageTURN, fmt.Errorf("no TURN server allocated a relay: %w", ck.r.TURN[0].Err))
		return false
	}
	return true
}

// pairing tracks the two peers of a check as their events come.
type pairing struct {
	connected map[string]bool
	channels  map[string]*webrtc.DataChannel
	rtts      []time.Duration
	sentAt    time.Time
}

func (p *pairing) ready() bool {
	return p.connected["a"] && p.connected["b"] && p.channels["a"] != nil && p.channels["b"] != nil
}

// ping sends the next ping from b to a.
func (p *pairing) ping() {
	p.sentAt = time.Now()
	_ = p.channels["b"].SendText(fmt.Sprintf("ping %d", len(p.rtts)))
}

// connectStage waits for both peers to connect with a channel open, then
// measures the data channel round trip, b pinging and a echoing.
func (ck *checker) connectStage(ctx context.Context, m *merger, a, b *Client, start time.Time) {
	p := &pairing{connected: map[string]bool{}, channels: map[string]*webrtc.DataChannel{}}
	for {
		var ev tagged
		select {
		case <-ctx.Done():
			ck.timedOut(a, b, p)
			return
		case <-a.Done():
			ck.fail(StageSignaling, fmt.Errorf("peer a stopped: %w", a.Err()))
			return
		case <-b.Done():
			ck.fail(StageSignaling, fmt.Errorf("peer b stopped: %w", b.Err()))
			return
		case ev = <-m.events:
		}
		if ck.handle(ev, p, start) {
			ck.succeed(a, b, p.rtts)
			return
		}
		if p.ready() && p.sentAt.IsZero() {
			p.ping()
		}
	}
}

// handle takes one event of the connect stage; it reports true once every
// ping came back.
func (ck *checker) handle(ev tagged, p *pairing, start time.Time) bool {
	switch e := ev.ev.(type) {
	case PeerConnected:
		p.connected[ev.who] = true
		if ev.who == "b" {
			pair := e.Pair
			ck.r.Pair, ck.r.PairType = &pair, pair.Type()
		}
		if p.connected["a"] && p.connected["b"] && ck.r.ConnectTime == 0 {
			ck.r.ConnectTime = time.Since(start)
		}
	case DataChannelOpened:
		p.channels[ev.who] = e.Channel
	case DataMessage:
		if ev.who == "a" {
			_ = e.Channel.SendText(string(e.Data)) // a echoes
			return false
		}
		if p.sentAt.IsZero() {
			return false
		}
		p.rtts = append(p.rtts, time.Since(p.sentAt))
		if len(p.rtts) == ck.opts.Pings {
			return true
		}
		p.ping()
	}
	return false
}

func (ck *checker) succeed(a, b *Client, rtts []time.Duration) {
	slices.Sort(rtts)
	ck.r.RTT = rtts[len(rtts)/2]
	ck.r.Candidates = gathered(a, b)
	ck.r.OK = true
	if ck.r.RelayOnly && ck.r.PairType != "relay" {
		ck.fail(StageICE, fmt.Errorf("relay only, yet the selected pair is %s", ck.r.PairType))
	}
}

// timedOut names the stage that did not complete.
func (ck *checker) timedOut(a, b *Client, p *pairing) {
	ck.r.Candidates = gathered(a, b)
	within := ck.opts.Timeout
	switch {
	case p.connected["a"] && p.connected["b"]:
		ck.fail(StageData, fmt.Errorf("connected, but no data channel round trip within %s", within))
	case ck.r.RelayOnly && ck.r.Candidates["relay"] == 0:
		ck.fail(StageTURN, fmt.Errorf("no relay candidate gathered within %s", within))
	default:
		ck.fail(StageICE, fmt.Errorf("no connection within %s (candidates gathered: %s)",
			within, CandidateCounts(ck.r.Candidates)))
	}
}

// gathered sums the local candidates the clients gathered, by type.
func gathered(cs ...*Client) map[string]int {
	out := map[string]int{}
	for _, c := range cs {
		for _, s := range c.Stats() {
			for k, v := range s.Gathered {
				out[k] += v
			}
		}
	}
	return out
}

// CandidateCounts prints candidate counts by type in a stable order:
// "host 2, relay 1", or "none".
func CandidateCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	order := map[string]int{"host": 0, "srflx": 1, "prflx": 2, "relay": 3}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y string) int {
		ox, okx := order[x]
		oy, oky := order[y]
		switch {
		case okx != oky:
			if okx {
				return -1
			}
			return 1
		case ox != oy:
			return ox - oy
		}
		return strings.Compare(x, y)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// merger reads several clients' events into one channel, tagged.
type merger struct {
	events chan tagged
	done   chan struct{}
	wg     sync.WaitGroup
}

type tagged struct {
	who string
	ev  Event
}

func newMerger() *merger {
	return &merger{events: make(chan tagged), done: make(chan struct{})}
}

// add forwards c's events until c stops; after close they are dropped.
func (m *merger) add(who string, c *Client) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for ev := range c.Events() {
			select {
			case m.events <- tagged{who, ev}:
			case <-m.done:
			}
		}
	}()
}

// close waits for the forwarders; the clients must be closed already.
func (m *merger) close() {
	close(m.done)
	m.wg.Wait()
}
