package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// loadResult is the report of a load run.
type loadResult struct {
	URL          string  `json:"url"`
	Rooms        int     `json:"rooms"`
	PeersPerRoom int     `json:"peersPerRoom"`
	Rate         float64 `json:"ratePerPeer"`
	Idle         int     `json:"idle"`
	Attempted    int     `json:"attempted"`
	Joined       int     `json:"joined"`
	Ready        int     `json:"ready"`

	Seconds        float64 `json:"seconds"`
	Sent           int64   `json:"sent"`
	Received       int64   `json:"received"`
	Lost           int64   `json:"lost"`
	Reordered      int64   `json:"reordered"`
	Lagged         int64   `json:"lagged"`
	SentPerSec     float64 `json:"sentPerSec"`
	ReceivedPerSec float64 `json:"receivedPerSec"`

	Dial      latencyReport `json:"dialMs"`
	Join      latencyReport `json:"joinMs"`
	Signaling latencyReport `json:"signalingMs"`
	Relay     latencyReport `json:"relayMs"`

	Errors map[string]int `json:"errors"`
	Closes map[string]int `json:"closes"`
	Server *serverMemory  `json:"server,omitempty"`
	OK     bool           `json:"ok"`
}

func (r *loadResult) fill(l *loader, elapsed time.Duration) {
	r.Joined = int(l.joined.Load())
	r.Ready = int(l.ready.Load())
	r.Seconds = elapsed.Round(time.Millisecond).Seconds()
	r.Sent, r.Received = l.sent.Load(), l.received.Load()
	r.Lost = max(0, r.Sent-r.Received)
	r.Reordered, r.Lagged = l.reordered.Load(), l.lagged.Load()
	if elapsed > 0 {
		r.SentPerSec = float64(r.Sent) / elapsed.Seconds()
		r.ReceivedPerSec = float64(r.Received) / elapsed.Seconds()
	}
	r.Dial = l.dialLat.snapshot().report()
	r.Join = l.joinLat.snapshot().report()
	r.Signaling = l.signalLat.snapshot().report()
	r.Relay = l.relayLat.snapshot().report()
	r.Errors, r.Closes = l.errs.counts(), l.closes.counts()
	r.OK = len(r.Errors) == 0 && r.Lost == 0 && r.Reordered == 0 &&
		r.Joined == r.Attempted && r.Ready == r.Rooms*r.PeersPerRoom
}

func (r *loadResult) print(rep reporter) {
	if rep.json {
		rep.emit("result", toFields(r), "")
		return
	}
	verdict := "OK"
	if !r.OK {
		verdict = "FAILED"
	}
	lines := []string{
		fmt.Sprintf("%s: %d of %d peers joined (%d idle), %d of %d call peers ready", verdict,
			r.Joined, r.Attempted, r.Idle, r.Ready, r.Rooms*r.PeersPerRoom),
		fmt.Sprintf("  messages   sent %d (%.0f/s), received %d (%.0f/s), lost %d, reordered %d, lagged %d in %.1fs",
			r.Sent, r.SentPerSec, r.Received, r.ReceivedPerSec, r.Lost, r.Reordered, r.Lagged, r.Seconds),
		"  dial       " + r.Dial.text(),
		"  join       " + r.Join.text(),
		"  signaling  " + r.Signaling.text(),
		"  relay      " + r.Relay.text(),
		"  errors     " + fmtCounts(r.Errors),
		"  closes     " + fmtCounts(r.Closes),
	}
	if r.Server != nil {
		lines = append(lines, "  server     "+r.Server.text())
	}
	fmt.Fprintln(rep.w, strings.Join(lines, "\n"))
}

// serverMemory is what the idle peers cost the server, from its /metrics.
type serverMemory struct {
	Peers             int     `json:"peers"`
	RSSBefore         float64 `json:"rssBefore"`
	RSSAfter          float64 `json:"rssAfter"`
	RSSPerPeerKiB     float64 `json:"rssPerPeerKiB"`
	HeapPerPeerKiB    float64 `json:"heapPerPeerKiB"`
	StackPerPeerKiB   float64 `json:"stackPerPeerKiB"`
	GoroutinesPerPeer float64 `json:"goroutinesPerPeer"`
	Error             string  `json:"error,omitempty"`
}

func (m *serverMemory) fill(before, after serverSample, peers int) {
	m.Peers = peers
	m.RSSBefore, m.RSSAfter = before[metricRSS], after[metricRSS]
	if _, ok := after[metricRSS]; !ok {
		m.Error = "the server's /metrics has no " + metricRSS
		return
	}
	if peers == 0 {
		return
	}
	per := func(name string, unit float64) float64 {
		v := (after[name] - before[name]) / float64(peers) / unit
		return float64(int(v*100+0.5)) / 100
	}
	m.RSSPerPeerKiB = per(metricRSS, 1024)
	m.HeapPerPeerKiB = per(metricHeap, 1024)
	m.StackPerPeerKiB = per(metricStack, 1024)
	m.GoroutinesPerPeer = per(metricGoroutines, 1)
}

func (m *serverMemory) text() string {
	if m.Error != "" {
		return "memory not measured: " + m.Error
	}
	return fmt.Sprintf("%.1f KiB RSS per idle peer (heap %.1f, stacks %.1f, %.2f goroutines) over %d peers; RSS %.1f -> %.1f MiB",
		m.RSSPerPeerKiB, m.HeapPerPeerKiB, m.StackPerPeerKiB, m.GoroutinesPerPeer, m.Peers,
		m.RSSBefore/(1<<20), m.RSSAfter/(1<<20))
}

// The series scraped from the server.
const (
	metricRSS        = "process_resident_memory_bytes"
	metricHeap       = "go_memstats_heap_inuse_bytes"
	metricStack      = "go_memstats_stack_inuse_bytes"
	metricGoroutines = "go_goroutines"
)

// serverSample is the value of each scraped series.
type serverSample map[string]float64

// scrapeServer reads the series above from a Prometheus text endpoint.
func scrapeServer(ctx context.Context, url string) (serverSample, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	out := serverSample{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case metricRSS, metricHeap, metricStack, metricGoroutines:
			if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
				out[name] = v
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	return out, nil
}
