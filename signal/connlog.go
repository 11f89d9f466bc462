package signal

import (
	"context"
	"log/slog"
	"net/netip"
	"sync/atomic"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// connName is who a connection is in its log lines: its id and address,
// and its peer and room once joined. The lines are built from it when
// logged rather than through a logger kept per connection: slog.Logger.With
// preformats its attributes into a buffer the logger keeps, some 450 bytes
// per idle peer.
type connName struct {
	id   string
	addr netip.Addr
	peer atomic.Pointer[peerName] // set by the reader at join or resume
}

type peerName struct {
	peer wire.PeerID
	room wire.RoomID
}

// joined records the peer and room the connection serves.
func (n *connName) joined(peer wire.PeerID, room wire.RoomID) {
	n.peer.Store(&peerName{peer: peer, room: room})
}

// logAt logs msg with args after the connection's name, at level.
func (c *conn) logAt(level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	log := c.hub.log
	if !log.Enabled(ctx, level) {
		return
	}
	all := make([]any, 0, 8+len(args))
	all = append(all, "conn", c.name.id, "addr", c.name.addr)
	if p := c.name.peer.Load(); p != nil {
		all = append(all, "peer", p.peer, "room", p.room)
	}
	log.Log(ctx, level, msg, append(all, args...)...)
}
