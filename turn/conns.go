package turn

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Pion starts goroutines on the sockets it is given and does not wait for
// them; it does not close accepted TCP connections either. The wrappers here
// count those goroutines in the server's WaitGroup (each ends on the first
// error of the socket it reads) and let Close end them.

// Timeouts of client TCP/TLS connections. Pion sets none: a silent client
// would hold its goroutine forever, and one that stops reading would block
// the writer relaying to it. A live allocation is refreshed at least once an
// hour (pion caps lifetimes at one hour), so an hour of silence is a dead
// client.
const (
	tcpIdleTimeout  = time.Hour + time.Minute
	tcpWriteTimeout = 10 * time.Second
)

// serverPacketConn is a UDP listener socket: it counts pion's read loop,
// relays the ChannelData of known channels itself (fastpath.go), and
// rate-limits the 401/438 answers written on it.
type serverPacketConn struct {
	net.PacketConn
	udp        *net.UDPConn // PacketConn, if it is one: the fast path needs it
	fast       *fastPath
	wg         *sync.WaitGroup
	challenges *challengeLimiter
	readDone   sync.Once
}

// ReadFrom ends pion's read loop on the first error; the loop is done then.
func (c *serverPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.udp == nil {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			c.readDone.Do(c.wg.Done)
		}
		return n, addr, err
	}
	for {
		n, ap, err := c.udp.ReadFromUDPAddrPort(p)
		if err != nil {
			c.readDone.Do(c.wg.Done)
			return n, nil, err
		}
		if !c.fast.fromClient(p[:n], ap) {
			return n, net.UDPAddrFromAddrPort(ap), nil
		}
	}
}

// WriteTo drops a 401/438 answer over the per-address rate, as if lost.
func (c *serverPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if isChallenge(p) && !c.challenges.allow(addr) {
		return len(p), nil
	}
	return c.PacketConn.WriteTo(p, addr)
}

// trackingListener is a TCP or TLS listener: it counts pion's accept loop
// and each connection's read loop, and keeps the connections for Close.
type trackingListener struct {
	net.Listener
	wg         *sync.WaitGroup
	acceptDone sync.Once
	closing    chan struct{}
	closeOnce  sync.Once

	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

func newTrackingListener(ln net.Listener, wg *sync.WaitGroup) *trackingListener {
	return &trackingListener{
		Listener: ln,
		wg:       wg,
		closing:  make(chan struct{}),
		conns:    make(map[*trackedConn]struct{}),
	}
}

// Accept retries failures other than a closed listener with a backoff: pion's
// accept loop ends on the first error, and running out of file descriptors
// for a moment must not stop TURN over TCP for good.
func (l *trackingListener) Accept() (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			return l.track(c), nil
		}
		if errors.Is(err, net.ErrClosed) {
			l.acceptDone.Do(l.wg.Done)
			return nil, err
		}
		t := time.NewTimer(backoff)
		select {
		case <-l.closing:
			t.Stop()
			l.acceptDone.Do(l.wg.Done)
			return nil, net.ErrClosed
		case <-t.C:
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (l *trackingListener) track(c net.Conn) net.Conn {
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	// Pion's accept loop, still counted, starts the read loop for tc.
	l.wg.Add(1)
	return tc
}

// Close closes the listener; Server.Close closes its connections after.
func (l *trackingListener) Close() error {
	l.closeOnce.Do(func() { close(l.closing) })
	return l.Listener.Close()
}

// closeConns closes every accepted connection under pion's feet, which ends
// their read loops.
func (l *trackingListener) closeConns() {
	l.mu.Lock()
	conns := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.kill()
	}
}

// trackedConn is one client connection, read by one pion goroutine that
// closes it as its last act.
type trackedConn struct {
	net.Conn
	l         *trackingListener
	closeOnce sync.Once
	killed    atomic.Bool // closed by the server, not by the client
}

// kill closes the connection under pion's feet, ending its read loop.
func (c *trackedConn) kill() {
	c.killed.Store(true)
	_ = c.Conn.Close()
}

// Read applies the idle timeout.
func (c *trackedConn) Read(p []byte) (int, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(tcpIdleTimeout))
	return c.Conn.Read(p)
}

// Write applies the write timeout; a client that stops reading is dropped.
func (c *trackedConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(tcpWriteTimeout))
	n, err := c.Conn.Write(p)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.kill()
	}
	return n, err
}

// Close is called by pion's read loop when it ends: the loop is done.
func (c *trackedConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		err = c.Conn.Close()
		if c.killed.Load() {
			err = nil // already closed on purpose
		}
		c.l.wg.Done()
	})
	return err
}
