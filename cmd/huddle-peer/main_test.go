package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// buffer is an io.Writer safe for the command's goroutine and the test.
type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// runCmd runs huddle-peer in-process and returns its exit code and output.
func runCmd(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut buffer
	code := run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// jsonLines decodes the JSON lines of an output.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("output line %q is not JSON: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

func findEvent(lines []map[string]any, event string) map[string]any {
	for _, l := range lines {
		if l["event"] == event {
			return l
		}
	}
	return nil
}

func TestHelpAndUsage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	code, out, _ := runCmd(t, ctx, "help")
	if code != exitOK || !strings.Contains(out, "join") || !strings.Contains(out, "check") {
		t.Errorf("help: code %d, output %q", code, out)
	}
	for _, cmd := range []string{"join", "check"} {
		code, _, errOut := runCmd(t, ctx, cmd, "--help")
		if code != exitOK || !strings.Contains(errOut, "-url") || !strings.Contains(errOut, "-relay") {
			t.Errorf("%s --help: code %d, output %q", cmd, code, errOut)
		}
	}
	code, _, errOut := runCmd(t, ctx, "join", "--help")
	for _, flag := range []string{"-expect", "-echo", "-timeout", "-json", "-room", "-name", "-token"} {
		if !strings.Contains(errOut, flag) {
			t.Errorf("join --help (code %d) does not explain %s", code, flag)
		}
	}
	for _, args := range [][]string{
		{},
		{"nope"},
		{"join", "--url", "ws://127.0.0.1:1/ws"},
		{"join", "--room", "r"},
		{"join", "--url", "ws://x/ws", "--room", "r", "--expect", "-1"},
		{"join", "--url", "ws://x/ws", "--room", "r", "extra"},
		{"check"},
		{"check", "--url", "ws://x/ws", "--timeout", "0s"},
		{"check", "--url", "ws://x/ws", "--log-level", "loud"},
	} {
		if code, _, _ := runCmd(t, ctx, args...); code != exitUsage {
			t.Errorf("%q: exit code %d, want %d", args, code, exitUsage)
		}
	}
}
