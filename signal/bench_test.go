package signal_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
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

// BenchmarkIdlePeer measures what a joined, silent peer costs the hub:
// one op is one peer that connects, joins (rooms of four) and then stays
// idle. After the ops, the heap and the goroutine stacks in use (after a
// GC), divided by the peers, are reported with the goroutines per peer.
// The clients are bare TCP connections that did their handshake by hand,
// so the figures include only their net.Conn (about 0.3 KiB) besides the
// hub. Run it with enough peers for the per-peer figures to settle:
//
//	go test ./signal -run '^$' -bench IdlePeer -benchtime 3000x
func BenchmarkIdlePeer(b *testing.B) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil)) // as in production: attrs kept, lines dropped
	h := newHarness(b, benchConfig(), signal.Options{Logger: log})
	addr := h.ts.Listener.Addr().String()
	before := memNow(runtime.NumGoroutine())
	conns := make([]net.Conn, 0, b.N)
	b.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	b.ReportAllocs()
	for i := range b.N {
		c, err := idleJoin(addr, fmt.Sprintf("idle-%d", i/4))
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	b.StopTimer()
	after := memNow(before.goroutines + b.N) // a reader per peer
	n := float64(b.N)
	b.ReportMetric(float64(after.heap-before.heap)/n, "heap-B/peer")
	b.ReportMetric(float64(after.stack-before.stack)/n, "stack-B/peer")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/n, "goroutines/peer")
}

type memSample struct {
	heap, stack uint64
	goroutines  int
}

// memNow is the heap and stacks in use once at most goroutines run (the
// writers that the joins started linger a second, then end on their
// connection's timer) and after two GCs (the second shrinks the stacks the
// first found oversized).
func memNow(goroutines int) memSample {
	// There is no event for "every writer has ended": poll, bounded.
	for deadline := time.Now().Add(wait); runtime.NumGoroutine() > goroutines && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heap: ms.HeapInuse, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

// idleJoin opens a bare WebSocket to the hub at addr, joins room and
// returns once welcome came, leaving the connection idle.
func idleJoin(addr, room string) (net.Conn, error) {
	c, err := bareUpgrade(addr)
	if err != nil {
		return nil, err
	}
	join := []byte(`{"type":"join","room":"` + room + `"}`)
	frame := append([]byte{0x81, 0x80 | byte(len(join)), 0, 0, 0, 0}, join...) // masked with a zero key
	if err := readUntil(c, frame, []byte(`"welcome"`)); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("join: %w", err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// bareUpgrade opens a WebSocket connection by hand, without a client
// library: the caller reads and writes frames on the TCP connection, under
// a deadline wait away.
func bareUpgrade(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(wait))
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: huddle.v1\r\n\r\n"
	if err := readUntil(c, []byte(req), []byte("\r\n\r\n")); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return c, nil
}

// readUntil writes out, then reads until what was read contains want.
func readUntil(c net.Conn, out, want []byte) error {
	if _, err := c.Write(out); err != nil {
		return err
	}
	var got []byte
	buf := make([]byte, 2048)
	for !bytes.Contains(got, want) {
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		got = append(got, buf[:n]...)
	}
	return nil
}
