package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// joinRef is the ref of every join, so an error about it is recognised.
const joinRef = "join"

// NormalizeURL turns what a user types into the WebSocket URL of a huddle
// server: http and https become ws and wss, and an empty path becomes /ws.
func NormalizeURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("client: bad server URL: %w", err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("client: bad server URL %q: scheme must be ws, wss, http or https", raw)
	}
	if u.Host == "" {
		return "", fmt.Errorf("client: bad server URL %q: no host", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/ws"
	}
	return u.String(), nil
}

// joined is what a successful join hands over: the connection, ready for
// its pumps, and the welcome.
type joined struct {
	ws      *websocket.Conn
	welcome wire.Message
}

// connect dials the server and joins the room, resuming when resume is
// set. It returns once welcome arrived; nothing after it has been read.
func (c *Client) connect(ctx context.Context, resume string) (joined, error) {
	ws, err := c.dial(ctx)
	if err != nil {
		return joined{}, err
	}
	w, err := c.join(ctx, ws, resume)
	if err != nil {
		_ = ws.Close()
		return joined{}, err
	}
	return joined{ws: ws, welcome: w}, nil
}

func (c *Client) dial(ctx context.Context) (*websocket.Conn, error) {
	header := c.opts.Header.Clone()
	if header == nil {
		header = http.Header{}
	}
	token := c.opts.Token
	if c.opts.TokenSource != nil {
		t, err := c.opts.TokenSource(ctx)
		if err != nil {
			return nil, fmt.Errorf("client: token source: %w", err)
		}
		token = t
	}
	if token != "" {
		header.Set("Authorization", "Bearer "+token)
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	if c.opts.Dialer != nil {
		d = *c.opts.Dialer
	}
	d.Subprotocols = []string{wire.Subprotocol}
	ws, resp, err := d.DialContext(ctx, c.url, header)
	if err != nil {
		if resp != nil {
			return nil, handshakeError(resp)
		}
		return nil, fmt.Errorf("client: dial %s: %w", c.url, err)
	}
	if p := ws.Subprotocol(); p != "" && p != wire.Subprotocol {
		_ = ws.Close()
		return nil, fmt.Errorf("%w: server selected subprotocol %q", ErrProtocol, p)
	}
	ws.SetReadLimit(maxFrameBytes)
	return ws, nil
}

// handshakeError reads the one-line reason of a refused handshake.
func handshakeError(resp *http.Response) error {
	defer resp.Body.Close()
	line, _ := bufio.NewReader(io.LimitReader(resp.Body, 512)).ReadString('\n')
	return &HandshakeError{Status: resp.StatusCode, Reason: strings.TrimSpace(line)}
}

func (c *Client) join(ctx context.Context, ws *websocket.Conn, resume string) (wire.Message, error) {
	frame, err := wire.Encode(wire.Message{
		Type: wire.TypeJoin, Ref: joinRef, Room: c.room,
		Name: c.opts.Name, Meta: c.opts.Meta, Resume: resume,
	})
	if err != nil {
		return wire.Message{}, fmt.Errorf("client: encode join: %w", err)
	}
	deadline := time.Now().Add(c.opts.JoinTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	// The context may end before the deadline: closing the socket is the
	// only way to interrupt a blocked read.
	stop := context.AfterFunc(ctx, func() { _ = ws.Close() })
	m, err := c.awaitWelcome(ws, frame, deadline)
	if !stop() {
		// The context ended and closed the socket, maybe after welcome.
		return wire.Message{}, fmt.Errorf("client: join: %w", ctx.Err())
	}
	return m, err
}

func (c *Client) awaitWelcome(ws *websocket.Conn, frame []byte, deadline time.Time) (wire.Message, error) {
	_ = ws.SetWriteDeadline(deadline)
	if err := ws.WriteMessage(websocket.TextMessage, frame); err != nil {
		return wire.Message{}, fmt.Errorf("client: send join: %w", err)
	}
	_ = ws.SetReadDeadline(deadline)
	for {
		m, err := readMessage(ws)
		if err != nil {
			return wire.Message{}, err
		}
		switch m.Type {
		case wire.TypeWelcome:
			if m.ID == "" {
				return wire.Message{}, fmt.Errorf("%w: welcome without an id", ErrProtocol)
			}
			return m, nil
		case wire.TypeError:
			e := &wire.Error{Code: m.Code, Message: m.Message, Ref: m.Ref}
			return wire.Message{}, fmt.Errorf("%w: %w", ErrJoinRefused, e)
		default:
			c.log.Debug("message before welcome ignored", "type", m.Type)
		}
	}
}

// readMessage reads one frame and parses it. Frames the client cannot
// parse are skipped: the server is trusted to follow the protocol, and one
// odd frame should not cost the session.
func readMessage(ws *websocket.Conn) (wire.Message, error) {
	for {
		kind, data, err := ws.ReadMessage()
		if err != nil {
			return wire.Message{}, connError(err)
		}
		if kind != websocket.TextMessage {
			continue
		}
		m, err := wire.Parse(data)
		if err != nil {
			continue
		}
		return m, nil
	}
}

// connError turns a read error into a *CloseError when the server sent a
// close frame.
func connError(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return &CloseError{Code: ce.Code, Text: ce.Text}
	}
	return fmt.Errorf("client: signaling connection: %w", err)
}

// sigConn is one WebSocket with its two pumps: the reader hands frames to
// the client's loop, the writer is the only goroutine that writes.
type sigConn struct {
	ws   *websocket.Conn
	out  chan []byte   // frames to write, fed by the loop
	quit chan struct{} // closed to stop the pumps
	// readerDone is closed when the reader has returned (after the server
	// closed the connection, or on an error).
	readerDone chan struct{}
	once       sync.Once
	wg         sync.WaitGroup
}

// sigFrame is a message read from conn, or, with err set, the end of it.
type sigFrame struct {
	conn *sigConn
	msg  wire.Message
	err  error
}

func startConn(ws *websocket.Conn, to chan<- sigFrame, opts Options, log *slog.Logger) *sigConn {
	sc := &sigConn{
		ws:         ws,
		out:        make(chan []byte),
		quit:       make(chan struct{}),
		readerDone: make(chan struct{}),
	}
	sc.wg.Add(2)
	go sc.readPump(to, 2*opts.PingInterval, opts.WriteTimeout)
	go sc.writePump(opts.PingInterval, opts.WriteTimeout, log)
	return sc
}

// readPump reads until an error. Every frame, ping and pong extends the
// read deadline, so a connection silent for longer than wait is dead.
func (sc *sigConn) readPump(to chan<- sigFrame, wait, writeTimeout time.Duration) {
	defer sc.wg.Done()
	defer close(sc.readerDone)
	extend := func() { _ = sc.ws.SetReadDeadline(time.Now().Add(wait)) }
	extend()
	sc.ws.SetPongHandler(func(string) error { extend(); return nil })
	sc.ws.SetPingHandler(func(data string) error {
		extend()
		err := sc.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(writeTimeout))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		return err
	})
	for {
		m, err := readMessage(sc.ws)
		if err == nil {
			extend()
		}
		select {
		case to <- sigFrame{conn: sc, msg: m, err: err}:
		case <-sc.quit:
			return
		}
		if err != nil {
			return
		}
	}
}

// writePump writes the loop's frames and pings, each under a deadline. A
// failed write closes the socket so the reader ends too.
func (sc *sigConn) writePump(pingEvery, writeTimeout time.Duration, log *slog.Logger) {
	defer sc.wg.Done()
	ping := time.NewTicker(pingEvery)
	defer ping.Stop()
	for {
		var err error
		select {
		case frame := <-sc.out:
			_ = sc.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
			err = sc.ws.WriteMessage(websocket.TextMessage, frame)
		case <-ping.C:
			err = sc.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeTimeout))
		case <-sc.quit:
			return
		}
		if err != nil {
			log.Debug("signaling write failed", "err", err)
			_ = sc.ws.Close()
			return
		}
	}
}

// close stops both pumps, closes the socket and waits for the pumps.
func (sc *sigConn) close() {
	sc.once.Do(func() {
		close(sc.quit)
		_ = sc.ws.Close()
	})
	sc.wg.Wait()
}
