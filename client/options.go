package client

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// Options configures a Client. The zero value joins anonymously with
// pion's defaults.
type Options struct {
	// Name is the display name shown to the others (at most 64 characters).
	Name string
	// Meta is a JSON object of at most 1024 bytes shown to the others.
	Meta json.RawMessage
	// Token is a JWT presented as "Authorization: Bearer" on every
	// connection, reconnections included.
	Token string
	// TokenSource, when set, is asked for a fresh token before every
	// connection instead of Token (join tokens are short-lived, and a
	// resume needs a valid one).
	TokenSource func(ctx context.Context) (string, error)

	// RelayOnly forces every peer connection through TURN
	// (ICETransportPolicyRelay), with no wait before relay candidates are
	// accepted.
	RelayOnly bool
	// ICEServers are added to those the server sends in welcome.
	ICEServers []webrtc.ICEServer

	// SettingEngine, MediaEngine and Interceptors build the webrtc.API of
	// every peer connection (port ranges, network types, codecs, ...).
	// The SettingEngine is copied; one without a LoggerFactory gets one
	// that bridges pion's logs to Logger at warn level. Without a
	// SettingEngine, peer-reflexive pairs are accepted at once (pion's
	// default waits 1 s). A nil MediaEngine means pion's default codecs;
	// nil Interceptors mean pion's default interceptors, registered on the
	// MediaEngine.
	SettingEngine *webrtc.SettingEngine
	MediaEngine   *webrtc.MediaEngine
	Interceptors  *interceptor.Registry

	// Logger receives the client's logs; nil discards them.
	Logger *slog.Logger

	// Reconnect bounds the delays between reconnection attempts.
	Reconnect Backoff
	// Dialer dials the WebSocket (TLS settings, proxy, NetDialContext). It
	// is copied; its Subprotocols are replaced by huddle.v1. Nil means a
	// dialer with a 10 s handshake timeout.
	Dialer *websocket.Dialer
	// Header is added to every handshake request.
	Header http.Header

	// DataChannel is the label of the data channel the offering side opens
	// with its first offer, so that every pair has a channel (and an offer
	// has something to negotiate). Default "huddle".
	DataChannel string
	// JoinTimeout bounds the wait for welcome after join (default 10s).
	JoinTimeout time.Duration
	// PingInterval is how often the client pings the server; a connection
	// silent for twice as long is considered dropped (default 15s).
	PingInterval time.Duration
	// WriteTimeout bounds every write to the WebSocket (default 10s).
	WriteTimeout time.Duration
	// EventBuffer is how many undelivered events the client keeps before
	// it stops reading from the server and from data channels until the
	// application catches up (default 256).
	EventBuffer int
	// OutboxLimit bounds the signaling messages kept while the connection
	// is down (default 1024).
	OutboxLimit int
}

// Defaults of Options.
const (
	DefaultDataChannel  = "huddle"
	DefaultJoinTimeout  = 10 * time.Second
	DefaultPingInterval = 15 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultEventBuffer  = 256
	DefaultOutboxLimit  = 1024
)

// maxFrameBytes bounds a frame read from the server. The server's own
// limit applies to what clients send (64 KiB by default); what it relays
// adds an envelope, so leave ample room.
const maxFrameBytes = 1 << 20

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.DataChannel == "" {
		o.DataChannel = DefaultDataChannel
	}
	if o.JoinTimeout <= 0 {
		o.JoinTimeout = DefaultJoinTimeout
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.EventBuffer <= 0 {
		o.EventBuffer = DefaultEventBuffer
	}
	if o.OutboxLimit <= 0 {
		o.OutboxLimit = DefaultOutboxLimit
	}
	o.Reconnect = o.Reconnect.withDefaults()
	return o
}

// newAPI builds the webrtc.API shared by all peer connections of a client.
func (o Options) newAPI() (*webrtc.API, error) {
	var se webrtc.SettingEngine
	if o.SettingEngine != nil {
		se = *o.SettingEngine
	} else {
		// Pion waits 1 s before it accepts a peer-reflexive pair, one
		// learnt from a check that outran the candidate's signaling: the
		// usual case on a LAN, where media is faster than the server.
		// Browsers do not wait.
		se.SetPrflxAcceptanceMinWait(0)
	}
	if se.LoggerFactory == nil {
		se.LoggerFactory = NewPionLoggerFactory(o.Logger)
	}
	if o.RelayOnly {
		// Pion waits 2 s before it accepts a relayed pair, hoping for a
		// direct one; with relay only there will be none.
		se.SetRelayAcceptanceMinWait(0)
	}
	me := o.MediaEngine
	if me == nil {
		me = &webrtc.MediaEngine{}
		if err := me.RegisterDefaultCodecs(); err != nil {
			return nil, err
		}
	}
	reg := o.Interceptors
	if reg == nil {
		reg = &interceptor.Registry{}
		if err := webrtc.RegisterDefaultInterceptors(me, reg); err != nil {
			return nil, err
		}
	}
	return webrtc.NewAPI(
		webrtc.WithSettingEngine(se),
		webrtc.WithMediaEngine(me),
		webrtc.WithInterceptorRegistry(reg),
	), nil
}
