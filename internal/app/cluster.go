package app

import (
	"crypto/rand"
	"fmt"
	"strings"

	"github.com/huddle-rtc/huddle/signal"
)

// nodeID is HUDDLE_NODE_ID, or a random id when it is unset.
func nodeID(cfg Config) string {
	if cfg.NodeID != "" {
		return cfg.NodeID
	}
	return strings.ToLower(rand.Text()[:10])
}

// metricsNode is the node id huddle_build_info carries: the configured
// one, or the random one of a cluster node (its logs name it too); "" for
// a lone node without HUDDLE_NODE_ID.
func (a *App) metricsNode() string {
	if a.cfg.NodeID == "" && a.cfg.RedisURL == "" {
		return ""
	}
	return a.node
}

// newBroker returns the Redis broker when HUDDLE_REDIS_URL is set, nil (the
// hub's in-process broker) otherwise.
func (a *App) newBroker() (signal.Broker, error) {
	if a.cfg.RedisURL == "" {
		return nil, nil
	}
	b, err := signal.NewRedisBroker(signal.RedisOptions{
		URL:    a.cfg.RedisURL,
		Node:   a.node,
		Prefix: a.cfg.RedisPrefix,
		Grace:  a.cfg.Signal.ResumeGrace,
		Logger: a.log.With("component", "redis"),
	})
	if err != nil {
		return nil, fmt.Errorf("HUDDLE_REDIS_URL: %w", err)
	}
	return b, nil
}

// brokerFeature names the broker for the startup line.
func (a *App) brokerFeature() string {
	if a.cfg.RedisURL == "" {
		return "local"
	}
	return "redis"
}
