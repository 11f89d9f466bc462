package wire

import "fmt"

// ErrorCode is the `code` of an error message. The connection stays open.
type ErrorCode string

// Error codes of the protocol.
const (
	CodeBadMessage    ErrorCode = "bad-message"
	CodeUnknownType   ErrorCode = "unknown-type"
	CodeNotJoined     ErrorCode = "not-joined"
	CodeAlreadyJoined ErrorCode = "already-joined"
	CodeUnknownPeer   ErrorCode = "unknown-peer"
	CodeRoomFull      ErrorCode = "room-full"
	CodeForbidden     ErrorCode = "forbidden"
	CodeRateLimited   ErrorCode = "rate-limited"
	// CodeUnavailable is huddle's addition to the contract: the message
	// could not be delivered now (the addressee's node is unreachable while
	// the cluster broker is down); the sender may try again.
	CodeUnavailable ErrorCode = "unavailable"
)

// Error is a protocol error: what an `error` message carries. It is a value
// apart from Go errors of the server's own; it implements error so decoders
// can return it.
type Error struct {
	Code    ErrorCode
	Message string
	// Ref is the offending message's ref, when it had a valid one.
	Ref string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf builds a protocol error with a formatted message.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Close codes of the protocol (RFC 6455 section 7.4 and the 4000-4999 range
// for applications).
const (
	CloseNormal         = 1000 // after leave
	CloseGoingAway      = 1001 // the server shuts down for good
	CloseUnsupported    = 1003 // a binary frame
	CloseInvalidPayload = 1007 // not valid UTF-8
	ClosePolicy         = 1008 // keeps exceeding its rate limit
	CloseTooBig         = 1009 // a frame over the limit
	CloseInternal       = 1011 // an internal error
	CloseRestart        = 1012 // draining or restarting: reconnect and resume
	CloseKicked         = 4003 // kicked by the room's administrator
	CloseJoinTimeout    = 4008 // no join within the join deadline
	CloseReplaced       = 4010 // the session was resumed on another connection
	CloseTooSlow        = 4011 // the send queue overflowed
)
