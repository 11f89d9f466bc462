//go:build !linux

package signal

// peekSocket reports true: without a non-blocking peek the reader waits in
// gorilla's read (correct, with a larger stack while idle).
func peekSocket(uintptr, []byte) bool { return true }
