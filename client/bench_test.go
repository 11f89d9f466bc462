package client_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/huddle-rtc/huddle/internal/app"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// BenchmarkJoinToConnected measures, for a pair on loopback, the time from
// the second peer's Join call to both ends connected (ICE and DTLS up),
// and reports its median as p50-ms. Run it with -benchtime=20x for the
// median of 20 runs.
func BenchmarkJoinToConnected(b *testing.B) {
	for _, mode := range []struct {
		name   string
		relay  bool
		mutate func(*app.Config)
	}{
		{name: "host"},
		{name: "relay", relay: true},
	} {
		b.Run(mode.name, func(b *testing.B) {
			node := startNode(b, mode.mutate)
			var took []time.Duration
			for i := 0; b.Loop(); i++ {
				took = append(took, connectPair(b, node.WSURL(), fmt.Sprintf("bench-%d", i), mode.relay))
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2])/float64(time.Millisecond), "p50-ms")
			b.ReportMetric(float64(took[len(took)-1])/float64(time.Millisecond), "max-ms")
		})
	}
}

func connectPair(b *testing.B, url, room string, relay bool) time.Duration {
	b.Helper()
	optsA, optsB := fastOptions(b, "a"), fastOptions(b, "b")
	optsA.RelayOnly, optsB.RelayOnly = relay, relay
	a := joinPeer(b, url, wire.RoomID(room), optsA)
	start := time.Now()
	bp := joinPeer(b, url, wire.RoomID(room), optsB)
	connectedTo(b, bp, a.ID())
	connectedTo(b, a, bp.ID())
	took := time.Since(start)
	_ = a.Close()
	_ = bp.Close()
	return took
}
