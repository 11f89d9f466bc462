package turn

import (
	"net"
	"net/netip"
	"testing"

	"github.com/pion/stun/v3"
)

// IPv6 forms that embed an IPv4 address.
func mapped(v4 netip.Addr) netip.Addr { return netip.AddrFrom16(v4.As16()) }

func sixToFourOf(v4 netip.Addr) netip.Addr {
	b := v4.As4()
	return netip.AddrFrom16([16]byte{0x20, 0x02, b[0], b[1], b[2], b[3], 15: 1})
}

func nat64Of(v4 netip.Addr) netip.Addr {
	b := v4.As4()
	return netip.AddrFrom16([16]byte{0, 0x64, 0xff, 0x9b, 12: b[0], 13: b[1], 14: b[2], 15: b[3]})
}

var deniedV4 = []string{
	"127.0.0.1", "127.255.255.254", // loopback
	"10.1.2.3", "172.16.5.4", "172.31.255.255", "192.168.1.1", // RFC 1918
	"169.254.1.1",                 // link-local
	"100.64.0.1", "100.127.255.1", // CGNAT
	"0.0.0.0", "0.1.2.3", // this network, unspecified
	"224.0.0.1", "239.255.255.250", // multicast
	"255.255.255.255",                        // broadcast
	"240.0.0.1",                              // reserved
	"192.0.2.1", "198.18.0.1", "203.0.113.9", // documentation, benchmarking
}

var deniedV6 = []string{
	"::1", "::", "fd00::1", "fc00::1", "fe80::1", "fe80::1%eth0", "ff02::1", "ff0e::1",
	"::7f00:1",     // IPv4-compatible ::127.0.0.1
	"64:ff9b:1::1", // local-use NAT64
	"2001::1",      // Teredo
	"2001:db8::1", "fec0::1", "100::1",
}

var publicV4 = []string{"8.8.8.8", "1.1.1.1", "100.128.0.1", "172.32.0.1", "192.169.0.1"}

func defaultPolicy() *policy { return newPolicy(nil, nil, nil, 61000, 65535) }

func TestPolicyDefaultDeny(t *testing.T) {
	t.Parallel()
	p := defaultPolicy()
	for _, s := range deniedV4 {
		v4 := netip.MustParseAddr(s)
		for _, form := range []netip.Addr{v4, mapped(v4), sixToFourOf(v4), nat64Of(v4)} {
			if p.permitIP(form) {
				t.Errorf("%v (form of %s) permitted", form, s)
			}
		}
	}
	for _, s := range deniedV6 {
		if p.permitIP(netip.MustParseAddr(s)) {
			t.Errorf("%s permitted", s)
		}
	}
	for _, s := range publicV4 {
		v4 := netip.MustParseAddr(s)
		for _, form := range []netip.Addr{v4, mapped(v4), sixToFourOf(v4), nat64Of(v4)} {
			if !p.permitIP(form) {
				t.Errorf("public %v (form of %s) denied", form, s)
			}
		}
	}
	if !p.permitIP(netip.MustParseAddr("2606:4700:4700::1111")) {
		t.Error("public IPv6 denied")
	}
	if p.permitIP(netip.Addr{}) {
		t.Error("invalid address permitted")
	}
}

func TestPolicyLists(t *testing.T) {
	t.Parallel()
	allow, err := parsePrefixes([]string{"127.0.0.0/8", "::ffff:10.0.0.0/104", "0.0.0.0/0", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	deny, err := parsePrefixes([]string{"8.8.8.0/24", "10.9.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	p := newPolicy(allow, deny, nil, 61000, 65535)
	cases := map[string]bool{
		"127.0.0.1":              true,  // re-opened
		"::ffff:127.0.0.1":       true,  // the same, mapped
		"10.1.2.3":               true,  // re-opened by a mapped prefix
		"10.9.1.1":               false, // deny wins over allow
		"8.8.8.8":                false, // added to the deny list
		"2002:808:808::1":        false, // ... in its 6to4 form too
		"64:ff9b::808:808":       false, // ... and NAT64
		"192.168.1.1":            true,  // 0.0.0.0/0 re-opens everything ...
		"0.0.0.0":                false, // ... but never the unspecified address
		"224.0.0.1":              false, // ... multicast
		"255.255.255.255":        false, // ... broadcast
		"fd00::1":                true,
		"fe80::1":                false,
		"::ffff:255.255.255.255": false,
	}
	for s, want := range cases {
		if got := p.permitIP(netip.MustParseAddr(s)); got != want {
			t.Errorf("permitIP(%s) = %v, want %v", s, got, want)
		}
	}
}

func TestPolicyOwnRelay(t *testing.T) {
	t.Parallel()
	self := netip.MustParseAddr("10.0.0.5")
	p := newPolicy(nil, nil, []netip.Addr{self}, 61000, 65535)
	if !p.permitIP(self) || !p.permitIP(mapped(self)) {
		t.Error("own relay address refused")
	}
	if p.permitIP(netip.MustParseAddr("10.0.0.6")) {
		t.Error("a neighbour of the relay address permitted")
	}
	cases := map[string]bool{
		"10.0.0.5:61000":         true,
		"10.0.0.5:65535":         true,
		"10.0.0.5:60999":         false,
		"10.0.0.5:22":            false,
		"[::ffff:10.0.0.5]:6379": false,
		"[2002:a00:5::1]:6379":   false,
		"8.8.8.8:22":             true, // not ours: the IP policy decided already
		"[::ffff:8.8.8.8]:22":    true,
	}
	for s, want := range cases {
		if got := p.permitAddr(netip.MustParseAddrPort(s)); got != want {
			t.Errorf("permitAddr(%s) = %v, want %v", s, got, want)
		}
	}
	// An allow list covering the relay address lifts the port rule.
	allow, _ := parsePrefixes([]string{"10.0.0.0/8"})
	p = newPolicy(allow, nil, []netip.Addr{self}, 61000, 65535)
	if !p.permitAddr(netip.MustParseAddrPort("10.0.0.5:22")) {
		t.Error("allow-listed relay address still held to the relay ports")
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"::ffff:127.0.0.1":    "127.0.0.1",
		"64:ff9b::a00:1":      "10.0.0.1",
		"2002:c0a8:101::1":    "192.168.1.1",
		"2002:c0a8:101:ff::9": "192.168.1.1",
		"fe80::1%eth0":        "fe80::1",
		"2001:db8::1":         "2001:db8::1",
		"8.8.8.8":             "8.8.8.8",
	}
	for in, want := range cases {
		if got := normalize(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("normalize(%s) = %s, want %s", in, got, want)
		}
	}
}

// Every denied form, sent to a running server, is refused for permissions
// and channel binds, including an XOR-PEER-ADDRESS in the IPv6 family that
// carries ::ffff:127.0.0.1, which pion's client would never build.
func TestPeerPolicyOnServer(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	// Another loopback address as the relay's, so that 127.0.0.1 is not
	// this server's own (TestOwnRelayException covers that).
	cfg.PublicIP = "127.0.0.2"
	s := startServer(t, cfg)
	username, password := mustMint(s, "alice")
	c := newRawClient(t, s, username, password)
	if r := c.allocate(); !isSuccess(r) {
		t.Fatal(errorCode(r))
	}
	var forms []netip.Addr
	for _, s := range deniedV4 {
		v4 := netip.MustParseAddr(s)
		forms = append(forms, v4, mapped(v4), sixToFourOf(v4), nat64Of(v4))
	}
	for _, s := range deniedV6 {
		forms = append(forms, netip.MustParseAddr(s).WithZone(""))
	}
	channel := uint16(0x4000)
	for _, ip := range forms {
		// Every address in the IPv6 family, byte for byte, and the IPv4
		// ones in the IPv4 family too.
		attrs := []stun.Setter{rawIPv6PeerAddr(ip.As16(), 5000)}
		if ip.Is4() {
			attrs = append(attrs, peerAddr(&net.UDPAddr{IP: ip.AsSlice(), Port: 5000}))
		}
		for _, attr := range attrs {
			if r := c.createPermission(attr); isSuccess(r) {
				t.Errorf("CreatePermission to %v granted", ip)
			}
			if r := c.do(stun.MethodChannelBind, channelNumber(channel), attr); isSuccess(r) {
				t.Errorf("ChannelBind to %v granted", ip)
			}
			channel++
		}
	}
	// The exact case of the issue.
	loop := [16]byte{10: 0xff, 11: 0xff, 12: 127, 15: 1}
	if r := c.createPermission(rawIPv6PeerAddr(loop, 80)); isSuccess(r) {
		t.Error("CreatePermission to ::ffff:127.0.0.1 in the IPv6 family granted")
	}
	// The same request shape with a public address succeeds, so the
	// refusals above are the policy's.
	public := netip.MustParseAddr("::ffff:8.8.8.8").As16()
	if r := c.createPermission(rawIPv6PeerAddr(public, 80)); !isSuccess(r) {
		t.Errorf("CreatePermission to ::ffff:8.8.8.8: code %d", errorCode(r))
	}
	if got := s.Stats().PeersDenied; got < uint64(len(forms)) {
		t.Errorf("PeersDenied = %d, want >= %d", got, len(forms))
	}
}

// Two allocations of a server whose relay address is loopback reach each
// other without any allow list, but not another service on loopback.
func TestOwnRelayException(t *testing.T) {
	t.Parallel()
	s := startServer(t, testConfig())
	ua, pa := mustMint(s, "alice")
	ub, pb := mustMint(s, "bob")
	a, b := newRawClient(t, s, ua, pa), newRawClient(t, s, ub, pb)
	ra, rb := relayAddr(t, a.allocate()), relayAddr(t, b.allocate())
	if r := a.createPermission(peerAddr(rb)); !isSuccess(r) {
		t.Fatalf("permission to the other relay: code %d", errorCode(r))
	}
	if r := b.createPermission(peerAddr(ra)); !isSuccess(r) {
		t.Fatalf("permission to the other relay: code %d", errorCode(r))
	}
	a.send(rb, []byte("hello bob"))
	if data, from := b.readData(); string(data) != "hello bob" || from.String() != ra.String() {
		t.Fatalf("bob got %q from %v", data, from)
	}

	service := listenPeer(t) // a local service outside the relay range
	svc := service.LocalAddr().(*net.UDPAddr)
	if svc.Port >= 61000 {
		t.Fatalf("service port %d is in the relay range: check net.ipv4.ip_local_port_range", svc.Port)
	}
	denied := s.Stats().PacketsDenied
	a.send(svc, []byte("to the service"))
	waitFor(t, "the outbound packet to be dropped", func() bool { return s.Stats().PacketsDenied > denied })
	if _, err := service.WriteTo([]byte("from the service"), ra); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the inbound packet to be dropped", func() bool { return s.Stats().PacketsDenied > denied+1 })
	b.send(ra, []byte("hello alice"))
	if data, from := a.readData(); string(data) != "hello alice" || from.String() != rb.String() {
		t.Fatalf("alice got %q from %v, want bob's packet first", data, from)
	}
}
