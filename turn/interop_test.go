package turn

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// Interop with coturn's test tools (Debian package coturn): a TURN client no
// one here wrote allocates and relays through the bundled server, with
// credentials the server minted, to an echo peer on loopback.

// requireTool returns the path of a coturn tool, skipping the test when it is
// missing on a developer machine and failing it in CI.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("package turn: %s not found (apt-get install coturn)", name)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// freeUDPPort returns a loopback UDP port that was free a moment ago, for
// tools that cannot be given a socket.
func freeUDPPort(t testing.TB) int {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// startEchoPeer runs turnutils_peer on loopback and waits until it echoes.
func startEchoPeer(t testing.TB) int {
	t.Helper()
	bin := requireTool(t, "turnutils_peer")
	port := freeUDPPort(t)
	startProcess(t, exec.Command(bin, "-L", "127.0.0.1", "-p", strconv.Itoa(port)))
	waitEcho(t, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	return port
}

// startProcess starts cmd and kills it at cleanup.
func startProcess(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", cmd.Path, out.String())
		}
	})
}

// waitEcho probes a UDP echo server until it answers.
func waitEcho(t testing.TB, addr *net.UDPAddr) {
	t.Helper()
	pc := listenPeer(t)
	buf := make([]byte, 64)
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		if _, err := pc.WriteTo([]byte("probe"), addr); err != nil {
			t.Fatal(err)
		}
		_ = pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, _, err := pc.ReadFrom(buf); err == nil {
			return
		}
	}
	t.Fatalf("no echo from %v", addr)
}

// uclientResult is what turnutils_uclient reports.
type uclientResult struct {
	sent, received int
	elapsed        time.Duration
	output         string
}

var uclientTotals = regexp.MustCompile(`(?m)tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$`)

// parseUclient reads the final totals uclient prints.
func parseUclient(out []byte) (sent, received int) {
	all := uclientTotals.FindAllSubmatch(out, -1)
	if len(all) == 0 {
		return 0, 0
	}
	last := all[len(all)-1]
	sent, _ = strconv.Atoi(string(last[1]))
	received, _ = strconv.Atoi(string(last[2]))
	return sent, received
}

// runUclient relays through the TURN server at port with turnutils_uclient
// and turnutils_peer at peerPort; extra are further flags.
func runUclient(t testing.TB, port, peerPort int, username, password string, extra ...string) uclientResult {
	t.Helper()
	bin := requireTool(t, "turnutils_uclient")
	args := append([]string{"-u", username, "-w", password, "-e", "127.0.0.1",
		"-r", strconv.Itoa(peerPort), "-p", strconv.Itoa(port)}, extra...)
	args = append(args, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	res := uclientResult{elapsed: time.Since(start), output: string(out)}
	if err != nil {
		t.Fatalf("turnutils_uclient %v: %v\n%s", args, err, out)
	}
	res.sent, res.received = parseUclient(out)
	return res
}

func TestUclientInterop(t *testing.T) {
	t.Parallel()
	requireTool(t, "turnutils_uclient")
	cfg := testConfig()
	allowLoopback(&cfg) // turnutils_peer listens on loopback
	s := startServer(t, cfg)
	peerPort := startEchoPeer(t)
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"udp channels", []string{"-n", "30", "-m", "2", "-l", "200", "-c"}},
		{"udp send indications", []string{"-n", "30", "-m", "2", "-l", "200", "-c", "-s"}},
		{"tcp", []string{"-t", "-n", "30", "-m", "2", "-l", "200", "-c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // after the serial "refused credentials" below
			username, password := mustMint(s, "uclient")
			before := s.Stats().AuthFailures
			res := runUclient(t, s.udpAddr().Port, peerPort, username, password, tc.flags...)
			if res.sent == 0 || res.received < res.sent*95/100 {
				t.Fatalf("sent %d, echoed back %d\n%s", res.sent, res.received, res.output)
			}
			if got := s.Stats().AuthFailures; got != before {
				t.Fatalf("%d auth failures with issued credentials", got-before)
			}
		})
	}
	t.Run("refused credentials", func(t *testing.T) {
		username, password := mustMint(s, "uclient")
		bin := requireTool(t, "turnutils_uclient")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, "-u", username, "-w", password+"x", "-e", "127.0.0.1",
			"-r", strconv.Itoa(peerPort), "-p", strconv.Itoa(s.udpAddr().Port), "-n", "5", "127.0.0.1").CombinedOutput()
		if _, received := parseUclient(out); received > 0 {
			t.Fatalf("uclient relayed with a wrong password (exit %v):\n%s", err, out)
		}
		if got := s.Stats().AuthFailures; got == 0 {
			t.Fatalf("no auth failure counted (uclient exit %v):\n%s", err, out)
		}
	})
}
