package turn

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"

	pionturn "github.com/pion/turn/v4"
)

// relayPortTries bounds the random ports tried per allocation. With the range
// 80% in use, 64 tries all fail with probability 0.8^64 ~ 6e-7; a full range
// answers 508 after 64 cheap binds instead of a sweep of thousands.
const relayPortTries = 64

// relayAllocator creates the relay sockets of allocations in the relay port
// range (pion's RelayAddressGenerator). It wraps each socket so that the
// policy's port rule holds on every packet, and tracks them so that Close can
// end them and wait for their readers.
type relayAllocator struct {
	advertised       net.IP // the relay address given to clients
	bind             string // the address relay sockets bind
	minPort, maxPort uint16
	policy           *policy
	denied           *atomic.Uint64 // packets dropped by the policy
	traffic          traffic        // what the relays carried
	wg               *sync.WaitGroup
	fast             *fastPath

	mu     sync.Mutex
	closed bool
	conns  map[uint16]*relayConn
}

var _ pionturn.RelayAddressGenerator = (*relayAllocator)(nil)

// Validate implements pionturn.RelayAddressGenerator.
func (r *relayAllocator) Validate() error { return nil }

// AllocateConn implements pionturn.RelayAddressGenerator: RFC 6062 TCP
// relays are not offered.
func (r *relayAllocator) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, errTCPRelay
}

// AllocatePacketConn implements pionturn.RelayAddressGenerator: it binds a
// random free port of the range, or requestedPort (an EVEN-PORT reservation
// pion made through this same method, so inside the range).
func (r *relayAllocator) AllocatePacketConn(network string, requestedPort int) (net.PacketConn, net.Addr, error) {
	if requestedPort != 0 {
		if requestedPort < int(r.minPort) || requestedPort > int(r.maxPort) {
			return nil, nil, errPortOutOfRange
		}
		return r.bindPort(network, uint16(requestedPort))
	}
	span := int(r.maxPort) - int(r.minPort) + 1
	for range relayPortTries {
		port := r.minPort + uint16(rand.IntN(span)) //nolint:gosec // port choice, not a secret
		conn, addr, err := r.bindPort(network, port)
		if err == nil || errors.Is(err, errRelayClosed) {
			return conn, addr, err
		}
	}
	return nil, nil, errNoRelayPort
}

func (r *relayAllocator) bindPort(network string, port uint16) (net.PacketConn, net.Addr, error) {
	if r.isClosed() {
		return nil, nil, errRelayClosed
	}
	pc, err := net.ListenPacket(network, net.JoinHostPort(r.bind, strconv.Itoa(int(port)))) //nolint:noctx // no context in pion's interface
	if err != nil {
		return nil, nil, err
	}
	c := &relayConn{PacketConn: pc, r: r, port: port}
	c.udp, _ = pc.(*net.UDPConn)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		_ = pc.Close()
		return nil, nil, errRelayClosed
	}
	r.conns[port] = c
	r.mu.Unlock()
	return c, &net.UDPAddr{IP: r.advertised, Port: int(port)}, nil
}

func (r *relayAllocator) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// started counts the reader pion starts on the relay socket of a new
// allocation (its packetHandler goroutine), so that Close can wait for it.
// Pion reports the allocation (OnAllocationCreated) before it starts that
// goroutine, which reads until the socket fails.
func (r *relayAllocator) started(relayAddr net.Addr) {
	ua, ok := relayAddr.(*net.UDPAddr)
	if !ok {
		return
	}
	r.mu.Lock()
	c := r.conns[uint16(ua.Port)] //nolint:gosec // a port
	r.mu.Unlock()
	if c != nil && c.reading.CompareAndSwap(false, true) {
		r.wg.Add(1)
	}
}

// close refuses new relay sockets and closes the live ones, which ends
// their allocations.
func (r *relayAllocator) close() {
	r.mu.Lock()
	r.closed = true
	conns := make([]*relayConn, 0, len(r.conns))
	for _, c := range r.conns {
		conns = append(conns, c)
	}
	r.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// conn returns the live relay socket of relayAddr, or nil.
func (r *relayAllocator) conn(relayAddr net.Addr) *relayConn {
	ua, ok := relayAddr.(*net.UDPAddr)
	if !ok || ua.Port <= 0 || ua.Port > 65535 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns[uint16(ua.Port)]
}

func (r *relayAllocator) forget(c *relayConn) {
	r.mu.Lock()
	if r.conns[c.port] == c {
		delete(r.conns, c.port)
	}
	r.mu.Unlock()
}

// permit applies the policy's per-packet port rule.
func (r *relayAllocator) permit(addr net.Addr) bool {
	ua, ok := addr.(*net.UDPAddr)
	return r.permitAddrPort(ok, ua.AddrPort())
}

// permitAddrPort is permit for an address already parsed (ok false: not a
// UDP address, refused).
func (r *relayAllocator) permitAddrPort(ok bool, ap netip.AddrPort) bool {
	if ok && r.policy.permitAddr(ap) {
		return true
	}
	r.denied.Add(1)
	return false
}

// traffic counts what the relay sockets carried, both ways.
type traffic struct {
	packetsToPeer, bytesToPeer     atomic.Uint64
	packetsToClient, bytesToClient atomic.Uint64
}

// relayConn is an allocation's relay socket. Pion reads it from one
// goroutine and writes it (Send indications, ChannelData) from the
// client's read loop.
type relayConn struct {
	net.PacketConn
	udp  *net.UDPConn // PacketConn, for the allocation-free calls
	r    *relayAllocator
	port uint16
	fast fastRef // the allocation's fast path; nil over TCP

	// buf is the read buffer of pion's reader (the only one): the data at
	// buf[4:], room for a ChannelData header in front.
	buf []byte

	reading   atomic.Bool // pion's reader is counted in r.wg
	closeOnce sync.Once
}

// ReadFrom drops packets the policy refuses, so they never reach the client,
// and sends those of a bound channel to the client itself (fastpath.go);
// pion gets the others (Data indications, refusals).
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.udp == nil {
		return c.readSlow(p)
	}
	if len(c.buf) < 4+len(p) {
		c.buf = make([]byte, 4+len(p))
	}
	for {
		n, ap, err := c.udp.ReadFromUDPAddrPort(c.buf[4 : 4+len(p)])
		if err != nil {
			c.readEnded()
			return n, nil, err
		}
		ap = unmapAP(ap)
		if !c.r.permitAddrPort(true, ap) {
			continue
		}
		c.r.traffic.packetsToClient.Add(1)
		c.r.traffic.bytesToClient.Add(uint64(n)) //nolint:gosec // n >= 0
		if fa := c.fast.Load(); fa != nil && fa.toClient(c.buf, n, ap) {
			continue
		}
		copy(p, c.buf[4:4+n])
		return n, net.UDPAddrFromAddrPort(ap), nil
	}
}

// readSlow is ReadFrom for a socket that is not a *net.UDPConn.
func (c *relayConn) readSlow(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			c.readEnded()
			return n, addr, err
		}
		if c.r.permit(addr) {
			c.r.traffic.packetsToClient.Add(1)
			c.r.traffic.bytesToClient.Add(uint64(n)) //nolint:gosec // n >= 0
			return n, addr, nil
		}
	}
}

// readEnded counts pion's reader done: it returns on the first error.
func (c *relayConn) readEnded() {
	if c.reading.CompareAndSwap(true, false) {
		c.r.wg.Done()
	}
}

// WriteTo refuses peers the policy refuses.
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if !c.r.permit(addr) {
		return 0, errPeerDenied
	}
	n, err := c.PacketConn.WriteTo(p, addr)
	c.countToPeer(n, err)
	return n, err
}

// writeToPeer is WriteTo for the fast path, which has a parsed address.
func (c *relayConn) writeToPeer(p []byte, peer netip.AddrPort) error {
	if !c.r.permitAddrPort(true, peer) {
		return errPeerDenied
	}
	n, err := c.udp.WriteToUDPAddrPort(p, peer)
	c.countToPeer(n, err)
	return err
}

func (c *relayConn) countToPeer(n int, err error) {
	if err == nil {
		c.r.traffic.packetsToPeer.Add(1)
		c.r.traffic.bytesToPeer.Add(uint64(n)) //nolint:gosec // n >= 0
	}
}

// Close is idempotent: both pion and Server.Close may close a relay.
func (c *relayConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		if fa := c.fast.Swap(nil); fa != nil {
			c.r.fast.remove(fa)
		}
		c.r.forget(c)
		err = c.PacketConn.Close()
	})
	return err
}
