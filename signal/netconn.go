package signal

import (
	"bufio"
	"encoding/binary"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// readBufferSize is each connection's read buffer. Frames larger than it
// are read past it, straight into the message buffer; it must exceed 256
// bytes for gorilla to take it (Upgrader.ReadBufferSize is 0).
const readBufferSize = 512

// hijacker is the http.ResponseWriter handed to the upgrade: its Hijack
// gives gorilla a read buffer of the hub's own (net/http's 4 KiB one is
// let go), so that the reader knows when nothing is buffered and may wait
// for the socket at a shallow stack depth (conn.waitReadable).
type hijacker struct {
	http.ResponseWriter
	br *bufio.Reader // set by Hijack
}

// Hijack implements http.Hijacker.
func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil || brw.Reader.Buffered() > 0 {
		// gorilla refuses a client that sent data before the handshake's
		// answer: let it see the data.
		return nc, brw, err
	}
	h.br = bufio.NewReaderSize(nc, readBufferSize)
	return nc, bufio.NewReadWriter(h.br, brw.Writer), nil
}

// useReader tells the connection which buffer its socket is read through.
// Without one (or on a TLS connection) the reader waits inside gorilla's
// read, which is correct but keeps a deeper, larger stack.
func (c *conn) useReader(br *bufio.Reader) {
	sc, ok := c.ws.NetConn().(syscall.Conn)
	if br == nil || !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	c.br, c.raw = br, raw
	c.readable = c.peekReadable
}

// waitReadable returns once the socket has data other than pongs, an
// error or its end; at once when such data is buffered already. The reader
// waits here rather than deep in gorilla's read, at a shallow stack depth
// (see park.go), and takes the clients' pongs itself (skipPong) so that
// answering the server's pings does not leave it waiting deep in gorilla.
// It returns true when tick woke it to park rather than the socket.
func (c *conn) waitReadable() (park bool) {
	if c.raw == nil {
		return false
	}
	for {
		if c.br.Buffered() == 0 {
			c.peeked = false
			c.mu.Lock()
			c.waiting = true
			c.mu.Unlock()
			_ = c.raw.Read(c.readable) // an error shows again in the read that follows
			c.mu.Lock()
			c.waiting = false
			park, c.kicked = c.kicked, false
			if park {
				// tick's deadline, which woke the wait, must not fail a
				// read: back to the connection's own (none, or the close
				// handshake's), under c.mu like the writer's setting it.
				_ = c.ws.NetConn().SetReadDeadline(c.readBy)
			}
			c.mu.Unlock()
			if park {
				return true
			}
		}
		if !c.skipPong() {
			if c.fresh.Load() {
				c.fresh.Store(false)
			}
			return false
		}
	}
}

// skipPong consumes the next frame when it is a whole pong (FIN, opcode
// 10, masked as client frames are, at most 125 bytes) already buffered,
// and counts it as a read like gorilla's pong handler. Anything else,
// invalid pongs included, is left to gorilla, and so is everything after
// a message not read to its end (the socket is then inside a frame).
func (c *conn) skipPong() bool {
	if c.midFrame {
		return false
	}
	h, err := c.br.Peek(2)
	if err != nil || h[0] != 0x8A || h[1]&0x80 == 0 || h[1]&0x7F > 125 {
		return false
	}
	n := 2 + 4 + int(h[1]&0x7F)
	if c.br.Buffered() < n {
		return false
	}
	_, _ = c.br.Discard(n)
	c.lastRead.Store(time.Now().UnixNano())
	return true
}

// peekReadable is the raw read's callback: the first call peeks without
// blocking and reports whether anything is there; the second comes after
// the poller saw the socket readable.
func (c *conn) peekReadable(fd uintptr) bool {
	if c.peeked {
		return true
	}
	c.peeked = true
	return peekSocket(fd, c.peekBuf[:])
}

// maxWriteBatch is the most a batch buffer holds before it is written: a
// resume's backlog goes out in several writes, not one huge buffer.
const maxWriteBatch = 64 << 10

// batchBuffers hold the frames of one write; no connection keeps one.
var batchBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// writeTextFrames writes frames as unmasked, unfragmented text frames
// (RFC 6455 section 5.2), as many per write as fit in maxWriteBatch. Only
// the connection's writer calls it; gorilla's own control frames (a pong,
// the echo of a close) are single writes too, and net.Conn never
// interleaves two writes. On an error, written is how many frames went
// out whole.
func writeTextFrames(nc net.Conn, frames []outFrame) (written int, err error) {
	bp := batchBuffers.Get().(*[]byte)
	b := (*bp)[:0]
	first := 0 // the batch's first frame
	for i, f := range frames {
		b = appendTextFrame(b, f.data)
		if len(b) >= maxWriteBatch || i == len(frames)-1 {
			var n int
			if n, err = nc.Write(b); err != nil {
				written = first + wholeFrames(frames[first:i+1], n)
				break
			}
			written, first = i+1, i+1
			b = b[:0]
		}
	}
	if cap(b) <= 4*maxWriteBatch {
		*bp = b[:0]
		batchBuffers.Put(bp)
	}
	return written, err
}

// wholeFrames counts the frames whose every byte is within the first n
// bytes of their batch.
func wholeFrames(frames []outFrame, n int) int {
	for i, f := range frames {
		if n -= frameSize(len(f.data)); n < 0 {
			return i
		}
	}
	return len(frames)
}

// frameSize is the size on the wire of a text frame of payload bytes.
func frameSize(payload int) int {
	switch {
	case payload < 126:
		return 2 + payload
	case payload <= 0xFFFF:
		return 4 + payload
	}
	return 10 + payload
}

// appendTextFrame appends one final text frame carrying payload.
func appendTextFrame(b, payload []byte) []byte {
	const finText = 0x81
	switch n := len(payload); {
	case n < 126:
		b = append(b, finText, byte(n))
	case n <= 0xFFFF:
		b = append(b, finText, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, finText, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}
