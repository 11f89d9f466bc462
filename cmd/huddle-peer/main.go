// Command huddle-peer is a real WebRTC peer for huddle rooms, built on the
// Go client (package client): it proves, end to end, that calls connect.
//
//	huddle-peer join  --url URL --room ROOM [--expect N] [--echo] ...
//	huddle-peer check --url URL [--relay] ...
//
// join enters a room and reports each peer connection (state, candidate
// pair type, RTT, time to connect); with --expect it exits 0 once that many
// peers are connected, and with --echo it stays as a bot that echoes data
// channel messages and mirrors media tracks. check is a smoke test of a
// deployment: two peers join a fresh room, connect (through TURN with
// --relay) and round-trip a data channel message; the report says which
// stage failed, if any. Run "huddle-peer help" for every flag.
package main

import (
	"context"
	"os"
	ossignal "os/signal"
	"syscall"
)

func main() {
	ctx, stop := ossignal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
