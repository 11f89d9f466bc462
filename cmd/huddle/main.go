// Command huddle is the huddle signaling server: a WebSocket hub with rooms,
// a bundled TURN server and a demo page. It is configured by HUDDLE_*
// environment variables (see the README).
package main

import (
	"context"
	"fmt"
	"os"
	ossignal "os/signal"
	"syscall"

	"github.com/huddle-rtc/huddle/internal/app"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 {
		return subcommand(args)
	}
	cfg, err := app.LoadConfig(os.Environ())
	if err != nil {
		fmt.Fprintf(os.Stderr, "huddle: %v\n", err)
		return 2
	}
	log := app.NewLogger(cfg, os.Stderr)
	a, err := app.New(cfg, log)
	if err != nil {
		log.Error("start-up failed", "err", err)
		return 1
	}

	// The first SIGINT or SIGTERM drains; a second one exits at once.
	signals := make(chan os.Signal, 2)
	ossignal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		sig := <-signals
		log.Info("signal received: draining; a second signal exits at once", "signal", sig.String())
		cancel()
		sig = <-signals
		log.Warn("second signal: exiting now", "signal", sig.String())
		os.Exit(1)
	}()

	if err := a.Run(ctx); err != nil {
		log.Error("stopped with an error", "err", err)
		return 1
	}
	return 0
}

func subcommand(args []string) int {
	switch args[0] {
	case "token":
		return tokenCommand(args[1:], os.Stdout, os.Stderr)
	case "healthcheck":
		return healthcheckCommand(os.Stdout, os.Stderr)
	case "version":
		fmt.Println("huddle", app.Version())
		return 0
	case "-h", "--help", "help":
		fmt.Print(usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "huddle: unknown command %q\n%s", args[0], usage)
		return 2
	}
}

const usage = `usage: huddle [command]

Without a command, huddle runs the server, configured by HUDDLE_*
environment variables (see README.md). SIGINT or SIGTERM drains it.

Commands:
  token        print a join token signed with HUDDLE_JWT_SECRET (try auth)
  healthcheck  exit 0 when the server at HUDDLE_ADDR answers /healthz
  version      print the version
  help         print this text
`
