package turn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// Relay throughput on loopback. BenchmarkRelay drives the server's hot path
// (ChannelData in, UDP out, and back) with a bare client; BenchmarkUclient
// runs coturn's turnutils_uclient against this server and against coturn's
// own turnserver with the same flags, for comparison:
//
//	go test ./turn -run '^$' -bench . -benchtime 1x

const (
	benchPayload = 1000 // bytes per relayed packet
	benchWindow  = 32   // packets in flight
)

func BenchmarkRelay(b *testing.B) {
	for _, dir := range []string{"client-to-peer", "peer-to-client"} {
		b.Run(dir, func(b *testing.B) {
			cfg := testConfig()
			allowLoopback(&cfg)
			s := startServer(b, cfg)
			username, password := mustMint(s, "bench")
			c := newRawClient(b, s, username, password)
			relay := relayAddr(b, c.allocate())
			peer := listenPeer(b)
			peerUDP := peer.LocalAddr().(*net.UDPAddr)
			if r := c.do(stun.MethodChannelBind, channelNumber(0x4000), peerAddr(peerUDP)); !isSuccess(r) {
				b.Fatalf("channel bind: code %d", errorCode(r))
			}
			frame := make([]byte, 4+benchPayload)
			binary.BigEndian.PutUint16(frame[0:2], 0x4000)
			binary.BigEndian.PutUint16(frame[2:4], benchPayload)

			// The client's side allocates nothing, so allocs/op are the
			// server's.
			clientConn, peerConn := c.conn.(*net.UDPConn), peer.(*net.UDPConn)
			server := c.server.(*net.UDPAddr).AddrPort()
			send := func() { _, _ = clientConn.WriteToUDPAddrPort(frame, server) }
			to := peerConn
			if dir == "peer-to-client" {
				relayAP := relay.AddrPort()
				send = func() { _, _ = peerConn.WriteToUDPAddrPort(frame[4:], relayAP) }
				to = clientConn
			}
			b.SetBytes(benchPayload)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			lost := relayBatches(b, b.N, send, to)
			elapsed := time.Since(start)
			b.StopTimer()
			delivered := b.N - lost
			b.ReportMetric(float64(delivered)/elapsed.Seconds(), "pkt/s")
			b.ReportMetric(float64(delivered)*benchPayload*8/elapsed.Seconds()/1e6, "Mbit/s")
			b.ReportMetric(100*float64(lost)/float64(b.N), "%lost")
		})
	}
}

// relayBatches sends n packets in windows of benchWindow, reading each
// window back from to before the next, and returns how many were lost.
func relayBatches(b *testing.B, n int, send func(), to *net.UDPConn) int {
	buf := make([]byte, 2048)
	lost := 0
	for sent := 0; sent < n; {
		batch := min(benchWindow, n-sent)
		for range batch {
			send()
		}
		sent += batch
		_ = to.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		for got := 0; got < batch; got++ {
			if _, _, err := to.ReadFromUDPAddrPort(buf); err != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					b.Fatal(err)
				}
				lost += batch - got
				break
			}
		}
	}
	return lost
}

// uclientBenchFlags are the turnutils_uclient flags of both runs: clients,
// messages each, message size, send interval (ms), channels, no RTCP.
var uclientBenchFlags = []string{"-m", "20", "-n", "1000", "-l", "1000", "-z", "2", "-c"}

// BenchmarkUclient runs each server as its own process, so that the CPU
// time counted is the server's alone, not the echo peer's or the test's
// (scripts/bench-turn.sh pins both to a core and fixes the offered rate).
func BenchmarkUclient(b *testing.B) {
	b.Run("huddle", func(b *testing.B) {
		port := freeUDPPort(b)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), benchServerEnv+"="+strconv.Itoa(port))
		startProcess(b, cmd)
		waitSTUN(b, port)
		peerPort := startEchoPeer(b)
		creds := newCredentials(testSecret, time.Hour, time.Now)
		username, password := creds.mint("bench")
		runUclientBench(b, port, peerPort, username, password, func() time.Duration { return processCPU(cmd.Process.Pid) })
	})
	b.Run("coturn", func(b *testing.B) {
		bin := requireTool(b, "turnserver")
		port := freeUDPPort(b)
		cmd := exec.Command(bin, "-n", "--listening-ip=127.0.0.1", "--listening-port="+strconv.Itoa(port),
			"--relay-ip=127.0.0.1", "--min-port=61000", "--max-port=65535",
			"--use-auth-secret", "--static-auth-secret="+testSecret, "--realm="+testRealm,
			"--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers", "--no-multicast-peers",
			"--relay-threads=1", "--log-file=stdout", "--simple-log",
			"--pidfile="+filepath.Join(b.TempDir(), "turnserver.pid"))
		startProcess(b, cmd)
		waitSTUN(b, port)
		peerPort := startEchoPeer(b)
		creds := newCredentials(testSecret, time.Hour, time.Now)
		username, password := creds.mint("bench")
		runUclientBench(b, port, peerPort, username, password, func() time.Duration { return processCPU(cmd.Process.Pid) })
	})
}

func runUclientBench(b *testing.B, port, peerPort int, username, password string, cpu func() time.Duration) {
	b.Helper()
	var sent, received int
	var elapsed, used time.Duration
	for range b.N {
		before := cpu()
		res := runUclient(b, port, peerPort, username, password, uclientBenchFlags...)
		used += cpu() - before
		sent, received, elapsed = sent+res.sent, received+res.received, elapsed+res.elapsed
		if res.sent == 0 {
			b.Fatalf("uclient sent nothing:\n%s", res.output)
		}
	}
	// Every message is relayed twice: client to peer, and its echo back.
	relayed := float64(2 * received)
	b.ReportMetric(relayed/elapsed.Seconds(), "relayed-pkt/s")
	b.ReportMetric(relayed*1000*8/elapsed.Seconds()/1e6, "Mbit/s")
	b.ReportMetric(100*float64(sent-received)/float64(sent), "%lost")
	if used > 0 {
		b.ReportMetric(float64(used.Microseconds())/relayed, "server-µs/pkt")
	}
}

// waitSTUN waits until a STUN server answers a Binding request on port.
func waitSTUN(b *testing.B, port int) {
	b.Helper()
	pc := listenPeer(b)
	server := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	buf := make([]byte, 1500)
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		m := build(b, stun.TransactionID, stun.BindingRequest)
		_, _ = pc.WriteTo(m.Raw, server)
		_ = pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, _, err := pc.ReadFrom(buf); err == nil {
			return
		}
	}
	b.Fatalf("no STUN answer on port %d", port)
}

// benchServerEnv makes the test binary a TURN server on 127.0.0.1 at the
// port it holds (BenchmarkUclient's), until it is killed.
const benchServerEnv = "HUDDLE_TURN_BENCH_SERVER_PORT"

func runBenchServer(port string) int {
	cfg := testConfig()
	allowLoopback(&cfg)
	cfg.Addr = "127.0.0.1:" + port
	cfg.MaxAllocations = 1000 // uclient's clients share one credential
	ln, err := Listen(cfg)
	if err == nil {
		_, err = NewServer(cfg, ln, nil)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	select {} // until killed
}

// processCPU is another process's CPU time, from /proc.
func processCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const clockTicks = 100 // sysconf(_SC_CLK_TCK) on Linux
	return time.Duration(utime+stime) * time.Second / clockTicks
}
