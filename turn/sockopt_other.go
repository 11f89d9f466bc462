//go:build !linux

package turn

import (
	"errors"
	"net"
	"syscall"
)

// reusePortSupported: one UDP socket only (Config.UDPSockets).
const reusePortSupported = false

func reusePort(string, string, syscall.RawConn) error {
	return errors.New("SO_REUSEPORT sockets are supported on Linux only")
}

func setBuffers(c *net.UDPConn, size int) {
	_ = c.SetReadBuffer(size)
	_ = c.SetWriteBuffer(size)
}

func readBuffer(net.PacketConn) int { return 0 }
