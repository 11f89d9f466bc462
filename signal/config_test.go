package signal_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/huddle-rtc/huddle/signal"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(*signal.Config)
		want   []string // variables the error must name; none: valid
	}{
		{name: "defaults"},
		{name: "smallest valid", change: func(c *signal.Config) {
			*c = signal.Config{MaxPeersPerRoom: 1, MaxMessageBytes: 1024, ResumeGrace: 0, PingInterval: 100 * time.Millisecond,
				JoinTimeout: time.Nanosecond, RateLimit: 0.001, RateBurst: 1, SendQueue: 1, WriteTimeout: time.Nanosecond}
		}},
		{name: "largest send queue", change: func(c *signal.Config) { c.SendQueue = signal.ResumeQueue - 1 }},
		{name: "peers 0", change: func(c *signal.Config) { c.MaxPeersPerRoom = 0 }, want: []string{"HUDDLE_MAX_PEERS_PER_ROOM"}},
		{name: "message bytes 1023", change: func(c *signal.Config) { c.MaxMessageBytes = 1023 }, want: []string{"HUDDLE_MAX_MESSAGE_BYTES"}},
		{name: "grace negative", change: func(c *signal.Config) { c.ResumeGrace = -time.Second }, want: []string{"HUDDLE_RESUME_GRACE"}},
		{name: "ping 99ms", change: func(c *signal.Config) { c.PingInterval = 99 * time.Millisecond }, want: []string{"HUDDLE_PING_INTERVAL"}},
		{name: "join timeout 0", change: func(c *signal.Config) { c.JoinTimeout = 0 }, want: []string{"HUDDLE_JOIN_TIMEOUT"}},
		{name: "rate 0", change: func(c *signal.Config) { c.RateLimit = 0 }, want: []string{"HUDDLE_RATE_LIMIT"}},
		{name: "rate negative", change: func(c *signal.Config) { c.RateLimit = -1 }, want: []string{"HUDDLE_RATE_LIMIT"}},
		{name: "burst 0", change: func(c *signal.Config) { c.RateBurst = 0 }, want: []string{"HUDDLE_RATE_BURST"}},
		{name: "send queue 0", change: func(c *signal.Config) { c.SendQueue = 0 }, want: []string{"HUDDLE_SEND_QUEUE"}},
		{name: "send queue as big as the resume queue", change: func(c *signal.Config) { c.SendQueue = signal.ResumeQueue }, want: []string{"HUDDLE_SEND_QUEUE"}},
		{name: "write timeout 0", change: func(c *signal.Config) { c.WriteTimeout = 0 }, want: []string{"HUDDLE_WRITE_TIMEOUT"}},
		{name: "every problem at once", change: func(c *signal.Config) { *c = signal.Config{ResumeGrace: -1, RateLimit: -1} }, want: []string{
			"HUDDLE_MAX_PEERS_PER_ROOM", "HUDDLE_MAX_MESSAGE_BYTES", "HUDDLE_RESUME_GRACE", "HUDDLE_PING_INTERVAL",
			"HUDDLE_JOIN_TIMEOUT", "HUDDLE_RATE_LIMIT", "HUDDLE_RATE_BURST", "HUDDLE_SEND_QUEUE", "HUDDLE_WRITE_TIMEOUT",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(tc.change)
			err := cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %+v", cfg)
			}
			for _, v := range tc.want {
				if !strings.Contains(err.Error(), v) {
					t.Errorf("error %q does not name %s", err, v)
				}
			}
			var joined interface{ Unwrap() []error }
			if !errors.As(err, &joined) || len(joined.Unwrap()) != len(tc.want) {
				t.Errorf("error %q: want %d joined problems", err, len(tc.want))
			}
			if _, err := signal.New(cfg, signal.Options{}); err == nil {
				t.Errorf("New accepted an invalid config")
			}
		})
	}
}

// TestConfigEnv: the env tags' defaults are DefaultConfig, and variables
// parse under the HUDDLE_ prefix the server command uses.
func TestConfigEnv(t *testing.T) {
	t.Parallel()
	got, err := env.ParseAsWithOptions[signal.Config](env.Options{Prefix: "HUDDLE_", Environment: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, signal.DefaultConfig()) {
		t.Errorf("env defaults %+v\nDefaultConfig  %+v", got, signal.DefaultConfig())
	}
	got, err = env.ParseAsWithOptions[signal.Config](env.Options{Prefix: "HUDDLE_", Environment: map[string]string{
		"HUDDLE_MAX_PEERS_PER_ROOM": "4", "HUDDLE_RESUME_GRACE": "2m", "HUDDLE_RATE_LIMIT": "2.5", "HUDDLE_MAX_MESSAGE_BYTES": "2048",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got.MaxPeersPerRoom != 4 || got.ResumeGrace != 2*time.Minute || got.RateLimit != 2.5 || got.MaxMessageBytes != 2048 {
		t.Errorf("parsed %+v", got)
	}
}
