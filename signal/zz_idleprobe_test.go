package signal_test

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/huddle-rtc/huddle/signal"
)

func TestZZIdleProbe(t *testing.T) {
	if os.Getenv("IDLEPROBE") == "" {
		t.Skip()
	}
	runtime.MemProfileRate = 512
	h := newHarness(t, testConfig(nil), signal.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	addr := h.ts.Listener.Addr().String()
	const n = 3000
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	g0 := runtime.NumGoroutine()
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := rawJoinConn(addr, "idle"+string(rune('a'+i%20))+"x"+itoa(i/4))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	time.Sleep(500 * time.Millisecond)
	for i := 0; i < 6; i++ {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		t.Logf("gc %d stack/peer %.0f", i, float64(ms.StackInuse-ms0.StackInuse)/n)
	}
	runtime.ReadMemStats(&ms1)
	g1 := runtime.NumGoroutine()
	t.Logf("heapinuse/peer %.0f B, stack/peer %.0f B, goroutines/peer %.2f",
		float64(ms1.HeapInuse-ms0.HeapInuse)/n, float64(ms1.StackInuse-ms0.StackInuse)/n, float64(g1-g0)/n)
	f, _ := os.Create("/tmp/perf/idle.heap")
	pprof.Lookup("heap").WriteTo(f, 0)
	f.Close()
	f, _ = os.Create("/tmp/perf/idle.goroutine")
	pprof.Lookup("goroutine").WriteTo(f, 1)
	f.Close()
	for _, c := range conns {
		c.Close()
	}
}

func itoa(i int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + i%10)}, b...)
		i /= 10
		if i == 0 {
			return string(b)
		}
	}
}

func rawJoinConn(addr, room string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	payload := []byte(`{"type":"join","room":"` + room + `"}`)
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: huddle.v1\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		return nil, err
	}
	var buf [4096]byte
	var got []byte
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for !bytes.Contains(got, []byte("\r\n\r\n")) {
		n, err := c.Read(buf[:])
		if err != nil {
			return nil, err
		}
		got = append(got, buf[:n]...)
	}
	frame := append([]byte{0x81, 0x80 | byte(len(payload)), 0, 0, 0, 0}, payload...)
	if _, err := c.Write(frame); err != nil {
		return nil, err
	}
	for !bytes.Contains(got, []byte(`"welcome"`)) {
		n, err := c.Read(buf[:])
		if err != nil {
			return nil, err
		}
		got = append(got, buf[:n]...)
	}
	return c, nil
}

func TestZZServeProfile(t *testing.T) {
	if os.Getenv("SERVEPROF") == "" {
		t.Skip()
	}
	cfg := testConfig(func(c *signal.Config) { c.RateLimit, c.RateBurst = 1000, 1000 })
	srv, err := signal.New(cfg, signal.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:8099")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", srv)
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	time.Sleep(3 * time.Second) // the load tool ramps up
	f, _ := os.Create(os.Getenv("SERVEPROF"))
	pprof.StartCPUProfile(f)
	time.Sleep(8 * time.Second)
	pprof.StopCPUProfile()
	f.Close()
	time.Sleep(15 * time.Second)
	hs.Close()
	srv.Close()
}
