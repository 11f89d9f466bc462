package turn

import "errors"

// Errors callers may branch on.
var (
	// ErrDisabled means Listen or NewServer was called with TURN_ENABLED=false.
	ErrDisabled = errors.New("turn: bundled TURN server is disabled")
	// ErrCloseTimeout means Close gave up waiting for the server's goroutines.
	ErrCloseTimeout = errors.New("turn: timed out waiting for the server to stop")
)

// Internal errors, wrapped with context where they surface.
var (
	errNoRelayIP      = errors.New("no non-loopback IPv4 address to relay on; set HUDDLE_TURN_PUBLIC_IP")
	errBadUsername    = errors.New("malformed TURN REST username")
	errPeerDenied     = errors.New("peer address denied by policy")
	errNoRelayPort    = errors.New("no free relay port in range")
	errRelayClosed    = errors.New("relay allocator closed")
	errTCPRelay       = errors.New("TCP relay allocations are not supported")
	errNoSecret       = errors.New("no TURN secret to mint credentials for HUDDLE_TURN_URLS")
	errPortOutOfRange = errors.New("requested relay port outside the relay range")
	errNoUDPListener  = errors.New("listeners hold no UDP socket")
)
