package turn

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
)

func parseEnv(t *testing.T, vars map[string]string) (Config, error) {
	t.Helper()
	return env.ParseAsWithOptions[Config](env.Options{Prefix: "HUDDLE_", Environment: vars})
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := parseEnv(t, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	// env leaves unset lists nil, as DefaultConfig does.
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("parsed defaults\n%+v\nwant DefaultConfig()\n%+v", cfg, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

func TestConfigParse(t *testing.T) {
	t.Parallel()
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("from-a-file-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseEnv(t, map[string]string{
		"HUDDLE_TURN_ENABLED":         "false",
		"HUDDLE_TURN_SECRET_FILE":     secretFile,
		"HUDDLE_TURN_CREDENTIAL_TTL":  "2h",
		"HUDDLE_TURN_ALLOW_PEERS":     "10.0.0.0/8, 192.168.1.7",
		"HUDDLE_TURN_URLS":            "turn:turn.example.com:3478?transport=udp,turns:turn.example.com:443?transport=tcp",
		"HUDDLE_STUN_URLS":            "stun:stun.example.com:3478",
		"HUDDLE_TURN_MAX_ALLOCATIONS": "3",
		"HUDDLE_TURN_RELAY_PORTS":     "50000-50100",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Enabled || cfg.secret() != "from-a-file-0123456789" || cfg.CredentialTTL != 2*time.Hour ||
		len(cfg.AllowPeers) != 2 || len(cfg.TURNURLs) != 2 || cfg.MaxAllocations != 3 {
		t.Fatalf("parsed %+v", cfg)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		mutate  func(*Config)
		wantVar string
	}{
		{"bad addr", func(c *Config) { c.Addr = "3478" }, "HUDDLE_TURN_ADDR"},
		{"host name addr", func(c *Config) { c.Addr = "example.com:3478" }, "HUDDLE_TURN_ADDR"},
		{"half TLS", func(c *Config) { c.TLSAddr = ":5349" }, "HUDDLE_TURN_TLS_ADDR"},
		{"bad TLS addr", func(c *Config) { c.TLSAddr, c.TLSCert, c.TLSKey = "x", "c", "k" }, "HUDDLE_TURN_TLS_ADDR"},
		{"public IP garbage", func(c *Config) { c.PublicIP = "relay.example.com" }, "HUDDLE_TURN_PUBLIC_IP"},
		{"public IP v6", func(c *Config) { c.PublicIP = "2001:db8::1" }, "HUDDLE_TURN_PUBLIC_IP"},
		{"public IP unspecified", func(c *Config) { c.PublicIP = "0.0.0.0" }, "HUDDLE_TURN_PUBLIC_IP"},
		{"host with path", func(c *Config) { c.Host = "turn.example.com/x" }, "HUDDLE_TURN_HOST"},
		{"ports reversed", func(c *Config) { c.RelayPorts = "60000-50000" }, "HUDDLE_TURN_RELAY_PORTS"},
		{"ports zero", func(c *Config) { c.RelayPorts = "0-100" }, "HUDDLE_TURN_RELAY_PORTS"},
		{"ports one number", func(c *Config) { c.RelayPorts = "50000" }, "HUDDLE_TURN_RELAY_PORTS"},
		{"ports too big", func(c *Config) { c.RelayPorts = "50000-70000" }, "HUDDLE_TURN_RELAY_PORTS"},
		{"empty realm", func(c *Config) { c.Realm = "" }, "HUDDLE_TURN_REALM"},
		{"short secret", func(c *Config) { c.Secret = "short" }, "HUDDLE_TURN_SECRET"},
		{"two secrets", func(c *Config) { c.Secret, c.SecretFile = testSecret, testSecret }, "HUDDLE_TURN_SECRET"},
		{"external TURN without secret", func(c *Config) { c.TURNURLs = []string{"turn:x:3478"} }, "HUDDLE_TURN_SECRET"},
		{"zero TTL", func(c *Config) { c.CredentialTTL = 0 }, "HUDDLE_TURN_CREDENTIAL_TTL"},
		{"zero quota", func(c *Config) { c.MaxAllocations = 0 }, "HUDDLE_TURN_MAX_ALLOCATIONS"},
		{"negative sockets", func(c *Config) { c.UDPSockets = -1 }, "HUDDLE_TURN_UDP_SOCKETS"},
		{"bad allow", func(c *Config) { c.AllowPeers = []string{"10.0.0.0/33"} }, "HUDDLE_TURN_ALLOW_PEERS"},
		{"bad deny", func(c *Config) { c.DenyPeers = []string{"localhost"} }, "HUDDLE_TURN_DENY_PEERS"},
		{"STUN URL scheme", func(c *Config) { c.STUNURLs = []string{"turn:x"} }, "HUDDLE_STUN_URLS"},
		{"TURN URL scheme", func(c *Config) { c.Secret, c.TURNURLs = testSecret, []string{"http://x"} }, "HUDDLE_TURN_URLS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := DefaultConfig()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.wantVar+":") {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.wantVar)
			}
		})
	}
}

func TestConfigValidateReportsAll(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.Addr, cfg.RelayPorts, cfg.MaxAllocations = "nope", "nope", 0
	err := cfg.Validate()
	for _, v := range []string{"HUDDLE_TURN_ADDR", "HUDDLE_TURN_RELAY_PORTS", "HUDDLE_TURN_MAX_ALLOCATIONS"} {
		if err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("Validate() = %v, want it to name %s", err, v)
		}
	}
}

func TestConfigDisabledSkipsServerSettings(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.Enabled = false
	cfg.Addr, cfg.RelayPorts = "unused", "unused"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a disabled server's settings were validated: %v", err)
	}
}
