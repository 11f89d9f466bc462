package demo_test

import (
	"context"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/huddle-rtc/huddle/client"
	"github.com/huddle-rtc/huddle/internal/apptest"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// echoBot is a Go peer in echo mode, as huddle-peer join --echo runs it:
// every track it receives goes back to its sender, and every application
// message goes back to whoever sent it.
type echoBot struct {
	c        *client.Client
	mirrored atomic.Int64 // RTP packets sent back
	echoed   atomic.Int64 // messages sent back
}

func startEchoBot(t *testing.T, wsURL, room string) *echoBot {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	jctx, jcancel := context.WithTimeout(ctx, 10*time.Second)
	defer jcancel()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
	c, err := client.Join(jctx, wsURL, wire.RoomID(room), client.Options{Name: "echo", Logger: log})
	if err != nil {
		cancel()
		t.Fatalf("echo bot: join: %v", err)
	}
	bot := &echoBot{c: c}
	var wg sync.WaitGroup
	wg.Go(func() {
		for ev := range c.Events() {
			switch e := ev.(type) {
			case client.TrackReceived:
				wg.Go(func() { bot.mirror(ctx, e.Peer, e.Track) })
			case client.Message:
				if e.From != wire.ServerID {
					if err := c.Send(e.From, e.Data); err == nil {
						bot.echoed.Add(1)
					}
				}
			}
		}
	})
	t.Cleanup(func() {
		cancel()
		_ = c.Close()
		wg.Wait()
	})
	return bot
}

// mirror sends a received track back to its sender until either ends,
// asking the sender for key frames so the mirror's receiver can decode.
func (b *echoBot) mirror(ctx context.Context, p *client.Peer, remote *webrtc.TrackRemote) {
	local, err := webrtc.NewTrackLocalStaticRTP(remote.Codec().RTPCodecCapability, remote.ID()+"-mirror", remote.StreamID()+"-mirror")
	if err != nil {
		return
	}
	sender, err := p.AddTrack(local)
	if err != nil {
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	done := make(chan struct{})
	defer close(done)
	wg.Go(func() {
		for {
			if _, _, err := sender.ReadRTCP(); err != nil {
				return
			}
		}
	})
	if remote.Kind() == webrtc.RTPCodecTypeVideo {
		wg.Go(func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				if err := p.PeerConnection().WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(remote.SSRC())}}); err != nil {
					return
				}
				select {
				case <-tick.C:
				case <-done:
					return
				case <-ctx.Done():
					return
				}
			}
		})
	}
	for {
		pkt, _, err := remote.ReadRTP()
		if err != nil {
			return
		}
		if err := local.WriteRTP(pkt); err != nil {
			return
		}
		b.mirrored.Add(1)
	}
}

// TestEchoBot puts a tab and a Go echo peer in one room, in both orders: the
// tab shows the bot as a tile playing the tab's own video mirrored back, and
// a chat message goes to the bot and comes back.
func TestEchoBot(t *testing.T) {
	t.Parallel()
	for _, botFirst := range []bool{true, false} {
		t.Run(map[bool]string{true: "bot-waits", false: "bot-joins"}[botFirst], func(t *testing.T) {
			t.Parallel()
			n := apptest.Start(t, nil)
			b := newBrowser(t)
			room := roomName("echo")
			var bot *echoBot
			if botFirst {
				bot = startEchoBot(t, n.WSURL(), room)
			}
			tb := openTab(t, b, "alice", pageURL(n.URL(), room, url.Values{"name": {"alice"}}))
			tb.joined()
			if !botFirst {
				bot = startEchoBot(t, n.WSURL(), room)
			}
			botID := string(bot.c.ID())
			tl := tb.waitPlaying(botID)
			if tl.Name != "echo" {
				t.Errorf("the bot's tile is named %q, want echo", tl.Name)
			}
			// The bot has no camera: every frame it sends is one it mirrors.
			if bot.mirrored.Load() == 0 {
				t.Error("the tab plays video from the bot, but the bot mirrored no packet")
			}
			sendChat(t, tb, "hello, mirror")
			tb.waitFor("the chat message back from the bot",
				`[...document.querySelectorAll("#chat-log li.them")].some((li) => li.textContent === "echo: hello, mirror")`, 10*time.Second)
			if bot.echoed.Load() != 1 {
				t.Errorf("the bot echoed %d messages, want 1", bot.echoed.Load())
			}
			dir := screenshotDir(t)
			tb.screenshot(dir, "alice-and-echo")
			t.Logf("screenshot of the tab with the echo bot: %s", dir)
		})
	}
}
