package app_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/huddle-rtc/huddle/internal/app"
	"github.com/huddle-rtc/huddle/internal/apptest"
	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const appWait = 10 * time.Second

// appCert writes a self-signed certificate for 127.0.0.1 and returns the
// paths of the certificate and key, and a pool that trusts it.
func appCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "huddle test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool
}

// TestTLS serves https and wss directly from HUDDLE_TLS_CERT/KEY.
func TestTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := appCert(t)
	a := apptest.Start(t, func(c *app.Config) { c.TLSCert, c.TLSKey = certFile, keyFile })
	if !strings.HasPrefix(a.URL(), "https://") || !strings.HasPrefix(a.WSURL(), "wss://") {
		t.Fatalf("URLs %s %s", a.URL(), a.WSURL())
	}
	tlsConf := &tls.Config{RootCAs: pool}
	client := &http.Client{Timeout: appWait, Transport: &http.Transport{TLSClientConfig: tlsConf}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(a.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("healthz over TLS: %s", resp.Status)
	}

	d := websocket.Dialer{TLSClientConfig: tlsConf, HandshakeTimeout: appWait, Subprotocols: []string{wire.Subprotocol}}
	ws, _, err := d.Dial(a.WSURL(), nil)
	if err != nil {
		t.Fatalf("wss: %v", err)
	}
	defer ws.Close()
	if err := ws.WriteJSON(map[string]string{"type": "join", "room": "tls"}); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(appWait))
	var m wire.Message
	if err := ws.ReadJSON(&m); err != nil || m.Type != wire.TypeWelcome {
		t.Fatalf("welcome over wss: %+v, %v", m, err)
	}

	// Plain HTTP on the TLS port gets no page.
	plain := &http.Client{Timeout: appWait}
	if resp, err := plain.Get("http://" + a.Addr().String() + "/healthz"); err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP served on the TLS port")
		}
	}
	// TLS 1.1 and older are refused.
	old := &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}
	if c, err := tls.Dial("tcp", a.Addr().String(), old); err == nil {
		_ = c.Close()
		t.Fatal("TLS 1.1 accepted")
	}
}

// appRaw sends a raw request and returns the answer's status.
func appRaw(t *testing.T, addr, req string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, appWait)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(appWait))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestMaxHeaderBytes answers 431 to oversized headers, and still takes
// headers the size a real handshake with a large token has.
func TestMaxHeaderBytes(t *testing.T) {
	t.Parallel()
	a := apptest.Start(t, nil)
	addr := a.Addr().String()
	req := func(extra string) string {
		return "GET /healthz HTTP/1.1\r\nHost: " + addr + "\r\n" + extra + "\r\n"
	}
	if got := appRaw(t, addr, req("Authorization: Bearer "+strings.Repeat("a", 8<<10)+"\r\n")); got != http.StatusOK {
		t.Fatalf("8 KiB token header: %d", got)
	}
	if got := appRaw(t, addr, req("X-Big: "+strings.Repeat("a", 64<<10)+"\r\n")); got != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB header: %d, want 431", got)
	}
	many := strings.Repeat("X-Many: "+strings.Repeat("b", 100)+"\r\n", 1000)
	if got := appRaw(t, addr, req(many)); got != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("1000 headers: %d, want 431", got)
	}
	wsReq := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: huddle.v1, bearer." + strings.Repeat("c", 100<<10) + "\r\n\r\n"
	if got := appRaw(t, addr, wsReq); got != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("100 KiB subprotocol: %d, want 431", got)
	}
}

// appLogs is a log buffer safe for the server's goroutines.
type appLogs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *appLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *appLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// appRun runs a node with logs into a buffer until the returned stop.
func appRun(t *testing.T, secret string) (*app.App, *appLogs, func()) {
	t.Helper()
	cfg := apptest.Config(t)
	cfg.LogLevel = "debug"
	cfg.Signal.JWTSecret = secret
	return appRunConfig(t, cfg)
}

// appRunConfig runs a node of cfg with logs into a buffer until the
// returned stop, which fails the test if Run failed.
func appRunConfig(t *testing.T, cfg app.Config) (*app.App, *appLogs, func()) {
	t.Helper()
	logs := &appLogs{}
	a, err := app.New(cfg, app.NewLogger(cfg, logs))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
	return a, logs, stop
}

// TestStartupLogSaysAuth: the start-up line says whether the server is
// open or requires tokens, and never shows a secret.
func TestStartupLogSaysAuth(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-that-must-never-be-logged"
	for _, tc := range []struct {
		secret string
		want   string
	}{
		{"", "auth=\"open: anyone may join"},
		{secret, "auth=jwt"},
	} {
		a, logs, stop := appRun(t, tc.secret)
		// A refused and an accepted handshake, to have more to grep.
		if tc.secret != "" {
			_, resp, err := websocket.DefaultDialer.Dial(a.WSURL(), nil)
			if err == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("no token: %v", err)
			}
			tok, err := signal.MintToken([]byte(secret), signal.Claims{Subject: "u", Room: "r"}, time.Minute, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			ws, _, err := websocket.DefaultDialer.Dial(a.WSURL()+"?token="+tok, nil)
			if err != nil {
				t.Fatal(err)
			}
			_ = ws.Close()
			stop()
			if strings.Contains(logs.String(), tok) || strings.Contains(logs.String(), strings.Split(tok, ".")[2]) {
				t.Fatalf("the token is in the log:\n%s", logs)
			}
		} else {
			stop()
		}
		out := logs.String()
		line := ""
		for l := range strings.Lines(out) {
			if strings.Contains(l, "huddle listening") {
				line = l
			}
		}
		if !strings.Contains(line, tc.want) {
			t.Fatalf("start-up line %q, want %q", line, tc.want)
		}
		if strings.Contains(out, secret) {
			t.Fatalf("the secret is in the log:\n%s", out)
		}
	}
}

// TestStartupWarnings: a short secret, or any origin with no token key,
// start but say so.
func TestStartupWarnings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		secret  string
		origins []string
		want    string
	}{
		{"short", nil, "HUDDLE_JWT_SECRET is 5 bytes"},
		{"", []string{"*"}, "HUDDLE_ALLOWED_ORIGINS=* with no token key"},
		{strings.Repeat("k", 32), []string{"*"}, ""},
		{"", nil, ""},
	} {
		cfg := apptest.Config(t)
		cfg.Signal.JWTSecret, cfg.Signal.AllowedOrigins = tc.secret, tc.origins
		logs := &appLogs{}
		a, err := app.New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // start and drain at once: the start-up lines are written first
		if err := a.Run(ctx); err != nil {
			t.Fatal(err)
		}
		warned := strings.Contains(logs.String(), "HUDDLE_JWT_SECRET is") || strings.Contains(logs.String(), "HUDDLE_ALLOWED_ORIGINS=*")
		if tc.want == "" && warned || tc.want != "" && !strings.Contains(logs.String(), tc.want) {
			t.Errorf("secret %q origins %q: want warning %q, log:\n%s", tc.secret, tc.origins, tc.want, logs)
		}
		if tc.secret != "" && strings.Contains(logs.String(), tc.secret) {
			t.Errorf("the secret is in the log:\n%s", logs)
		}
	}
}

// TestStartupErrors: bad security settings fail at start-up, each named.
func TestStartupErrors(t *testing.T) {
	t.Parallel()
	certFile, keyFile, _ := appCert(t)
	_, err := app.LoadConfig([]string{
		"HUDDLE_TLS_CERT=" + certFile,
		"HUDDLE_JWT_SECRET=x",
		"HUDDLE_JWT_PUBLIC_KEY=/no/such/key.pem",
		"HUDDLE_ALLOWED_ORIGINS=app.example.com",
		"HUDDLE_TRUSTED_PROXIES=10.0.0.0/99",
		"HUDDLE_MAX_CONNS_PER_IP=-1",
		"HUDDLE_HANDSHAKE_RATE=fast",
	})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, name := range []string{"HUDDLE_TLS_KEY", "HUDDLE_JWT_PUBLIC_KEY", "HUDDLE_ALLOWED_ORIGINS", "HUDDLE_TRUSTED_PROXIES", "HUDDLE_MAX_CONNS_PER_IP", "HUDDLE_HANDSHAKE_RATE"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}

	_, err = app.LoadConfig([]string{"HUDDLE_TLS_CERT=" + keyFile, "HUDDLE_TLS_KEY=" + certFile})
	if err == nil || !strings.Contains(err.Error(), "HUDDLE_TLS_CERT") {
		t.Fatalf("swapped cert and key: %v", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := apptest.Config(t)
	cfg.Addr = ln.Addr().String()
	if _, err := app.New(cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "HUDDLE_ADDR") {
		t.Fatalf("taken port: %v", err)
	}
}

// TestAuthThroughApp: the composed server enforces tokens on /ws.
func TestAuthThroughApp(t *testing.T) {
	t.Parallel()
	const secret = "app test secret"
	a := apptest.Start(t, func(c *app.Config) { c.Signal.JWTSecret = secret })
	_, resp, err := websocket.DefaultDialer.Dial(a.WSURL(), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %v", err)
	}
	tok, err := signal.MintToken([]byte(secret), signal.Claims{Subject: "u", Room: "r"}, time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ws, _, err := websocket.DefaultDialer.Dial(a.WSURL(), http.Header{"Authorization": {"Bearer " + tok}})
	if err != nil {
		t.Fatal(err)
	}
	_ = ws.Close()
}
