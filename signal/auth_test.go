package signal

// Unit tests of token verification, token extraction and the origin
// policy; the same behaviour over real sockets is in security_test.go.

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// authNow is the fixed instant the unit tests and the fuzz corpus verify
// at, so the committed seeds stay valid.
var authNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const authSecret = "fuzz secret of at least 32 bytes!"

func authVerifier(t testing.TB, cfg Config) *verifier {
	t.Helper()
	v, err := newVerifier(&cfg, func() time.Time { return authNow })
	if err != nil || v == nil {
		t.Fatalf("newVerifier: %v, %v", v, err)
	}
	return v
}

func authSign(t testing.TB, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func authClaims(edit func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "u", "room": "r", "name": "N", "exp": authNow.Add(time.Minute).Unix()}
	if edit != nil {
		edit(c)
	}
	return c
}

func TestVerifyReasons(t *testing.T) {
	t.Parallel()
	v := authVerifier(t, Config{JWTSecret: authSecret})
	key := []byte(authSecret)
	hs := func(edit func(jwt.MapClaims)) string {
		return authSign(t, jwt.SigningMethodHS256, key, authClaims(edit))
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	none := authSign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, authClaims(nil))
	cases := []struct {
		name, token, want string
	}{
		{"empty", "", "token malformed"},
		{"one segment", "abc", "token malformed"},
		{"four segments", hs(nil) + ".x", "token malformed"},
		{"header not base64", "!!." + strings.SplitN(hs(nil), ".", 2)[1], "token malformed"},
		{"header not JSON", "bm90IGpzb24." + strings.SplitN(hs(nil), ".", 2)[1], "token malformed"},
		{"signature not base64", hs(nil)[:strings.LastIndex(hs(nil), ".")] + ".!!", "token malformed"},
		{"no alg", "eyJ0eXAiOiJKV1QifQ." + strings.SplitN(hs(nil), ".", 3)[1] + ".c2ln", "token algorithm not accepted"},
		{"unknown alg", "eyJhbGciOiJYWVoifQ." + strings.SplitN(hs(nil), ".", 3)[1] + ".c2ln", "token algorithm not accepted"},
		{"alg none", none, "token algorithm not accepted"},
		{"alg none, signature stripped", strings.TrimSuffix(none, "."), "token malformed"},
		{"HS384", authSign(t, jwt.SigningMethodHS384, key, authClaims(nil)), "token algorithm not accepted"},
		{"RS256 on an HS256 server", authSign(t, jwt.SigningMethodRS256, rsaKey, authClaims(nil)), "token algorithm not accepted"},
		{"other secret", authSign(t, jwt.SigningMethodHS256, []byte("other"), authClaims(nil)), "token signature invalid"},
		{"expired past leeway", hs(func(c jwt.MapClaims) { c["exp"] = authNow.Add(-TokenLeeway - time.Second).Unix() }), "token expired"},
		{"nbf past leeway", hs(func(c jwt.MapClaims) { c["nbf"] = authNow.Add(TokenLeeway + time.Second).Unix() }), "token not valid yet"},
		{"no exp", hs(func(c jwt.MapClaims) { delete(c, "exp") }), "token has no exp claim"},
		{"exp a string", hs(func(c jwt.MapClaims) { c["exp"] = "soon" }), "token malformed"},
		{"room a number", hs(func(c jwt.MapClaims) { c["room"] = 7 }), "token malformed"},
		{"claims an array", "eyJhbGciOiJIUzI1NiJ9.W10.c2ln", "token malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := v.verify(tc.token)
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			if got := tokenError(err); got != tc.want {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.want)
			}
		})
	}
}

func TestVerifyLeewayAndClaims(t *testing.T) {
	t.Parallel()
	v := authVerifier(t, Config{JWTSecret: authSecret})
	key := []byte(authSecret)
	for _, edit := range []func(jwt.MapClaims){
		func(c jwt.MapClaims) { c["exp"] = authNow.Add(-TokenLeeway + time.Second).Unix() },
		func(c jwt.MapClaims) { c["nbf"] = authNow.Add(TokenLeeway - time.Second).Unix() },
		func(c jwt.MapClaims) { c["iat"] = authNow.Add(time.Hour).Unix() }, // iat is not checked
		func(c jwt.MapClaims) { c["exp"] = float64(authNow.Add(time.Minute).Unix()) + 0.5 },
	} {
		c, err := v.verify(authSign(t, jwt.SigningMethodHS256, key, authClaims(edit)))
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		if *c != (Claims{Subject: "u", Room: "r", Name: "N"}) {
			t.Fatalf("claims %+v", c)
		}
	}
}

func TestMintToken(t *testing.T) {
	t.Parallel()
	tok, err := MintToken([]byte(authSecret), Claims{Subject: "s", Room: "*", Name: "Ann"}, 5*time.Minute, authNow)
	if err != nil {
		t.Fatal(err)
	}
	c, err := authVerifier(t, Config{JWTSecret: authSecret}).verify(tok)
	if err != nil || *c != (Claims{Subject: "s", Room: "*", Name: "Ann"}) {
		t.Fatalf("verify: %+v, %v", c, err)
	}
	var rc jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &rc); err != nil {
		t.Fatal(err)
	}
	if !rc.ExpiresAt.Equal(authNow.Add(5*time.Minute)) || !rc.NotBefore.Equal(authNow) {
		t.Fatalf("exp %v nbf %v", rc.ExpiresAt, rc.NotBefore)
	}
	if _, err := MintToken(nil, Claims{}, time.Minute, authNow); err == nil {
		t.Fatal("minted without a secret")
	}
}

func authPEM(t testing.TB, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func TestLoadPublicKey(t *testing.T) {
	t.Parallel()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	cases := []struct {
		pub  any
		want string
	}{
		{&rsaKey.PublicKey, "RS256"},
		{&p256.PublicKey, "ES256"},
		{&p384.PublicKey, "ES384"},
		{&p521.PublicKey, "ES512"},
		{edPub, "EdDSA"},
	}
	for _, tc := range cases {
		pemText := authPEM(t, tc.pub)
		if _, method, err := loadPublicKey(pemText); err != nil || method != tc.want {
			t.Fatalf("%s: %s, %v", tc.want, method, err)
		}
		path := filepath.Join(t.TempDir(), "key.pem")
		if err := os.WriteFile(path, []byte(pemText), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, method, err := loadPublicKey(path); err != nil || method != tc.want {
			t.Fatalf("%s from a file: %s, %v", tc.want, method, err)
		}
	}
	private := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}))
	for _, bad := range []string{"", "/no/such/file.pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", private} {
		if _, _, err := loadPublicKey(bad); err == nil {
			t.Fatalf("accepted %q", bad)
		}
		cfg := DefaultConfig()
		cfg.JWTPublicKey = bad
		if bad == "" {
			continue
		}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "HUDDLE_JWT_PUBLIC_KEY") {
			t.Fatalf("Validate with key %q: %v", bad, err)
		}
	}
	cfg := DefaultConfig()
	cfg.JWTSecret, cfg.JWTPublicKey = "s", authPEM(t, edPub)
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("secret and key: %v", err)
	}
}

func TestTokenFrom(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		target string
		header http.Header
		want   string
	}{
		{"none", "/ws", nil, ""},
		{"subprotocol", "/ws", http.Header{"Sec-Websocket-Protocol": {"huddle.v1, bearer.a.b.c"}}, "a.b.c"},
		{"subprotocol in a second header line", "/ws", http.Header{"Sec-Websocket-Protocol": {"huddle.v1", "bearer.a.b.c"}}, "a.b.c"},
		{"authorization", "/ws", http.Header{"Authorization": {"Bearer a.b.c"}}, "a.b.c"},
		{"authorization, scheme case and spaces", "/ws", http.Header{"Authorization": {"bEaReR   a.b.c "}}, "a.b.c"},
		{"basic is no token", "/ws", http.Header{"Authorization": {"Basic a.b.c"}}, ""},
		{"query", "/ws?token=a.b.c", nil, "a.b.c"},
		{"subprotocol first", "/ws?token=q", http.Header{"Sec-Websocket-Protocol": {"huddle.v1, bearer.s"}, "Authorization": {"Bearer h"}}, "s"},
		{"header before query", "/ws?token=q", http.Header{"Authorization": {"Bearer h"}}, "h"},
	}
	for _, tc := range cases {
		r := httptest.NewRequest(http.MethodGet, tc.target, nil)
		for k, vs := range tc.header {
			r.Header[k] = vs
		}
		if got := tokenFrom(r); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestOriginPolicy(t *testing.T) {
	t.Parallel()
	check := func(list []string, host, origin string) bool {
		p, err := newOriginPolicy(list)
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodGet, "http://"+host+"/ws", nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		return p.check(r)
	}
	cases := []struct {
		list   []string
		host   string
		origin string
		want   bool
	}{
		{nil, "h.example:8080", "", true},
		{nil, "h.example:8080", "https://h.example:8080", true},
		{nil, "h.example:8080", "https://H.EXAMPLE:8080", true},
		{nil, "h.example:8080", "https://h.example", false},
		{nil, "h.example:8080", "https://evil.example", false},
		{nil, "h.example:8080", "null", false},
		{nil, "h.example:8080", "h.example:8080", false},
		{[]string{"https://a.example"}, "h.example", "https://a.example", true},
		{[]string{"https://a.example/"}, "h.example", "https://a.example", true},
		{[]string{"https://a.example"}, "h.example", "https://h.example", false},
		{[]string{"https://a.example"}, "h.example", "", true},
		{[]string{" https://a.example ", ""}, "h.example", "https://a.example", true},
		{[]string{"*"}, "h.example", "https://anything", true},
		{[]string{"https://a.example", "*"}, "h.example", "null", true},
	}
	for _, tc := range cases {
		if got := check(tc.list, tc.host, tc.origin); got != tc.want {
			t.Errorf("list %q host %s origin %q: %v, want %v", tc.list, tc.host, tc.origin, got, tc.want)
		}
	}
	for _, bad := range []string{"a.example", "https://a.example/path", "https://", "://x"} {
		if _, err := newOriginPolicy([]string{bad}); err == nil || !strings.Contains(err.Error(), "HUDDLE_ALLOWED_ORIGINS") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// FuzzVerify feeds arbitrary strings to the token verifier: it must never
// panic, must give a one-line reason without echoing the token, and may
// accept only what the configured secret signed.
func FuzzVerify(f *testing.F) {
	v := authVerifier(f, Config{JWTSecret: authSecret})
	other := authVerifier(f, Config{JWTSecret: "another secret, also long enough"})
	f.Add(authSign(f, jwt.SigningMethodHS256, []byte(authSecret), authClaims(nil)))
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.verify(token)
		if err != nil {
			reason := tokenError(err)
			if reason == "" || strings.ContainsAny(reason, "\r\n") {
				t.Fatalf("reason %q", reason)
			}
			if len(token) > 16 && strings.Contains(reason, token) {
				t.Fatalf("the reason echoes the token")
			}
			return
		}
		if c == nil {
			t.Fatal("accepted with no claims")
		}
		if _, err := other.verify(token); err == nil {
			t.Fatalf("accepted under two secrets: %q", token)
		}
	})
}
