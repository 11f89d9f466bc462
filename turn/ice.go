package turn

import (
	"fmt"
	"slices"
	"time"
)

// ICEServer is one RTCIceServer entry: URLs sharing one set of credentials.
type ICEServer struct {
	URLs       []string
	Username   string
	Credential string
}

// ICE hands out the ICE servers of one deployment: the bundled TURN server's
// URLs (when it runs), external TURN servers sharing the secret, and STUN
// servers, with credentials minted per user. It works without the bundled
// server, for an external coturn fleet. Safe for concurrent use.
type ICE struct {
	creds *credentials // nil when there is no TURN URL to credential
	turn  []string
	stun  []string
}

// Option tunes NewServer or NewICE.
type Option func(*options)

type options struct {
	now             func() time.Time
	channelLifetime time.Duration // 0: pion's default, 10 minutes
}

// WithClock makes credentials minted and checked against now instead of the
// wall clock (for tests of expiry).
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// withChannelLifetime shortens channel bindings (for tests of their expiry).
func withChannelLifetime(d time.Duration) Option {
	return func(o *options) { o.channelLifetime = d }
}

func buildOptions(opts []Option) options {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// NewICE returns the ICE-servers provider for cfg. bundled is the running
// bundled server, or nil when TURN_ENABLED is false; its credentials (and its
// random secret, if none is configured) are shared so that what is minted
// here is what it accepts. Options apply only when bundled is nil.
func NewICE(cfg Config, bundled *Server, opts ...Option) (*ICE, error) {
	ice := &ICE{
		turn: cleanList(cfg.TURNURLs),
		stun: cleanList(cfg.STUNURLs),
	}
	if bundled != nil {
		ice.creds = bundled.creds
		ice.turn = append(slices.Clone(bundled.urls), ice.turn...)
		return ice, nil
	}
	if len(ice.turn) == 0 {
		return ice, nil
	}
	secret := cfg.secret()
	if secret == "" {
		return nil, fmt.Errorf("turn: %w", errNoSecret)
	}
	o := buildOptions(opts)
	ice.creds = newCredentials(secret, cfg.CredentialTTL, o.now)
	return ice, nil
}

// ICEServers returns the ICE servers for user (a peer id), with fresh TURN
// credentials. The result is the caller's to keep or change; it is never nil.
func (i *ICE) ICEServers(user string) []ICEServer {
	out := make([]ICEServer, 0, 2)
	if len(i.turn) > 0 {
		username, credential := i.creds.mint(user)
		out = append(out, ICEServer{URLs: slices.Clone(i.turn), Username: username, Credential: credential})
	}
	if len(i.stun) > 0 {
		out = append(out, ICEServer{URLs: slices.Clone(i.stun)})
	}
	return out
}
