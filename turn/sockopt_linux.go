//go:build linux

package turn

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePortSupported: several UDP sockets may share the TURN port.
const reusePortSupported = true

// reusePort sets SO_REUSEPORT so several sockets can share one port.
func reusePort(_, _ string, c syscall.RawConn) error {
	var sockErr error
	err := c.Control(func(fd uintptr) {
		sockErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return sockErr
}

// setBuffers asks for size-byte socket buffers: first past net.core.rmem_max
// (SO_RCVBUFFORCE, which needs CAP_NET_ADMIN), else up to it. Failure is not
// fatal; NewServer logs the size obtained.
func setBuffers(c *net.UDPConn, size int) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	var rcvErr, sndErr error
	_ = raw.Control(func(fd uintptr) {
		rcvErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
		sndErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size)
	})
	if rcvErr != nil {
		_ = c.SetReadBuffer(size)
	}
	if sndErr != nil {
		_ = c.SetWriteBuffer(size)
	}
}

// readBuffer reports a socket's receive buffer size (Linux reports twice
// the size set, counting its bookkeeping; halve it back).
func readBuffer(c net.PacketConn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	size := 0
	_ = raw.Control(func(fd uintptr) {
		size, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	})
	return size / 2
}
