package apptest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Output is t's output until the test ends, then nothing: pion leaves a
// few goroutines that log a last warning shortly after Close (a TURN
// channel bind failing on the closed allocation, for one), and a write to
// a finished test's output panics.
func Output(t testing.TB) io.Writer {
	w := &endingWriter{w: t.Output()}
	t.Cleanup(w.end)
	return w
}

type endingWriter struct {
	mu    sync.Mutex
	w     io.Writer
	ended bool
}

func (e *endingWriter) Write(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ended {
		return len(p), nil
	}
	return e.w.Write(p)
}

func (e *endingWriter) end() {
	e.mu.Lock()
	e.ended = true
	e.mu.Unlock()
}

// ClosedURL is a ws URL on which nothing listens: a port of 127.0.0.1 just
// bound and let go.
func ClosedURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "ws://" + addr + "/ws"
}
