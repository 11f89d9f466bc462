package signal

import "syscall"

// peekSocket reports whether a read of the socket would not block: data,
// its end or an error are there.
func peekSocket(fd uintptr, buf []byte) bool {
	_, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN
}
