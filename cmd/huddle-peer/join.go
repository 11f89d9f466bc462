package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/huddle-rtc/huddle/client"
	"github.com/huddle-rtc/huddle/signal/wire"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// defaultExpectTimeout bounds join --expect when --timeout is not given.
const defaultExpectTimeout = 30 * time.Second

type joinFlags struct {
	commonFlags
	room   string
	name   string
	expect int
	echo   bool
}

func runJoin(ctx context.Context, args []string, out, errOut io.Writer) int {
	var f joinFlags
	fs := newFlagSet("join", "--url URL --room ROOM [flags]",
		"Join ROOM and report each peer connection: state, candidate pair type\n"+
			"(host, srflx, prflx or relay), RTT and time to connect. A peer counts as\n"+
			"connected once ICE is connected, DTLS is up and a data channel is open.\n"+
			"Exit status: 0 on success, 1 when --expect was not met (or the client\n"+
			"stopped), 2 for bad flags.")
	f.register(fs, 0, "give up after this long, e.g. 30s; 0 means no limit (with --expect: 30s)")
	fs.StringVar(&f.room, "room", "", "the room to join: 1 to 64 characters of [A-Za-z0-9._~-] (required)")
	fs.StringVar(&f.name, "name", "huddle-peer", "the display name shown to the others")
	fs.IntVar(&f.expect, "expect", 0, "exit 0 as soon as this many peers are connected; non-zero on timeout")
	fs.BoolVar(&f.echo, "echo", false, "stay as a bot until the timeout or a signal: echo every data channel\n"+
		"message back on its channel, every signaling message (chat) back to its sender,\n"+
		"and send every received media track back (a mirror)")
	if code, ok := parse(fs, args, errOut); !ok {
		return code
	}
	f.tokenFromEnv()
	if f.url == "" || f.room == "" || f.expect < 0 {
		fmt.Fprintln(errOut, "huddle-peer join: --url and --room are required, --expect must not be negative")
		fs.Usage()
		return exitUsage
	}
	if f.timeout == 0 && f.expect > 0 {
		f.timeout = defaultExpectTimeout
	}
	log, err := f.logger(errOut)
	if err != nil {
		fmt.Fprintln(errOut, "huddle-peer join:", err)
		return exitUsage
	}
	j := &joiner{f: f, rep: reporter{w: out, json: f.json}, log: log, ready: map[wire.PeerID]bool{}}
	return j.run(ctx)
}

// joiner is one run of join.
type joiner struct {
	f   joinFlags
	rep reporter
	log *slog.Logger

	c         *client.Client
	connected map[wire.PeerID]bool
	channels  map[wire.PeerID]int
	ready     map[wire.PeerID]bool
	reached   bool
	mirrors   sync.WaitGroup
}

func (j *joiner) run(ctx context.Context) int {
	if j.f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, j.f.timeout)
		defer cancel()
	}
	c, err := client.Join(ctx, j.f.url, wire.RoomID(j.f.room), client.Options{
		Name: j.f.name, Token: j.f.token, RelayOnly: j.f.relay, Logger: j.log,
	})
	if err != nil {
		j.rep.emit("error", map[string]any{"stage": "signaling", "error": err.Error()},
			"FAILED at signaling: "+err.Error())
		return exitFailed
	}
	j.c = c
	j.connected = map[wire.PeerID]bool{}
	j.channels = map[wire.PeerID]int{}
	defer j.mirrors.Wait()
	defer c.Close()
	j.rep.emit("joined", map[string]any{"room": j.f.room, "id": c.ID(), "iceServers": len(c.ICEServers())},
		fmt.Sprintf("joined room %s as %s (%d ICE servers)", j.f.room, c.ID(), len(c.ICEServers())))
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				j.rep.emit("error", map[string]any{"stage": "signaling", "error": fmt.Sprint(c.Err())},
					fmt.Sprintf("FAILED: the client stopped: %v", c.Err()))
				return exitFailed
			}
			j.handle(ctx, ev)
			if j.f.expect > 0 && !j.reached && len(j.ready) >= j.f.expect {
				j.reached = true
				j.rep.emit("done", map[string]any{"ok": true, "connected": len(j.ready)},
					fmt.Sprintf("OK: %d of %d peers connected", len(j.ready), j.f.expect))
				if !j.f.echo {
					return exitOK
				}
			}
		case <-ctx.Done():
			return j.finish()
		}
	}
}

// finish reports the end by timeout or signal.
func (j *joiner) finish() int {
	if j.f.expect > 0 && !j.reached {
		j.rep.emit("done", map[string]any{"ok": false, "connected": len(j.ready), "expected": j.f.expect},
			fmt.Sprintf("FAILED: %d of %d peers connected before the timeout", len(j.ready), j.f.expect))
		return exitFailed
	}
	j.rep.emit("done", map[string]any{"ok": true, "connected": len(j.ready)},
		fmt.Sprintf("done: %d peers connected", len(j.ready)))
	return exitOK
}

func (j *joiner) handle(ctx context.Context, ev client.Event) {
	switch e := ev.(type) {
	case client.PeerJoined:
		j.rep.emit("peer-joined", map[string]any{"id": e.Peer.ID(), "name": e.Peer.Name()},
			fmt.Sprintf("peer %s%s joined", e.Peer.ID(), nameSuffix(e.Peer.Name())))
	case client.PeerLeft:
		id := e.Peer.ID()
		delete(j.ready, id)
		delete(j.connected, id)
		delete(j.channels, id)
		j.rep.emit("peer-left", map[string]any{"id": id, "reason": e.Reason},
			fmt.Sprintf("peer %s left (%s)", id, e.Reason))
	case client.PeerStateChanged:
		j.onState(e)
	case client.PeerConnected:
		j.connected[e.Peer.ID()] = true
		j.checkReady(e.Peer)
	case client.DataChannelOpened:
		j.channels[e.Peer.ID()]++
		j.checkReady(e.Peer)
	case client.DataChannelClosed:
		j.channels[e.Peer.ID()]--
	case client.DataMessage:
		if j.f.echo {
			echo(e, j.log)
		}
	case client.Message:
		// Chat over signaling comes back to its sender too (not the
		// server's announcements, which no peer can answer).
		if j.f.echo && e.From != wire.ServerID && j.c != nil {
			if err := j.c.Send(e.From, e.Data); err != nil {
				j.log.Debug("echo failed", "peer", e.From, "err", err)
			}
		}
	case client.TrackReceived:
		if j.f.echo {
			j.mirrors.Add(1)
			go func() {
				defer j.mirrors.Done()
				mirror(ctx, e.Peer, e.Track, j.log)
			}()
		}
	case client.Disconnected:
		j.rep.emit("disconnected", map[string]any{"error": e.Err.Error(), "attempt": e.Attempt, "delayMs": ms(e.Delay)},
			fmt.Sprintf("signaling lost (%v), reconnecting in %s", e.Err, e.Delay.Round(time.Millisecond)))
	case client.Reconnected:
		j.rep.emit("reconnected", map[string]any{"id": e.ID, "resumed": e.Resumed},
			fmt.Sprintf("signaling back as %s (resumed: %v)", e.ID, e.Resumed))
	}
}

func (j *joiner) onState(e client.PeerStateChanged) {
	id := e.Peer.ID()
	switch e.State {
	case webrtc.PeerConnectionStateConnected:
		return // reported once ready
	case webrtc.PeerConnectionStateDisconnected, webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
		delete(j.ready, id)
		delete(j.connected, id)
	}
	j.rep.emit("peer-state", map[string]any{"id": id, "state": e.State.String()},
		fmt.Sprintf("peer %s %s", id, e.State))
}

// checkReady reports a peer once it is connected with a channel open.
func (j *joiner) checkReady(p *client.Peer) {
	id := p.ID()
	if j.ready[id] || !j.connected[id] || j.channels[id] == 0 {
		return
	}
	j.ready[id] = true
	r := newPeerReport(p.Stats())
	j.rep.emit("peer-connected", r.fields(), r.text())
}

// echo sends a data channel message back on its channel.
func echo(e client.DataMessage, log *slog.Logger) {
	var err error
	if e.IsString {
		err = e.Channel.SendText(string(e.Data))
	} else {
		err = e.Channel.Send(e.Data)
	}
	if err != nil {
		log.Debug("echo failed", "peer", e.Peer.ID(), "err", err)
	}
}

// pliInterval is how often a mirror asks the sender for a key frame, so a
// receiver that joined late or lost packets recovers.
const pliInterval = 3 * time.Second

// mirror sends a received track back to its sender until either ends.
func mirror(ctx context.Context, p *client.Peer, remote *webrtc.TrackRemote, log *slog.Logger) {
	local, err := webrtc.NewTrackLocalStaticRTP(remote.Codec().RTPCodecCapability,
		remote.ID()+"-mirror", remote.StreamID()+"-mirror")
	if err != nil {
		log.Warn("mirror: new track", "err", err)
		return
	}
	sender, err := p.AddTrack(local)
	if err != nil {
		log.Warn("mirror: add track", "peer", p.ID(), "err", err)
		return
	}
	defer func() { _ = p.RemoveTrack(sender) }()
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	if remote.Kind() == webrtc.RTPCodecTypeVideo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			requestKeyFrames(ctx, done, p.PeerConnection(), uint32(remote.SSRC()))
		}()
	}
	for {
		pkt, _, err := remote.ReadRTP()
		if err != nil {
			return
		}
		if err := local.WriteRTP(pkt); err != nil {
			return
		}
	}
}

func requestKeyFrames(ctx context.Context, done <-chan struct{}, pc *webrtc.PeerConnection, ssrc uint32) {
	tick := time.NewTicker(pliInterval)
	defer tick.Stop()
	for {
		if err := pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
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
}
