package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/huddle-rtc/huddle/internal/app"
	"github.com/huddle-rtc/huddle/signal"
)

// tokenCommand prints a join token signed with HUDDLE_JWT_SECRET, so a
// developer can try authentication without writing a backend.
func tokenCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("huddle token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	room := fs.String("room", "", `the room the token may join, or "*" for any (required)`)
	sub := fs.String("sub", "", "the user's identity; the default display name (required)")
	name := fs.String("name", "", "display name, overriding the one the client sends")
	ttl := fs.Duration("ttl", 10*time.Minute, "how long the token may be used to connect")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: HUDDLE_JWT_SECRET=... huddle token --room R --sub U [--name N] [--ttl 10m]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *room == "" || *sub == "" || *ttl <= 0 || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	cfg, err := app.LoadConfig(os.Environ())
	if err != nil {
		fmt.Fprintf(stderr, "huddle token: %v\n", err)
		return 2
	}
	token, err := signal.MintToken([]byte(cfg.Signal.JWTSecret), signal.Claims{Subject: *sub, Room: *room, Name: *name}, *ttl, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "huddle token: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, token)
	return 0
}
