package turn

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	pionturn "github.com/pion/turn/v4"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if port := os.Getenv(benchServerEnv); port != "" {
		os.Exit(runBenchServer(port)) // BenchmarkUclient's server process
	}
	goleak.VerifyTestMain(m)
}

const (
	testSecret = "test-secret-0123456789abcdef"
	testRealm  = "huddle"
	// Relay ports sit above Linux's ephemeral range (32768-60999).
	testRelayPorts = "61000-65535"
	waitTimeout    = 5 * time.Second
)

// testClock is an injectable clock that only moves when told.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

func (c *testClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// testConfig is a loopback configuration; loopback peers are denied unless
// a test allows them.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.PublicIP = "127.0.0.1"
	cfg.RelayPorts = testRelayPorts
	cfg.Secret = testSecret
	return cfg
}

// allowLoopback re-opens loopback so tests can relay to local peers.
func allowLoopback(cfg *Config) { cfg.AllowPeers = []string{"127.0.0.0/8"} }

// testLogger logs to the test at info level (debug would log every refusal).
func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	if os.Getenv("TURN_TEST_LOG") == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startServer starts a server on loopback, closed at cleanup.
func startServer(t testing.TB, cfg Config, opts ...Option) *Server {
	t.Helper()
	ln, err := Listen(cfg)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	s, err := NewServer(cfg, ln, testLogger(t), opts...)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// udpAddr is the server's UDP listen address.
func (s *Server) udpAddr() *net.UDPAddr {
	return s.pionUDP()[0].LocalAddr().(*net.UDPAddr)
}

// tcpAddr is the server's first stream listener address.
func (s *Server) tcpAddr() net.Addr { return s.tcp[0].Addr() }

func (s *Server) pionUDP() []net.PacketConn {
	var out []net.PacketConn
	for _, u := range s.udpConns {
		out = append(out, u.PacketConn)
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// listenPeer opens a UDP peer on loopback, closed at cleanup.
func listenPeer(t testing.TB) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// readFrom reads one datagram under the test deadline.
func readFrom(t testing.TB, pc net.PacketConn) ([]byte, net.Addr) {
	t.Helper()
	buf := make([]byte, 2048)
	_ = pc.SetReadDeadline(time.Now().Add(waitTimeout))
	n, from, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return buf[:n], from
}

// --- pion client ---

// pionClient allocates through s with pion/turn's client over network
// ("udp" or "tcp") and returns the relay conn, all closed at cleanup.
func pionClient(t testing.TB, s *Server, network, username, password string) (net.PacketConn, error) {
	t.Helper()
	var conn net.PacketConn
	var addr string
	switch network {
	case "udp":
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conn, addr = pc, s.udpAddr().String()
	case "tcp":
		c, err := net.Dial("tcp", s.tcpAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn, addr = pionturn.NewSTUNConn(c), s.tcpAddr().String()
	}
	return pionClientOn(t, conn, addr, username, password)
}

func pionClientOn(t testing.TB, conn net.PacketConn, addr, username, password string) (net.PacketConn, error) {
	t.Helper()
	client, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: addr,
		TURNServerAddr: addr,
		Conn:           conn,
		Username:       username,
		Password:       password,
		Realm:          testRealm,
		LoggerFactory:  newPionLogs(slog.New(slog.NewTextHandler(io.Discard, nil))),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := client.Allocate()
	t.Cleanup(func() {
		if relay != nil {
			_ = relay.Close()
		}
		client.Close()
		_ = conn.Close()
	})
	return relay, err
}

// roundTripPeer checks that data goes from the relay to peer and back. The
// payloads are longer than 4 bytes: pion v4's STUNConn (TCP framing, on both
// sides) takes any buffer under 9 bytes for an incomplete frame, so a
// 4-byte ChannelData would wait for the next frame.
// Pion's client sends its first packet to a new peer without waiting for the
// permission (a Send indication may overtake it, a loss it accepts), so the
// first packet is sent again once the server holds the permission.
func roundTripPeer(t testing.TB, s *Server, relay, peer net.PacketConn) {
	t.Helper()
	peerIP := peer.LocalAddr().(*net.UDPAddr).AddrPort().Addr()
	for try := 0; try < 2; try++ {
		if _, err := relay.WriteTo([]byte("ping from client"), peer.LocalAddr()); err != nil {
			t.Fatalf("relay write: %v", err)
		}
		waitFor(t, "the permission", func() bool { return s.gate.hasPermission(peerIP) })
	}
	got, from := readFrom(t, peer)
	if string(got) != "ping from client" {
		t.Fatalf("peer got %q", got)
	}
	if from.String() != relay.LocalAddr().String() {
		t.Fatalf("peer got data from %v, want the relay address %v", from, relay.LocalAddr())
	}
	if _, err := peer.WriteTo([]byte("pong from peer"), from); err != nil {
		t.Fatal(err)
	}
	got, from = readFrom(t, relay)
	if string(got) != "pong from peer" || from.String() != peer.LocalAddr().String() {
		t.Fatalf("relay got %q from %v", got, from)
	}
}

// hasPermission reports whether some allocation holds a permission for ip.
func (g *gate) hasPermission(ip netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, set := range g.perms {
		if _, ok := set[ip]; ok {
			return true
		}
	}
	return false
}

// --- raw STUN client, for exact answers and hand-built attributes ---

type rawClient struct {
	t                  testing.TB
	conn               net.PacketConn
	server             net.Addr
	username, password string
	realm, nonce       string
}

func newRawClient(t testing.TB, s *Server, username, password string) *rawClient {
	t.Helper()
	return &rawClient{t: t, conn: listenPeer(t), server: s.udpAddr(), username: username, password: password}
}

func (c *rawClient) write(m *stun.Message) {
	c.t.Helper()
	if _, err := c.conn.WriteTo(m.Raw, c.server); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next STUN message from the server, skipping ChannelData.
func (c *rawClient) read() *stun.Message {
	c.t.Helper()
	for {
		b, _ := readFrom(c.t, c.conn)
		if !stun.IsMessage(b) {
			continue
		}
		m := &stun.Message{Raw: b}
		if err := m.Decode(); err != nil {
			c.t.Fatalf("decode: %v", err)
		}
		return m
	}
}

// roundTrip sends m and returns the answer with its transaction id.
func (c *rawClient) roundTrip(m *stun.Message) *stun.Message {
	c.t.Helper()
	c.write(m)
	for {
		r := c.read()
		if r.TransactionID == m.TransactionID {
			return r
		}
	}
}

func build(t testing.TB, setters ...stun.Setter) *stun.Message {
	t.Helper()
	m, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// do sends an authenticated request, learning the nonce first if needed.
func (c *rawClient) do(method stun.Method, attrs ...stun.Setter) *stun.Message {
	c.t.Helper()
	for try := 0; try < 3; try++ {
		if c.nonce == "" {
			r := c.roundTrip(build(c.t, stun.TransactionID, stun.NewType(method, stun.ClassRequest),
				requestedTransportUDP))
			c.learnNonce(r)
		}
		setters := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, attrs...)
		setters = append(setters, stun.NewUsername(c.username), stun.NewRealm(c.realm), stun.NewNonce(c.nonce),
			stun.NewLongTermIntegrity(c.username, c.realm, c.password), stun.Fingerprint)
		r := c.roundTrip(build(c.t, setters...))
		if errorCode(r) == stun.CodeStaleNonce {
			c.learnNonce(r)
			continue
		}
		return r
	}
	c.t.Fatal("nonce kept going stale")
	return nil
}

func (c *rawClient) learnNonce(r *stun.Message) {
	c.t.Helper()
	var nonce stun.Nonce
	var realm stun.Realm
	if err := nonce.GetFrom(r); err != nil {
		c.t.Fatalf("no nonce in %v (code %d)", r, errorCode(r))
	}
	if err := realm.GetFrom(r); err != nil {
		c.t.Fatalf("no realm in %v", r)
	}
	c.nonce, c.realm = nonce.String(), realm.String()
}

// allocate makes an allocation and returns the answer.
func (c *rawClient) allocate() *stun.Message {
	c.t.Helper()
	return c.do(stun.MethodAllocate, requestedTransportUDP)
}

// relayAddr extracts XOR-RELAYED-ADDRESS from an Allocate success.
func relayAddr(t testing.TB, m *stun.Message) *net.UDPAddr {
	t.Helper()
	var a stun.XORMappedAddress
	if err := a.GetFromAs(m, stun.AttrXORRelayedAddress); err != nil {
		t.Fatalf("no relayed address in %v (code %d)", m, errorCode(m))
	}
	return &net.UDPAddr{IP: a.IP, Port: a.Port}
}

func (c *rawClient) createPermission(peers ...stun.Setter) *stun.Message {
	c.t.Helper()
	return c.do(stun.MethodCreatePermission, peers...)
}

func (c *rawClient) send(peer *net.UDPAddr, data []byte) {
	c.t.Helper()
	c.write(build(c.t, stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		peerAddr(peer), stun.RawAttribute{Type: stun.AttrData, Value: data}))
}

// readData waits for a Data indication and returns its data and peer.
func (c *rawClient) readData() ([]byte, *net.UDPAddr) {
	c.t.Helper()
	for {
		m := c.read()
		if m.Type != stun.NewType(stun.MethodData, stun.ClassIndication) {
			continue
		}
		data, err := m.Get(stun.AttrData)
		if err != nil {
			c.t.Fatal(err)
		}
		var a stun.XORMappedAddress
		if err := a.GetFromAs(m, stun.AttrXORPeerAddress); err != nil {
			c.t.Fatal(err)
		}
		return data, &net.UDPAddr{IP: a.IP, Port: a.Port}
	}
}

func errorCode(m *stun.Message) stun.ErrorCode {
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil {
		return 0
	}
	return ec.Code
}

func isSuccess(m *stun.Message) bool { return m.Type.Class == stun.ClassSuccessResponse }

var requestedTransportUDP = stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}

func lifetime(seconds uint32) stun.Setter {
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, seconds)
	return stun.RawAttribute{Type: stun.AttrLifetime, Value: v}
}

func channelNumber(n uint16) stun.Setter {
	v := make([]byte, 4)
	binary.BigEndian.PutUint16(v, n)
	return stun.RawAttribute{Type: stun.AttrChannelNumber, Value: v}
}

// peerAddr is an XOR-PEER-ADDRESS built the usual way (IPv4-mapped
// addresses are sent in the IPv4 family).
func peerAddr(a *net.UDPAddr) stun.Setter {
	return setterFunc(func(m *stun.Message) error {
		return stun.XORMappedAddress{IP: a.IP, Port: a.Port}.AddToAs(m, stun.AttrXORPeerAddress)
	})
}

// rawIPv6PeerAddr is an XOR-PEER-ADDRESS in the IPv6 family carrying ip as
// all 16 bytes, whatever they hold (RFC 8489 §14.2): pion/stun would
// collapse ::ffff:a.b.c.d into the IPv4 family, an attacker need not.
func rawIPv6PeerAddr(ip [16]byte, port int) stun.Setter {
	return setterFunc(func(m *stun.Message) error {
		v := make([]byte, 20)
		v[1] = 0x02
		binary.BigEndian.PutUint16(v[2:4], uint16(port)^uint16(stunMagicCookie>>16)) //nolint:gosec // a port
		var key [16]byte
		binary.BigEndian.PutUint32(key[0:4], stunMagicCookie)
		copy(key[4:], m.TransactionID[:])
		for i := range ip {
			v[4+i] = ip[i] ^ key[i]
		}
		m.Add(stun.AttrXORPeerAddress, v)
		return nil
	})
}

type setterFunc func(*stun.Message) error

func (f setterFunc) AddTo(m *stun.Message) error { return f(m) }

// mustMint mints credentials for user at the server's clock.
func mustMint(s *Server, user string) (string, string) { return s.creds.mint(user) }

var errTimeout = errors.New("timeout")

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || strings.Contains(err.Error(), "timeout")
}
