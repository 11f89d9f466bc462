package turn

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"
)

// A 401 (or 438 stale nonce) answer carries a nonce and the realm and is
// several times the size of the unauthenticated request that provokes it.
// Over UDP the source address can be forged, so unbounded answers would make
// the server an amplifier aimed at whoever owns that address (RFC 8656
// §21.1.1). They are limited per source IP; a legitimate client retransmits.
const (
	challengeRate    rate.Limit = 10 // answers per second per source IP
	challengeBurst              = 20 // a browser gathers over a few URLs at once
	challengeBuckets            = 1 << 16
)

// challengeLimiter rate-limits 401/438 answers per destination IP.
type challengeLimiter struct {
	dropped atomic.Uint64

	mu      sync.Mutex
	buckets map[netip.Addr]*rate.Limiter
}

func newChallengeLimiter() *challengeLimiter {
	return &challengeLimiter{buckets: make(map[netip.Addr]*rate.Limiter)}
}

// allow reports whether an answer may go to addr now, and counts a refusal.
func (l *challengeLimiter) allow(addr net.Addr) bool {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return true
	}
	ip := ua.AddrPort().Addr().Unmap()
	l.mu.Lock()
	b := l.buckets[ip]
	if b == nil {
		if len(l.buckets) >= challengeBuckets {
			l.sweep()
		}
		b = rate.NewLimiter(challengeRate, challengeBurst)
		l.buckets[ip] = b
	}
	ok = b.Allow()
	l.mu.Unlock()
	if !ok {
		l.dropped.Add(1)
	}
	return ok
}

// sweep forgets buckets that have refilled (they equal a new one); if the
// table is still full, of addresses all sending now, it starts over, which
// grants each at most one more burst.
func (l *challengeLimiter) sweep() {
	for ip, b := range l.buckets {
		if b.Tokens() >= challengeBurst {
			delete(l.buckets, ip)
		}
	}
	if len(l.buckets) >= challengeBuckets {
		clear(l.buckets)
	}
}

// STUN framing (RFC 8489 §5, §14.8).
const (
	stunHeaderLen   = 20
	stunMagicCookie = 0x2112A442
	attrErrorCode   = 0x0009
	attrNonce       = 0x0015
)

// isChallenge reports whether p is a challenge: a STUN error response with
// code 401 or 438 that carries a NONCE (pion also answers 401, without a
// nonce, to an authenticated ChannelBind it refuses). It does not allocate,
// and reads only bytes the server itself built.
func isChallenge(p []byte) bool {
	// The two top bits are zero in STUN; class bits C1 (0x0100) and C0
	// (0x0010) both set mean an error response.
	if len(p) < stunHeaderLen || p[0]&0xC0 != 0 || p[0]&0x01 == 0 || p[1]&0x10 == 0 ||
		binary.BigEndian.Uint32(p[4:8]) != stunMagicCookie {
		return false
	}
	code, nonce := 0, false
	for attrs := p[stunHeaderLen:]; len(attrs) >= 4; {
		typ := binary.BigEndian.Uint16(attrs[0:2])
		n := int(binary.BigEndian.Uint16(attrs[2:4]))
		if len(attrs) < 4+n {
			break
		}
		switch {
		case typ == attrErrorCode && n >= 4:
			code = int(attrs[6]&0x07)*100 + int(attrs[7])
		case typ == attrNonce:
			nonce = true
		}
		attrs = attrs[min(len(attrs), 4+(n+3)&^3):]
	}
	return nonce && (code == 401 || code == 438)
}
