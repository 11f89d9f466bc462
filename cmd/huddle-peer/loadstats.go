package main

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// histSub is the number of buckets per power of two of a histogram: the
// percentiles it reports are within 1/histSub (1.6%) of the true value.
const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	histBuckets = histSub + (64-histSubBits-1)*histSub
)

// histogram counts durations in log-linear buckets with atomic counters,
// so that any goroutine records into it without a lock and without
// allocating. Its max is exact.
type histogram struct {
	counts [histBuckets]atomic.Uint64
	max    atomic.Int64
}

func histIndex(v int64) int {
	if v < histSub {
		return int(max(v, 0))
	}
	shift := bits.Len64(uint64(v)) - histSubBits - 1
	return histSub + shift*histSub + int(v>>shift) - histSub
}

// histLow is the smallest value of bucket i.
func histLow(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	shift := (i - histSub) / histSub
	return int64(histSub+(i-histSub)%histSub) << shift
}

func (h *histogram) record(d time.Duration) {
	v := int64(d)
	h.counts[histIndex(v)].Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// histSnapshot is a histogram's counts at one moment; the difference of
// two snapshots is the histogram of what happened in between.
type histSnapshot struct {
	counts []uint64
	total  uint64
	max    time.Duration
}

func (h *histogram) snapshot() histSnapshot {
	s := histSnapshot{counts: make([]uint64, histBuckets), max: time.Duration(h.max.Load())}
	for i := range h.counts {
		s.counts[i] = h.counts[i].Load()
		s.total += s.counts[i]
	}
	return s
}

// since is what was recorded after earlier; its max is the highest bucket.
func (s histSnapshot) since(earlier histSnapshot) histSnapshot {
	d := histSnapshot{counts: make([]uint64, histBuckets)}
	for i := range s.counts {
		d.counts[i] = s.counts[i] - earlier.counts[i]
		d.total += d.counts[i]
		if d.counts[i] > 0 {
			d.max = time.Duration(histLow(i))
		}
	}
	return d
}

// quantile is the value below which a fraction q of the samples fall, at
// the midpoint of its bucket (never above the max).
func (s histSnapshot) quantile(q float64) time.Duration {
	if s.total == 0 {
		return 0
	}
	rank := uint64(q*float64(s.total) + 0.5)
	rank = min(max(rank, 1), s.total)
	var seen uint64
	for i, c := range s.counts {
		seen += c
		if seen >= rank {
			v := time.Duration(histLow(i))
			if i+1 < histBuckets {
				v = time.Duration((histLow(i) + histLow(i+1)) / 2)
			}
			if s.max > 0 && v > s.max {
				v = s.max
			}
			return v
		}
	}
	return s.max
}

// latencyReport summarises a histogram in milliseconds.
type latencyReport struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

func (s histSnapshot) report() latencyReport {
	return latencyReport{
		Count: s.total,
		P50:   ms3(s.quantile(0.50)),
		P90:   ms3(s.quantile(0.90)),
		P99:   ms3(s.quantile(0.99)),
		Max:   ms3(s.max),
	}
}

func (l latencyReport) text() string {
	if l.Count == 0 {
		return "none"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s  (%d)",
		fmtLatency(l.P50), fmtLatency(l.P90), fmtLatency(l.P99), fmtLatency(l.Max), l.Count)
}

// ms3 is d in milliseconds, rounded to the microsecond.
func ms3(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func fmtLatency(ms float64) string {
	if ms < 10 {
		return strconv.FormatFloat(ms, 'f', 2, 64) + "ms"
	}
	return strconv.FormatFloat(ms, 'f', 1, 64) + "ms"
}

// tally counts events by kind (errors, close codes).
type tally struct {
	mu sync.Mutex
	m  map[string]int
}

func (t *tally) add(kind string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[string]int)
	}
	t.m[kind]++
}

func (t *tally) counts() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int, len(t.m))
	for k, v := range t.m {
		out[k] = v
	}
	return out
}

func (t *tally) total() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, v := range t.m {
		n += v
	}
	return n
}

// fmtCounts prints counts sorted by kind: "a 1, b 2", or "none".
func fmtCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// errorKind names a network error by its kind, so that thousands of
// failures fold into a few lines of the report.
func errorKind(stage string, err error) string {
	var ce *websocket.CloseError
	var ne net.Error
	var errno syscall.Errno
	switch {
	case errors.As(err, &ce):
		return "close-" + strconv.Itoa(ce.Code)
	case errors.Is(err, websocket.ErrBadHandshake):
		return stage + "-bad-handshake"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return stage + "-eof"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return stage + "-timeout"
	case errors.As(err, &errno):
		return stage + "-" + strings.ToLower(errnoName(errno))
	case errors.Is(err, net.ErrClosed):
		return stage + "-closed"
	}
	return stage + "-other"
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.ECONNREFUSED:
		return "refused"
	case syscall.ECONNRESET:
		return "reset"
	case syscall.EPIPE:
		return "broken-pipe"
	case syscall.EADDRNOTAVAIL:
		return "addr-not-avail"
	case syscall.EMFILE, syscall.ENFILE:
		return "too-many-files"
	}
	return "errno-" + strconv.Itoa(int(e))
}
