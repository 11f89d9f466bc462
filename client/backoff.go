package client

import (
	"math"
	"math/rand/v2"
	"time"
)

// Backoff bounds the delays between reconnection attempts: exponential
// growth from Initial by Multiplier up to Max, each delay shortened by a
// random fraction of at most Jitter so that many clients dropped at once do
// not come back in step. Zero fields take the defaults.
type Backoff struct {
	// Initial is the delay before the first attempt after an unexpected
	// drop (default 250ms). After close code 1012 the first attempt is
	// made at once.
	Initial time.Duration
	// Max bounds every delay (default 10s).
	Max time.Duration
	// Multiplier grows the delay after each failed attempt (default 2).
	Multiplier float64
	// Jitter is the largest fraction removed at random from a delay, in
	// [0, 1] (default 0.5).
	Jitter float64
	// MaxAttempts stops reconnecting after that many failed attempts in a
	// row, with ErrGaveUp; 0 means no limit.
	MaxAttempts int
}

// Default backoff values.
const (
	DefaultBackoffInitial    = 250 * time.Millisecond
	DefaultBackoffMax        = 10 * time.Second
	DefaultBackoffMultiplier = 2.0
	DefaultBackoffJitter     = 0.5
)

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.Multiplier < 1 {
		b.Multiplier = DefaultBackoffMultiplier
	}
	if b.Jitter <= 0 || b.Jitter > 1 {
		b.Jitter = DefaultBackoffJitter
	}
	return b
}

// Delay is the wait before attempt number attempt (0 for the first), with
// r a random number in [0, 1).
func (b Backoff) Delay(attempt int, r float64) time.Duration {
	b = b.withDefaults()
	d := float64(b.Initial) * math.Pow(b.Multiplier, float64(attempt))
	if d > float64(b.Max) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(b.Max)
	}
	return time.Duration(d * (1 - b.Jitter*r))
}

func (b Backoff) next(attempt int) time.Duration { return b.Delay(attempt, rand.Float64()) }
