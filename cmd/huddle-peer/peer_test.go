package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/huddle-rtc/huddle/client"
	"github.com/huddle-rtc/huddle/internal/app"
	"github.com/huddle-rtc/huddle/internal/apptest"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

const testTimeout = 20 * time.Second

// notHuddleURL is an HTTP server that is not a huddle server.
func notHuddleURL(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestJoinExpectTwoBots(t *testing.T) {
	t.Parallel()
	node := apptest.Start(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	botDone := make(chan int, 1)
	var botOut buffer
	go func() {
		botDone <- run(ctx, []string{"join", "--url", node.URL(), "--room", "expect", "--echo", "--name", "bot"}, &botOut, &buffer{})
	}()
	code, out, errOut := runCmd(t, context.Background(), "join", "--url", node.WSURL(), "--room", "expect",
		"--expect", "1", "--timeout", testTimeout.String(), "--json")
	t.Logf("join --expect 1 --json:\n%s", out)
	if code != exitOK {
		t.Fatalf("join --expect 1: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	lines := jsonLines(t, out)
	pc := findEvent(lines, "peer-connected")
	if pc == nil || pc["pairType"] == "" || pc["name"] != "bot" || pc["state"] != "connected" {
		t.Errorf("no peer-connected report naming the bot with a pair type: %s", out)
	}
	if done := findEvent(lines, "done"); done == nil || done["ok"] != true {
		t.Errorf("no successful done line: %s", out)
	}
	cancel()
	if code := <-botDone; code != exitOK {
		t.Errorf("echo bot ended with %d: %s", code, botOut.String())
	}
	if !strings.Contains(botOut.String(), "connected") {
		t.Errorf("the bot did not report the connection: %s", botOut.String())
	}
}

func TestJoinExpectTimesOut(t *testing.T) {
	t.Parallel()
	node := apptest.Start(t, nil)
	code, out, _ := runCmd(t, context.Background(), "join", "--url", node.WSURL(), "--room", "alone",
		"--expect", "1", "--timeout", "500ms")
	if code != exitFailed || !strings.Contains(out, "0 of 1 peers connected") {
		t.Errorf("exit %d, output %q; want %d and a count of 0 of 1", code, out, exitFailed)
	}
}

func TestJoinWrongURL(t *testing.T) {
	t.Parallel()
	for _, url := range []string{apptest.ClosedURL(t), notHuddleURL(t)} {
		code, out, _ := runCmd(t, context.Background(), "join", "--url", url, "--room", "r",
			"--expect", "1", "--timeout", "5s")
		if code != exitFailed || !strings.Contains(out, "FAILED at signaling") {
			t.Errorf("%s: exit %d, output %q; want %d, failed at signaling", url, code, out, exitFailed)
		}
	}
}

// The echo bot sends data channel and chat messages back and mirrors a
// track.
func TestJoinEcho(t *testing.T) {
	t.Parallel()
	node := apptest.Start(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	botDone := make(chan int, 1)
	go func() {
		botDone <- run(ctx, []string{"join", "--url", node.WSURL(), "--room", "echo", "--echo"}, &buffer{}, &buffer{})
	}()
	defer func() { cancel(); <-botDone }()

	c, err := client.Join(ctx, node.WSURL(), "echo", client.Options{Name: "tester"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "cam", "me")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(testTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var gotEcho, gotChat, gotMirror, sentTrack bool
	for !gotEcho || !gotMirror || !gotChat {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("client stopped: %v", c.Err())
			}
			switch e := ev.(type) {
			case client.DataChannelOpened:
				if err := e.Channel.SendText("marco"); err != nil {
					t.Fatal(err)
				}
				if err := c.Send(e.Peer.ID(), map[string]string{"chat": "polo"}); err != nil {
					t.Fatal(err)
				}
				if !sentTrack {
					sentTrack = true
					if _, err := e.Peer.AddTrack(track); err != nil {
						t.Fatal(err)
					}
				}
			case client.DataMessage:
				gotEcho = gotEcho || string(e.Data) == "marco"
			case client.TrackReceived:
				gotMirror = gotMirror || e.Track.StreamID() == "me-mirror"
			case client.Message:
				gotChat = gotChat || string(e.Data) == `{"chat":"polo"}`
			}
		case <-tick.C:
			if sentTrack {
				_ = track.WriteSample(media.Sample{Data: []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a}, Duration: 20 * time.Millisecond})
			}
		case <-deadline:
			t.Fatalf("echo %v, chat echo %v, mirrored track %v within %v", gotEcho, gotChat, gotMirror, testTimeout)
		}
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	node := apptest.Start(t, nil)
	code, out, errOut := runCmd(t, context.Background(), "check", "--url", node.URL())
	t.Logf("check:\n%s", out)
	if code != exitOK {
		t.Fatalf("check: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"signaling   ok", "candidates", "connected   pair", "data        round trip", "result      OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
}

func TestCheckWrongURL(t *testing.T) {
	t.Parallel()
	for _, url := range []string{apptest.ClosedURL(t), notHuddleURL(t)} {
		code, out, _ := runCmd(t, context.Background(), "check", "--url", url, "--json", "--timeout", "5s")
		if code != exitFailed {
			t.Errorf("%s: exit %d, want %d", url, code, exitFailed)
		}
		r := findEvent(jsonLines(t, out), "check")
		if r == nil || r["ok"] != false || r["stage"] != stageSignaling {
			t.Errorf("%s: report %v, want a failure at %s", url, r, stageSignaling)
		}
	}
}

func TestCheckRelay(t *testing.T) {
	t.Parallel()
	node := apptest.Start(t, nil)
	code, out, errOut := runCmd(t, context.Background(), "check", "--url", node.WSURL(), "--relay", "--json")
	t.Logf("check --relay --json:\n%s", out)
	if code != exitOK {
		t.Fatalf("check --relay: exit %d\n%s\n%s", code, out, errOut)
	}
	r := findEvent(jsonLines(t, out), "check")
	if r == nil || r["pairType"] != "relay" || r["ok"] != true {
		t.Errorf("report %v, want ok with pair type relay", r)
	}
	pair, _ := r["pair"].(map[string]any)
	local, _ := pair["local"].(map[string]any)
	if local["type"] != "relay" {
		t.Errorf("selected local candidate %v, want relay", local)
	}
}

func TestCheckRelayWithoutTURN(t *testing.T) {
	t.Parallel()
	node := apptest.Start(t, func(c *app.Config) { c.TURN.Enabled = false })
	code, out, _ := runCmd(t, context.Background(), "check", "--url", node.WSURL(), "--relay", "--json", "--timeout", "10s")
	t.Logf("check --relay without TURN:\n%s", out)
	if code != exitFailed {
		t.Errorf("exit %d, want %d", code, exitFailed)
	}
	r := findEvent(jsonLines(t, out), "check")
	if r == nil || r["stage"] != stageTURN || r["signaling"] != true {
		t.Errorf("report %v, want signaling ok and a failure at %s", r, stageTURN)
	}
}

// The server hands out credentials the TURN server refuses (the secrets
// differ): check --relay fails at the TURN stage and says the credentials
// were refused.
func TestCheckRelayTURNAuthRefused(t *testing.T) {
	t.Parallel()
	relay := apptest.Start(t, nil)
	node := apptest.Start(t, func(c *app.Config) {
		c.TURN.Enabled = false
		c.TURN.TURNURLs = relay.TURN().URLs()
		c.TURN.Secret = "not-the-relay-secret-0123456789"
	})
	code, out, _ := runCmd(t, context.Background(), "check", "--url", node.WSURL(), "--relay", "--timeout", "10s")
	t.Logf("check --relay with refused credentials:\n%s", out)
	if code != exitFailed || !strings.Contains(out, "FAILED at turn") || !strings.Contains(out, "credentials refused") {
		t.Errorf("exit %d, output %q; want %d, failed at turn with credentials refused", code, out, exitFailed)
	}
}

// TURN allocates, but its policy denies relaying to the peers' addresses:
// check --relay fails at the ICE stage.
func TestCheckRelayICEFails(t *testing.T) {
	t.Parallel()
	node := apptest.Start(t, func(c *app.Config) { c.TURN.AllowPeers, c.TURN.DenyPeers = nil, []string{"127.0.0.0/8"} })
	code, out, _ := runCmd(t, context.Background(), "check", "--url", node.WSURL(), "--relay", "--timeout", "3s")
	t.Logf("check --relay with relaying denied:\n%s", out)
	if code != exitFailed || !strings.Contains(out, "FAILED at ice") || !strings.Contains(out, "turn        ok") {
		t.Errorf("exit %d, output %q; want %d, TURN ok and failed at ice", code, out, exitFailed)
	}
}
