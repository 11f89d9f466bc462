package turn

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// FuzzNormalize checks the address normaliser on arbitrary 16-byte
// addresses (what an XOR-PEER-ADDRESS in the IPv6 family can carry): it is
// idempotent, and the policy judges every IPv6 form of an IPv4 address as
// that address.
func FuzzNormalize(f *testing.F) {
	f.Add([]byte{10: 0xff, 11: 0xff, 12: 127, 15: 1})                  // ::ffff:127.0.0.1
	f.Add([]byte{0x20, 0x02, 10, 0, 0, 1, 15: 1})                      // 6to4 of 10.0.0.1
	f.Add([]byte{0, 0x64, 0xff, 0x9b, 12: 192, 13: 168, 14: 0, 15: 1}) // NAT64 of 192.168.0.1
	f.Add([]byte{0xfe, 0x80, 15: 1})
	f.Add([]byte{8, 8, 8, 8})
	p := defaultPolicy()
	f.Fuzz(func(t *testing.T, b []byte) {
		ip, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		n := normalize(ip)
		if normalize(n) != n {
			t.Fatalf("normalize not idempotent: %v -> %v -> %v", ip, n, normalize(n))
		}
		if p.permitIP(ip) != p.permitIP(n) {
			t.Fatalf("%v and its normal form %v judged differently", ip, n)
		}
		if !n.Is4() {
			return
		}
		want := p.permitIP(n)
		for _, form := range []netip.Addr{mapped(n), sixToFourOf(n), nat64Of(n)} {
			if p.permitIP(form) != want {
				t.Fatalf("%v judged %v, its form %v judged otherwise", n, want, form)
			}
		}
		// No form of a denied IPv4 address slips through with the port rule.
		if !want && p.permitIP(mapped(n)) {
			t.Fatalf("mapped form of denied %v permitted", n)
		}
	})
}

// FuzzParseUsername checks the TURN REST username parser, which reads the
// USERNAME of every authenticated request.
func FuzzParseUsername(f *testing.F) {
	for _, s := range []string{"1700000000:alice", "1700000000", ":", "", "+1:x", "-1:x",
		"99999999999999999999:x", "1:a:b", "１２:x", "0x10:x", " 1:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ru, err := parseUsername(s)
		if err != nil {
			return
		}
		ts, user, _ := strings.Cut(s, ":")
		if ru.user != user || ru.expiry < 0 {
			t.Fatalf("parseUsername(%q) = %+v", s, ru)
		}
		if n, err := strconv.ParseUint(ts, 10, 63); err != nil || int64(n) != ru.expiry || strings.ContainsAny(ts, "+-") {
			t.Fatalf("parseUsername(%q) accepted timestamp %q as %d", s, ts, ru.expiry)
		}
	})
}

// FuzzIsChallenge checks that the outgoing-answer classifier never panics
// or reads out of bounds, whatever the bytes.
func FuzzIsChallenge(f *testing.F) {
	f.Add([]byte{0x01, 0x13, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42, 12: 0, 20: 0x00, 21: 0x09, 22: 0x00, 23: 0x04, 26: 4, 27: 1})
	f.Add([]byte{0x40, 0x00, 0x00, 0x04, 'p', 'i', 'n', 'g'})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = isChallenge(b)
	})
}
