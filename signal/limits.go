package signal

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// addrLimits caps open connections and handshakes per client address,
// grouping IPv6 addresses by /64 (one subscriber's network).
type addrLimits struct {
	maxConns  int        // 0: no limit
	handshake rate.Limit // 0: no limit
	burst     int
	trusted   []netip.Prefix
	now       func() time.Time

	mu        sync.Mutex // guards the fields below
	addrs     map[netip.Prefix]*addrState
	lastSweep time.Time
}

type addrState struct {
	conns    int
	limiter  *rate.Limiter
	lastSeen time.Time
}

// sweepEvery is how often idle entries are dropped.
const sweepEvery = time.Minute

func newAddrLimits(cfg *Config, now func() time.Time) (*addrLimits, error) {
	trusted, err := parsePrefixes(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("HUDDLE_TRUSTED_PROXIES: %w", err)
	}
	return &addrLimits{
		maxConns:  cfg.MaxConnsPerIP,
		handshake: rate.Limit(cfg.HandshakeRate),
		burst:     max(1, int(2*cfg.HandshakeRate)),
		trusted:   trusted,
		now:       now,
		addrs:     make(map[netip.Prefix]*addrState),
	}, nil
}

// parsePrefixes reads CIDRs; a bare address is its own /32 or /128.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		errs = append(errs, fmt.Errorf("%q is not a CIDR", s))
	}
	return out, errors.Join(errs...)
}

// clientAddr is the address a request comes from: the peer of the TCP
// connection, or, when that peer is a trusted proxy, the nearest address
// in X-Forwarded-For that is not one.
func (l *addrLimits) clientAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	addr = addr.Unmap()
	if !l.isTrusted(addr) {
		return addr
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // a forged or broken list: trust nothing further left
		}
		addr = a.Unmap()
		if !l.isTrusted(addr) {
			break
		}
	}
	return addr
}

func (l *addrLimits) isTrusted(a netip.Addr) bool {
	for _, p := range l.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// group is the key an address is counted under.
func group(a netip.Addr) netip.Prefix {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}

// admit takes a connection slot and a handshake token for addr. It
// returns a release function for the slot, or the reason for a 429.
func (l *addrLimits) admit(addr netip.Addr) (func(), string) {
	if l.maxConns == 0 && l.handshake == 0 {
		return func() {}, ""
	}
	key := group(addr)
	l.mu.Lock()
	now := l.now()
	defer l.mu.Unlock()
	l.sweepLocked(now)
	st := l.addrs[key]
	if st == nil {
		st = &addrState{}
		if l.handshake > 0 {
			st.limiter = rate.NewLimiter(l.handshake, l.burst)
		}
		l.addrs[key] = st
	}
	st.lastSeen = now
	if l.maxConns > 0 && st.conns >= l.maxConns {
		return nil, "too many connections from this address"
	}
	if st.limiter != nil && !st.limiter.AllowN(now, 1) {
		return nil, "too many handshakes from this address; slow down"
	}
	st.conns++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			st.conns--
			st.lastSeen = l.now()
			l.mu.Unlock()
		})
	}, ""
}

// sweepLocked forgets addresses with no connection that have been quiet
// long enough for their handshake bucket to be full again.
func (l *addrLimits) sweepLocked(now time.Time) {
	if now.Sub(l.lastSweep) < sweepEvery {
		return
	}
	l.lastSweep = now
	for k, st := range l.addrs {
		if st.conns == 0 && now.Sub(st.lastSeen) >= sweepEvery {
			delete(l.addrs, k)
		}
	}
}
