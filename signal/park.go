package signal

import (
	"errors"
	"time"
)

// An idle connection costs what its reader goroutine's stack holds while
// it waits. A goroutine's stack grows to what handling messages needs
// (8 KiB: decoding, the hub, the broker) and the garbage collector shrinks
// it only by half, and only while it uses under a quarter: a reader that
// has handled a join keeps 4 KiB or 8 KiB for as long as it waits. A new
// goroutine starts with 2 KiB, which is enough to wait in waitReadable.
// So once a connection has been quiet for parkAfter, tick wakes its
// waiting reader (a read deadline in the past), and the reader hands the
// connection to a new goroutine, which waits with 2 KiB (park). A busy
// connection never parks; an idle one parks once per quiet spell. The
// pongs answering the server's pings wake a parked reader without ending
// its spell: waitReadable takes them itself.

// parkAfter is how long a connection is quiet before its reader parks.
const parkAfter = time.Second

// errPark ends a reader loop whose connection moves to a new goroutine.
var errPark = errors.New("signal: reader parks")

// park waits for the connection's next frame on a fresh goroutine (small
// stack: keep this function shallow), then serves it as run does.
func (c *conn) park(done func()) {
	for c.waitReadable() {
	}
	c.run(done)
}

// parkIdleReaderLocked is tick's part: it wakes a reader that has waited
// parkAfter since the connection's last read, so that it parks, and
// returns next, or the earlier time at which to look again. c.mu is held.
func (c *conn) parkIdleReaderLocked(now, next time.Time) time.Time {
	if c.raw == nil || c.fresh.Load() || c.kicked {
		return next
	}
	parkAt := time.Unix(0, c.lastMsg.Load()).Add(parkAfter)
	if now.Before(parkAt) {
		return minTime(next, parkAt)
	}
	if c.waiting {
		c.kicked = true
		// The wait returns at once with a timeout; waitReadable clears the
		// deadline before any read.
		_ = c.ws.NetConn().SetReadDeadline(now)
	}
	return next
}
