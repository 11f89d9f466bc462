package signal

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// TokenLeeway is the clock skew tolerated on exp and nbf.
const TokenLeeway = 30 * time.Second

// Claims are what a verified join token grants.
type Claims struct {
	// Subject identifies the user; it is the default display name.
	Subject string
	// Room is the one room the token may join, or "*" for any.
	Room string
	// Name, when set, is the display name, overriding join.name.
	Name string
}

// allows reports whether the claims admit room.
func (c *Claims) allows(room wire.RoomID) bool {
	return c.Room == "*" || c.Room == string(room)
}

// tokenClaims is the JWT body huddle reads and writes.
type tokenClaims struct {
	jwt.RegisteredClaims
	Room string `json:"room,omitempty"`
	Name string `json:"name,omitempty"`
}

// verifier checks join tokens: one key, one algorithm.
type verifier struct {
	key    any
	method string
	parser *jwt.Parser
}

// errTokenAlgorithm marks a token signed with another algorithm than the
// configured key's (alg none, or the RS256-to-HS256 key confusion).
var errTokenAlgorithm = errors.New("token algorithm not accepted")

// newVerifier builds the token verifier of cfg, or nil when tokens are not
// required (no key configured). now is the clock exp and nbf are checked
// against.
func newVerifier(cfg *Config, now func() time.Time) (*verifier, error) {
	switch {
	case cfg.JWTSecret != "":
		method := jwt.SigningMethodHS256.Alg()
		return &verifier{key: []byte(cfg.JWTSecret), method: method, parser: newParser(method, now)}, nil
	case cfg.JWTPublicKey != "":
		key, method, err := loadPublicKey(cfg.JWTPublicKey)
		if err != nil {
			return nil, fmt.Errorf("HUDDLE_JWT_PUBLIC_KEY: %w", err)
		}
		return &verifier{key: key, method: method, parser: newParser(method, now)}, nil
	}
	return nil, nil
}

func newParser(method string, now func() time.Time) *jwt.Parser {
	return jwt.NewParser(
		jwt.WithValidMethods([]string{method}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(TokenLeeway),
		jwt.WithTimeFunc(now),
	)
}

// loadPublicKey reads a PEM public key (the text itself, or a file's path)
// and pins the algorithm its type calls for.
func loadPublicKey(v string) (any, string, error) {
	pemText := []byte(v)
	if !strings.HasPrefix(strings.TrimSpace(v), "-----BEGIN") {
		b, err := os.ReadFile(v)
		if err != nil {
			return nil, "", fmt.Errorf("neither PEM text nor a readable file: %w", err)
		}
		pemText = b
	}
	if k, err := jwt.ParseRSAPublicKeyFromPEM(pemText); err == nil {
		return k, jwt.SigningMethodRS256.Alg(), nil
	}
	if k, err := jwt.ParseECPublicKeyFromPEM(pemText); err == nil {
		return k, ecMethod(k), nil
	}
	if k, err := jwt.ParseEdPublicKeyFromPEM(pemText); err == nil {
		return k, jwt.SigningMethodEdDSA.Alg(), nil
	}
	return nil, "", errors.New("not an RSA, ECDSA or Ed25519 public key in PEM")
}

func ecMethod(k *ecdsa.PublicKey) string {
	switch k.Curve {
	case elliptic.P384():
		return jwt.SigningMethodES384.Alg()
	case elliptic.P521():
		return jwt.SigningMethodES512.Alg()
	}
	return jwt.SigningMethodES256.Alg()
}

// verify checks a token and returns its claims.
func (v *verifier) verify(token string) (*Claims, error) {
	var tc tokenClaims
	t, err := v.parser.ParseWithClaims(token, &tc, func(*jwt.Token) (any, error) {
		return v.key, nil
	})
	if err != nil {
		// The parser reports another algorithm as a bad signature; say
		// what it is, so an integrator sees why at once.
		if t != nil && !errors.Is(err, jwt.ErrTokenMalformed) && (t.Method == nil || t.Method.Alg() != v.method) {
			return nil, fmt.Errorf("%w: %w", errTokenAlgorithm, err)
		}
		return nil, err
	}
	return &Claims{Subject: tc.Subject, Room: tc.Room, Name: tc.Name}, nil
}

// tokenFrom finds the token a handshake presents: a bearer.<JWT>
// subprotocol (browsers), an Authorization: Bearer header, or ?token=.
func tokenFrom(r *http.Request) string {
	for _, p := range websocketProtocols(r) {
		if t, ok := strings.CutPrefix(p, wire.BearerPrefix); ok {
			return t
		}
	}
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, t, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(t)
		}
	}
	return r.URL.Query().Get("token")
}

// websocketProtocols lists the subprotocols a handshake offers.
func websocketProtocols(r *http.Request) []string {
	var out []string
	for _, h := range r.Header.Values("Sec-Websocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// tokenError is the one-line reason a handshake with a bad token gets.
func tokenError(err error) string {
	switch {
	case errors.Is(err, errTokenAlgorithm):
		return "token algorithm not accepted"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token not valid yet"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "token has no exp claim"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "token signature invalid"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "token algorithm not accepted"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "token malformed"
	}
	return "token invalid"
}

// MintToken signs a join token with an HS256 secret: what an app backend
// does for its users (see the README), and `huddle token` for developers.
func MintToken(secret []byte, c Claims, ttl time.Duration, now time.Time) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("no secret: set HUDDLE_JWT_SECRET")
	}
	tc := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   c.Subject,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Room: c.Room,
		Name: c.Name,
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, tc).SignedString(secret)
}

// originPolicy decides which browser pages may connect.
type originPolicy struct {
	any     bool
	allowed map[string]bool // normalised origins
}

func newOriginPolicy(list []string) (*originPolicy, error) {
	p := &originPolicy{allowed: make(map[string]bool)}
	var errs []error
	for _, o := range list {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if o == "*" {
			p.any = true
			continue
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			errs = append(errs, fmt.Errorf("HUDDLE_ALLOWED_ORIGINS: %q is not an origin like https://app.example.com", o))
			continue
		}
		p.allowed[normalOrigin(u)] = true
	}
	return p, errors.Join(errs...)
}

// check applies the policy: no Origin (not a browser) passes; a list
// admits its origins; with no list, only the server's own origin passes.
func (p *originPolicy) check(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || p.any {
		return true
	}
	if len(p.allowed) == 0 {
		return SameOrigin(r)
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	return p.allowed[normalOrigin(u)]
}

// normalOrigin writes an origin the way browsers send it: lower case, no
// default port, no path.
func normalOrigin(u *url.URL) string {
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host
}
