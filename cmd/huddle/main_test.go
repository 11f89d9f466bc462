package main

// These tests build the huddle binary once and run it as a user would,
// with nothing but the HUDDLE_* variables they set.

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/huddle-rtc/huddle/internal/app"
	"github.com/huddle-rtc/huddle/internal/apptest"
	"github.com/huddle-rtc/huddle/signal/wire"
)

var (
	binDir   string
	buildBin = sync.OnceValues(func() (string, error) {
		bin := filepath.Join(binDir, "huddle")
		out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go build: %w\n%s", err, out)
		}
		return bin, nil
	})
)

func TestMain(m *testing.M) {
	var err error
	if binDir, err = os.MkdirTemp("", "huddle-cmd-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(binDir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// huddle runs the binary with args and only the given environment.
func huddle(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	bin, err := buildBin()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{}, env...) // never nil: nil would inherit ours
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("huddle %q did not exit: %s", args, errOut.String())
	}
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("huddle %q: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// TestTokenCommand mints a token that the server accepts for its room only,
// with the claims and lifetime asked for.
func TestTokenCommand(t *testing.T) {
	t.Parallel()
	const secret = "cmd test secret"
	before := time.Now().Add(-time.Second)
	out, errOut, code := huddle(t, []string{"HUDDLE_JWT_SECRET=" + secret}, "token", "--room", "standup", "--sub", "u42", "--name", "Ann", "--ttl", "5m")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	tok := strings.TrimSpace(out)
	if strings.Count(out, "\n") != 1 || strings.Count(tok, ".") != 2 {
		t.Fatalf("output %q: want one token on one line", out)
	}

	var claims struct {
		jwt.RegisteredClaims
		Room string `json:"room"`
		Name string `json:"name"`
	}
	parsed, err := jwt.ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return []byte(secret), nil },
		jwt.WithValidMethods([]string{"HS256"}))
	if err != nil || !parsed.Valid {
		t.Fatalf("token %q: %v", tok, err)
	}
	if claims.Subject != "u42" || claims.Room != "standup" || claims.Name != "Ann" {
		t.Fatalf("claims %+v", claims)
	}
	if claims.ExpiresAt == nil || claims.NotBefore == nil ||
		claims.ExpiresAt.Sub(claims.NotBefore.Time) != 5*time.Minute || claims.NotBefore.Before(before) {
		t.Fatalf("exp %v nbf %v: want a 5m lifetime from now", claims.ExpiresAt, claims.NotBefore)
	}

	a := apptest.Start(t, func(c *app.Config) { c.Signal.JWTSecret = secret })
	ws, _, err := websocket.DefaultDialer.Dial(a.WSURL(), http.Header{"Authorization": {"Bearer " + tok}})
	if err != nil {
		t.Fatalf("the server refused the token: %v", err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, room := range []string{"other", "standup"} {
		if err := ws.WriteJSON(map[string]string{"type": "join", "room": room, "name": "Mallory"}); err != nil {
			t.Fatal(err)
		}
		var m wire.Message
		if err := ws.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		switch room {
		case "other":
			if m.Type != wire.TypeError || m.Code != wire.CodeForbidden {
				t.Fatalf("join other: %+v, want forbidden", m)
			}
		case "standup":
			if m.Type != wire.TypeWelcome {
				t.Fatalf("join standup: %+v", m)
			}
		}
	}
}

func TestTokenCommandErrors(t *testing.T) {
	t.Parallel()
	secret := []string{"HUDDLE_JWT_SECRET=s"}
	cases := []struct {
		name     string
		env      []string
		args     []string
		code     int
		inStderr string
	}{
		{"no secret", nil, []string{"token", "--room", "r", "--sub", "u"}, 1, "HUDDLE_JWT_SECRET"},
		{"public key only", []string{"HUDDLE_JWT_PUBLIC_KEY=" + edPEM}, []string{"token", "--room", "r", "--sub", "u"}, 1, "HUDDLE_JWT_SECRET"},
		{"no room", secret, []string{"token", "--sub", "u"}, 2, "usage"},
		{"no sub", secret, []string{"token", "--room", "r"}, 2, "usage"},
		{"zero ttl", secret, []string{"token", "--room", "r", "--sub", "u", "--ttl", "0s"}, 2, "usage"},
		{"negative ttl", secret, []string{"token", "--room", "r", "--sub", "u", "--ttl", "-1m"}, 2, "usage"},
		{"bad ttl", secret, []string{"token", "--room", "r", "--sub", "u", "--ttl", "soon"}, 2, "ttl"},
		{"unknown flag", secret, []string{"token", "--room", "r", "--sub", "u", "--admin"}, 2, "admin"},
		{"stray argument", secret, []string{"token", "--room", "r", "--sub", "u", "extra"}, 2, "usage"},
		{"bad config", append([]string{"HUDDLE_MAX_CONNS_PER_IP=-1"}, secret...), []string{"token", "--room", "r", "--sub", "u"}, 2, "HUDDLE_MAX_CONNS_PER_IP"},
		{"unknown command", nil, []string{"tokens"}, 2, "unknown command"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, errOut, code := huddle(t, tc.env, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.inStderr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errOut, tc.code, tc.inStderr)
			}
			if out != "" {
				t.Fatalf("stdout %q: a failed command prints no token", out)
			}
		})
	}
}

// edPEM is an Ed25519 public key.
const edPEM = `-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAPvL9z155ivPuZilO8dakFUHdaNSjVL6X5kctb+byyCI=
-----END PUBLIC KEY-----`

// TestServerConfigErrors: the server does not start with bad security
// settings; it names every one at once and exits 2.
func TestServerConfigErrors(t *testing.T) {
	t.Parallel()
	_, errOut, code := huddle(t, []string{
		"HUDDLE_ADDR=127.0.0.1:0",
		"HUDDLE_JWT_SECRET=s",
		"HUDDLE_JWT_PUBLIC_KEY=" + edPEM,
		"HUDDLE_ALLOWED_ORIGINS=app.example.com",
		"HUDDLE_TRUSTED_PROXIES=not-a-cidr",
		"HUDDLE_HANDSHAKE_RATE=-5",
		"HUDDLE_TLS_CERT=/no/such/cert.pem",
		"HUDDLE_COMPRESSION=maybe",
	})
	if code != 2 {
		t.Fatalf("exit %d, want 2: %s", code, errOut)
	}
	for _, name := range []string{"HUDDLE_JWT_PUBLIC_KEY", "HUDDLE_ALLOWED_ORIGINS", "HUDDLE_TRUSTED_PROXIES", "HUDDLE_HANDSHAKE_RATE", "HUDDLE_TLS_KEY", "HUDDLE_COMPRESSION"} {
		if !strings.Contains(errOut, name) {
			t.Errorf("stderr does not name %s:\n%s", name, errOut)
		}
	}
	if strings.Contains(errOut, "HUDDLE_JWT_SECRET=s") {
		t.Errorf("stderr shows the secret:\n%s", errOut)
	}
}
