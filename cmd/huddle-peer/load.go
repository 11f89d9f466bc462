package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/huddle-rtc/huddle/client"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// Bounds of a load run, so that a typo cannot run it for ever or open
// more connections than a node can hold.
const (
	maxLoadConns    = 200_000
	maxLoadDuration = time.Hour
	maxLoadRate     = 10_000 // messages per second per peer
	// loadShards is the number of goroutines that send the messages: more
	// than one, so that one slow socket does not stop every sender.
	loadShards = 4
)

type loadFlags struct {
	url          string
	token        string
	rooms        int
	peersPerRoom int
	rate         float64
	idle         int
	idleRoomSize int
	duration     time.Duration
	ramp         time.Duration
	candidates   int
	sources      int
	maxDials     int
	metrics      string
	settle       time.Duration
	timeout      time.Duration
	progress     time.Duration
	json         bool
}

func (f *loadFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "url", "", "the huddle server: ws://, wss://, http:// or https:// (an empty path means /ws) (required)")
	fs.StringVar(&f.token, "token", "", "a join token (JWT) for every connection, allowing any room (\"room\": \"*\");\ndefault $HUDDLE_TOKEN")
	fs.IntVar(&f.rooms, "rooms", 50, "rooms playing a call")
	fs.IntVar(&f.peersPerRoom, "peers-per-room", 2, "peers in each of those rooms (at least 2)")
	fs.Float64Var(&f.rate, "rate", 10, "messages per second each of those peers sends once the signaling is done")
	fs.IntVar(&f.idle, "idle", 0, "peers that join and stay silent, opened first; the report gives the\nserver's memory per idle peer from /metrics")
	fs.IntVar(&f.idleRoomSize, "idle-room-size", 4, "idle peers per room")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "how long the messages flow")
	fs.DurationVar(&f.ramp, "ramp", 5*time.Second, "spread the opening of all connections (idle and calls) over this long")
	fs.IntVar(&f.candidates, "candidates", 8, "candidates each side of a pair sends after its offer or answer (the last is null)")
	fs.IntVar(&f.sources, "sources", 16, "source addresses 127.0.0.1 to 127.0.0.N when the server is on IPv4 loopback\n(each has its own ephemeral ports); 0: the system's choice")
	fs.IntVar(&f.maxDials, "max-dials", 256, "handshakes in flight at once")
	fs.StringVar(&f.metrics, "metrics", "", "the server's Prometheus endpoint for --idle; default /metrics on --url's host;\n\"off\": do not scrape")
	fs.DurationVar(&f.settle, "settle", 3*time.Second, "wait this long after the idle peers joined before measuring the server's memory")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "bound of each handshake, join, write, and of the wait for the signaling")
	fs.DurationVar(&f.progress, "progress", time.Second, "print a progress line this often; 0: none")
	fs.BoolVar(&f.json, "json", false, "print JSON (one object per line) instead of text")
}

// check returns what is wrong with the flags, or "".
func (f *loadFlags) check() string {
	active := f.rooms * f.peersPerRoom
	switch {
	case f.url == "":
		return "--url is required"
	case f.rooms < 0 || f.idle < 0:
		return "--rooms and --idle must not be negative"
	case f.rooms > 0 && f.peersPerRoom < 2:
		return "--peers-per-room must be at least 2"
	case f.idleRoomSize < 1:
		return "--idle-room-size must be at least 1"
	case active+f.idle == 0:
		return "nothing to do: give --rooms or --idle"
	case active+f.idle > maxLoadConns:
		return fmt.Sprintf("at most %d connections", maxLoadConns)
	case f.rate < 0 || f.rate > maxLoadRate:
		return fmt.Sprintf("--rate must be between 0 and %d", maxLoadRate)
	case f.duration < 0 || f.duration > maxLoadDuration:
		return fmt.Sprintf("--duration must be between 0 and %s", maxLoadDuration)
	case f.ramp < 0 || f.ramp > maxLoadDuration:
		return fmt.Sprintf("--ramp must be between 0 and %s", maxLoadDuration)
	case f.candidates < 0 || f.candidates > 100:
		return "--candidates must be between 0 and 100"
	case f.sources < 0 || f.sources > 254:
		return "--sources must be between 0 and 254"
	case f.maxDials < 1:
		return "--max-dials must be at least 1"
	case f.timeout <= 0 || f.settle < 0 || f.progress < 0:
		return "--timeout must be positive, --settle and --progress not negative"
	}
	return ""
}

func runLoad(ctx context.Context, args []string, out, errOut io.Writer) int {
	var f loadFlags
	fs := newFlagSet("load", "--url URL [flags]",
		"Load a server with signaling as real calls make it: open connections\n"+
			"(ramped), join, play offer, answer and a burst of candidates per pair,\n"+
			"then send timestamped messages at --rate. With --idle, first hold that\n"+
			"many silent joined peers and report the server's memory per peer.\n"+
			"Reports join and relay latency (p50/p90/p99/max), messages/s sent and\n"+
			"received, losses, errors and close codes by kind. Raise the server's\n"+
			"HUDDLE_RATE_LIMIT above --rate, and for one source address its\n"+
			"HUDDLE_MAX_CONNS_PER_IP and HUDDLE_HANDSHAKE_RATE (0 turns them off).\n"+
			"Exit status: 0 when every peer joined and every message arrived, in\n"+
			"order, with no error; 1 otherwise; 2 for bad flags.")
	f.register(fs)
	if code, ok := parse(fs, args, errOut); !ok {
		return code
	}
	if f.token == "" {
		f.token = os.Getenv("HUDDLE_TOKEN")
	}
	if msg := f.check(); msg != "" {
		fmt.Fprintln(errOut, "huddle-peer load:", msg)
		return exitUsage
	}
	l, err := newLoader(f, out)
	if err != nil {
		fmt.Fprintln(errOut, "huddle-peer load:", err)
		return exitUsage
	}
	return l.run(ctx)
}

// loadPhase is a group of peers opened together (the idle ones, then the
// calls), and what waits for them.
type loadPhase struct {
	peers   []*loadPeer
	joinWG  sync.WaitGroup // one per peer until joined or failed
	readyWG sync.WaitGroup // one per active peer until ready or failed
}

// loader is one run of load.
type loader struct {
	f          loadFlags
	url        string
	metricsURL string
	header     http.Header
	dialers    []*websocket.Dialer
	rep        reporter
	epoch      time.Time // message timestamps count from it
	runID      string

	peers   []*loadPeer    // every peer, by idx
	recv    *receiver      // the epoll loop; nil: a goroutine per peer
	readers sync.WaitGroup // the dialling goroutines, goroutine readers and phase waiters
	live    sync.WaitGroup // one per connection until its end is recorded
	leaving atomic.Bool    // the run is over: closes are expected

	started, conns, joined, ready atomic.Int64
	sent, received, reordered     atomic.Int64
	lagged                        atomic.Int64 // sends skipped: the sender fell 1 s behind
	dialLat, joinLat, signalLat   histogram
	relayLat                      histogram
	errs, closes                  tally
}

func newLoader(f loadFlags, out io.Writer) (*loader, error) {
	wsURL, err := client.NormalizeURL(f.url)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(wsURL)
	if limit := openFileLimit(); limit > 0 && uint64(f.rooms*f.peersPerRoom+f.idle+64) > limit {
		return nil, fmt.Errorf("%d connections need more open files than this process may have (%d): raise ulimit -n",
			f.rooms*f.peersPerRoom+f.idle, limit)
	}
	l := &loader{
		f:          f,
		url:        wsURL,
		metricsURL: metricsURL(u, f.metrics),
		header:     http.Header{},
		rep:        reporter{w: out, json: f.json},
		epoch:      time.Now(),
		runID:      rand.Text()[:6],
	}
	if f.token != "" {
		l.header.Set("Authorization", "Bearer "+f.token)
	}
	l.dialers = newDialers(loopbackSources(u.Hostname(), f.sources), f.timeout, &sync.Pool{})
	return l, nil
}

// metricsURL is where the server's /metrics is, or "" for none.
func metricsURL(ws *url.URL, flagValue string) string {
	switch flagValue {
	case "off":
		return ""
	case "":
		u := *ws
		u.Scheme = map[string]string{"ws": "http", "wss": "https"}[u.Scheme]
		u.Path, u.RawQuery = "/metrics", ""
		return u.String()
	}
	return flagValue
}

// loopbackSources lists 127.0.0.1 to 127.0.0.n when host is IPv4 loopback.
func loopbackSources(host string, n int) []string {
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback() || ip.To4() == nil) {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("127.0.0.%d", i+1)
	}
	return out
}

func sourceDialer(src string, timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return d.DialContext
}

// makePhase creates n peers in rooms of size per room, named prefix-k.
func (l *loader) makePhase(first, n, size int, prefix string, active bool) *loadPhase {
	ph := &loadPhase{peers: make([]*loadPeer, n)}
	for i := range ph.peers {
		ph.peers[i] = &loadPeer{
			l: l, phase: ph, idx: first + i, active: active,
			room: wire.RoomID(fmt.Sprintf("%s-%s-%d", prefix, l.runID, i/size)),
		}
	}
	ph.joinWG.Add(n)
	if active {
		ph.readyWG.Add(n)
	}
	return ph
}

// run is the whole load run: idle peers, calls, messages, the end.
func (l *loader) run(ctx context.Context) int {
	ctx, cancel := context.WithTimeout(ctx, l.budget())
	defer cancel()
	idle := l.makePhase(0, l.f.idle, l.f.idleRoomSize, "idle", false)
	calls := l.makePhase(l.f.idle, l.f.rooms*l.f.peersPerRoom, l.f.peersPerRoom, "load", true)
	total := l.f.idle + len(calls.peers)
	l.peers = append(slices.Clip(idle.peers), calls.peers...)
	l.recv = newReceiver(l)
	stopProgress := l.startProgress(total)
	res := loadResult{URL: l.url, Rooms: l.f.rooms, PeersPerRoom: l.f.peersPerRoom, Rate: l.f.rate,
		Idle: l.f.idle, Attempted: total}
	if len(idle.peers) > 0 {
		res.Server = l.idlePhase(ctx, idle, total)
	}
	var elapsed time.Duration
	if len(calls.peers) > 0 {
		l.open(ctx, calls, total)
		l.await(ctx, &calls.joinWG, l.f.timeout)
		if !l.await(ctx, &calls.readyWG, l.f.timeout) {
			l.errs.add("signaling-timeout")
		}
		elapsed = l.messages(ctx, calls.peers)
		l.drain(ctx)
	}
	l.end(l.peers)
	if l.recv != nil {
		l.recv.stop()
	}
	stopProgress()
	res.fill(l, elapsed)
	res.print(l.rep)
	if !res.OK {
		return exitFailed
	}
	return exitOK
}

// budget bounds the whole run: every phase has its own bound within it.
func (l *loader) budget() time.Duration {
	return 2*l.f.ramp + l.f.settle + l.f.duration + 6*l.f.timeout + time.Minute
}

// idlePhase opens the idle peers and measures the server's memory before
// and after.
func (l *loader) idlePhase(ctx context.Context, ph *loadPhase, total int) *serverMemory {
	var mem *serverMemory
	var before serverSample
	if l.metricsURL != "" {
		mem = &serverMemory{}
		var err error
		if before, err = scrapeServer(ctx, l.metricsURL); err != nil {
			mem.Error = err.Error()
		}
	}
	l.open(ctx, ph, total)
	l.await(ctx, &ph.joinWG, l.f.timeout)
	if mem == nil || mem.Error != "" {
		return mem
	}
	select {
	case <-time.After(l.f.settle):
	case <-ctx.Done():
	}
	after, err := scrapeServer(ctx, l.metricsURL)
	if err != nil {
		mem.Error = err.Error()
		return mem
	}
	mem.fill(before, after, int(l.joined.Load()))
	return mem
}

// open starts ph's peers at the ramp's pace (total connections over
// --ramp) and returns once every dial is over.
func (l *loader) open(ctx context.Context, ph *loadPhase, total int) {
	slots := make(chan struct{}, l.f.maxDials)
	var gap time.Duration
	if l.f.ramp > 0 {
		gap = l.f.ramp / time.Duration(total)
	}
	start := time.Now()
	for i, p := range ph.peers {
		if wait := time.Until(start.Add(time.Duration(i) * gap)); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			p.fail("not-started")
			continue
		}
		l.started.Add(1)
		l.readers.Add(1)
		go func() {
			defer l.readers.Done()
			p.run(ctx, slots)
		}()
	}
	for range cap(slots) {
		slots <- struct{}{}
	}
}

// await waits for wg, at most timeout; it reports whether wg was done.
func (l *loader) await(ctx context.Context, wg *sync.WaitGroup, timeout time.Duration) bool {
	done := make(chan struct{})
	l.readers.Add(1)
	go func() {
		defer l.readers.Done()
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
	case <-ctx.Done():
	}
	return false
}

// messages sends the timestamped messages of every ready peer for
// --duration, spread evenly in time, and returns how long it took.
func (l *loader) messages(ctx context.Context, peers []*loadPeer) time.Duration {
	var senders []*loadPeer
	for _, p := range peers {
		if p.readyFlag.Load() && !p.dead.Load() {
			senders = append(senders, p)
		}
	}
	if l.f.rate == 0 || len(senders) == 0 || l.f.duration == 0 {
		return 0
	}
	start := time.Now()
	end := start.Add(l.f.duration)
	var wg sync.WaitGroup
	for k := range min(loadShards, len(senders)) {
		var shard []*loadPeer
		for i := k; i < len(senders); i += loadShards {
			shard = append(shard, senders[i])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.sendShard(ctx, shard, start, end)
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// sendShard sends peers' messages one after the other, each peer at the
// rate, until end. A shard that falls more than a second behind skips
// ahead (counted as lagged): the sent rate then shows the shortfall.
func (l *loader) sendShard(ctx context.Context, peers []*loadPeer, start, end time.Time) {
	gap := time.Duration(float64(time.Second) / (l.f.rate * float64(len(peers))))
	gap = max(gap, 1)
	maxLag := int64(time.Second / gap)
	var m int64 // the next send, in units of gap since start
	sleep := time.NewTimer(time.Hour)
	defer sleep.Stop()
	for {
		now := time.Now()
		if !now.Before(end) || ctx.Err() != nil {
			return
		}
		due := int64(now.Sub(start) / gap)
		if due-m > maxLag {
			l.lagged.Add(due - m - maxLag)
			m = due - maxLag
		}
		for ; m <= due; m++ {
			peers[m%int64(len(peers))].sendMessage()
		}
		// Sleep at least a millisecond: at high rates the sends of that
		// millisecond go out together, each stamped when written.
		if wait := time.Until(start.Add(time.Duration(m) * gap)); wait > 0 {
			sleep.Reset(max(wait, time.Millisecond))
			select {
			case <-sleep.C:
			case <-ctx.Done():
			}
		}
	}
}

// drain waits for the messages in flight, at most --timeout.
func (l *loader) drain(ctx context.Context) {
	deadline := time.Now().Add(l.f.timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for l.received.Load() < l.sent.Load() && time.Now().Before(deadline) {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// end sends leave on every connection, waits for the server's closes (at
// most --timeout), then closes what is left and waits for every reader.
func (l *loader) end(peers []*loadPeer) {
	l.leaving.Store(true)
	var wg sync.WaitGroup
	for k := range loadShards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := k; i < len(peers); i += loadShards {
				peers[i].leave()
			}
		}()
	}
	wg.Wait()
	done := make(chan struct{})
	go func() {
		l.live.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(l.f.timeout):
		for _, p := range peers {
			p.closeNow()
		}
		<-done
	}
	l.readers.Wait()
}

// startProgress prints a progress line every --progress until stopped.
func (l *loader) startProgress(total int) (stop func()) {
	if l.f.progress == 0 {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(l.f.progress)
		defer tick.Stop()
		start := time.Now()
		prevSent, prevRecv := int64(0), int64(0)
		prevHist := l.relayLat.snapshot()
		for {
			select {
			case <-quit:
				return
			case now := <-tick.C:
				sent, recv := l.sent.Load(), l.received.Load()
				hist := l.relayLat.snapshot()
				secs := l.f.progress.Seconds()
				l.printProgress(progressLine{
					Seconds: now.Sub(start).Round(100 * time.Millisecond).Seconds(),
					Started: int(l.started.Load()), Total: total, Open: int(l.conns.Load()),
					Joined: int(l.joined.Load()), Ready: int(l.ready.Load()),
					SentPerSec: float64(sent-prevSent) / secs, ReceivedPerSec: float64(recv-prevRecv) / secs,
					RelayP99: ms3(hist.since(prevHist).quantile(0.99)), Errors: l.errs.total(),
				})
				prevSent, prevRecv, prevHist = sent, recv, hist
			}
		}
	}()
	return func() {
		close(quit)
		wg.Wait()
	}
}

// progressLine is one line of progress.
type progressLine struct {
	Seconds        float64 `json:"t"`
	Started        int     `json:"started"`
	Total          int     `json:"total"`
	Open           int     `json:"open"`
	Joined         int     `json:"joined"`
	Ready          int     `json:"ready"`
	SentPerSec     float64 `json:"sentPerSec"`
	ReceivedPerSec float64 `json:"receivedPerSec"`
	RelayP99       float64 `json:"relayP99Ms"`
	Errors         int     `json:"errors"`
}

func (l *loader) printProgress(p progressLine) {
	l.rep.emit("progress", toFields(p), fmt.Sprintf(
		"%6.1fs  conns %d/%d open %d joined %d ready %d | sent %.0f/s recv %.0f/s relay p99 %s | errors %d",
		p.Seconds, p.Started, p.Total, p.Open, p.Joined, p.Ready, p.SentPerSec, p.ReceivedPerSec,
		fmtLatency(p.RelayP99), p.Errors))
}
