package signal

import (
	"errors"
	"fmt"
	"time"
)

// Config is the hub's configuration. Its env tags are read under the
// HUDDLE_ prefix by the server command.
type Config struct {
	// MaxPeersPerRoom is the room size limit.
	MaxPeersPerRoom int `env:"MAX_PEERS_PER_ROOM" envDefault:"16"`
	// MaxMessageBytes is the frame size limit; a larger frame closes 1009.
	MaxMessageBytes int64 `env:"MAX_MESSAGE_BYTES" envDefault:"65536"`
	// ResumeGrace is how long a vanished peer stays in its room and may resume.
	ResumeGrace time.Duration `env:"RESUME_GRACE" envDefault:"15s"`
	// PingInterval is how often the server pings; a connection silent for two
	// intervals is treated as vanished.
	PingInterval time.Duration `env:"PING_INTERVAL" envDefault:"20s"`
	// JoinTimeout is how long a new connection may take to send join (4008).
	JoinTimeout time.Duration `env:"JOIN_TIMEOUT" envDefault:"10s"`
	// RateLimit is each peer's sustained message rate, per second.
	RateLimit float64 `env:"RATE_LIMIT" envDefault:"50"`
	// RateBurst is the token bucket's depth: an ICE trickle burst must fit.
	RateBurst int `env:"RATE_BURST" envDefault:"200"`
	// SendQueue bounds the frames waiting for one connection's writer; a
	// client that lets it overflow is closed with 4011.
	// The default, the most the resume queue allows, holds one peer's whole
	// RateBurst: the hub reads frames faster than it writes them (one
	// syscall per frame), so a smaller queue lets a peer's allowed ICE
	// burst close a receiver that is reading.
	SendQueue int `env:"SEND_QUEUE" envDefault:"255"`
	// WriteTimeout bounds every write to a socket.
	WriteTimeout time.Duration `env:"WRITE_TIMEOUT" envDefault:"10s"`

	// JWTSecret is the HS256 key of join tokens; unset (and no public key):
	// no authentication.
	JWTSecret string `env:"JWT_SECRET"`
	// JWTPublicKey is a PEM public key (the text or a file's path) for
	// RS256, ES256/384/512 or EdDSA tokens, the algorithm pinned by its type.
	JWTPublicKey string `env:"JWT_PUBLIC_KEY"`
	// AllowedOrigins lists the browser origins that may connect, or "*";
	// empty: the server's own origin only.
	AllowedOrigins []string `env:"ALLOWED_ORIGINS"`
	// MaxConnsPerIP caps open connections per address (IPv6 per /64); 0: off.
	MaxConnsPerIP int `env:"MAX_CONNS_PER_IP" envDefault:"256"`
	// HandshakeRate caps upgrades per second per address (burst twice
	// that); 0: off.
	HandshakeRate float64 `env:"HANDSHAKE_RATE" envDefault:"50"`
	// TrustedProxies are the CIDRs whose X-Forwarded-For is believed.
	TrustedProxies []string `env:"TRUSTED_PROXIES"`
	// Compression enables permessage-deflate (RFC 7692); the size limit
	// then applies to the inflated message.
	Compression bool `env:"COMPRESSION" envDefault:"false"`

	// AdminToken is the bearer token of the room API (Server.API); empty:
	// the API is off and answers 404.
	AdminToken string `env:"ADMIN_TOKEN"`
}

// ResumeQueue is how many messages wait for a vanished peer; one more drops
// it as timeout (docs/protocol.md, Resume).
const ResumeQueue = 256

// DefaultConfig returns the configuration with every default applied.
func DefaultConfig() Config {
	return Config{
		MaxPeersPerRoom: 16,
		MaxMessageBytes: 65536,
		ResumeGrace:     15 * time.Second,
		PingInterval:    20 * time.Second,
		JoinTimeout:     10 * time.Second,
		RateLimit:       50,
		RateBurst:       200,
		SendQueue:       ResumeQueue - 1,
		WriteTimeout:    10 * time.Second,
		MaxConnsPerIP:   256,
		HandshakeRate:   50,
	}
}

// Validate reports every invalid setting at once, each naming its variable.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("HUDDLE_%s: %s", name, fmt.Sprintf(format, args...)))
	}
	if c.MaxPeersPerRoom < 1 {
		bad("MAX_PEERS_PER_ROOM", "must be at least 1, got %d", c.MaxPeersPerRoom)
	}
	if c.MaxMessageBytes < 1024 {
		bad("MAX_MESSAGE_BYTES", "must be at least 1024, got %d", c.MaxMessageBytes)
	}
	if c.ResumeGrace < 0 {
		bad("RESUME_GRACE", "must not be negative, got %s", c.ResumeGrace)
	}
	if c.PingInterval < 100*time.Millisecond {
		bad("PING_INTERVAL", "must be at least 100ms, got %s", c.PingInterval)
	}
	if c.JoinTimeout <= 0 {
		bad("JOIN_TIMEOUT", "must be positive, got %s", c.JoinTimeout)
	}
	if c.RateLimit <= 0 {
		bad("RATE_LIMIT", "must be positive, got %v", c.RateLimit)
	}
	if c.RateBurst < 1 {
		bad("RATE_BURST", "must be at least 1, got %d", c.RateBurst)
	}
	if c.SendQueue < 1 || c.SendQueue >= ResumeQueue {
		bad("SEND_QUEUE", "must be between 1 and %d, got %d", ResumeQueue-1, c.SendQueue)
	}
	if c.WriteTimeout <= 0 {
		bad("WRITE_TIMEOUT", "must be positive, got %s", c.WriteTimeout)
	}
	if c.MaxConnsPerIP < 0 {
		bad("MAX_CONNS_PER_IP", "must not be negative (0 turns the limit off), got %d", c.MaxConnsPerIP)
	}
	if c.HandshakeRate < 0 {
		bad("HANDSHAKE_RATE", "must not be negative (0 turns the limit off), got %v", c.HandshakeRate)
	}
	if c.JWTSecret != "" && c.JWTPublicKey != "" {
		bad("JWT_PUBLIC_KEY", "set either HUDDLE_JWT_SECRET or HUDDLE_JWT_PUBLIC_KEY, not both")
	}
	if _, err := newVerifier(c, time.Now); err != nil {
		errs = append(errs, err)
	}
	if _, err := newOriginPolicy(c.AllowedOrigins); err != nil {
		errs = append(errs, err)
	}
	if _, err := parsePrefixes(c.TrustedProxies); err != nil {
		bad("TRUSTED_PROXIES", "%v", err)
	}
	return errors.Join(errs...)
}

// AuthRequired reports whether join tokens are required.
func (c *Config) AuthRequired() bool { return c.JWTSecret != "" || c.JWTPublicKey != "" }
