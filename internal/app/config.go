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
	// DrainTimeout bounds a graceful shutdown.
	DrainTimeout time.Duration `env:"DRAIN_TIMEOUT" envDefault:"10s"`
	// JWTSecretFile is the content of the file HUDDLE_JWT_SECRET_FILE names
	// (a trailing newline ignored): HUDDLE_JWT_SECRET kept out of the
	// environment. It fills Signal.JWTSecret.
	JWTSecretFile string `env:"JWT_SECRET_FILE,file"`
	// TLSCert and TLSKey, both set, serve https and wss directly.
	TLSCert string `env:"TLS_CERT"`
	TLSKey  string `env:"TLS_KEY"`

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
	errs = append(errs, c.Signal.Validate(), c.TURN.Validate())
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
