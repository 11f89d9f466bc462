package turn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v4"
)

func TestICEBundled(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	allowLoopback(&cfg)
	cfg.TURNURLs = []string{"turn:turn.example.com:3478?transport=udp"}
	cfg.STUNURLs = []string{"stun:stun.example.com:3478"}
	s := startServer(t, cfg)
	ice, err := NewICE(cfg, s)
	if err != nil {
		t.Fatal(err)
	}
	servers := ice.ICEServers("alice")
	port := s.udpAddr().Port
	want := []string{
		fmt.Sprintf("turn:127.0.0.1:%d?transport=udp", port),
		fmt.Sprintf("turn:127.0.0.1:%d?transport=tcp", port),
		"turn:turn.example.com:3478?transport=udp",
	}
	if len(servers) != 2 || !slices.Equal(servers[0].URLs, want) {
		t.Fatalf("ICEServers = %+v, want TURN URLs %v first", servers, want)
	}
	if !strings.HasSuffix(servers[0].Username, ":alice") || servers[0].Credential == "" {
		t.Fatalf("TURN credentials %q / %q", servers[0].Username, servers[0].Credential)
	}
	if !slices.Equal(servers[1].URLs, cfg.STUNURLs) || servers[1].Username != "" {
		t.Fatalf("STUN entry %+v", servers[1])
	}
	// What ICEServers hands out is what the server accepts, over both URLs.
	for _, network := range []string{"udp", "tcp"} {
		relay, err := pionClient(t, s, network, servers[0].Username, servers[0].Credential)
		if err != nil {
			t.Fatalf("allocate over %s with ICEServers credentials: %v", network, err)
		}
		roundTripPeer(t, s, relay, listenPeer(t))
	}
	// Callers own the result.
	servers[0].URLs[0] = "changed"
	if ice.ICEServers("alice")[0].URLs[0] == "changed" {
		t.Fatal("ICEServers shares its URL slice")
	}
}

func TestICEWithoutBundledServer(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.Enabled = false
	cfg.Secret = testSecret
	cfg.TURNURLs = []string{" turn:coturn.example.com:3478 ", ""}
	at := time.Unix(1_800_000_000, 0)
	ice, err := NewICE(cfg, nil, WithClock(func() time.Time { return at }))
	if err != nil {
		t.Fatal(err)
	}
	servers := ice.ICEServers("bob")
	if len(servers) != 1 || !slices.Equal(servers[0].URLs, []string{"turn:coturn.example.com:3478"}) {
		t.Fatalf("ICEServers = %+v", servers)
	}
	if want := "1800043200:bob"; servers[0].Username != want {
		t.Fatalf("username %q, want %q", servers[0].Username, want)
	}
	creds := newCredentials(testSecret, 0, nil)
	if servers[0].Credential != creds.password(servers[0].Username) {
		t.Fatal("credential is not HMAC-SHA1(secret, username)")
	}

	cfg.Secret = ""
	if _, err := NewICE(cfg, nil); err == nil {
		t.Fatal("NewICE accepted external TURN URLs without a secret")
	}
	cfg.TURNURLs = nil
	ice, err = NewICE(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := ice.ICEServers("bob"); got == nil || len(got) != 0 {
		t.Fatalf("ICEServers with nothing configured = %#v, want an empty list", got)
	}
}

func TestBundledURLsHost(t *testing.T) {
	t.Parallel()
	udp := listenPeer(t)
	ln := &Listeners{UDP: []net.PacketConn{udp}}
	port := udp.LocalAddr().(*net.UDPAddr).Port
	relay := netip.MustParseAddr("198.51.100.7")
	cases := map[string]string{
		"":                 fmt.Sprintf("turn:198.51.100.7:%d?transport=udp", port),
		"2001:db8::1":      fmt.Sprintf("turn:[2001:db8::1]:%d?transport=udp", port),
		"turn.example.com": fmt.Sprintf("turn:turn.example.com:%d?transport=udp", port),
	}
	for host, want := range cases {
		cfg := testConfig()
		cfg.Host = host
		if got := bundledURLs(cfg, relay, ln); !slices.Equal(got, []string{want}) {
			t.Errorf("host %q: URLs %v, want %v", host, got, want)
		}
	}
}

func TestListenSamePort(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.UDPSockets = 3
	ln, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.UDP[0].LocalAddr().(*net.UDPAddr).Port
	if len(ln.UDP) != 3 {
		t.Fatalf("%d UDP sockets, want 3", len(ln.UDP))
	}
	for _, u := range ln.UDP {
		if got := u.LocalAddr().(*net.UDPAddr).Port; got != port {
			t.Fatalf("UDP sockets on ports %d and %d", port, got)
		}
	}
	if got := ln.TCP.Addr().(*net.TCPAddr).Port; got != port {
		t.Fatalf("TCP on port %d, UDP on %d", got, port)
	}
	if readBuffer(ln.UDP[0]) < 1<<20 {
		t.Logf("UDP receive buffer is %d bytes (net.core.rmem_max?)", readBuffer(ln.UDP[0]))
	}
	cfg.Enabled = false
	if _, err := Listen(cfg); err == nil {
		t.Fatal("Listen with TURN disabled succeeded")
	}
}

// TestListenDefaultSockets: 0 sockets means the automatic count, two or
// more on Linux.
func TestListenDefaultSockets(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.UDPSockets = 0
	ln, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if len(ln.UDP) != DefaultUDPSockets() {
		t.Errorf("%d UDP sockets, want %d", len(ln.UDP), DefaultUDPSockets())
	}
	if reusePortSupported && len(ln.UDP) < 2 {
		t.Errorf("%d UDP sockets by default on Linux, want at least 2", len(ln.UDP))
	}
}

// With several SO_REUSEPORT sockets the kernel spreads clients across them;
// each allocation stays on its socket, and all of them relay.
func TestReusePortSockets(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	allowLoopback(&cfg)
	cfg.UDPSockets = 2
	s := startServer(t, cfg)
	for i := range 4 {
		username, password := mustMint(s, fmt.Sprint("user", i))
		relay, err := pionClient(t, s, "udp", username, password)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		roundTripPeer(t, s, relay, listenPeer(t))
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	allowLoopback(&cfg)
	cfg.TLSAddr = "127.0.0.1:0"
	cfg.TLSCert, cfg.TLSKey = writeCert(t)
	s := startServer(t, cfg)
	tlsAddr := s.tcp[1].Addr().String()
	_, port, _ := net.SplitHostPort(tlsAddr)
	if want := "turns:127.0.0.1:" + port + "?transport=tcp"; !slices.Contains(s.URLs(), want) {
		t.Fatalf("URLs %v lack %s", s.URLs(), want)
	}
	conn, err := tls.Dial("tcp", tlsAddr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed test certificate
	if err != nil {
		t.Fatal(err)
	}
	username, password := mustMint(s, "alice")
	relay, err := pionClientOn(t, pionturn.NewSTUNConn(conn), tlsAddr, username, password)
	if err != nil {
		t.Fatalf("allocate over TLS: %v", err)
	}
	roundTripPeer(t, s, relay, listenPeer(t))
}

// writeCert writes a self-signed certificate for 127.0.0.1.
func writeCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "huddle test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
