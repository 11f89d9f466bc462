package client

import (
	"errors"
	"fmt"
	"net/http"
)

// Sentinel errors, matched with errors.Is. Join's error and a stopped
// Client's Err wrap one of them when the server refused or ended the
// session; a network failure of the first connection is returned as is.
var (
	// ErrClosed is returned by methods called on a closed Client.
	ErrClosed = errors.New("client: closed")
	// ErrHandshake means the server refused the WebSocket handshake; the
	// error is a *HandshakeError with the HTTP status.
	ErrHandshake = errors.New("client: websocket handshake refused")
	// ErrJoinRefused means the server answered join with an error message;
	// the error also unwraps to the *wire.Error it carried.
	ErrJoinRefused = errors.New("client: join refused")
	// ErrReplaced means the session was resumed on another connection
	// (close code 4010); the client stops.
	ErrReplaced = errors.New("client: session replaced by another connection")
	// ErrKicked means the room's administrator removed this peer (close
	// code 4003); the client stops.
	ErrKicked = errors.New("client: kicked from the room")
	// ErrServerClosed means the server closed the connection with a code
	// after which reconnecting would not help; the error is a *CloseError.
	ErrServerClosed = errors.New("client: connection closed by the server")
	// ErrGaveUp means reconnecting failed Backoff.MaxAttempts times in a row.
	ErrGaveUp = errors.New("client: gave up reconnecting")
	// ErrProtocol means the server sent something the protocol does not
	// allow (for example a welcome without an id).
	ErrProtocol = errors.New("client: protocol violation")
	// ErrOutboxFull means too many signaling messages are waiting for the
	// connection to come back; the message was not queued.
	ErrOutboxFull = errors.New("client: signaling outbox full")
)

// HandshakeError is a refused WebSocket handshake: the HTTP status and the
// server's one-line reason.
type HandshakeError struct {
	Status int
	Reason string
}

func (e *HandshakeError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("websocket handshake refused: %d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("websocket handshake refused: %d %s", e.Status, e.Reason)
}

// Is makes errors.Is(err, ErrHandshake) true.
func (e *HandshakeError) Is(target error) bool { return target == ErrHandshake }

// Retryable reports whether trying again later may succeed: too many
// requests, a draining or failing server. A bad request, a refused token
// or origin will fail the same way again.
func (e *HandshakeError) Retryable() bool {
	switch {
	case e.Status == http.StatusTooManyRequests, e.Status == http.StatusRequestTimeout:
		return true
	case e.Status >= 500:
		return true
	}
	return false
}

// CloseError is a WebSocket close frame from the server (RFC 6455 section
// 7.4); Code is one of the wire.Close* codes.
type CloseError struct {
	Code int
	Text string
}

func (e *CloseError) Error() string {
	if e.Text == "" {
		return fmt.Sprintf("closed by the server with code %d", e.Code)
	}
	return fmt.Sprintf("closed by the server with code %d: %s", e.Code, e.Text)
}
