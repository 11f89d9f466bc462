package signal_test

import (
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// smallReceiveBuffer dials with a small TCP receive buffer, so that a
// client that stops reading fills it quickly.
func smallReceiveBuffer() *websocket.Dialer {
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<10)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	return &websocket.Dialer{
		Subprotocols:     []string{wire.Subprotocol},
		HandshakeTimeout: wait,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		ReadBufferSize: 1024,
	}
}

// joinNoRead joins room with a client that has a small receive buffer
// and no reader: it reads its welcome itself, then nothing until the test
// starts its reader.
func joinNoRead(t *testing.T, h *harness, room string) *client {
	t.Helper()
	c := h.dialWith(t, dialOpts{dialer: smallReceiveBuffer(), noRead: true})
	c.send(map[string]any{"type": "join", "room": room})
	_ = c.ws.SetReadDeadline(time.Now().Add(wait))
	_, data, err := c.ws.ReadMessage()
	if err != nil {
		t.Fatalf("welcome: %v", err)
	}
	w, err := wire.Parse(data)
	if err != nil || w.Type != wire.TypeWelcome {
		t.Fatalf("got %s, want welcome", data)
	}
	_ = c.ws.SetReadDeadline(time.Time{})
	c.id, c.welcome = w.ID, w
	return c
}

// TestSlowConsumer: a client that stops reading while another peer sends
// it a lot is closed with 4011 once its send queue overflows, and never
// slows the room: the sender is never blocked and a third peer gets every
// message on time. When the slow client reads again it finds what the
// server had written, in order, then the 4011 close frame. It then waits
// out its grace like any dropped peer (peer-left timeout).
func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(func(c *signal.Config) {
		c.RateLimit, c.RateBurst = 1e6, 1e6
		c.SendQueue = 16
		c.ResumeGrace = 200 * time.Millisecond
		c.WriteTimeout = time.Minute // the close code must wait for the client to read
	}), signal.Options{}, smallSendBuffers)

	slow := joinNoRead(t, h, "slow")

	cs := h.joinRoom(t, "slow", 2)
	sender, other := cs[0], cs[1]
	big := strings.Repeat("x", 8000)
	sent := 0
	otherSawLeft := false
	isSlowLeft := func(m wire.Message) bool {
		return m.Type == wire.TypePeerLeft && m.ID == slow.id && m.Reason == wire.ReasonTimeout
	}
	for gone := false; !gone; {
		if sent >= 2000 {
			t.Fatalf("sent %d messages of 8 kB and the slow client is still there", sent)
		}
		for range 5 {
			sender.send(map[string]any{"type": "message", "to": slow.id, "data": strconv.Itoa(sent) + big})
			sent++
		}
		// The room is not slowed: other gets this at once.
		sender.send(map[string]any{"type": "message", "to": other.id, "data": sent})
		m := other.next()
		if !otherSawLeft && isSlowLeft(m) {
			otherSawLeft = true
			m = other.next()
		}
		if m.Type != wire.TypeMessage || string(m.Data) != strconv.Itoa(sent) {
			t.Fatalf("other got %s, want message %d", describe(m), sent)
		}
		select {
		case f := <-sender.frames:
			m := f.msg
			for m.Type == wire.TypeError && m.Code == wire.CodeUnknownPeer {
				// The session has ended. Under the Redis broker, where
				// presence travels through Redis, the error on the
				// messages sent meanwhile may come before the peer-left.
				m = sender.next()
			}
			if !isSlowLeft(m) {
				t.Fatalf("sender got %s", describe(m))
			}
			gone = true
		default:
		}
	}
	if !otherSawLeft {
		if m := other.next(); !isSlowLeft(m) {
			t.Errorf("other got %s, want peer-left timeout", describe(m))
		}
	}
	t.Logf("the slow client was dropped after %d messages of 8 kB", sent)

	slow.startReading()
	code, before := slow.closed()
	if code != wire.CloseTooSlow {
		t.Errorf("slow client closed with %d (%v), want 4011", code, slow.err)
	}
	next := 0
	for _, m := range before {
		switch m.Type {
		case wire.TypePeerJoined:
		case wire.TypeMessage:
			var s string
			_ = json.Unmarshal(m.Data, &s)
			n, _ := strconv.Atoi(strings.TrimRight(s, "x"))
			if n != next {
				t.Fatalf("slow client read message %d, want %d", n, next)
			}
			next++
		default:
			t.Fatalf("slow client read %s", describe(m))
		}
	}
	if next >= sent {
		t.Errorf("the slow client read all %d messages: it was not too slow", sent)
	}
	// What the sender sent after the drop was refused: unknown-peer.
	sender.send(map[string]any{"type": "ping"})
	for m := sender.next(); m.Type != wire.TypePong; m = sender.next() {
		if m.Type != wire.TypeError || m.Code != wire.CodeUnknownPeer {
			t.Fatalf("sender got %s", describe(m))
		}
	}
	other.quiet()
}

// TestSlowConsumerResumes: what a client closed with 4011 had not read is
// kept for its resume. It reads a prefix of what was sent, then 4011; the
// resumed session delivers exactly the rest, in order, nothing lost.
func TestSlowConsumerResumes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(func(c *signal.Config) {
		c.RateLimit, c.RateBurst = 1e6, 1e6
		c.SendQueue = 16
		c.ResumeGrace = time.Minute
		c.WriteTimeout = time.Minute
	}), signal.Options{}, smallSendBuffers)
	slow := joinNoRead(t, h, "slow-resume")

	sender := h.dial(t)
	sender.join("slow-resume")
	// 100 messages of 8 kB are more than the kernel buffers between the
	// hub and a client that does not read (both small here) and the send
	// queue hold, and fewer than the send queue plus the resume queue.
	const n = 100
	big := strings.Repeat("x", 8000)
	for i := range n {
		sender.send(map[string]any{"type": "message", "to": slow.id, "data": strconv.Itoa(i) + big})
	}
	sender.quiet()

	index := func(m wire.Message) int {
		var s string
		if m.Type != wire.TypeMessage || json.Unmarshal(m.Data, &s) != nil {
			t.Fatalf("got %s", describe(m))
		}
		i, err := strconv.Atoi(strings.TrimRight(s, "x"))
		if err != nil {
			t.Fatalf("data %.20s...", s)
		}
		return i
	}
	slow.startReading()
	code, before := slow.closed()
	if code != wire.CloseTooSlow {
		t.Fatalf("slow client closed with %d (%v), want 4011", code, slow.err)
	}
	if len(before) == 0 || before[0].Type != wire.TypePeerJoined || before[0].Peer.ID != sender.id {
		t.Fatalf("slow client read %d messages, first not the sender's peer-joined", len(before))
	}
	next := 0
	for _, m := range before[1:] {
		if i := index(m); i != next {
			t.Fatalf("read message %d, want %d", i, next)
		}
		next++
	}
	if next >= n {
		t.Fatalf("read all %d messages before the close", n)
	}
	t.Logf("read %d messages, then 4011", next)

	again := h.dial(t)
	if w := again.join("slow-resume", "resume", slow.welcome.Resume); !w.Resumed || w.ID != slow.id {
		t.Fatalf("welcome %s, want resumed", describe(w))
	}
	for ; next < n; next++ {
		if i := index(again.next()); i != next {
			t.Fatalf("resumed with message %d, want %d", i, next)
		}
	}
	again.quiet()
	sender.quiet() // no presence change
}

// TestCloseStuckClient: Close ends every connection and returns nil even
// when a client neither reads (the hub's writer is blocked in a write)
// nor answers the close: such a connection is cut once the close
// handshake's time is up, so that no pump outlives Close.
func TestCloseStuckClient(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(func(c *signal.Config) { c.RateLimit, c.RateBurst = 1e6, 1e6 }), signal.Options{}, smallSendBuffers)
	stuck := joinNoRead(t, h, "stuck")
	sender := h.dial(t)
	sender.join("stuck")
	big := strings.Repeat("x", 8000)
	for range 40 { // 320 kB: far more than the kernel buffers hold
		sender.send(map[string]any{"type": "message", "to": stuck.id, "data": big})
	}
	sender.quiet()
	if err := h.srv.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	sender.expectClose(websocket.CloseGoingAway)
	if code := h.waitClosed(t, stuck.id); code != websocket.CloseGoingAway {
		t.Errorf("server logged %d for the stuck client", code)
	}
}
