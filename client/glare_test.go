package client_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/huddle-rtc/huddle/client"
	"github.com/huddle-rtc/huddle/internal/apptest"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// collisionCounter is a slog handler that counts the client's debug
// records about offer collisions and passes warnings on to the test log.
type collisionCounter struct {
	slog.Handler
	n *atomic.Int64
}

func (h collisionCounter) Enabled(context.Context, slog.Level) bool { return true }

func (h collisionCounter) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "offer collision") {
		h.n.Add(1)
	}
	if r.Level >= testLevel() {
		return h.Handler.Handle(ctx, r)
	}
	return nil
}

func (h collisionCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return collisionCounter{h.Handler.WithAttrs(as), h.n}
}

func (h collisionCounter) WithGroup(g string) slog.Handler {
	return collisionCounter{h.Handler.WithGroup(g), h.n}
}

// Both sides add a track at the same instant, so both offer at once: the
// impolite side ignores the polite side's offer, the polite side rolls
// back and answers, then offers its own track again. Rounds repeat until a
// collision has really happened, each ending with both tracks flowing and
// the data channel working. Audio against video also checks that the
// rolled-back transceiver is not matched to the other side's new m-line.
func TestGlareEndsConnected(t *testing.T) {
	t.Parallel()
	node := startNode(t, nil)
	var collisions atomic.Int64
	opts := func(name string) client.Options {
		o := fastOptions(t, name)
		o.Logger = slog.New(collisionCounter{slog.NewTextHandler(apptest.Output(t), &slog.HandlerOptions{Level: slog.LevelDebug}), &collisions}).With("client", name)
		return o
	}
	a := joinPeer(t, node.WSURL(), "glare", opts("a"))
	b := joinPeer(t, node.WSURL(), "glare", opts("b"))
	roundTrip(t, a, b, "ready")
	pa, _ := a.Peer(b.ID())
	pb, _ := b.Peer(a.ID())

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	const maxRounds = 8
	round := 0
	for ; round < maxRounds && (round < 2 || collisions.Load() == 0); round++ {
		kindA, kindB := webrtc.MimeTypeOpus, webrtc.MimeTypeVP8
		if round%2 == 1 {
			kindA, kindB = kindB, kindA
		}
		ta := newTrack(t, kindA, fmt.Sprintf("a%d", round))
		tb := newTrack(t, kindB, fmt.Sprintf("b%d", round))
		start := make(chan struct{})
		var added sync.WaitGroup
		for _, x := range []struct {
			p *client.Peer
			t *webrtc.TrackLocalStaticSample
		}{{pa, ta}, {pb, tb}} {
			added.Add(1)
			go func() {
				defer added.Done()
				<-start
				if _, err := x.p.AddTrack(x.t); err != nil {
					t.Errorf("add track: %v", err)
				}
			}()
		}
		close(start)
		added.Wait()
		for _, tr := range []*webrtc.TrackLocalStaticSample{ta, tb} {
			wg.Add(1)
			go func() { defer wg.Done(); feed(ctx, tr) }()
		}
		waitFor(t, b, 0, "a's track "+ta.StreamID(), func(e client.TrackReceived) bool { return e.Track.StreamID() == ta.StreamID() })
		waitFor(t, a, 0, "b's track "+tb.StreamID(), func(e client.TrackReceived) bool { return e.Track.StreamID() == tb.StreamID() })
		for _, p := range []*client.Peer{pa, pb} {
			if s := p.PeerConnection().ConnectionState(); s != webrtc.PeerConnectionStateConnected {
				t.Errorf("round %d: state %s, want connected", round, s)
			}
		}
		roundTrip(t, a, b, fmt.Sprintf("round %d", round))
	}
	t.Logf("%d rounds, %d offer collisions", round, collisions.Load())
	if collisions.Load() == 0 {
		t.Fatalf("no offer collision in %d rounds of simultaneous renegotiation", round)
	}

	// Both restart ICE at once: the same collision; both end with the
	// other's new credentials, connected.
	ufragA, ufragB := remoteUfrag(pa), remoteUfrag(pb)
	fromA, fromB := a.eventCount(), b.eventCount()
	errs := make(chan error, 2)
	go func() { errs <- pa.RestartICE() }()
	go func() { errs <- pb.RestartICE() }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "new ICE credentials on both sides", func() bool {
		return remoteUfrag(pa) != ufragA && remoteUfrag(pb) != ufragB &&
			pa.PeerConnection().SignalingState() == webrtc.SignalingStateStable &&
			pb.PeerConnection().SignalingState() == webrtc.SignalingStateStable
	})
	// The restarted agents check the new candidates and connect again.
	waitFor(t, a, fromA, "a connected again", func(client.PeerConnected) bool { return true })
	waitFor(t, b, fromB, "b connected again", func(client.PeerConnected) bool { return true })
	roundTrip(t, a, b, "after restart")
	roundTrip(t, b, a, "after restart")
}

// remoteUfrag is the ICE username fragment of a peer's current remote
// description.
func remoteUfrag(p *client.Peer) string {
	d := p.PeerConnection().CurrentRemoteDescription()
	if d == nil {
		return ""
	}
	for line := range strings.Lines(d.SDP) {
		if v, ok := strings.CutPrefix(line, "a=ice-ufrag:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func newTrack(t *testing.T, mime, id string) *webrtc.TrackLocalStaticSample {
	t.Helper()
	tr, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: mime}, id, id)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// feed writes a small sample every 20 ms until ctx ends, so that the
// remote side gets RTP and reports the track.
func feed(ctx context.Context, tr *webrtc.TrackLocalStaticSample) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			_ = tr.WriteSample(media.Sample{Data: []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a}, Duration: 20 * time.Millisecond})
		}
	}
}
