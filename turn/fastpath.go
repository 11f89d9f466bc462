package turn

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// The fast path relays ChannelData of UDP allocations (RFC 8656 §12)
// without handing each packet to pion, whose per-packet path allocates (a
// net.UDPAddr per read, a fresh ChannelData buffer per packet to the client,
// eagerly formatted debug strings, a permission key built from a string) and
// costs about half the server's CPU under load.
//
// Pion keeps owning everything but the data: allocations, authentication,
// permissions, channel bindings and their expiry. The fast path holds a copy
// of the state it needs, kept by pion's events (OnAllocationCreated,
// On{Permission,Channel}{Created,Deleted}), which pion raises synchronously
// as it changes its own tables, so the copy never outlives pion's state: an
// expired or deleted channel is gone from both. A packet the fast path does
// not know is handed to pion as before. The fast path is stricter than pion
// in one way: it relays on a channel only while a permission for the peer's
// IP is installed (RFC 8656 §9 and §12; pion checks the channel only).

// fastPath maps UDP client addresses to their allocations, for the listener
// sockets' read loops.
type fastPath struct {
	mu       sync.RWMutex
	byClient map[netip.AddrPort]*fastAlloc
}

func newFastPath() *fastPath {
	return &fastPath{byClient: make(map[netip.AddrPort]*fastAlloc)}
}

// fastAlloc is the fast path's view of one UDP allocation.
type fastAlloc struct {
	client netip.AddrPort // the client's address, unmapped
	relay  *relayConn
	out    *net.UDPConn // a listener socket, to write to the client

	mu       sync.RWMutex
	channels []fastChannel
	perms    []netip.Addr // peer IPs with a permission, unmapped
}

type fastChannel struct {
	number uint16
	peer   netip.AddrPort
}

// unmapAP returns ap with an IPv4-mapped address turned into IPv4, the form
// every key of the fast path takes.
func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// udpAddrPort is a's address, unmapped, if a is a UDP address.
func udpAddrPort(a net.Addr) (netip.AddrPort, bool) {
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	return unmapAP(ua.AddrPort()), true
}

// add registers a new UDP allocation of client, relayed by relay; out
// carries its packets to the client.
func (f *fastPath) add(client netip.AddrPort, relay *relayConn, out *net.UDPConn) {
	fa := &fastAlloc{client: client, relay: relay, out: out}
	f.mu.Lock()
	f.byClient[client] = fa
	f.mu.Unlock()
	relay.fast.Store(fa)
}

// remove forgets fa, unless a newer allocation of the same client took its
// place.
func (f *fastPath) remove(fa *fastAlloc) {
	f.mu.Lock()
	if f.byClient[fa.client] == fa {
		delete(f.byClient, fa.client)
	}
	f.mu.Unlock()
}

func (f *fastPath) lookup(client netip.AddrPort) *fastAlloc {
	f.mu.RLock()
	fa := f.byClient[client]
	f.mu.RUnlock()
	return fa
}

// fromClient relays a ChannelData message from client to its peer when
// it is on a known channel of a known allocation, and reports whether the
// packet is dealt with (relayed or dropped); if not, pion handles it.
func (f *fastPath) fromClient(p []byte, client netip.AddrPort) bool {
	// ChannelData starts with bits 01 (RFC 8656 §12.4); STUN with 00.
	if len(p) < 4 || p[0]&0xC0 != 0x40 {
		return false
	}
	n := int(binary.BigEndian.Uint16(p[2:4]))
	if 4+n > len(p) {
		return false // malformed: pion refuses it
	}
	fa := f.lookup(unmapAP(client))
	if fa == nil {
		return false
	}
	peer, ok := fa.peerOf(binary.BigEndian.Uint16(p[0:2]))
	if !ok {
		return false
	}
	if fa.permitted(peer.Addr()) {
		_ = fa.relay.writeToPeer(p[4:4+n], peer)
	}
	return true
}

func (fa *fastAlloc) peerOf(number uint16) (netip.AddrPort, bool) {
	fa.mu.RLock()
	defer fa.mu.RUnlock()
	for _, c := range fa.channels {
		if c.number == number {
			return c.peer, true
		}
	}
	return netip.AddrPort{}, false
}

func (fa *fastAlloc) channelOf(peer netip.AddrPort) (uint16, bool) {
	fa.mu.RLock()
	defer fa.mu.RUnlock()
	for _, c := range fa.channels {
		if c.peer == peer {
			return c.number, true
		}
	}
	return 0, false
}

func (fa *fastAlloc) permitted(ip netip.Addr) bool {
	fa.mu.RLock()
	defer fa.mu.RUnlock()
	for _, a := range fa.perms {
		if a == ip {
			return true
		}
	}
	return false
}

func (fa *fastAlloc) addChannel(number uint16, peer netip.AddrPort) {
	fa.mu.Lock()
	defer fa.mu.Unlock()
	fa.channels = append(fa.channels, fastChannel{number: number, peer: peer})
}

func (fa *fastAlloc) removeChannel(number uint16) {
	fa.mu.Lock()
	defer fa.mu.Unlock()
	for i, c := range fa.channels {
		if c.number == number {
			fa.channels = append(fa.channels[:i], fa.channels[i+1:]...)
			return
		}
	}
}

func (fa *fastAlloc) addPermission(ip netip.Addr) {
	fa.mu.Lock()
	defer fa.mu.Unlock()
	for _, a := range fa.perms {
		if a == ip {
			return
		}
	}
	fa.perms = append(fa.perms, ip)
}

func (fa *fastAlloc) removePermission(ip netip.Addr) {
	fa.mu.Lock()
	defer fa.mu.Unlock()
	for i, a := range fa.perms {
		if a == ip {
			fa.perms = append(fa.perms[:i], fa.perms[i+1:]...)
			return
		}
	}
}

// toClient sends data from peer to the client as ChannelData when a channel
// is bound to peer, and reports whether the packet is dealt with (sent, or
// dropped for want of a permission). buf holds the data at buf[4:4+n]; the
// header is written in front of it, so nothing is copied.
func (fa *fastAlloc) toClient(buf []byte, n int, peer netip.AddrPort) bool {
	number, ok := fa.channelOf(peer)
	if !ok {
		return false
	}
	if !fa.permitted(peer.Addr()) {
		return true
	}
	binary.BigEndian.PutUint16(buf[0:2], number)
	binary.BigEndian.PutUint16(buf[2:4], uint16(n)) //nolint:gosec // n <= len(buf)-4 < 65536
	_, _ = fa.out.WriteToUDPAddrPort(buf[:4+n], fa.client)
	return true
}

// fastEvents are the pion events that keep the fast path's copy; the
// server's events call them.
type fastEvents struct {
	fast   *fastPath
	relays *relayAllocator
	out    *net.UDPConn
}

func (e fastEvents) allocationCreated(protocol string, src, relayAddr net.Addr) {
	client, ok := udpAddrPort(src)
	if !ok || protocol != "UDP" || e.out == nil {
		return
	}
	if c := e.relays.conn(relayAddr); c != nil {
		e.fast.add(client, c, e.out)
	}
}

func (e fastEvents) alloc(relayAddr net.Addr) *fastAlloc {
	c := e.relays.conn(relayAddr)
	if c == nil {
		return nil
	}
	return c.fast.Load()
}

func (e fastEvents) permissionCreated(relayAddr net.Addr, peer net.IP) {
	ip, ok := netip.AddrFromSlice(peer)
	if fa := e.alloc(relayAddr); fa != nil && ok {
		fa.addPermission(ip.Unmap())
	}
}

func (e fastEvents) permissionDeleted(relayAddr net.Addr, peer net.IP) {
	ip, ok := netip.AddrFromSlice(peer)
	if fa := e.alloc(relayAddr); fa != nil && ok {
		fa.removePermission(ip.Unmap())
	}
}

func (e fastEvents) channelCreated(relayAddr, peer net.Addr, number uint16) {
	ap, ok := udpAddrPort(peer)
	if fa := e.alloc(relayAddr); fa != nil && ok {
		fa.addChannel(number, ap)
	}
}

func (e fastEvents) channelDeleted(relayAddr net.Addr, number uint16) {
	if fa := e.alloc(relayAddr); fa != nil {
		fa.removeChannel(number)
	}
}

// fastRef is the fast-path allocation of a relay socket, if any.
type fastRef = atomic.Pointer[fastAlloc]
