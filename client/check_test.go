package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/huddle-rtc/huddle/client"
	"github.com/huddle-rtc/huddle/internal/app"
)

// checkOptions are Check's options for a test: logs to the test.
func checkOptions(t *testing.T, relay bool, timeout time.Duration) client.CheckOptions {
	return client.CheckOptions{
		Options: client.Options{RelayOnly: relay, Logger: testLogger(t, "check")},
		Timeout: timeout,
	}
}

// TestCheckRelayOnly: through the bundled TURN server, every stage passes
// and the report says the pair is relayed.
func TestCheckRelayOnly(t *testing.T) {
	t.Parallel()
	node := startNode(t, nil)
	rep, err := client.Check(context.Background(), node.WSURL(), checkOptions(t, true, waitTimeout))
	if err != nil || !rep.OK || rep.Err != nil || rep.Stage != "" {
		t.Fatalf("check: %v, report %+v", err, rep)
	}
	t.Logf("relay only: connected in %v, rtt %v, candidates %s", rep.ConnectTime, rep.RTT, client.CandidateCounts(rep.Candidates))
	if rep.PairType != "relay" || rep.Pair == nil || rep.Pair.Local.Type != "relay" {
		t.Errorf("pair %v (%s), want a relayed local candidate", rep.Pair, rep.PairType)
	}
	if rep.ConnectTime <= 0 || rep.RTT <= 0 || rep.ConnectTime > waitTimeout {
		t.Errorf("connect time %v, rtt %v: want both measured", rep.ConnectTime, rep.RTT)
	}
	if !rep.Signaling || !rep.RelayOnly || !strings.HasPrefix(string(rep.Room), "check-") {
		t.Errorf("report %+v", rep)
	}
	if len(rep.TURN) == 0 {
		t.Fatal("no TURN allocation tried")
	}
	for _, p := range rep.TURN {
		if !p.OK || p.Err != nil || p.Relay == "" {
			t.Errorf("TURN probe %+v, want an allocation", p)
		}
	}
	if rep.Candidates["relay"] == 0 || rep.Candidates["host"] != 0 {
		t.Errorf("candidates %v: relay only gathers relay candidates alone", rep.Candidates)
	}
	// The peers release their allocations on the way out.
	waitUntil(t, "allocations released", func() bool { return node.TURN().Stats().Allocations == 0 })
}

// TestCheckDirect: without relay only the peers connect directly, and each
// check uses a room of its own.
func TestCheckDirect(t *testing.T) {
	t.Parallel()
	node := startNode(t, nil)
	opts := checkOptions(t, false, waitTimeout)
	rep, err := client.Check(context.Background(), node.URL(), opts)
	if err != nil || !rep.OK {
		t.Fatalf("check: %v, report %+v", err, rep)
	}
	if rep.PairType == "" || rep.PairType == "relay" {
		t.Errorf("pair type %q, want a direct pair on loopback", rep.PairType)
	}
	again, err := client.Check(context.Background(), node.URL(), opts)
	if err != nil || again.Room == rep.Room {
		t.Errorf("second check: %v, room %s (first %s): want a fresh room", err, again.Room, rep.Room)
	}
}

// TestCheckFailures: each broken deployment fails at its own stage, with a
// *CheckError that names it.
func TestCheckFailures(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "ws://" + ln.Addr().String() + "/ws"
	_ = ln.Close()
	noTURN := startNode(t, func(c *app.Config) { c.TURN.Enabled = false })
	denied := startNode(t, func(c *app.Config) { c.TURN.AllowPeers, c.TURN.DenyPeers = nil, []string{"127.0.0.0/8"} })
	cases := []struct {
		name    string
		url     string
		timeout time.Duration
		stage   client.CheckStage
	}{
		{"nothing listens", closed, 5 * time.Second, client.StageSignaling},
		{"no TURN server", noTURN.WSURL(), 5 * time.Second, client.StageTURN},
		{"relaying denied", denied.WSURL(), 3 * time.Second, client.StageICE},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rep, err := client.Check(context.Background(), tc.url, checkOptions(t, true, tc.timeout))
			var ce *client.CheckError
			if !errors.As(err, &ce) || ce.Stage != tc.stage || rep.Stage != tc.stage || rep.OK {
				t.Fatalf("err %v, report %+v; want a failure at %s", err, rep, tc.stage)
			}
			if !errors.Is(rep.Err, ce.Err) || ce.Err == nil {
				t.Errorf("report error %v, returned %v: want the same", rep.Err, err)
			}
		})
	}
}

// TestCheckCanceled: a canceled context ends a check at once.
func TestCheckCanceled(t *testing.T) {
	t.Parallel()
	node := startNode(t, func(c *app.Config) { c.TURN.AllowPeers, c.TURN.DenyPeers = nil, []string{"127.0.0.0/8"} })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	start := time.Now()
	rep, err := client.Check(ctx, node.WSURL(), checkOptions(t, true, waitTimeout))
	if err == nil || rep.OK {
		t.Fatalf("check: %v, report %+v; want a failure", err, rep)
	}
	if d := time.Since(start); d >= waitTimeout {
		t.Errorf("took %v: the cancel did not end it", d)
	}
}

// Check a deployment's TURN relay the way a relay-only call uses it.
func ExampleCheck() {
	ctx := context.Background()
	rep, err := client.Check(ctx, "wss://huddle.example.com", client.CheckOptions{
		Options: client.Options{RelayOnly: true},
		Timeout: 15 * time.Second,
	})
	if err != nil {
		fmt.Printf("failed at %s: %v\n", rep.Stage, err)
		return
	}
	fmt.Printf("relayed (%s) in %v, rtt %v\n", rep.PairType, rep.ConnectTime, rep.RTT)
}
