package turn

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// channelData frames data as ChannelData on channel number.
func channelData(number uint16, data []byte) []byte {
	b := make([]byte, 4+len(data))
	binary.BigEndian.PutUint16(b[0:2], number)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(data))) //nolint:gosec // test data
	copy(b[4:], data)
	return b
}

func (c *rawClient) sendChannel(number uint16, data []byte) {
	c.t.Helper()
	if _, err := c.conn.WriteTo(channelData(number, data), c.server); err != nil {
		c.t.Fatal(err)
	}
}

// readChannel returns the next ChannelData the client receives, skipping
// STUN messages.
func (c *rawClient) readChannel() (uint16, []byte) {
	c.t.Helper()
	for {
		b, _ := readFrom(c.t, c.conn)
		if len(b) >= 4 && b[0]&0xC0 == 0x40 {
			n := int(binary.BigEndian.Uint16(b[2:4]))
			if 4+n > len(b) {
				c.t.Fatalf("ChannelData length %d in a %d-byte datagram", n, len(b))
			}
			return binary.BigEndian.Uint16(b[0:2]), b[4 : 4+n]
		}
	}
}

// clientAddr is the client's address as the fast path keys it.
func (c *rawClient) clientAddr() netip.AddrPort {
	return unmapAP(c.conn.LocalAddr().(*net.UDPAddr).AddrPort())
}

// bindChannel allocates and binds channel 0x4000 to peer.
func bindChannel(t *testing.T, c *rawClient, peer net.PacketConn) *net.UDPAddr {
	t.Helper()
	relay := relayAddr(t, c.allocate())
	if r := c.do(stun.MethodChannelBind, channelNumber(0x4000), peerAddr(peer.LocalAddr().(*net.UDPAddr))); !isSuccess(r) {
		t.Fatalf("channel bind: code %d", errorCode(r))
	}
	return relay
}

// channelPair is a client with channel 0x4000 bound to a peer, on a
// server that allows loopback peers: what most fast-path tests start from.
func channelPair(t *testing.T, opts ...Option) (s *Server, c *rawClient, peer net.PacketConn, relay *net.UDPAddr) {
	t.Helper()
	cfg := testConfig()
	allowLoopback(&cfg)
	s = startServer(t, cfg, opts...)
	username, password := mustMint(s, "alice")
	c = newRawClient(t, s, username, password)
	peer = listenPeer(t)
	return s, c, peer, bindChannel(t, c, peer)
}

// The fast path relays both ways, counts what it relays, and is the path
// taken: the allocation and its channel are in its table.
func TestFastPathRelays(t *testing.T) {
	t.Parallel()
	s, c, peer, relay := channelPair(t)

	fa := s.fast.lookup(c.clientAddr())
	if fa == nil {
		t.Fatal("the UDP allocation is not in the fast path")
	}
	if _, ok := fa.peerOf(0x4000); !ok {
		t.Fatal("the channel is not in the fast path")
	}
	before := s.Stats()
	c.sendChannel(0x4000, []byte("to the peer"))
	data, from := readFrom(t, peer)
	if string(data) != "to the peer" || from.String() != relay.String() {
		t.Fatalf("peer got %q from %v, want %q from %v", data, from, "to the peer", relay)
	}
	if _, err := peer.WriteTo([]byte("to the client"), relay); err != nil {
		t.Fatal(err)
	}
	if number, data := c.readChannel(); number != 0x4000 || string(data) != "to the client" {
		t.Fatalf("client got %q on channel %#x", data, number)
	}
	// The server counts a packet after its write returns, maybe after the
	// peer has read it.
	waitFor(t, "the packet to the peer to be counted", func() bool { return s.Stats().PacketsToPeer > before.PacketsToPeer })
	after := s.Stats()
	if after.PacketsToPeer-before.PacketsToPeer != 1 || after.BytesToPeer-before.BytesToPeer != uint64(len("to the peer")) {
		t.Errorf("to peer: %d packets, %d bytes counted", after.PacketsToPeer-before.PacketsToPeer, after.BytesToPeer-before.BytesToPeer)
	}
	if after.PacketsToClient-before.PacketsToClient != 1 || after.BytesToClient-before.BytesToClient != uint64(len("to the client")) {
		t.Errorf("to client: %d packets, %d bytes counted", after.PacketsToClient-before.PacketsToClient, after.BytesToClient-before.BytesToClient)
	}

	// Deleting the allocation (a zero-lifetime Refresh) empties the table.
	if r := c.do(stun.MethodRefresh, lifetime(0)); !isSuccess(r) {
		t.Fatalf("refresh 0: code %d", errorCode(r))
	}
	waitFor(t, "the allocation to leave the fast path", func() bool { return s.fast.lookup(c.clientAddr()) == nil })
}

// Once the channel expires, its ChannelData no longer reaches the peer, and
// the peer's packets reach the client as Data indications (the permission
// outlives the channel here), not as ChannelData.
func TestFastPathChannelExpiry(t *testing.T) {
	t.Parallel()
	s, c, peer, relay := channelPair(t, withChannelLifetime(300*time.Millisecond))
	peerUDP := peer.LocalAddr().(*net.UDPAddr)

	fa := s.fast.lookup(c.clientAddr())
	if fa == nil {
		t.Fatal("the UDP allocation is not in the fast path")
	}
	waitFor(t, "the channel to expire", func() bool { _, ok := fa.peerOf(0x4000); return !ok })

	c.sendChannel(0x4000, []byte("on an expired channel"))
	// A Send indication after it, on the same path to the same peer: the
	// peer's first packet must be this one.
	c.send(peerUDP, []byte("marker"))
	if data, _ := readFrom(t, peer); string(data) != "marker" {
		t.Fatalf("peer got %q first, want the marker: the expired channel relayed", data)
	}
	if _, err := peer.WriteTo([]byte("back"), relay); err != nil {
		t.Fatal(err)
	}
	if data, from := c.readData(); string(data) != "back" || from.String() != peerUDP.String() {
		t.Fatalf("client got %q from %v", data, from)
	}
}

// A peer with no permission reaches the client neither way, while the
// channel's peer does.
func TestFastPathPermissions(t *testing.T) {
	t.Parallel()
	_, c, peer, relay := channelPair(t)

	stranger, err := net.ListenPacket("udp4", "127.0.0.2:0") // another IP: no permission
	if err != nil {
		t.Skipf("turn: no 127.0.0.2 on this host: %v", err)
	}
	t.Cleanup(func() { _ = stranger.Close() })
	if _, err := stranger.WriteTo([]byte("from a stranger"), relay); err != nil {
		t.Fatal(err)
	}
	if _, err := peer.WriteTo([]byte("from the peer"), relay); err != nil {
		t.Fatal(err)
	}
	if number, data := c.readChannel(); number != 0x4000 || string(data) != "from the peer" {
		t.Fatalf("client got %q on %#x first, want the bound peer's packet", data, number)
	}
}

// With a channel bound but no permission for its peer (which pion never
// leaves, but the fast path must not trust), nothing is relayed either way;
// with the permission back, both ways relay.
func TestFastPathNeedsPermission(t *testing.T) {
	t.Parallel()
	s, c, peer, relay := channelPair(t)
	peerAP := unmapAP(peer.LocalAddr().(*net.UDPAddr).AddrPort())
	fa := s.fast.lookup(c.clientAddr())
	if fa == nil {
		t.Fatal("the UDP allocation is not in the fast path")
	}

	fa.removePermission(peerAP.Addr())
	toPeer, toClient := s.Stats().PacketsToPeer, s.Stats().PacketsToClient
	if !s.fast.fromClient(channelData(0x4000, []byte("x")), c.clientAddr()) {
		t.Fatal("ChannelData on a bound channel without permission went to pion")
	}
	if got := s.Stats().PacketsToPeer; got != toPeer {
		t.Fatal("ChannelData relayed without a permission")
	}
	buf := make([]byte, 4+8)
	if !fa.toClient(buf, 1, peerAP) {
		t.Fatal("data from the channel's peer without permission went to pion")
	}
	if _, err := peer.WriteTo([]byte("dropped"), relay); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the peer's packet to arrive", func() bool { return s.Stats().PacketsToClient > toClient })

	fa.addPermission(peerAP.Addr())
	if _, err := peer.WriteTo([]byte("relayed"), relay); err != nil {
		t.Fatal(err)
	}
	if _, data := c.readChannel(); string(data) != "relayed" {
		t.Fatalf("client got %q first, want the packet sent with a permission", data)
	}
	c.sendChannel(0x4000, []byte("out"))
	if data, _ := readFrom(t, peer); string(data) != "out" {
		t.Fatalf("peer got %q", data)
	}
}

// The port rule of the server's own address holds on the fast path: a
// channel to a local service outside the relay range is bound (the IP is
// the server's), but no packet crosses it either way.
func TestFastPathPortRule(t *testing.T) {
	t.Parallel()
	s := startServer(t, testConfig()) // loopback is the server's own address
	username, password := mustMint(s, "alice")
	c := newRawClient(t, s, username, password)
	service := listenPeer(t)
	if port := service.LocalAddr().(*net.UDPAddr).Port; port >= 61000 {
		t.Fatalf("service port %d is in the relay range: check net.ipv4.ip_local_port_range", port)
	}
	relay := bindChannel(t, c, service)

	denied := s.Stats().PacketsDenied
	c.sendChannel(0x4000, []byte("to the service"))
	waitFor(t, "the outbound packet to be dropped", func() bool { return s.Stats().PacketsDenied > denied })
	if _, err := service.WriteTo([]byte("from the service"), relay); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the inbound packet to be dropped", func() bool { return s.Stats().PacketsDenied > denied+1 })
	if got := s.Stats().PacketsToPeer; got != 0 {
		t.Fatalf("%d packets relayed to the service", got)
	}
}

// Many clients relaying at once through several listener sockets, under the
// race detector: every payload arrives intact at its own peer and back.
func TestFastPathConcurrent(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	allowLoopback(&cfg)
	cfg.UDPSockets = 2
	cfg.MaxAllocations = 100
	s := startServer(t, cfg)
	const clients, packets = 8, 50
	var wg sync.WaitGroup
	var failed atomic.Bool
	for i := range clients {
		username, password := mustMint(s, "alice")
		c := newRawClient(t, s, username, password)
		peer := listenPeer(t)
		relay := bindChannel(t, c, peer)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for j := range packets {
				want := []byte{byte(i), byte(j), 0xAA}
				if _, err := c.conn.WriteTo(channelData(0x4000, want), c.server); err != nil {
					failed.Store(true)
					return
				}
				_ = peer.SetReadDeadline(time.Now().Add(waitTimeout))
				n, _, err := peer.ReadFrom(buf)
				if err != nil || !bytes.Equal(buf[:n], want) {
					failed.Store(true)
					return
				}
				if _, err := peer.WriteTo(buf[:n], relay); err != nil {
					failed.Store(true)
					return
				}
				_ = c.conn.SetReadDeadline(time.Now().Add(waitTimeout))
				n, _, err = c.conn.ReadFrom(buf)
				if err != nil || n != 4+len(want) || !bytes.Equal(buf[4:n], want) {
					failed.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() {
		t.Fatal("a packet was lost or mangled")
	}
	want := uint64(clients * packets)
	waitFor(t, "every packet to the peers to be counted", func() bool { return s.Stats().PacketsToPeer >= want })
	if got := s.Stats().PacketsToPeer; got != want {
		t.Fatalf("PacketsToPeer = %d, want %d", got, want)
	}
}
