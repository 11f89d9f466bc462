package signal_test

import (
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// benchWindow bounds the messages in flight, below the send queue: the
// benchmarks measure throughput, not the 4011 of an overrun receiver.
const benchWindow = 64

func benchConfig() signal.Config {
	return testConfig(func(c *signal.Config) { c.RateLimit, c.RateBurst = 1e9, 1e9 })
}

// rawJoin joins with a client whose reader is not started, reading its
// welcome directly; benchmarks read frames without parsing them.
func rawJoin(b *testing.B, h *harness, room string) *client {
	b.Helper()
	c := h.dialWith(b, dialOpts{noRead: true})
	if err := c.trySend(map[string]any{"type": "join", "room": room}); err != nil {
		b.Fatal(err)
	}
	m := rawNext(b, c)
	if m.Type != wire.TypeWelcome {
		b.Fatalf("got %s, want welcome", describe(m))
	}
	c.id = m.ID
	return c
}

func rawNext(b *testing.B, c *client) wire.Message {
	b.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(wait))
	_, data, err := c.ws.ReadMessage()
	if err != nil {
		b.Fatal(err)
	}
	m, err := wire.Parse(data)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// waitPeerJoined reads c's frames up to peer-joined of id.
func waitPeerJoined(b *testing.B, c *client, id wire.PeerID) {
	b.Helper()
	for {
		if m := rawNext(b, c); m.Type == wire.TypePeerJoined && m.Peer.ID == id {
			return
		}
	}
}

// discardNext reads one frame into nothing, as cheaply as a client can.
func discardNext(ws *websocket.Conn) error {
	_ = ws.SetReadDeadline(time.Now().Add(wait))
	_, r, err := ws.NextReader()
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, r)
	return err
}

// BenchmarkRelay relays messages from one peer to another through the hub
// over real WebSockets on loopback: one op is one message written by the
// sender and read by the receiver. allocs/op counts the whole process
// (hub and both clients; the clients write a prepared frame and read into
// io.Discard, so nearly all of it is the hub's).
func BenchmarkRelay(b *testing.B) {
	h := newHarness(b, benchConfig(), signal.Options{})
	recv := rawJoin(b, h, "bench")
	send := rawJoin(b, h, "bench")
	waitPeerJoined(b, recv, send.id)
	frame := []byte(fmt.Sprintf(`{"type":"candidate","to":%q,"candidate":{"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 40000 typ host","sdpMid":"0","sdpMLineIndex":0}}`, recv.id))

	credits := make(chan struct{}, benchWindow)
	for range benchWindow {
		credits <- struct{}{}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range b.N {
			select {
			case <-credits:
			case <-stop:
				return
			}
			_ = send.ws.SetWriteDeadline(time.Now().Add(wait))
			if err := send.ws.WriteMessage(websocket.TextMessage, frame); err != nil {
				return
			}
		}
	}()
	for i := range b.N {
		if err := discardNext(recv.ws); err != nil {
			close(stop)
			wg.Wait()
			b.Fatalf("message %d: %v", i, err)
		}
		credits <- struct{}{}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	wg.Wait()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}

// BenchmarkBroadcast sends messages without to in rooms of several sizes:
// one op is one message written by the sender and read by every other
// peer. The hub marshals it once and queues the same bytes for all.
func BenchmarkBroadcast(b *testing.B) {
	for _, peers := range []int{2, 8, 16} {
		b.Run(fmt.Sprintf("peers=%d", peers), func(b *testing.B) {
			benchBroadcast(b, peers)
		})
	}
}

func benchBroadcast(b *testing.B, peers int) {
	h := newHarness(b, benchConfig(), signal.Options{})
	recvs := make([]*client, peers-1)
	for i := range recvs {
		recvs[i] = rawJoin(b, h, "fanout")
	}
	send := rawJoin(b, h, "fanout")
	for _, r := range recvs {
		waitPeerJoined(b, r, send.id)
	}
	frame := []byte(`{"type":"message","data":{"kind":"chat","text":"hello, everyone in this room"}}`)

	credits := make([]chan struct{}, len(recvs))
	for i := range credits {
		credits[i] = make(chan struct{}, benchWindow)
		for range benchWindow {
			credits[i] <- struct{}{}
		}
	}
	errs := make(chan error, len(recvs))
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i, r := range recvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range b.N {
				if err := discardNext(r.ws); err != nil {
					errs <- err
					return
				}
				credits[i] <- struct{}{}
			}
		}()
	}
	func() {
		for range b.N {
			for _, c := range credits {
				select {
				case <-c:
				case err := <-errs:
					b.Fatal(err)
				}
			}
			_ = send.ws.SetWriteDeadline(time.Now().Add(wait))
			if err := send.ws.WriteMessage(websocket.TextMessage, frame); err != nil {
				b.Fatal(err)
			}
		}
	}()
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N*len(recvs))/elapsed.Seconds(), "deliveries/s")
}
