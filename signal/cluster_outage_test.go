package signal_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// privateRedis is a redis-server of the test's own, on a free port,
// without persistence: stopping it loses every key, as a crash would.
type privateRedis struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
}

func startPrivateRedis(t *testing.T) *privateRedis {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		msg := "signal: redis-server not found: install it to test the Redis broker's outage handling"
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
	r := &privateRedis{t: t, port: port}
	r.start(path)
	t.Cleanup(r.stop)
	return r
}

func (r *privateRedis) url() string { return "redis://127.0.0.1:" + strconv.Itoa(r.port) + "/0" }

func (r *privateRedis) start(path string) {
	r.t.Helper()
	r.cmd = exec.Command(path, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("redis-server: %v", err)
	}
	opt, _ := redis.ParseURL(r.url())
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	deadline := time.Now().Add(wait)
	for rdb.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			r.t.Fatal("redis-server did not answer")
		}
		time.Sleep(20 * time.Millisecond) // polling a process that starts: no event to wait on
	}
}

func (r *privateRedis) stop() {
	if r.cmd != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// waitReady waits until srv's readiness is want (nil: ready).
func waitReady(t *testing.T, srv *signal.Server, ready bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := srv.Ready(context.Background())
		if (err == nil) == ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("readiness did not become %v: %v", ready, err)
		}
		time.Sleep(50 * time.Millisecond) // the supervisor checks every second
	}
}

// TestClusterRedisOutage: Redis goes away mid-call: nodes report not
// ready, peers on one node keep talking, and once Redis is back (empty:
// it kept nothing) the nodes resync presence and relay across again.
func TestClusterRedisOutage(t *testing.T) {
	t.Parallel()
	r := startPrivateRedis(t)
	cfg := resumeConfig(nil)
	node := func(name string) *harness {
		b, err := signal.NewRedisBroker(signal.RedisOptions{URL: r.url(), Node: name, Prefix: "outage", Grace: cfg.ResumeGrace})
		if err != nil {
			t.Fatal(err)
		}
		return newHarness(t, cfg, signal.Options{Broker: b})
	}
	h1, h2 := node("n1"), node("n2")
	room := roomName(t.Name())
	a := h1.dial(t)
	a.join(room)
	b := h1.dial(t)
	b.join(room)
	a.expect(wire.TypePeerJoined)
	c := h2.dial(t)
	c.join(room)
	a.expect(wire.TypePeerJoined)
	b.expect(wire.TypePeerJoined)

	r.stop()
	waitReady(t, h1.srv, false)
	waitReady(t, h2.srv, false)
	for i := range 5 {
		a.send(map[string]any{"type": "message", "to": b.id, "data": i})
	}
	for i := range 5 {
		if m := b.expect(wire.TypeMessage); string(m.Data) != strconv.Itoa(i) {
			t.Fatalf("during the outage: %s", describe(m))
		}
	}
	// A peer of the other node cannot be reached: the sender is told.
	a.send(map[string]any{"type": "message", "to": c.id, "data": "lost?", "ref": "x"})
	if m := a.expect(wire.TypeError); m.Code != wire.CodeUnavailable || m.Ref != "x" {
		t.Fatalf("message to another node during the outage: %s, want error unavailable", describe(m))
	}

	path, _ := exec.LookPath("redis-server")
	r.start(path)
	waitReady(t, h1.srv, true)
	waitReady(t, h2.srv, true)
	// Presence was restored by each node: the room lists all three.
	d := h2.dial(t)
	d.join(room)
	if got := len(d.welcome.Peers); got != 3 {
		t.Fatalf("after the outage the room lists %d peers, want 3: %v", got, d.peerIDs())
	}
	for _, cl := range []*client{a, b, c} {
		if m := cl.expect(wire.TypePeerJoined); m.Peer == nil || m.Peer.ID != d.id {
			t.Fatalf("after the outage: %s, want peer-joined %s", describe(m), d.id)
		}
	}
	a.send(map[string]any{"type": "message", "to": c.id, "data": "across"})
	if m := c.expect(wire.TypeMessage); string(m.Data) != `"across"` {
		t.Fatalf("after the outage: %s", describe(m))
	}
}
