package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/huddle-rtc/huddle/client"
)

// reporter prints what a command observes, as text for people or as JSON
// lines (one object per line, each with an "event" field) for machines.
type reporter struct {
	w    io.Writer
	json bool
}

func (r reporter) emit(event string, fields map[string]any, text string) {
	if !r.json {
		fmt.Fprintln(r.w, text)
		return
	}
	obj := map[string]any{"event": event}
	for k, v := range fields {
		obj[k] = v
	}
	b, err := json.Marshal(obj)
	if err != nil {
		b, _ = json.Marshal(map[string]any{"event": event, "error": err.Error()})
	}
	fmt.Fprintln(r.w, string(b))
}

// peerReport is what join reports about one connected peer.
type peerReport struct {
	ID           string                `json:"id"`
	Name         string                `json:"name"`
	State        string                `json:"state"`
	PairType     string                `json:"pairType"`
	Pair         *client.CandidatePair `json:"pair,omitempty"`
	RTTMs        float64               `json:"rttMs"`
	ConnectMs    float64               `json:"connectMs"`
	DataChannels int                   `json:"dataChannels"`
}

func newPeerReport(s client.PeerStats) peerReport {
	r := peerReport{
		ID:           string(s.ID),
		Name:         s.Name,
		State:        s.State.String(),
		Pair:         s.Pair,
		RTTMs:        ms(s.RTT),
		ConnectMs:    ms(s.TimeToConnect),
		DataChannels: s.DataChannels,
	}
	if s.Pair != nil {
		r.PairType = s.Pair.Type()
	}
	return r
}

func (p peerReport) text() string {
	pair := "no pair"
	if p.Pair != nil {
		pair = fmt.Sprintf("%s (%s %s -> %s)", p.PairType, p.Pair.Local.Protocol,
			endpoint(p.Pair.Local), endpoint(p.Pair.Remote))
	}
	return fmt.Sprintf("peer %s%s %s: pair %s, rtt %s, connected in %s",
		p.ID, nameSuffix(p.Name), p.State, pair, fmtMs(p.RTTMs), fmtMs(p.ConnectMs))
}

func (p peerReport) fields() map[string]any { return toFields(p) }

// toFields turns a struct into the fields of a JSON line.
func toFields(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		return map[string]any{"error": err.Error()}
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

func endpoint(c client.Candidate) string {
	if strings.Contains(c.Address, ":") {
		return fmt.Sprintf("[%s]:%d %s", c.Address, c.Port, c.Type)
	}
	return fmt.Sprintf("%s:%d %s", c.Address, c.Port, c.Type)
}

func nameSuffix(name string) string {
	if name == "" {
		return ""
	}
	return fmt.Sprintf(" (%s)", name)
}

func ms(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

func fmtMs(v float64) string {
	return fmt.Sprintf("%.1fms", v)
}
