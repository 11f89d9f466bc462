package signal

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// metrics are the hub's Prometheus series. No label carries a room, a peer
// id, a token or an address: labels are message types, codes and outcomes.
type metrics struct {
	conns        prometheus.Gauge
	peers        prometheus.Gauge
	relayed      *prometheus.CounterVec
	relayedBy    map[wire.Type]prometheus.Counter // resolved once: the hot path skips the label hash
	relayLatency prometheus.Histogram
	refusals     *prometheus.CounterVec
	errorsSent   *prometheus.CounterVec
	closes       *prometheus.CounterVec
	resumes      *prometheus.CounterVec
	rateLimited  prometheus.Counter
	overflows    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "huddle_connections_open", Help: "Open signaling WebSocket connections.",
		}),
		peers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "huddle_peers_joined", Help: "Peers joined on this node, including those waiting out their resume grace.",
		}),
		relayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "huddle_messages_relayed_total", Help: "Messages relayed from one peer to others, by type.",
		}, []string{"type"}),
		relayLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "huddle_relay_latency_seconds",
			Help:    "Time from reading a message to handing it to the recipient's socket.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "huddle_handshake_refusals_total", Help: "WebSocket handshakes refused, by HTTP status.",
		}, []string{"status"}),
		errorsSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "huddle_errors_sent_total", Help: "Protocol error messages sent, by code.",
		}, []string{"code"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "huddle_connections_closed_total", Help: "Connections ended, by close code (1006: dropped).",
		}, []string{"code"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "huddle_resumes_total", Help: "Joins with a resume token, by result (ok: resumed; failed: a new session).",
		}, []string{"result"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "huddle_messages_rate_limited_total", Help: "Messages dropped for exceeding the peer's rate.",
		}),
		overflows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "huddle_send_queue_overflows_total", Help: "Connections closed with 4011 because their send queue overflowed.",
		}),
	}
	m.relayedBy = make(map[wire.Type]prometheus.Counter)
	for _, t := range []wire.Type{wire.TypeOffer, wire.TypeAnswer, wire.TypeCandidate, wire.TypeMessage} {
		m.relayedBy[t] = m.relayed.WithLabelValues(string(t))
	}
	m.resumes.WithLabelValues("ok")
	m.resumes.WithLabelValues("failed")
	if reg != nil {
		reg.MustRegister(m.conns, m.peers, m.relayed, m.relayLatency, m.refusals,
			m.errorsSent, m.closes, m.resumes, m.rateLimited, m.overflows)
	}
	return m
}

// relayedOf is the relayed counter of a relayed type.
func (m *metrics) relayedOf(t wire.Type) prometheus.Counter {
	if c, ok := m.relayedBy[t]; ok {
		return c
	}
	return m.relayed.WithLabelValues(string(t))
}

func (m *metrics) refused(status int) {
	m.refusals.WithLabelValues(strconv.Itoa(status)).Inc()
}

func (m *metrics) closed(code int) {
	m.closes.WithLabelValues(strconv.Itoa(code)).Inc()
}

// roomsCollector reports the number of rooms the broker knows.
type roomsCollector struct {
	desc  *prometheus.Desc
	count func() int
}

func (c roomsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c roomsCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(c.count()))
}
