package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/huddle-rtc/huddle/client"
)

// defaultCheckTimeout bounds the whole check.
const defaultCheckTimeout = 20 * time.Second

// Stages of a check, named in its failures.
const (
	stageSignaling = string(client.StageSignaling)
	stageTURN      = string(client.StageTURN)
	stageICE       = string(client.StageICE)
	stageData      = string(client.StageData)
)

func runCheck(ctx context.Context, args []string, out, errOut io.Writer) int {
	var f commonFlags
	fs := newFlagSet("check", "--url URL [flags]",
		"Smoke-test a deployment: two peers join a fresh random room, connect\n"+
			"and round-trip data channel messages. The report lists the ICE servers\n"+
			"received, the TURN allocations tried, the candidate types gathered, the\n"+
			"selected pair type (relay when relayed), the time to connect and the\n"+
			"RTT. Exit status 0 only when connected; otherwise 1, and the report\n"+
			"names the stage that failed: signaling, turn, ice or data.")
	f.register(fs, defaultCheckTimeout, "give up after this long")
	if code, ok := parse(fs, args, errOut); !ok {
		return code
	}
	f.tokenFromEnv()
	if f.url == "" || f.timeout <= 0 {
		fmt.Fprintln(errOut, "huddle-peer check: --url is required and --timeout must be positive")
		fs.Usage()
		return exitUsage
	}
	log, err := f.logger(errOut)
	if err != nil {
		fmt.Fprintln(errOut, "huddle-peer check:", err)
		return exitUsage
	}
	res, _ := client.Check(ctx, f.url, client.CheckOptions{
		Options: client.Options{Name: "check", Token: f.token, RelayOnly: f.relay, Logger: log},
		Timeout: f.timeout,
	})
	rep := newCheckReport(res)
	rep.print(reporter{w: out, json: f.json})
	if !rep.OK {
		return exitFailed
	}
	return exitOK
}

// checkReport is the outcome of a check.
type checkReport struct {
	OK         bool                  `json:"ok"`
	Stage      string                `json:"stage,omitempty"`
	Error      string                `json:"error,omitempty"`
	URL        string                `json:"url"`
	Room       string                `json:"room"`
	RelayOnly  bool                  `json:"relayOnly"`
	Signaling  bool                  `json:"signaling"`
	ICEServers []string              `json:"iceServers"`
	TURN       []turnProbe           `json:"turn"`
	Candidates map[string]int        `json:"candidates"`
	PairType   string                `json:"pairType,omitempty"`
	Pair       *client.CandidatePair `json:"pair,omitempty"`
	ConnectMs  float64               `json:"connectMs,omitempty"`
	RTTMs      float64               `json:"rttMs,omitempty"`
	pings      int
}

// turnProbe is the outcome of one TURN allocation attempt.
type turnProbe struct {
	URL   string  `json:"url"`
	OK    bool    `json:"ok"`
	Relay string  `json:"relay,omitempty"`
	Error string  `json:"error,omitempty"`
	Ms    float64 `json:"ms"`
}

// newCheckReport is the printable form of the client's report.
func newCheckReport(c client.CheckReport) *checkReport {
	r := &checkReport{
		OK: c.OK, Stage: string(c.Stage), URL: c.URL, Room: string(c.Room), RelayOnly: c.RelayOnly,
		Signaling: c.Signaling, ICEServers: c.ICEServers, TURN: make([]turnProbe, len(c.TURN)),
		Candidates: c.Candidates, PairType: c.PairType, Pair: c.Pair,
		ConnectMs: ms(c.ConnectTime), RTTMs: ms(c.RTT), pings: client.DefaultCheckPings,
	}
	if c.Err != nil {
		var ce *client.CheckError
		if errors.As(c.Err, &ce) {
			r.Error = ce.Err.Error()
		} else {
			r.Error = c.Err.Error()
		}
	}
	for i, p := range c.TURN {
		r.TURN[i] = turnProbe{URL: p.URL, OK: p.OK, Relay: p.Relay, Ms: ms(p.Elapsed)}
		if p.Err != nil {
			r.TURN[i].Error = p.Err.Error()
		}
	}
	return r
}

func (r *checkReport) print(rep reporter) {
	if rep.json {
		rep.emit("check", toFields(r), "")
		return
	}
	w := rep.w
	line := func(k, format string, args ...any) { fmt.Fprintf(w, "%-11s %s\n", k, fmt.Sprintf(format, args...)) }
	if r.Signaling {
		line("signaling", "ok (%s, room %s)", r.URL, r.Room)
		line("ice servers", "%d: %s", len(r.ICEServers), strings.Join(r.ICEServers, " "))
	}
	for _, p := range r.TURN {
		if p.OK {
			line("turn", "ok: %s allocated relay %s in %s", p.URL, p.Relay, fmtMs(p.Ms))
		} else {
			line("turn", "FAILED: %s: %s", p.URL, p.Error)
		}
	}
	if len(r.Candidates) > 0 {
		line("candidates", "%s", client.CandidateCounts(r.Candidates))
	}
	if r.Pair != nil {
		line("connected", "pair %s (%s %s -> %s) in %s", r.PairType, r.Pair.Local.Protocol,
			endpoint(r.Pair.Local), endpoint(r.Pair.Remote), fmtMs(r.ConnectMs))
	}
	if r.RTTMs > 0 {
		line("data", "round trip %s (median of %d)", fmtMs(r.RTTMs), r.pings)
	}
	if r.OK {
		line("result", "OK")
	} else {
		line("result", "FAILED at %s: %s", r.Stage, r.Error)
	}
}
