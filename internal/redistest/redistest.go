// Package redistest runs a redis-server of a test's own, on a free port of
// 127.0.0.1 and without persistence: stopping it loses every key, as a
// crash would. For tests of a Redis outage; the shared server on
// 127.0.0.1:6379 serves the others.
package redistest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startWait bounds the wait for a started server to answer.
const startWait = 20 * time.Second

// Server is a redis-server process the test stops and starts again.
type Server struct {
	t    testing.TB
	path string
	port int
	cmd  *exec.Cmd
}

// Start starts a server, stopped at the test's end. Without redis-server
// the test skips, saying which package needs it and why, or fails when
// CI=true.
func Start(t testing.TB, pkg, why string) *Server {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		msg := pkg + ": redis-server not found: install it " + why
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	s := &Server{t: t, path: path, port: port}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://127.0.0.1:" + strconv.Itoa(s.port) + "/0" }

// Port is the server's TCP port.
func (s *Server) Port() int { return s.port }

// Start (again, after Stop) runs the server on its port, empty, and waits
// until it answers.
func (s *Server) Start() {
	s.t.Helper()
	s.cmd = exec.Command(s.path, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("redis-server: %v", err)
	}
	opt, _ := redis.ParseURL(s.URL())
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	deadline := time.Now().Add(startWait)
	for rdb.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			s.t.Fatal("redis-server did not answer")
		}
		time.Sleep(20 * time.Millisecond) // polling a process that starts: no event to wait on
	}
}

// Stop kills the server, as a crash would.
func (s *Server) Stop() {
	if s.cmd != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}
