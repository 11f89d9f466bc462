package turn

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Listeners are the bound sockets of the bundled server. They are opened
// before the server is built, so a taken port fails start-up, and tests can
// bind 127.0.0.1:0.
type Listeners struct {
	// UDP holds one or more sockets on the same port (several with
	// SO_REUSEPORT, see Config.UDPSockets).
	UDP []net.PacketConn
	// TCP listens on the UDP port.
	TCP net.Listener
	// TLS is TURN over TLS, or nil.
	TLS net.Listener
}

// socketBuffer is the UDP socket buffer size asked for: the Go default
// (208 KiB on Linux) drops packets under load.
const socketBuffer = 4 << 20

// portRetries bounds the attempts to find a port free for both UDP and TCP
// when the configured port is 0.
const portRetries = 8

// Listen binds the sockets cfg names: UDP and TCP on the same port of
// cfg.Addr (with port 0, UDP picks the port and TCP follows it), plus TLS on
// cfg.TLSAddr when configured, its certificate loaded now.
func Listen(cfg Config) (*Listeners, error) {
	if !cfg.Enabled {
		return nil, ErrDisabled
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("turn: listen %q: %w", cfg.Addr, err)
	}
	var l *Listeners
	for try := 0; ; try++ {
		l, err = listenPair(host, port, cmp.Or(cfg.UDPSockets, DefaultUDPSockets()))
		if err == nil || port != "0" || try == portRetries || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	if cfg.TLSAddr != "" {
		if l.TLS, err = listenTLS(cfg); err != nil {
			return nil, errors.Join(err, l.Close())
		}
	}
	return l, nil
}

// listenPair binds n UDP sockets and then TCP on the port UDP got.
func listenPair(host, port string, n int) (*Listeners, error) {
	udp, err := listenUDP(net.JoinHostPort(host, port), n)
	if err != nil {
		return nil, err
	}
	l := &Listeners{UDP: udp}
	bound := strconv.Itoa(udp[0].LocalAddr().(*net.UDPAddr).Port)
	l.TCP, err = net.Listen("tcp", net.JoinHostPort(host, bound)) //nolint:noctx // bound once at start-up
	if err != nil {
		return nil, errors.Join(fmt.Errorf("turn: listen tcp: %w", err), l.Close())
	}
	return l, nil
}

// listenUDP binds n sockets to addr: with n > 1 they share the port through
// SO_REUSEPORT and the kernel spreads clients across them by address hash.
func listenUDP(addr string, n int) ([]net.PacketConn, error) {
	lc := net.ListenConfig{}
	if n > 1 {
		lc.Control = reusePort
	}
	conns := make([]net.PacketConn, 0, n)
	closeAll := func() error {
		var errs []error
		for _, c := range conns {
			errs = append(errs, c.Close())
		}
		return errors.Join(errs...)
	}
	for range n {
		c, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("turn: listen udp: %w", err), closeAll())
		}
		conns = append(conns, c)
		setBuffers(c.(*net.UDPConn), socketBuffer)
		// The others join the port the first one got.
		addr = c.LocalAddr().String()
	}
	return conns, nil
}

func listenTLS(cfg Config) (net.Listener, error) {
	certs, err := newCertLoader(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.TLSAddr) //nolint:noctx // bound once at start-up
	if err != nil {
		return nil, fmt.Errorf("turn: listen tls: %w", err)
	}
	return tls.NewListener(ln, &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: certs.get,
	}), nil
}

// Close closes every socket.
func (l *Listeners) Close() error {
	var errs []error
	for _, c := range l.UDP {
		errs = append(errs, c.Close())
	}
	for _, ln := range []net.Listener{l.TCP, l.TLS} {
		if ln != nil {
			errs = append(errs, ln.Close())
		}
	}
	return errors.Join(errs...)
}

// certLoader serves the TLS certificate and picks up a renewed one (a new
// modification time) within a minute, without a restart.
type certLoader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time
	checked time.Time
}

const certCheckInterval = time.Minute

func newCertLoader(certFile, keyFile string) (*certLoader, error) {
	l := &certLoader{certFile: certFile, keyFile: keyFile}
	if err := l.load(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *certLoader) load() error {
	st, err := os.Stat(l.certFile)
	if err != nil {
		return fmt.Errorf("turn: tls certificate: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(l.certFile, l.keyFile)
	if err != nil {
		return fmt.Errorf("turn: tls certificate: %w", err)
	}
	l.cert, l.modTime, l.checked = &cert, st.ModTime(), time.Now()
	return nil
}

func (l *certLoader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.checked) < certCheckInterval {
		return l.cert, nil
	}
	l.checked = time.Now()
	if st, err := os.Stat(l.certFile); err == nil && !st.ModTime().Equal(l.modTime) {
		_ = l.load() // keep serving the old certificate if the new one is broken
	}
	return l.cert, nil
}
