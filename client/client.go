// Package client is a Go peer for huddle rooms, built on pion/webrtc: the
// bot SDK of huddle and the engine of cmd/huddle-peer.
//
// Join connects to a huddle server, joins a room and keeps one
// PeerConnection per other peer (a mesh), following the negotiation
// convention of the signaling protocol: the newcomer offers to every peer
// already in the room; later renegotiations (tracks added, ICE restarts)
// use perfect negotiation, the polite peer of a pair being the one whose id
// sorts lower; candidates are trickled, and held until the remote
// description is set. ICE servers come from the server's welcome.
//
// A dropped signaling connection is reconnected with exponential backoff
// and jitter, and the session resumed; the peer connections stay up
// meanwhile, and those that failed or disconnected restart ICE once the
// session is back. Close code 1012 (a draining server) reconnects at once;
// 4010 (the session was resumed elsewhere) and 4003 (kicked) stop the
// client.
//
// Everything that happens arrives in order as an Event on Events: pion
// invokes its callbacks on its own goroutines, and the client funnels them
// all into one loop that owns the signaling and negotiation state, so an
// application never sees two events at once.
//
// Check smoke-tests a server with two such peers in a fresh room, relay
// only if asked, and names the stage that failed; cmd/huddle-peer check and
// the server's relay self-probe are built on it.
//
// The client imports nothing of the huddle server but its wire types: it
// works against any server that follows the protocol (docs/protocol.md).
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/huddle-rtc/huddle/signal/wire"
	"github.com/pion/webrtc/v4"
)

// Client is one peer in one room. Its methods are safe for concurrent use.
type Client struct {
	url  string
	room wire.RoomID
	opts Options
	log  *slog.Logger
	api  *webrtc.API

	events chan Event
	inbox  inbox            // pion callbacks, never blocking
	dataIn chan dataInput   // data channel messages, with backpressure
	sigIn  chan sigFrame    // frames from the current connection's reader
	upCh   chan reconnected // results of reconnection attempts
	cmds   chan func()      // calls from the application, run by the loop
	quit   chan struct{}    // closed by Close
	// stopCtx ends when the loop starts tearing down; stop is its Done.
	stopCtx  context.Context
	stopFn   context.CancelFunc
	stop     <-chan struct{}
	done     chan struct{} // closed when the loop has finished
	quitOnce sync.Once

	wg      sync.WaitGroup // the loop, reconnection attempts, RTCP readers
	peersWG sync.WaitGroup // peer connections being closed

	spawnMu     sync.Mutex
	spawnClosed bool

	// mu guards the fields below for readers outside the loop. Only the
	// loop writes them, so the loop reads them without the lock.
	mu         sync.Mutex
	id         wire.PeerID
	peers      map[wire.PeerID]*Peer
	iceServers []webrtc.ICEServer
	err        error

	// Owned by the loop.
	conn         *sigConn
	resume       string
	since        time.Time // when this session's join started
	outbox       [][]byte
	pending      []Event
	attempt      int
	ending       bool
	closedByUser bool
}

// Join connects to the huddle server at serverURL (ws, wss, http or https;
// an empty path means /ws), joins room and returns once the server welcomed
// the client. ctx bounds the connection and the join only; the client then
// lives until Close or a terminal error (see Err). The first connection is
// not retried: an error is returned at once.
func Join(ctx context.Context, serverURL string, room wire.RoomID, opts Options) (*Client, error) {
	if !wire.ValidRoom(room) {
		return nil, fmt.Errorf("client: invalid room name %q: 1 to %d characters of [A-Za-z0-9._~-]", room, wire.MaxRoomLen)
	}
	u, err := NormalizeURL(serverURL)
	if err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	api, err := opts.newAPI()
	if err != nil {
		return nil, fmt.Errorf("client: webrtc: %w", err)
	}
	c := &Client{
		url:    u,
		room:   room,
		opts:   opts,
		log:    opts.Logger.With("room", string(room)),
		api:    api,
		events: make(chan Event),
		inbox:  newInbox(),
		dataIn: make(chan dataInput, 64),
		sigIn:  make(chan sigFrame),
		upCh:   make(chan reconnected),
		cmds:   make(chan func()),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		peers:  map[wire.PeerID]*Peer{},
		since:  time.Now(),
	}
	c.stopCtx, c.stopFn = context.WithCancel(context.Background())
	c.stop = c.stopCtx.Done()
	j, err := c.connect(ctx, "")
	if err != nil {
		c.stopFn()
		return nil, err
	}
	c.conn = startConn(j.ws, c.sigIn, c.opts, c.log)
	c.resume = j.welcome.Resume
	c.setICEServers(j.welcome.ICEServers)
	c.startSession(j.welcome)
	c.log.Debug("joined", "peer", c.id, "peers", len(j.welcome.Peers))
	c.wg.Add(1)
	go c.run()
	return c, nil
}

// ID is this peer's id, chosen by the server. It changes only when a
// reconnection could not resume the session (see Reconnected).
func (c *Client) ID() wire.PeerID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

// Room is the room this client joined.
func (c *Client) Room() wire.RoomID { return c.room }

// Events delivers what happens, in order, until the client stops; then it
// is closed. The application must keep reading it: once Options.EventBuffer
// events wait, the client stops reading from the server and from data
// channels until they are consumed.
func (c *Client) Events() <-chan Event { return c.events }

// Done is closed once the client has stopped, after Close or a terminal
// error.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the client stopped: ErrClosed after Close, or a terminal
// error (ErrReplaced, ErrKicked, ErrGaveUp, ...); nil while it runs.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Peers returns the peers this client knows, sorted by id.
func (c *Client) Peers() []*Peer {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Peer, 0, len(c.peers))
	for _, p := range c.peers {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *Peer) int { return strings.Compare(string(a.id), string(b.id)) })
	return out
}

// Peer returns the peer with id, if the client knows it.
func (c *Client) Peer(id wire.PeerID) (*Peer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.peers[id]
	return p, ok
}

// ICEServers returns the ICE servers the peer connections use: those of
// the latest welcome, then Options.ICEServers.
func (c *Client) ICEServers() []webrtc.ICEServer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.iceServers)
}

// Send sends an application message through the server: to one peer, or to
// every other peer of the room when to is empty. data is marshalled to
// JSON (a json.RawMessage is sent as is). While the connection is down the
// message waits in the outbox; it is dropped if the session cannot be
// resumed.
func (c *Client) Send(to wire.PeerID, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("client: marshal message data: %w", err)
	}
	var sendErr error
	err = c.do(func() {
		sendErr = c.send(wire.Message{Type: wire.TypeMessage, To: to, Data: raw})
	})
	return errors.Join(err, sendErr)
}

// Close leaves the room (the others see peer-left "left"), closes every
// peer connection and waits for all the client's goroutines. It always
// returns nil (a client that stopped on its own says why in Err); it
// implements io.Closer.
func (c *Client) Close() error {
	c.quitOnce.Do(func() { close(c.quit) })
	<-c.done
	c.wg.Wait()
	return nil
}

// do runs f on the loop and waits for it.
func (c *Client) do(f func()) error {
	ran := make(chan struct{})
	select {
	case c.cmds <- func() { f(); close(ran) }:
	case <-c.stop:
		return ErrClosed
	}
	<-ran
	return nil
}

// spawn runs f on a goroutine the client waits for, unless the client has
// stopped.
func (c *Client) spawn(f func()) bool {
	c.spawnMu.Lock()
	defer c.spawnMu.Unlock()
	if c.spawnClosed {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

func (c *Client) setID(id wire.PeerID) {
	c.mu.Lock()
	c.id = id
	c.mu.Unlock()
	c.log = c.opts.Logger.With("room", string(c.room), "self", string(id))
}

// setICEServers keeps the usable servers of a welcome, then the
// application's. A malformed URL would make every PeerConnection fail, so
// it is dropped with a warning instead.
func (c *Client) setICEServers(ws []wire.ICEServer) {
	servers := make([]webrtc.ICEServer, 0, len(ws)+len(c.opts.ICEServers))
	for _, s := range ws {
		if srv, ok := convertICEServer(s, c.log); ok {
			servers = append(servers, srv)
		}
	}
	servers = append(servers, c.opts.ICEServers...)
	c.mu.Lock()
	c.iceServers = servers
	c.mu.Unlock()
}

func (c *Client) rtcConfig() webrtc.Configuration {
	cfg := webrtc.Configuration{ICEServers: c.iceServers}
	if c.opts.RelayOnly {
		cfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	return cfg
}
