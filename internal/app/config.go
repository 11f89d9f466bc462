package app

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/redis/go-redis/v9"

	"github.com/huddle-rtc/huddle/client"
	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/turn"
)

// EnvPrefix starts every environment variable huddle reads.
const EnvPrefix = "HUDDLE_"

// Config is the whole server's configuration: the process's own settings
// and each component's Config, read from HUDDLE_* environment variables.
type Config struct {
	// Addr is the HTTP and WebSocket listen address.
	Addr string `env:"ADDR" envDefault:":8080"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
	// LogFormat is text or json.
	LogFormat string `env:"LOG_FORMAT" envDefault:"text"`
	// MetricsAddr, when set, serves /metrics on its own listener instead of
	// HUDDLE_ADDR (keep it off the public internet).
	MetricsAddr string `env:"METRICS_ADDR"`
	// Pprof serves Go's profiler (/debug/pprof/) on the HUDDLE_METRICS_ADDR
	// listener, never on the public one.
	Pprof bool `env:"PPROF"`
	// DrainTimeout bounds a graceful shutdown.
	DrainTimeout time.Duration `env:"DRAIN_TIMEOUT" envDefault:"10s"`
	// ProbeInterval, when positive, runs the relay self-probe that often
	// (probe.go); 0 turns it off.
	ProbeInterval time.Duration `env:"PROBE_INTERVAL"`
	// PublicURL is the signaling URL clients use (ws, wss, http or https),
	// which the probe dials; unset: the local listener.
	PublicURL string `env:"PUBLIC_URL"`
	// JWTSecretFile is the content of the file HUDDLE_JWT_SECRET_FILE names
	// (a trailing newline ignored): HUDDLE_JWT_SECRET kept out of the
	// environment. It fills Signal.JWTSecret.
	JWTSecretFile string `env:"JWT_SECRET_FILE,file"`
	// AdminTokenFile is the content of the file HUDDLE_ADMIN_TOKEN_FILE
	// names (a trailing newline ignored): HUDDLE_ADMIN_TOKEN kept out of
	// the environment. It fills Signal.AdminToken.
	AdminTokenFile string `env:"ADMIN_TOKEN_FILE,file"`
	// TLSCert and TLSKey, both set, serve https and wss directly.
	TLSCert string `env:"TLS_CERT"`
	TLSKey  string `env:"TLS_KEY"`
	// RedisURL, when set, makes this node one of a cluster sharing rooms
	// through that Redis server (redis:// or rediss://).
	RedisURL string `env:"REDIS_URL"`
	// NodeID names this node in Redis, logs and metrics; random when unset.
	NodeID string `env:"NODE_ID"`
	// RedisPrefix starts every Redis key and channel of the cluster.
	RedisPrefix string `env:"REDIS_PREFIX" envDefault:"huddle"`

	Signal signal.Config
	TURN   turn.Config
}

// LoadConfig reads the configuration from environ (KEY=VALUE pairs as in
// os.Environ) and validates it, reporting every problem at once.
func LoadConfig(environ []string) (Config, error) {
	vars := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	cfg, err := env.ParseAsWithOptions[Config](env.Options{Prefix: EnvPrefix, Environment: vars})
	if cfg.JWTSecretFile != "" {
		if cfg.Signal.JWTSecret != "" {
			err = errors.Join(err, errors.New("HUDDLE_JWT_SECRET_FILE: set either it or HUDDLE_JWT_SECRET, not both"))
		}
		cfg.Signal.JWTSecret = strings.TrimRight(cfg.JWTSecretFile, "\r\n")
		cfg.JWTSecretFile = ""
	}
	if cfg.AdminTokenFile != "" {
		if cfg.Signal.AdminToken != "" {
			err = errors.Join(err, errors.New("HUDDLE_ADMIN_TOKEN_FILE: set either it or HUDDLE_ADMIN_TOKEN, not both"))
		}
		cfg.Signal.AdminToken = strings.TrimRight(cfg.AdminTokenFile, "\r\n")
		cfg.AdminTokenFile = ""
	}
	if err == nil {
		err = cfg.Validate()
	} else {
		// Report the values that did not parse by their variables, then
		// what else is wrong with the fields that did.
		parsed, bad := explainParseErrors(err, vars)
		err = errors.Join(parsed, withoutVars(cfg.Validate(), bad))
	}
	if err != nil {
		return Config{}, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, nil
}

// explainParseErrors renames env's parse errors (which name Go fields) by
// the environment variables that were set for those fields.
func explainParseErrors(err error, vars map[string]string) (error, map[string]bool) {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err, nil
	}
	keys := fieldKeys(reflect.TypeFor[Config](), EnvPrefix)
	bad := make(map[string]bool)
	var errs []error
	for _, e := range agg.Errors {
		var pe env.ParseError
		if !errors.As(e, &pe) {
			errs = append(errs, e)
			continue
		}
		named := false
		for _, key := range keys[pe.Name] {
			if v, ok := vars[key]; ok {
				errs = append(errs, fmt.Errorf("%s: cannot parse %q as %s", key, v, pe.Type))
				bad[key] = true
				named = true
			}
		}
		if !named {
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...), bad
}

// fieldKeys maps each Go field name of t (nested structs included) to the
// environment variables that fill fields of that name.
func fieldKeys(t reflect.Type, prefix string) map[string][]string {
	keys := make(map[string][]string)
	for f := range t.Fields() {
		if f.Type.Kind() == reflect.Struct && f.Tag.Get("env") == "" && f.Type != reflect.TypeFor[time.Time]() {
			for name, ks := range fieldKeys(f.Type, prefix+f.Tag.Get("envPrefix")) {
				keys[name] = append(keys[name], ks...)
			}
			continue
		}
		if key, _, _ := strings.Cut(f.Tag.Get("env"), ","); key != "" {
			keys[f.Name] = append(keys[f.Name], prefix+key)
		}
	}
	return keys
}

// withoutVars drops the validation errors about variables already reported
// as unparsable.
func withoutVars(err error, vars map[string]bool) error {
	if err == nil {
		return nil
	}
	var errs []error
	for _, e := range flatten(err) {
		key, _, _ := strings.Cut(e.Error(), ":")
		if !vars[key] {
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

// flatten unwraps trees of errors.Join into their leaves.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// Validate reports every invalid setting at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("HUDDLE_ADDR: must not be empty"))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("HUDDLE_LOG_FORMAT: must be text or json, got %q", c.LogFormat))
	}
	if c.DrainTimeout <= 0 {
		errs = append(errs, fmt.Errorf("HUDDLE_DRAIN_TIMEOUT: must be positive, got %s", c.DrainTimeout))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("HUDDLE_TLS_CERT and HUDDLE_TLS_KEY: set both or neither"))
	} else if c.TLSCert != "" {
		if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
			errs = append(errs, fmt.Errorf("HUDDLE_TLS_CERT/HUDDLE_TLS_KEY: %w", err))
		}
	}
	if c.Pprof && c.MetricsAddr == "" {
		errs = append(errs, errors.New("HUDDLE_PPROF: the profiler is served only on HUDDLE_METRICS_ADDR's listener: set that too"))
	}
	errs = append(errs, c.validateRedis())
	errs = append(errs, c.validateProbe(), c.Signal.Validate(), c.TURN.Validate())
	return errors.Join(errs...)
}

// validateRedis checks the cluster's settings.
func (c *Config) validateRedis() error {
	var errs []error
	if c.RedisURL != "" {
		if _, err := redis.ParseURL(c.RedisURL); err != nil {
			errs = append(errs, fmt.Errorf("HUDDLE_REDIS_URL: %w", err))
		}
	}
	if strings.ContainsAny(c.NodeID, " \t\r\n") {
		errs = append(errs, fmt.Errorf("HUDDLE_NODE_ID: must not hold spaces, got %q", c.NodeID))
	}
	if c.RedisURL != "" && (c.RedisPrefix == "" || strings.ContainsAny(c.RedisPrefix, " \t\r\n")) {
		errs = append(errs, fmt.Errorf("HUDDLE_REDIS_PREFIX: must be non-empty without spaces, got %q", c.RedisPrefix))
	}
	return errors.Join(errs...)
}

// validateProbe checks the relay self-probe's settings.
func (c *Config) validateProbe() error {
	var errs []error
	if c.ProbeInterval != 0 && c.ProbeInterval < MinProbeInterval {
		errs = append(errs, fmt.Errorf("HUDDLE_PROBE_INTERVAL: must be 0 (off) or at least %s, got %s", MinProbeInterval, c.ProbeInterval))
	}
	if c.PublicURL != "" {
		if _, err := client.NormalizeURL(c.PublicURL); err != nil {
			errs = append(errs, fmt.Errorf("HUDDLE_PUBLIC_URL: %w", err))
		}
	}
	if c.ProbeInterval > 0 && c.Signal.JWTSecret == "" && c.Signal.JWTPublicKey != "" {
		errs = append(errs, errors.New("HUDDLE_PROBE_INTERVAL: the probe signs its join tokens with HUDDLE_JWT_SECRET, which HUDDLE_JWT_PUBLIC_KEY excludes: turn the probe off and run huddle-peer check --relay with a token from outside"))
	}
	return errors.Join(errs...)
}

// NewLogger builds the process's logger from the configuration.
func NewLogger(c Config, w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("HUDDLE_LOG_LEVEL: must be debug, info, warn or error, got %q", s)
	}
	return l, nil
}
