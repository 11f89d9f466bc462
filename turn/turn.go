// Package turn is huddle's bundled TURN server (RFC 8656), built on
// pion/turn v4, and the ICE-servers provider that hands peers its URLs with
// TURN REST credentials.
//
// The server is safe by default: credentials are checked when an allocation
// is created (a long call outlives them), each credential user has an
// allocation quota, each allocation a permission bound, 401 answers are
// rate-limited per source address, and the relay refuses peers in the
// operator's own networks (policy.go) unless HUDDLE_TURN_ALLOW_PEERS re-opens
// them.
package turn

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	pionturn "github.com/pion/turn/v4"
)

// closeTimeout bounds how long Close waits for pion's goroutines.
const closeTimeout = 5 * time.Second

// Server is the bundled TURN server. It serves the Listeners it was built
// with until Close.
type Server struct {
	log        *slog.Logger
	pion       *pionturn.Server
	creds      *credentials
	gate       *gate
	relays     *relayAllocator
	fast       *fastPath
	challenges *challengeLimiter
	urls       []string
	udpConns   []*serverPacketConn
	tcp        []*trackingListener
	wg         sync.WaitGroup // pion's read and accept loops, relay readers

	closeOnce sync.Once
	closeErr  error
}

// Stats are the server's counters, for metrics.
type Stats struct {
	// Allocations is the number of live allocations.
	Allocations int
	// AuthFailures counts refused credentials: malformed, expired, revoked,
	// wrong realm, or a failed integrity check (wrong or forged password).
	AuthFailures uint64
	// QuotaRejections counts allocations refused with 486.
	QuotaRejections uint64
	// PeersDenied counts permissions and channel binds refused by the peer
	// policy or the per-allocation permission bound.
	PeersDenied uint64
	// PacketsDenied counts relayed packets dropped by the port rule of the
	// server's own address.
	PacketsDenied uint64
	// ChallengesDropped counts 401/438 answers withheld by the rate limit.
	ChallengesDropped uint64
	// PacketsToPeer and BytesToPeer count what relays sent to peers;
	// PacketsToClient and BytesToClient what they received for clients.
	PacketsToPeer, BytesToPeer     uint64
	PacketsToClient, BytesToClient uint64
}

// NewServer validates cfg and starts the bundled TURN server on ln, which it
// owns from now on: Close closes it, and so does a failed NewServer. A nil
// logger discards.
func NewServer(cfg Config, ln *Listeners, logger *slog.Logger, opts ...Option) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	srv, err := newServer(cfg, ln, logger, opts)
	if err != nil && ln != nil {
		err = errors.Join(err, ln.Close())
	}
	return srv, err
}

func newServer(cfg Config, ln *Listeners, logger *slog.Logger, opts []Option) (*Server, error) {
	switch {
	case !cfg.Enabled:
		return nil, ErrDisabled
	case ln == nil || len(ln.UDP) == 0:
		return nil, fmt.Errorf("turn: %w", errNoUDPListener)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	relayIP, err := relayAddress(cfg, logger)
	if err != nil {
		return nil, err
	}
	secret := cfg.secret()
	if secret == "" {
		secret = randomSecret()
		logger.Warn("HUDDLE_TURN_SECRET is unset: using a random secret for this process; " +
			"several nodes or an external coturn need a shared one")
	}
	o := buildOptions(opts)
	s := &Server{
		log:        logger,
		creds:      newCredentials(secret, cfg.CredentialTTL, o.now),
		challenges: newChallengeLimiter(),
		fast:       newFastPath(),
	}
	s.gate, s.relays = s.newGateAndRelays(cfg, relayIP)
	s.urls = bundledURLs(cfg, relayIP, ln)
	if err := s.start(cfg, ln, o); err != nil {
		return nil, err
	}
	s.reportBuffers(ln.UDP)
	logger.Info("TURN server listening", "urls", s.urls, "relay", relayIP.String(), "relayPorts", cfg.RelayPorts)
	return s, nil
}

func (s *Server) newGateAndRelays(cfg Config, relayIP netip.Addr) (*gate, *relayAllocator) {
	// Validate has checked these.
	minPort, maxPort, _ := parsePortRange(cfg.RelayPorts)
	allow, _ := parsePrefixes(cfg.AllowPeers)
	deny, _ := parsePrefixes(cfg.DenyPeers)
	pol := newPolicy(allow, deny, []netip.Addr{relayIP}, minPort, maxPort)
	g := newGate(s.creds, cfg.Realm, cfg.MaxAllocations, pol, s.log)
	r := &relayAllocator{
		advertised: net.IP(relayIP.AsSlice()),
		bind:       relayBind(relayIP),
		minPort:    minPort,
		maxPort:    maxPort,
		policy:     pol,
		denied:     new(atomic.Uint64),
		wg:         &s.wg,
		fast:       s.fast,
		conns:      make(map[uint16]*relayConn),
	}
	return g, r
}

// start hands the sockets to pion, which starts one goroutine per socket.
func (s *Server) start(cfg Config, ln *Listeners, o options) error {
	pcfg := pionturn.ServerConfig{
		Realm:              cfg.Realm,
		ChannelBindTimeout: o.channelLifetime,
		AuthHandler:        s.gate.authHandler,
		QuotaHandler:       s.gate.quotaHandler,
		LoggerFactory:      newPionLogs(s.log),
	}
	for _, pc := range ln.UDP {
		spc := &serverPacketConn{PacketConn: pc, fast: s.fast, wg: &s.wg, challenges: s.challenges}
		spc.udp, _ = pc.(*net.UDPConn)
		s.udpConns = append(s.udpConns, spc)
		pcfg.PacketConnConfigs = append(pcfg.PacketConnConfigs, pionturn.PacketConnConfig{
			PacketConn:            spc,
			RelayAddressGenerator: s.relays,
			PermissionHandler:     s.gate.permissionHandler,
		})
	}
	pcfg.EventHandler = s.events()
	for _, l := range []net.Listener{ln.TCP, ln.TLS} {
		if l == nil {
			continue
		}
		tl := newTrackingListener(l, &s.wg)
		s.tcp = append(s.tcp, tl)
		pcfg.ListenerConfigs = append(pcfg.ListenerConfigs, pionturn.ListenerConfig{
			Listener:              tl,
			RelayAddressGenerator: s.relays,
			PermissionHandler:     s.gate.permissionHandler,
		})
	}
	// Counted before pion starts the loops. pion.NewServer fails only while
	// validating, before it starts any; the counts are then moot.
	s.wg.Add(len(pcfg.PacketConnConfigs) + len(pcfg.ListenerConfigs))
	ps, err := pionturn.NewServer(pcfg)
	if err != nil {
		return fmt.Errorf("turn: %w", err)
	}
	s.pion = ps
	return nil
}

func (s *Server) events() pionturn.EventHandler {
	g := s.gate
	// The fast path answers clients on the first listener socket: all share
	// one address (SO_REUSEPORT), so the client cannot tell them apart.
	fe := fastEvents{fast: s.fast, relays: s.relays, out: s.udpConns[0].udp}
	return pionturn.EventHandler{
		OnAuth: func(src, _ net.Addr, _, username, _, _ string, verdict bool) {
			if !verdict {
				g.fail("integrity", username, src)
			}
		},
		OnAllocationCreated: func(src, _ net.Addr, protocol, username, _ string, relayAddr net.Addr, _ int) {
			g.allocationCreated(src, username)
			s.relays.started(relayAddr)
			fe.allocationCreated(protocol, src, relayAddr)
		},
		OnAllocationDeleted: func(src, _ net.Addr, _, username, _ string) {
			g.allocationDeleted(src, username)
		},
		OnAllocationError: func(src, _ net.Addr, _, _ string) {
			g.allocationFailed(src)
		},
		OnPermissionCreated: func(src, _ net.Addr, _, _, _ string, relayAddr net.Addr, peer net.IP) {
			g.permissionCreated(src, peer)
			fe.permissionCreated(relayAddr, peer)
		},
		OnPermissionDeleted: func(src, _ net.Addr, _, _, _ string, relayAddr net.Addr, peer net.IP) {
			g.permissionDeleted(src, peer)
			fe.permissionDeleted(relayAddr, peer)
		},
		OnChannelCreated: func(_, _ net.Addr, _, _, _ string, relayAddr, peer net.Addr, number uint16) {
			fe.channelCreated(relayAddr, peer, number)
		},
		OnChannelDeleted: func(_, _ net.Addr, _, _, _ string, relayAddr, _ net.Addr, number uint16) {
			fe.channelDeleted(relayAddr, number)
		},
	}
}

// relayAddress is HUDDLE_TURN_PUBLIC_IP, or the host's first non-loopback,
// non-link-local IPv4 address.
func relayAddress(cfg Config, log *slog.Logger) (netip.Addr, error) {
	if cfg.PublicIP != "" {
		return parseRelayIP(cfg.PublicIP)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("turn: detect relay address: %w", err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		ip = ip.Unmap()
		if ok && ip.Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && !ip.IsUnspecified() {
			log.Info("TURN relay address detected; set HUDDLE_TURN_PUBLIC_IP if peers reach this host by another", "relay", ip.String())
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("turn: %w", errNoRelayIP)
}

// relayBind is the address relay sockets bind: the relay address when it is
// one of this host's (so loopback tests stay on loopback), else all IPv4
// addresses (a public address NATed to this host).
func relayBind(relayIP netip.Addr) string {
	pc, err := net.ListenPacket("udp4", netip.AddrPortFrom(relayIP, 0).String()) //nolint:noctx // a probe
	if err != nil {
		return "0.0.0.0"
	}
	_ = pc.Close()
	return relayIP.String()
}

// bundledURLs are the turn:/turns: URLs of the bound sockets.
func bundledURLs(cfg Config, relayIP netip.Addr, ln *Listeners) []string {
	host := cfg.Host
	if host == "" {
		host = relayIP.String()
	}
	hostPort := func(a net.Addr) string {
		_, port, _ := net.SplitHostPort(a.String())
		return net.JoinHostPort(host, port)
	}
	urls := []string{"turn:" + hostPort(ln.UDP[0].LocalAddr()) + "?transport=udp"}
	if ln.TCP != nil {
		urls = append(urls, "turn:"+hostPort(ln.TCP.Addr())+"?transport=tcp")
	}
	if ln.TLS != nil {
		urls = append(urls, "turns:"+hostPort(ln.TLS.Addr())+"?transport=tcp")
	}
	return urls
}

// reportBuffers warns when the kernel gave less UDP buffer than asked.
func (s *Server) reportBuffers(conns []net.PacketConn) {
	if got := readBuffer(conns[0]); got > 0 && got < socketBuffer {
		s.log.Warn("TURN UDP receive buffer is small; packets may drop under load: "+
			"raise net.core.rmem_max or grant CAP_NET_ADMIN",
			"bytes", got, "wanted", socketBuffer)
	}
}

// URLs returns the bundled server's turn:/turns: URLs.
func (s *Server) URLs() []string {
	return append([]string(nil), s.urls...)
}

// Revoke refuses user's credentials for new allocations until until (the
// expiry of the last credential minted for it is enough). Allocations
// already made run on until they end.
func (s *Server) Revoke(user string, until time.Time) {
	s.gate.revoke(user, until)
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Allocations:       s.gate.liveAllocations(),
		AuthFailures:      s.gate.authFailures.Load(),
		QuotaRejections:   s.gate.quotaRejections.Load(),
		PeersDenied:       s.gate.peersDenied.Load(),
		PacketsDenied:     s.relays.denied.Load(),
		ChallengesDropped: s.challenges.dropped.Load(),
		PacketsToPeer:     s.relays.traffic.packetsToPeer.Load(),
		BytesToPeer:       s.relays.traffic.bytesToPeer.Load(),
		PacketsToClient:   s.relays.traffic.packetsToClient.Load(),
		BytesToClient:     s.relays.traffic.bytesToClient.Load(),
	}
}

// Close closes the listeners, client connections and allocations, and waits
// for every goroutine serving them (at most closeTimeout).
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Server) close() error {
	err := s.pion.Close()
	for _, l := range s.tcp {
		l.closeConns()
	}
	s.relays.close()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		<-s.gate.idleChan()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeTimeout):
		err = errors.Join(err, ErrCloseTimeout)
	}
	if err != nil {
		return fmt.Errorf("turn: close: %w", err)
	}
	return nil
}
