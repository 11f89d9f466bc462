package app

import (
	"net/http"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/huddle-rtc/huddle/turn"
)

// newRegistry returns the node's Prometheus registry with the standard Go
// and process collectors and huddle_build_info, labelled with node when
// it is not empty (HUDDLE_NODE_ID, or a cluster node's random id).
func newRegistry(node string) *prometheus.Registry {
	labels := prometheus.Labels{"version": Version(), "goversion": runtime.Version()}
	if node != "" {
		labels["node"] = node
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "huddle_build_info",
			Help:        "Always 1; its labels name the running build.",
			ConstLabels: labels,
		}, func() float64 { return 1 }),
	)
	return reg
}

func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// turnCollector exposes the bundled TURN server's counters.
type turnCollector struct {
	srv *turn.Server

	allocations, authFailures, quota, peersDenied, packetsDenied, challengesDropped *prometheus.Desc
	bytes, packets                                                                  *prometheus.Desc
}

func newTURNCollector(srv *turn.Server) *turnCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &turnCollector{
		srv:               srv,
		allocations:       d("huddle_turn_allocations", "Live TURN allocations."),
		authFailures:      d("huddle_turn_auth_failures_total", "TURN requests refused for their credentials."),
		quota:             d("huddle_turn_quota_rejections_total", "TURN allocations refused with 486 (allocation quota)."),
		peersDenied:       d("huddle_turn_peer_permissions_denied_total", "TURN permissions and channel binds refused by the peer-address policy."),
		packetsDenied:     d("huddle_turn_packets_denied_total", "Relayed packets dropped by the own-relay port rule."),
		challengesDropped: d("huddle_turn_challenges_dropped_total", "401/438 answers withheld by the per-address rate limit."),
		bytes:             d("huddle_turn_relayed_bytes_total", "Bytes relayed, by direction.", "direction"),
		packets:           d("huddle_turn_relayed_packets_total", "Packets relayed, by direction.", "direction"),
	}
}

func (c *turnCollector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c *turnCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.srv.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.allocations, float64(st.Allocations))
	counter(c.authFailures, st.AuthFailures)
	counter(c.quota, st.QuotaRejections)
	counter(c.peersDenied, st.PeersDenied)
	counter(c.packetsDenied, st.PacketsDenied)
	counter(c.challengesDropped, st.ChallengesDropped)
	counter(c.bytes, st.BytesToPeer, "to_peer")
	counter(c.bytes, st.BytesToClient, "to_client")
	counter(c.packets, st.PacketsToPeer, "to_peer")
	counter(c.packets, st.PacketsToClient, "to_client")
}
