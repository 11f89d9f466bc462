package signal

// Unit tests of the per-address limits: grouping, the handshake rate on an
// injected clock, slot release, sweeping, and whose X-Forwarded-For is
// believed. The same over real sockets is in security_test.go.

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// limitsClock is a clock moved by hand.
type limitsClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *limitsClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *limitsClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestLimits(t *testing.T, maxConns int, rate float64, trusted ...string) (*addrLimits, *limitsClock) {
	t.Helper()
	clock := &limitsClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	l, err := newAddrLimits(&Config{MaxConnsPerIP: maxConns, HandshakeRate: rate, TrustedProxies: trusted}, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	return l, clock
}

func mustAdmit(t *testing.T, l *addrLimits, addr string) func() {
	t.Helper()
	release, reason := l.admit(netip.MustParseAddr(addr))
	if release == nil {
		t.Fatalf("%s refused: %s", addr, reason)
	}
	return release
}

func mustRefuse(t *testing.T, l *addrLimits, addr, want string) {
	t.Helper()
	release, reason := l.admit(netip.MustParseAddr(addr))
	if release != nil {
		t.Fatalf("%s admitted", addr)
	}
	if reason != want {
		t.Fatalf("%s: reason %q, want %q", addr, reason, want)
	}
}

const (
	reasonConns      = "too many connections from this address"
	reasonHandshakes = "too many handshakes from this address; slow down"
)

func TestLimitsConnsPerAddress(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimits(t, 2, 0)
	r1 := mustAdmit(t, l, "192.0.2.1")
	mustAdmit(t, l, "192.0.2.1")
	mustRefuse(t, l, "192.0.2.1", reasonConns)
	mustAdmit(t, l, "192.0.2.2") // IPv4 addresses count one by one
	r1()
	r1() // a second release frees nothing more
	mustAdmit(t, l, "192.0.2.1")
	mustRefuse(t, l, "192.0.2.1", reasonConns)
}

func TestLimitsIPv6Per64(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimits(t, 2, 0)
	mustAdmit(t, l, "2001:db8:1:2::1")
	mustAdmit(t, l, "2001:db8:1:2:ffff:ffff:ffff:ffff")
	mustRefuse(t, l, "2001:db8:1:2:abcd::7", reasonConns)
	mustAdmit(t, l, "2001:db8:1:3::1") // the next /64
	mustAdmit(t, l, "2001:db8:1:1::1") // the previous one
}

func TestLimitsHandshakeRate(t *testing.T) {
	t.Parallel()
	l, clock := newTestLimits(t, 0, 10) // burst 20
	for i := range 20 {
		if release, reason := l.admit(netip.MustParseAddr("192.0.2.1")); release == nil {
			t.Fatalf("handshake %d refused: %s", i, reason)
		}
	}
	mustRefuse(t, l, "192.0.2.1", reasonHandshakes)
	mustAdmit(t, l, "192.0.2.2")          // another address has its own bucket
	clock.advance(100 * time.Millisecond) // one more at 10/s
	mustAdmit(t, l, "192.0.2.1")
	mustRefuse(t, l, "192.0.2.1", reasonHandshakes)
	clock.advance(time.Hour) // refilled to the burst, not beyond
	for range 20 {
		mustAdmit(t, l, "192.0.2.1")
	}
	mustRefuse(t, l, "192.0.2.1", reasonHandshakes)
}

// TestLimitsConnsBeforeRate: a refusal for connections spends no
// handshake token.
func TestLimitsConnsBeforeRate(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimits(t, 1, 1) // burst 2
	release := mustAdmit(t, l, "192.0.2.1")
	for range 5 {
		mustRefuse(t, l, "192.0.2.1", reasonConns)
	}
	release()
	mustAdmit(t, l, "192.0.2.1")
}

func TestLimitsOff(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimits(t, 0, 0)
	for range 10_000 {
		mustAdmit(t, l, "192.0.2.1")
	}
	if len(l.addrs) != 0 {
		t.Fatalf("%d addresses tracked with the limits off", len(l.addrs))
	}
}

// TestLimitsSweep: idle addresses are forgotten, so that a scan of many
// addresses does not grow the table for ever; busy ones are kept.
func TestLimitsSweep(t *testing.T) {
	t.Parallel()
	l, clock := newTestLimits(t, 10, 1)
	held := mustAdmit(t, l, "192.0.2.1")
	for i := range 1000 {
		release, _ := l.admit(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}))
		release()
	}
	clock.advance(2 * sweepEvery)
	mustAdmit(t, l, "192.0.2.99") // the next admit sweeps
	if n := len(l.addrs); n != 2 {
		t.Fatalf("%d addresses after the sweep, want 2 (the held one and the new one)", n)
	}
	held()
}

func TestClientAddr(t *testing.T) {
	t.Parallel()
	untrusted, _ := newTestLimits(t, 1, 1)
	trusted, _ := newTestLimits(t, 1, 1, "10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.10")
	cases := []struct {
		name   string
		l      *addrLimits
		remote string
		xff    []string
		want   string
	}{
		{"plain", untrusted, "192.0.2.1:5000", nil, "192.0.2.1"},
		{"v4-mapped v6", untrusted, "[::ffff:192.0.2.1]:5000", nil, "192.0.2.1"},
		{"v6", untrusted, "[2001:db8::1]:5000", nil, "2001:db8::1"},
		{"untrusted XFF ignored", untrusted, "192.0.2.1:5000", []string{"203.0.113.5"}, "192.0.2.1"},
		{"trusted proxy, client", trusted, "10.1.2.3:5000", []string{"203.0.113.5"}, "203.0.113.5"},
		{"trusted proxy, no XFF", trusted, "10.1.2.3:5000", nil, "10.1.2.3"},
		{"bare address as trusted", trusted, "192.0.2.10:1", []string{"203.0.113.5"}, "203.0.113.5"},
		{"forged left hops ignored", trusted, "10.1.2.3:5000", []string{"1.1.1.1, 203.0.113.5"}, "203.0.113.5"},
		{"chain of proxies", trusted, "10.1.2.3:5000", []string{"203.0.113.5, 10.9.9.9, 10.8.8.8"}, "203.0.113.5"},
		{"several header lines", trusted, "10.1.2.3:5000", []string{"203.0.113.5", "10.9.9.9"}, "203.0.113.5"},
		{"garbage hop", trusted, "10.1.2.3:5000", []string{"203.0.113.5, garbage"}, "10.1.2.3"},
		{"garbage behind a proxy hop", trusted, "10.1.2.3:5000", []string{"garbage, 10.9.9.9"}, "10.9.9.9"},
		{"v6 client through a v6 proxy", trusted, "[2001:db8:ffff::1]:443", []string{"2001:db8:1::5"}, "2001:db8:1::5"},
		{"mapped client through a proxy", trusted, "10.1.2.3:5000", []string{"::ffff:203.0.113.5"}, "203.0.113.5"},
		{"all hops trusted", trusted, "10.1.2.3:5000", []string{"10.7.7.7"}, "10.7.7.7"},
	}
	for _, tc := range cases {
		r := httptest.NewRequest(http.MethodGet, "/ws", nil)
		r.RemoteAddr = tc.remote
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := tc.l.clientAddr(r); got != netip.MustParseAddr(tc.want) {
			t.Errorf("%s: %v, want %s", tc.name, got, tc.want)
		}
	}
}

func TestParsePrefixes(t *testing.T) {
	t.Parallel()
	got, err := parsePrefixes([]string{" 10.0.0.0/8", "192.0.2.1", "2001:db8::/32", "10.1.2.3/8", ""})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32"),
		netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("10.0.0.0/8"),
	}
	if len(got) != len(want) {
		t.Fatalf("%v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%v, want %v", got, want)
		}
	}
	if _, err := parsePrefixes([]string{"10.0.0.0/33", "example.com"}); err == nil {
		t.Fatal("accepted bad CIDRs")
	}
	cfg := DefaultConfig()
	cfg.TrustedProxies = []string{"nope"}
	if err := cfg.Validate(); err == nil {
		t.Fatal("Validate accepted a bad HUDDLE_TRUSTED_PROXIES")
	}
}
