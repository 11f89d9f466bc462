package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // the peer did not connect, the check failed
	exitUsage  = 2 // bad flags or arguments
)

// command is one subcommand: it parses its flags from args and runs.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, out, errOut io.Writer) int
}

// commands lists the subcommands.
func commands() []command {
	return []command{
		{"join", "join a room and report each peer connection", runJoin},
		{"check", "smoke-test a deployment: two peers connect and round-trip data", runCheck},
		{"load", "load a server with many signaling peers and report latency and memory", runLoad},
	}
}

// run is the whole program but for the process: arguments in, exit code
// out, so that tests run it in-process.
func run(ctx context.Context, args []string, out, errOut io.Writer) int {
	if len(args) == 0 {
		usage(errOut)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return run(ctx, []string{args[1], "--help"}, out, errOut)
		}
		usage(out)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, args[1:], out, errOut)
		}
	}
	fmt.Fprintf(errOut, "huddle-peer: unknown command %q\n\n", name)
	usage(errOut)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "huddle-peer: a WebRTC peer for huddle rooms")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "usage: huddle-peer <command> [flags]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-6s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Run "huddle-peer <command> --help" for its flags.`)
}

// commonFlags are the flags every command shares.
type commonFlags struct {
	url      string
	token    string
	relay    bool
	timeout  time.Duration
	json     bool
	logLevel string
}

func (c *commonFlags) register(fs *flag.FlagSet, defaultTimeout time.Duration, timeoutHelp string) {
	fs.StringVar(&c.url, "url", "", "the huddle server: ws://, wss://, http:// or https:// (an empty path means /ws) (required)")
	fs.StringVar(&c.token, "token", "",
		"a join token (JWT), sent as Authorization: Bearer; default $HUDDLE_TOKEN,\nwhich keeps it out of the process list")
	fs.BoolVar(&c.relay, "relay", false, "relay only: connect through the server's TURN relay, never directly")
	fs.DurationVar(&c.timeout, "timeout", defaultTimeout, timeoutHelp)
	fs.BoolVar(&c.json, "json", false, "print JSON (one object per line) instead of text")
	fs.StringVar(&c.logLevel, "log-level", "error", "level of the client's own logs on stderr: debug, info, warn or error")
}

// tokenFromEnv takes $HUDDLE_TOKEN when --token was not given.
func (c *commonFlags) tokenFromEnv() {
	if c.token == "" {
		c.token = os.Getenv("HUDDLE_TOKEN")
	}
}

// logger is the client's logger on stderr at the chosen level.
func (c *commonFlags) logger(errOut io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.logLevel)
	}
	return slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: level})), nil
}

// parse parses a command's flags, printing help or the error. It returns
// an exit code and false when the command must not run.
func parse(fs *flag.FlagSet, args []string, errOut io.Writer) (int, bool) {
	fs.SetOutput(errOut)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK, false
	case err != nil:
		return exitUsage, false
	case fs.NArg() > 0:
		fmt.Fprintf(errOut, "huddle-peer %s: unexpected arguments: %s\n", fs.Name(), strings.Join(fs.Args(), " "))
		return exitUsage, false
	}
	return exitOK, true
}

func newFlagSet(name, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: huddle-peer %s %s\n\n%s\n\nflags:\n", name, synopsis, description)
		printFlags(w, fs)
	}
	return fs
}

// printFlags is flag.PrintDefaults with the --name spelling of the docs.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if typ != "" {
			line += " " + typ
		}
		fmt.Fprintln(w, line)
		usage = strings.ReplaceAll(usage, "\n", "\n    \t")
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			usage += fmt.Sprintf(" (default %q)", f.DefValue)
		}
		fmt.Fprintf(w, "    \t%s\n", usage)
	})
}
