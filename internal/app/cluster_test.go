package app_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/huddle-rtc/huddle/internal/app"
	"github.com/huddle-rtc/huddle/internal/apptest"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// clusterRedis returns the test Redis URL and a fresh key prefix deleted at
// the end, or skips (fails when CI=true) when no Redis answers.
func clusterRedis(t *testing.T) (string, string) {
	t.Helper()
	url := os.Getenv("HUDDLE_TEST_REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		msg := "internal/app: no Redis server at " + url + ": " + err.Error()
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	prefix := "huddle-apptest-" + strings.ToLower(rand.Text()[:10])
	t.Cleanup(func() {
		defer rdb.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	return url, prefix
}

// TestClusterThroughApp: two nodes configured with HUDDLE_REDIS_URL share
// a room, and report ready.
func TestClusterThroughApp(t *testing.T) {
	t.Parallel()
	url, prefix := clusterRedis(t)
	node := func(id string) *app.App {
		return apptest.Start(t, func(c *app.Config) {
			c.RedisURL, c.RedisPrefix, c.NodeID = url, prefix, id
			c.TURN.Enabled = false
		})
	}
	n1, n2 := node("one"), node("two")
	dial := func(a *app.App) *websocket.Conn {
		d := websocket.Dialer{Subprotocols: []string{wire.Subprotocol}, HandshakeTimeout: 10 * time.Second}
		ws, _, err := d.Dial(a.WSURL(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.Close() })
		_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
		return ws
	}
	join := func(ws *websocket.Conn) wire.Message {
		if err := ws.WriteJSON(map[string]any{"type": "join", "room": "app-cluster"}); err != nil {
			t.Fatal(err)
		}
		var m wire.Message
		if err := ws.ReadJSON(&m); err != nil || m.Type != wire.TypeWelcome {
			t.Fatalf("welcome: %+v %v", m, err)
		}
		return m
	}
	w1 := join(dial(n1))
	w2 := join(dial(n2))
	if len(w2.Peers) != 1 || w2.Peers[0].ID != w1.ID {
		t.Fatalf("node two's welcome lists %+v, want %s of node one", w2.Peers, w1.ID)
	}
	for _, a := range []*app.App{n1, n2} {
		resp, err := http.Get(a.URL() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("/readyz: %d", resp.StatusCode)
		}
	}
}

// TestClusterNodeKilled: a node killed with SIGKILL (a huddle process
// built by the test): one of its peers resumes on another node and gets
// what was sent to it meanwhile, in order; the other, which does not
// come back, leaves everyone's room with reason timeout.
func TestClusterNodeKilled(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds cmd/huddle")
	}
	url, prefix := clusterRedis(t)
	bin := filepath.Join(t.TempDir(), "huddle")
	build := exec.Command("go", "build", "-o", bin, "github.com/huddle-rtc/huddle/cmd/huddle")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const grace = 3 * time.Second
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "HUDDLE_ADDR=127.0.0.1:0", "HUDDLE_TURN_ENABLED=false",
		"HUDDLE_REDIS_URL="+url, "HUDDLE_REDIS_PREFIX="+prefix, "HUDDLE_NODE_ID=doomed",
		"HUDDLE_RESUME_GRACE="+grace.String())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
		}
		_ = cmd.Wait()
	})
	lines := bufio.NewScanner(stderr)
	var doomedWS string
	for lines.Scan() {
		if _, rest, ok := strings.Cut(lines.Text(), " ws="); ok {
			doomedWS, _, _ = strings.Cut(rest, " ")
			break
		}
	}
	if doomedWS == "" {
		t.Fatal("the huddle process printed no ws= address")
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	live := apptest.Start(t, func(c *app.Config) {
		c.RedisURL, c.RedisPrefix, c.NodeID = url, prefix, "live"
		c.TURN.Enabled = false
		c.Signal.ResumeGrace = grace
	})

	dial := func(u string) *websocket.Conn {
		d := websocket.Dialer{Subprotocols: []string{wire.Subprotocol}, HandshakeTimeout: 10 * time.Second}
		ws, _, err := d.Dial(u, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.Close() })
		_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
		return ws
	}
	read := func(ws *websocket.Conn, typ wire.Type) wire.Message {
		t.Helper()
		var m wire.Message
		if err := ws.ReadJSON(&m); err != nil || m.Type != typ {
			t.Fatalf("want %s, got %+v (%v)", typ, m, err)
		}
		return m
	}
	join := func(ws *websocket.Conn, fields map[string]any) wire.Message {
		t.Helper()
		fields["type"], fields["room"] = "join", "killed"
		if err := ws.WriteJSON(fields); err != nil {
			t.Fatal(err)
		}
		return read(ws, wire.TypeWelcome)
	}
	a, b := dial(doomedWS), dial(doomedWS)
	wa := join(a, map[string]any{})
	wb := join(b, map[string]any{})
	read(a, wire.TypePeerJoined)
	c := dial(live.WSURL())
	join(c, map[string]any{})
	read(a, wire.TypePeerJoined)
	read(b, wire.TypePeerJoined)
	// a has read this one before its node dies.
	_ = c.WriteJSON(map[string]any{"type": "message", "to": wa.ID, "data": "seen"})
	read(a, wire.TypeMessage)

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed = true
	_ = cmd.Wait()
	for i := range 3 {
		_ = c.WriteJSON(map[string]any{"type": "message", "to": wa.ID, "data": i})
	}
	a2 := dial(live.WSURL())
	w := join(a2, map[string]any{"resume": wa.Resume})
	if !w.Resumed || w.ID != wa.ID {
		t.Fatalf("resume on the live node: %+v", w)
	}
	// At least once across a crash: what a read in its node's last
	// second may come again first (c's peer-joined, "seen"); then 0, 1, 2
	// in order.
	next := 0
	for next < 3 {
		var m wire.Message
		if err := a2.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		if next == 0 && (m.Type == wire.TypePeerJoined || string(m.Data) == `"seen"`) {
			continue
		}
		if m.Type != wire.TypeMessage {
			t.Fatalf("after the resume: %+v", m)
		}
		if string(m.Data) != strconv.Itoa(next) {
			t.Fatalf("replayed %s, want %d", m.Data, next)
		}
		next++
	}
	start := time.Now()
	m := read(c, wire.TypePeerLeft)
	if m.ID != wb.ID || m.Reason != wire.ReasonTimeout {
		t.Fatalf("got %+v, want %s left with timeout", m, wb.ID)
	}
	t.Logf("peer-left timeout %s after the resume", time.Since(start))
}
