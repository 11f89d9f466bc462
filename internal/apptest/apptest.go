// Package apptest starts whole huddle nodes (signaling, TURN, demo) on
// loopback for tests of the packages that talk to one.
package apptest

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/huddle-rtc/huddle/internal/app"
)

// Config returns the configuration Start uses before its mutate function:
// the defaults, bound to loopback with port 0.
func Config(t testing.TB) app.Config {
	t.Helper()
	cfg, err := app.LoadConfig(nil)
	if err != nil {
		t.Fatalf("apptest: default config: %v", err)
	}
	cfg.Addr = "127.0.0.1:0"
	// TURN on loopback: relay addresses on 127.0.0.1 above the ephemeral
	// range, and relaying to loopback peers allowed (tests have no others).
	cfg.TURN.Addr = "127.0.0.1:0"
	cfg.TURN.PublicIP = "127.0.0.1"
	cfg.TURN.RelayPorts = "61000-65535"
	cfg.TURN.AllowPeers = []string{"127.0.0.0/8"}
	cfg.TURN.UDPSockets = 1
	return cfg
}

// Start runs a node until the test ends. mutate, when not nil, adjusts the
// configuration first. Logs go to the test's output at warn, or at the
// level in HUDDLE_TEST_LOG_LEVEL.
func Start(t testing.TB, mutate func(*app.Config)) *app.App {
	t.Helper()
	cfg := Config(t)
	if mutate != nil {
		mutate(&cfg)
	}
	level := slog.LevelWarn
	if v := os.Getenv("HUDDLE_TEST_LOG_LEVEL"); v != "" {
		_ = level.UnmarshalText([]byte(v))
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: level}))
	a, err := app.New(cfg, log)
	if err != nil {
		t.Fatalf("apptest: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("apptest: node stopped with an error: %v", err)
		}
	})
	return a
}
