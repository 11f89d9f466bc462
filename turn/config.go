package turn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Config configures the bundled TURN server and the ICE servers handed to
// peers. Its env tags are read under the HUDDLE_ prefix by the server command.
type Config struct {
	// Enabled runs the bundled TURN server. When false, ICE servers still
	// list STUNURLs and TURNURLs (an external coturn sharing the secret).
	Enabled bool `env:"TURN_ENABLED" envDefault:"true"`
	// Addr is the listen address for TURN over UDP and TCP, on the same port.
	Addr string `env:"TURN_ADDR" envDefault:":3478"`
	// TLSAddr, TLSCert and TLSKey enable TURN over TLS (turns:) when all set.
	TLSAddr string `env:"TURN_TLS_ADDR"`
	TLSCert string `env:"TURN_TLS_CERT"`
	TLSKey  string `env:"TURN_TLS_KEY"`
	// PublicIP is the relay address given to peers (IPv4: pion/turn v4
	// relays IPv4 only). Unset: the host's first non-loopback IPv4 address.
	PublicIP string `env:"TURN_PUBLIC_IP"`
	// Host is the host put in the turn:/turns: URLs. Unset: PublicIP. Set it
	// to the certificate's DNS name when turns: is on, since browsers check it.
	Host string `env:"TURN_HOST"`
	// RelayPorts is the relay port range, "MIN-MAX".
	RelayPorts string `env:"TURN_RELAY_PORTS" envDefault:"49152-65535"`
	// Realm is the STUN long-term credential realm.
	Realm string `env:"TURN_REALM" envDefault:"huddle"`
	// Secret is the TURN REST shared secret (coturn's static-auth-secret).
	// Unset: a random one per process, which no other node can share.
	Secret string `env:"TURN_SECRET"`
	// SecretFile holds the secret read from the file HUDDLE_TURN_SECRET_FILE
	// names; a trailing newline is ignored. Exclusive with Secret.
	SecretFile string `env:"TURN_SECRET_FILE,file"`
	// CredentialTTL is the lifetime of minted credentials, checked when an
	// allocation is created.
	CredentialTTL time.Duration `env:"TURN_CREDENTIAL_TTL" envDefault:"12h"`
	// MaxAllocations bounds the live allocations of one credential user
	// (one peer id); one more is answered 486.
	MaxAllocations int `env:"TURN_MAX_ALLOCATIONS" envDefault:"10"`
	// AllowPeers re-opens ranges of the default deny list (CIDRs or IPs).
	AllowPeers []string `env:"TURN_ALLOW_PEERS"`
	// DenyPeers adds ranges to the deny list; they win over AllowPeers.
	DenyPeers []string `env:"TURN_DENY_PEERS"`
	// STUNURLs are external STUN servers (stun:/stuns:) for iceServers.
	STUNURLs []string `env:"STUN_URLS"`
	// TURNURLs are external TURN servers (turn:/turns:) sharing Secret.
	TURNURLs []string `env:"TURN_URLS"`
	// UDPSockets is the number of UDP sockets bound to Addr with
	// SO_REUSEPORT, each served by its own goroutine (Linux only); 0:
	// automatic (DefaultUDPSockets).
	UDPSockets int `env:"TURN_UDP_SOCKETS" envDefault:"0"`
}

// DefaultConfig returns the configuration with every default applied.
func DefaultConfig() Config {
	return Config{
		Enabled:        true,
		Addr:           ":3478",
		RelayPorts:     "49152-65535",
		Realm:          "huddle",
		CredentialTTL:  12 * time.Hour,
		MaxAllocations: 10,
	}
}

// DefaultUDPSockets is the number of UDP sockets when Config.UDPSockets is
// 0: on Linux one per usable core and at least two (two sockets' receive
// buffers and readers keep a burst from overflowing one socket even on
// one core: lossless at 92k relayed packets/s where one socket lost 1%,
// docs/benchmarks.md); elsewhere one.
func DefaultUDPSockets() int {
	if !reusePortSupported {
		return 1
	}
	return min(max(2, runtime.GOMAXPROCS(0)), 64)
}

// minSecretLen is the shortest secret accepted: every peer receives an HMAC
// of it, so a short one can be brute-forced offline and then forge any
// credential.
const minSecretLen = 16

// Validate reports every invalid setting at once, each naming its variable.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("HUDDLE_%s: %s", name, fmt.Sprintf(format, args...)))
	}
	c.validateCredentials(bad)
	c.validateURLs(bad)
	if c.Enabled {
		c.validateServer(bad)
	}
	return errors.Join(errs...)
}

type badFunc func(name, format string, args ...any)

func (c *Config) validateCredentials(bad badFunc) {
	if c.Secret != "" && c.SecretFile != "" {
		bad("TURN_SECRET", "set HUDDLE_TURN_SECRET or HUDDLE_TURN_SECRET_FILE, not both")
	}
	secret := c.secret()
	switch {
	case secret != "" && len(secret) < minSecretLen:
		bad("TURN_SECRET", "must be at least %d bytes, got %d", minSecretLen, len(secret))
	case secret == "" && len(cleanList(c.TURNURLs)) > 0:
		bad("TURN_SECRET", "required when HUDDLE_TURN_URLS names external servers: they must share it")
	}
	if c.CredentialTTL <= 0 {
		bad("TURN_CREDENTIAL_TTL", "must be positive, got %s", c.CredentialTTL)
	}
}

func (c *Config) validateURLs(bad badFunc) {
	for _, u := range cleanList(c.STUNURLs) {
		if err := checkURL(u, "stun:", "stuns:"); err != nil {
			bad("STUN_URLS", "%q: %v", u, err)
		}
	}
	for _, u := range cleanList(c.TURNURLs) {
		if err := checkURL(u, "turn:", "turns:"); err != nil {
			bad("TURN_URLS", "%q: %v", u, err)
		}
	}
}

func (c *Config) validateServer(bad badFunc) {
	if err := checkListenAddr(c.Addr); err != nil {
		bad("TURN_ADDR", "%v", err)
	}
	tls := [3]bool{c.TLSAddr != "", c.TLSCert != "", c.TLSKey != ""}
	if tls != [3]bool{} && tls != [3]bool{true, true, true} {
		bad("TURN_TLS_ADDR", "HUDDLE_TURN_TLS_ADDR, HUDDLE_TURN_TLS_CERT and HUDDLE_TURN_TLS_KEY must be set together")
	}
	if c.TLSAddr != "" {
		if err := checkListenAddr(c.TLSAddr); err != nil {
			bad("TURN_TLS_ADDR", "%v", err)
		}
	}
	if c.PublicIP != "" {
		if _, err := parseRelayIP(c.PublicIP); err != nil {
			bad("TURN_PUBLIC_IP", "%v", err)
		}
	}
	if c.Host != "" && !validHost(c.Host) {
		bad("TURN_HOST", "%q is neither a host name nor an IP address", c.Host)
	}
	if _, _, err := parsePortRange(c.RelayPorts); err != nil {
		bad("TURN_RELAY_PORTS", "%v", err)
	}
	if c.Realm == "" || strings.ContainsAny(c.Realm, "\"\\") {
		bad("TURN_REALM", "must be non-empty and hold no quote or backslash, got %q", c.Realm)
	}
	if c.MaxAllocations < 1 {
		bad("TURN_MAX_ALLOCATIONS", "must be at least 1, got %d", c.MaxAllocations)
	}
	if c.UDPSockets < 0 || c.UDPSockets > 64 {
		bad("TURN_UDP_SOCKETS", "must be between 1 and 64, or 0 (automatic), got %d", c.UDPSockets)
	} else if c.UDPSockets > 1 && !reusePortSupported {
		bad("TURN_UDP_SOCKETS", "several sockets on one port need SO_REUSEPORT (Linux), got %d", c.UDPSockets)
	}
	if _, err := parsePrefixes(c.AllowPeers); err != nil {
		bad("TURN_ALLOW_PEERS", "%v", err)
	}
	if _, err := parsePrefixes(c.DenyPeers); err != nil {
		bad("TURN_DENY_PEERS", "%v", err)
	}
}

// validHost accepts an IP address or a DNS name (letters, digits, hyphens
// and dots), the host of a turn: URL.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if len(h) > 253 || strings.HasPrefix(h, ".") || strings.HasPrefix(h, "-") {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// secret returns the configured secret, from the variable or the file.
func (c *Config) secret() string {
	if c.SecretFile != "" {
		return strings.TrimRight(c.SecretFile, "\r\n")
	}
	return c.Secret
}

func checkURL(u, scheme, secureScheme string) error {
	rest, ok := strings.CutPrefix(u, scheme)
	if !ok {
		rest, ok = strings.CutPrefix(u, secureScheme)
	}
	switch {
	case !ok:
		return fmt.Errorf("must start with %s or %s", scheme, secureScheme)
	case rest == "" || strings.ContainsAny(rest, " \t\r\n/"):
		return errors.New("must name a host, with no spaces or slashes")
	}
	return nil
}

func checkListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%q: host must be an IP address or empty", addr)
		}
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return fmt.Errorf("%q: bad port", addr)
	}
	return nil
}

// parseRelayIP parses HUDDLE_TURN_PUBLIC_IP: an IPv4 unicast address.
func parseRelayIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	ip = ip.Unmap()
	switch {
	case !ip.Is4():
		return netip.Addr{}, fmt.Errorf("%q: must be IPv4 (pion/turn v4 relays IPv4 only)", s)
	case ip.IsUnspecified() || ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return netip.Addr{}, fmt.Errorf("%q: must be a unicast address", s)
	}
	return ip, nil
}

// parsePortRange parses "MIN-MAX", 1 <= MIN <= MAX <= 65535.
func parsePortRange(s string) (minPort, maxPort uint16, err error) {
	lo, hi, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q: want MIN-MAX", s)
	}
	a, errA := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	b, errB := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if errA != nil || errB != nil || a == 0 || a > b {
		return 0, 0, fmt.Errorf("%q: want MIN-MAX with 1 <= MIN <= MAX <= 65535", s)
	}
	return uint16(a), uint16(b), nil
}

// parsePrefixes parses a CIDR list; a bare address is a one-address prefix.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, s := range cleanList(list) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			ip, ipErr := netip.ParseAddr(s)
			if ipErr != nil || ip.Zone() != "" {
				errs = append(errs, fmt.Errorf("%q is not a CIDR", s))
				continue
			}
			p = netip.PrefixFrom(ip, ip.BitLen())
		}
		out = append(out, normalizePrefix(p))
	}
	return out, errors.Join(errs...)
}

// cleanList trims the entries of a comma list and drops empty ones.
func cleanList(list []string) []string {
	out := make([]string, 0, len(list))
	for _, s := range list {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
