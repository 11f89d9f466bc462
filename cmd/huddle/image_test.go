package main

// The Docker image cannot be built here (no Docker engine), so these tests
// prove its parts instead: the build line it runs (scripts/build.sh) makes
// a static binary, which serves with nothing from the environment but the
// HUDDLE_* variables it is given, and whose `healthcheck` (the image's
// HEALTHCHECK) exits 0 against a running server and 1 against none.

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// imageVersion is the version the tests build into the binary.
const imageVersion = "v0.0.0-imagetest"

// scriptBin builds the binary with scripts/build.sh, as the Dockerfile does.
var scriptBin = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(binDir, "huddle-static")
	cmd := exec.Command("sh", "scripts/build.sh", bin, "./cmd/huddle")
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), "HUDDLE_VERSION="+imageVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("scripts/build.sh: %w\n%s", err, out)
	}
	return bin, nil
})

func staticBin(t *testing.T) string {
	t.Helper()
	bin, err := scriptBin()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestDockerfileUsesBuildScript: the image is built by the script these
// tests run, and its HEALTHCHECK needs no shell.
func TestDockerfileUsesBuildScript(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^RUN .*scripts/build\.sh /out/huddle \./cmd/huddle$`),
		regexp.MustCompile(`(?m)^\s*CMD \["/huddle", "healthcheck"\]$`),
		regexp.MustCompile(`(?m)^USER nonroot`),
		regexp.MustCompile(`(?m)^EXPOSE 8080/tcp 3478/udp 3478/tcp \d+-\d+/udp$`),
	} {
		if !want.MatchString(df) {
			t.Errorf("Dockerfile has no line matching %s", want)
		}
	}
}

// TestStaticBinary: no program interpreter, no dynamic section, no shared
// library; built without cgo and with -trimpath; `version` prints the
// version given to the script.
func TestStaticBinary(t *testing.T) {
	t.Parallel()
	bin := staticBin(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("program header %v: the binary is dynamically linked", p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("imported libraries %v (%v)", libs, err)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("build settings %v: want CGO_ENABLED=0 and -trimpath", settings)
	}
	out, errOut, code := runBin(t, bin, nil, "version")
	if code != 0 || out != "huddle "+imageVersion+"\n" {
		t.Errorf("version: exit %d, %q %q", code, out, errOut)
	}
}

// runBin runs bin with args and exactly env (nothing inherited).
func runBin(t *testing.T, bin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{}, env...) // never nil: nil would inherit ours
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	_ = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %q did not exit: %s", bin, args, errOut.String())
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// TestStaticBinaryServes runs the static binary with an empty environment
// but for its listen addresses (the defaults are fixed ports, which tests
// must not take), checks that it serves, that `healthcheck` says so, and
// that after SIGTERM it drains, exits 0, and `healthcheck` fails.
func TestStaticBinaryServes(t *testing.T) {
	t.Parallel()
	bin := staticBin(t)
	env := []string{"HUDDLE_ADDR=127.0.0.1:0", "HUDDLE_TURN_ADDR=127.0.0.1:0", "HUDDLE_TURN_RELAY_PORTS=61000-65535"}
	cmd := exec.Command(bin)
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	logs := make(chan string, 1)
	addr := make(chan string, 1)
	go func() {
		var all strings.Builder
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`msg="huddle listening".* url=http://(\S+)`)
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		logs <- all.String()
		exited <- cmd.Wait()
	}()
	var hostPort string
	select {
	case hostPort = <-addr:
	case err := <-exited:
		t.Fatalf("the server exited: %v\n%s", err, <-logs)
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("no start-up line within 30s\n%s", <-logs)
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	defer stop()

	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/"} {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + hostPort + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", path, resp.Status)
		}
	}
	healthEnv := []string{"HUDDLE_ADDR=" + hostPort}
	if out, errOut, code := runBin(t, bin, healthEnv, "healthcheck"); code != 0 || out != "ok\n" {
		t.Errorf("healthcheck against the server: exit %d, %q %q", code, out, errOut)
	}
	// An unspecified host (the image's ":8080") is dialed on loopback.
	_, port, _ := net.SplitHostPort(hostPort)
	if _, errOut, code := runBin(t, bin, []string{"HUDDLE_ADDR=:" + port}, "healthcheck"); code != 0 {
		t.Errorf("healthcheck with HUDDLE_ADDR=:%s: exit %d, %q", port, code, errOut)
	}

	stop()
	select {
	case err := <-exited:
		out := <-logs
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, out)
		}
		if !strings.Contains(out, "version="+imageVersion) || !strings.Contains(out, `msg=stopped`) {
			t.Errorf("logs lack the version or the stop:\n%s", out)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("no exit within 30s of SIGTERM")
	}
	if _, errOut, code := runBin(t, bin, healthEnv, "healthcheck"); code != 1 || errOut == "" {
		t.Errorf("healthcheck against no server: exit %d, %q; want 1 and a reason", code, errOut)
	}
}
