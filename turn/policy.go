package turn

import (
	"net"
	"net/netip"
)

// The peer-address policy decides which peers an allocation may reach. By
// default it refuses everything that is not a public unicast address, so the
// relay is no way into the operator's own network (RFC 8656 §21.4 warns of
// exactly that). Every address is normalised first: an IPv4 address written in
// an IPv6 form (IPv4-mapped, 6to4, NAT64) is judged as the IPv4 address it
// carries, so ::ffff:127.0.0.1 is loopback.

// defaultDenied lists the ranges refused unless HUDDLE_TURN_ALLOW_PEERS
// re-opens them: the non-global entries of the IANA special-purpose registries
// (RFC 6890 and successors).
var defaultDenied = mustPrefixes(
	// IPv4
	"0.0.0.0/8",       // "this network" (RFC 791); 0.0.0.0 reaches the host itself
	"10.0.0.0/8",      // private (RFC 1918)
	"100.64.0.0/10",   // CGNAT shared space (RFC 6598)
	"127.0.0.0/8",     // loopback
	"169.254.0.0/16",  // link-local (RFC 3927)
	"172.16.0.0/12",   // private (RFC 1918)
	"192.0.0.0/24",    // IETF protocol assignments (RFC 6890)
	"192.0.2.0/24",    // documentation (RFC 5737)
	"192.88.99.0/24",  // deprecated 6to4 relay anycast (RFC 7526)
	"192.168.0.0/16",  // private (RFC 1918)
	"198.18.0.0/15",   // benchmarking (RFC 2544)
	"198.51.100.0/24", // documentation
	"203.0.113.0/24",  // documentation
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // reserved (RFC 1112), includes 255.255.255.255
	"::/96",           // unspecified, IPv4-compatible (deprecated, RFC 4291 §2.5.5.1)
	"::1/128",         // loopback
	"64:ff9b:1::/48",  // local-use NAT64 (RFC 8215)
	"100::/64",        // discard-only (RFC 6666)
	"2001::/23",       // IETF protocol assignments, Teredo (RFC 2928, 4380)
	"2001:db8::/32",   // documentation (RFC 3849)
	"3fff::/20",       // documentation (RFC 9637)
	"5f00::/16",       // SRv6 SIDs (RFC 9602)
	"fc00::/7",        // unique local (RFC 4193)
	"fe80::/10",       // link-local
	"fec0::/10",       // deprecated site-local (RFC 3879)
	"ff00::/8",        // multicast
)

// alwaysDenied are never a unicast peer, whatever the allow list says:
// sending to them reaches the host itself or many hosts at once.
var alwaysDenied = mustPrefixes(
	"0.0.0.0/32",
	"224.0.0.0/4",
	"255.255.255.255/32",
	"::/128",
	"ff00::/8",
)

var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052 well-known prefix
	sixToFour   = netip.MustParsePrefix("2002::/16")    // RFC 3056
)

// normalize returns the address a relayed packet to ip would really reach for
// the purpose of the policy: IPv4-mapped (::ffff:a.b.c.d), NAT64
// (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::/48) addresses become the IPv4
// address they embed, and any zone is dropped. An invalid address stays
// invalid.
func normalize(ip netip.Addr) netip.Addr {
	ip = ip.WithZone("")
	if ip.Is4() || !ip.IsValid() {
		return ip
	}
	if ip.Is4In6() {
		return ip.Unmap()
	}
	b := ip.As16()
	switch {
	case nat64Prefix.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16]))
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6]))
	}
	return ip
}

// policy is the peer-address policy of one server. It is read-only once built
// and safe for concurrent use.
type policy struct {
	allow []netip.Prefix // HUDDLE_TURN_ALLOW_PEERS, normalised
	deny  []netip.Prefix // HUDDLE_TURN_DENY_PEERS, normalised
	// self are this server's own addresses (the relay address and the host's
	// interface addresses) not re-opened by the allow list. A peer there is
	// another allocation of this server only when its port is in the relay
	// range; any other port is a local service and is refused.
	self             []netip.Addr
	minPort, maxPort uint16
}

func newPolicy(allow, deny []netip.Prefix, self []netip.Addr, minPort, maxPort uint16) *policy {
	p := &policy{allow: allow, deny: deny, minPort: minPort, maxPort: maxPort}
	for _, a := range self {
		a = normalize(a)
		if !a.IsValid() || containsAddr(p.self, a) || p.userAllowed(a) {
			continue
		}
		p.self = append(p.self, a)
	}
	return p
}

// permitIP decides a CreatePermission or ChannelBind, which carry no port
// the policy can trust: the server's own addresses pass here and are held to
// the relay port range by permitAddr on every packet.
func (p *policy) permitIP(ip netip.Addr) bool {
	ip = normalize(ip)
	switch {
	case !ip.IsValid() || inAny(alwaysDenied, ip) || inAny(p.deny, ip):
		return false
	case inAny(p.allow, ip) || containsAddr(p.self, ip):
		return true
	default:
		return !inAny(defaultDenied, ip)
	}
}

// permitAddr is the per-packet check of a relay socket, in both directions.
// Packets reach only peers that hold a permission, so the address policy was
// applied already; what is left is the port rule for the server's own
// addresses. It must stay cheap and allocation-free.
func (p *policy) permitAddr(ap netip.AddrPort) bool {
	if len(p.self) == 0 {
		return true
	}
	if !containsAddr(p.self, normalize(ap.Addr())) {
		return true
	}
	return ap.Port() >= p.minPort && ap.Port() <= p.maxPort
}

func (p *policy) userAllowed(ip netip.Addr) bool {
	return inAny(p.allow, ip) && !inAny(p.deny, ip)
}

func inAny(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, pr := range prefixes {
		if pr.Contains(ip) {
			return true
		}
	}
	return false
}

func containsAddr(list []netip.Addr, ip netip.Addr) bool {
	for _, a := range list {
		if a == ip {
			return true
		}
	}
	return false
}

// normalizePrefix turns an IPv4-mapped prefix (::ffff:10.0.0.0/104) into the
// IPv4 prefix it means, so allow and deny lists match normalised addresses.
func normalizePrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked()
	}
	return p.Masked()
}

// netIPAddr converts a net.IP from pion into a netip.Addr in the form pion
// keys its permissions by (IPv4-mapped addresses unmapped).
func netIPAddr(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	return a.Unmap(), ok
}

func mustPrefixes(list ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(list))
	for i, s := range list {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}
