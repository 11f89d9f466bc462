package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/huddle-rtc/huddle/client"
	"github.com/huddle-rtc/huddle/signal/wire"
	"github.com/pion/webrtc/v4"
)

// defaultCheckTimeout bounds the whole check.
const defaultCheckTimeout = 20 * time.Second

// pings is how many data channel round trips the check measures.
const pings = 5

// Stages of a check, named in its failures.
const (
	stageSignaling = "signaling"
	stageTURN      = "turn"
	stageICE       = "ice"
	stageData      = "data"
)

func runCheck(ctx context.Context, args []string, out, errOut io.Writer) int {
	var f commonFlags
	fs := newFlagSet("check", "--url URL [flags]",
		"Smoke-test a deployment: two peers join a fresh random room, connect\n"+
			"and round-trip data channel messages. The report lists the ICE servers\n"+
			"received, the TURN allocations tried, the candidate types gathered, the\n"+
			"selected pair type (relay when relayed), the time to connect and the\n"+
			"RTT. Exit status 0 only when connected; otherwise 1, and the report\n"+
			"names the stage that failed: signaling, turn, ice or data.")
	f.register(fs, defaultCheckTimeout, "give up after this long")
	if code, ok := parse(fs, args, errOut); !ok {
		return code
	}
	f.tokenFromEnv()
	if f.url == "" || f.timeout <= 0 {
		fmt.Fprintln(errOut, "huddle-peer check: --url is required and --timeout must be positive")
		fs.Usage()
		return exitUsage
	}
	log, err := f.logger(errOut)
	if err != nil {
		fmt.Fprintln(errOut, "huddle-peer check:", err)
		return exitUsage
	}
	ck := &checker{f: f, log: log}
	rep := ck.run(ctx)
	rep.print(reporter{w: out, json: f.json})
	if !rep.OK {
		return exitFailed
	}
	return exitOK
}

// checkReport is the outcome of a check.
type checkReport struct {
	OK         bool                  `json:"ok"`
	Stage      string                `json:"stage,omitempty"`
	Error      string                `json:"error,omitempty"`
	URL        string                `json:"url"`
	Room       string                `json:"room"`
	RelayOnly  bool                  `json:"relayOnly"`
	Signaling  bool                  `json:"signaling"`
	ICEServers []string              `json:"iceServers"`
	TURN       []turnProbe           `json:"turn"`
	Candidates map[string]int        `json:"candidates"`
	PairType   string                `json:"pairType,omitempty"`
	Pair       *client.CandidatePair `json:"pair,omitempty"`
	ConnectMs  float64               `json:"connectMs,omitempty"`
	RTTMs      float64               `json:"rttMs,omitempty"`
}

func (r *checkReport) fail(stage string, err error) *checkReport {
	r.OK, r.Stage, r.Error = false, stage, err.Error()
	return r
}

func (r *checkReport) print(rep reporter) {
	if rep.json {
		rep.emit("check", toFields(r), "")
		return
	}
	w := rep.w
	line := func(k, format string, args ...any) { fmt.Fprintf(w, "%-11s %s\n", k, fmt.Sprintf(format, args...)) }
	if r.Signaling {
		line("signaling", "ok (%s, room %s)", r.URL, r.Room)
		line("ice servers", "%d: %s", len(r.ICEServers), strings.Join(r.ICEServers, " "))
	}
	for _, p := range r.TURN {
		if p.OK {
			line("turn", "ok: %s allocated relay %s in %s", p.URL, p.Relay, fmtMs(p.Ms))
		} else {
			line("turn", "FAILED: %s: %s", p.URL, p.Error)
		}
	}
	if len(r.Candidates) > 0 {
		line("candidates", "%s", typeCounts(r.Candidates))
	}
	if r.Pair != nil {
		line("connected", "pair %s (%s %s -> %s) in %s", r.PairType, r.Pair.Local.Protocol,
			endpoint(r.Pair.Local), endpoint(r.Pair.Remote), fmtMs(r.ConnectMs))
	}
	if r.RTTMs > 0 {
		line("data", "round trip %s (median of %d)", fmtMs(r.RTTMs), pings)
	}
	if r.OK {
		line("result", "OK")
	} else {
		line("result", "FAILED at %s: %s", r.Stage, r.Error)
	}
}

// checker is one run of check.
type checker struct {
	f   commonFlags
	log *slog.Logger
}

func (ck *checker) opts(name string) client.Options {
	return client.Options{Name: name, Token: ck.f.token, RelayOnly: ck.f.relay, Logger: ck.log}
}

func (ck *checker) run(ctx context.Context) *checkReport {
	ctx, cancel := context.WithTimeout(ctx, ck.f.timeout)
	defer cancel()
	r := &checkReport{URL: ck.f.url, Room: "check-" + strings.ToLower(rand.Text()[:12]),
		RelayOnly: ck.f.relay, TURN: []turnProbe{}, ICEServers: []string{}, Candidates: map[string]int{}}
	m := newMerger()
	defer m.close() // after the clients' Close: their events end first
	a, err := client.Join(ctx, ck.f.url, wire.RoomID(r.Room), ck.opts("check-a"))
	if err != nil {
		return r.fail(stageSignaling, err)
	}
	defer a.Close()
	m.add("a", a)
	r.Signaling = true
	for _, s := range a.ICEServers() {
		r.ICEServers = append(r.ICEServers, s.URLs...)
	}
	if !ck.turnStage(ctx, r, a) {
		return r
	}
	start := time.Now()
	b, err := client.Join(ctx, ck.f.url, wire.RoomID(r.Room), ck.opts("check-b"))
	if err != nil {
		return r.fail(stageSignaling, err)
	}
	defer b.Close()
	m.add("b", b)
	ck.connectStage(ctx, r, m, a, b, start)
	return r
}

// turnStage probes the TURN servers; with --relay the check needs one
// that allocates.
func (ck *checker) turnStage(ctx context.Context, r *checkReport, a *client.Client) bool {
	r.TURN = append(r.TURN, probeTURNServers(ctx, a.ICEServers(), client.NewPionLoggerFactory(ck.log))...)
	if !ck.f.relay {
		return true
	}
	if len(r.TURN) == 0 {
		r.fail(stageTURN, errors.New("the server offered no TURN server, and --relay needs one"))
		return false
	}
	if !slices.ContainsFunc(r.TURN, func(p turnProbe) bool { return p.OK }) {
		r.fail(stageTURN, fmt.Errorf("no TURN server allocated a relay: %s", r.TURN[0].Error))
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
func (ck *checker) connectStage(ctx context.Context, r *checkReport, m *merger, a, b *client.Client, start time.Time) {
	p := &pairing{connected: map[string]bool{}, channels: map[string]*webrtc.DataChannel{}}
	for {
		var ev tagged
		select {
		case <-ctx.Done():
			ck.timedOut(r, a, b, p)
			return
		case ev = <-m.events:
		}
		switch e := ev.ev.(type) {
		case client.PeerConnected:
			p.connected[ev.who] = true
			if ev.who == "b" {
				pair := e.Pair
				r.Pair, r.PairType = &pair, pair.Type()
			}
			if p.connected["a"] && p.connected["b"] {
				r.ConnectMs = ms(time.Since(start))
			}
		case client.DataChannelOpened:
			p.channels[ev.who] = e.Channel
		case client.DataMessage:
			if ev.who == "a" {
				_ = e.Channel.SendText(string(e.Data)) // a echoes
				continue
			}
			p.rtts = append(p.rtts, time.Since(p.sentAt))
			if len(p.rtts) == pings {
				ck.succeed(r, a, b, p.rtts)
				return
			}
			p.ping()
			continue
		}
		if p.ready() && p.sentAt.IsZero() {
			p.ping()
		}
	}
}

func (ck *checker) succeed(r *checkReport, a, b *client.Client, rtts []time.Duration) {
	slices.Sort(rtts)
	r.RTTMs = ms(rtts[len(rtts)/2])
	r.Candidates = gathered(a, b)
	r.OK = true
	if ck.f.relay && r.PairType != "relay" {
		r.fail(stageICE, fmt.Errorf("relay only, yet the selected pair is %s", r.PairType))
	}
}

// timedOut names the stage that did not complete.
func (ck *checker) timedOut(r *checkReport, a, b *client.Client, p *pairing) {
	r.Candidates = gathered(a, b)
	switch {
	case p.connected["a"] && p.connected["b"]:
		r.fail(stageData, fmt.Errorf("connected, but no data channel round trip within %s", ck.f.timeout))
	case ck.f.relay && r.Candidates["relay"] == 0:
		r.fail(stageTURN, fmt.Errorf("no relay candidate gathered within %s", ck.f.timeout))
	default:
		r.fail(stageICE, fmt.Errorf("no connection within %s (candidates gathered: %s)",
			ck.f.timeout, typeCounts(r.Candidates)))
	}
}

// gathered sums the local candidates both peers gathered, by type.
func gathered(cs ...*client.Client) map[string]int {
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

// merger reads several clients' events into one channel, tagged.
type merger struct {
	events chan tagged
	done   chan struct{}
	wg     sync.WaitGroup
}

type tagged struct {
	who string
	ev  client.Event
}

func newMerger() *merger {
	return &merger{events: make(chan tagged), done: make(chan struct{})}
}

// add forwards c's events until c stops; after close they are dropped.
func (m *merger) add(who string, c *client.Client) {
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
