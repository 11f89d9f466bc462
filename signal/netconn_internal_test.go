package signal

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
)

// TestWriteTextFrames frames payloads of every length class of RFC 6455
// (7-bit, 16-bit and 64-bit lengths), in batches larger than one write,
// and reads them back as a client would.
func TestWriteTextFrames(t *testing.T) {
	t.Parallel()
	sizes := []int{0, 1, 125, 126, 127, 65535, 65536, 70000, 3, 40000, 40000}
	var frames []outFrame
	for i, n := range sizes {
		frames = append(frames, outFrame{data: bytes.Repeat([]byte{byte('a' + i)}, n)})
	}
	server, client := net.Pipe()
	errc := make(chan error, 1)
	go func() {
		_, err := writeTextFrames(server, frames)
		errc <- err
		_ = server.Close()
	}()
	for i, f := range frames {
		got, err := readTextFrame(client)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(got, f.data) {
			t.Fatalf("frame %d: got %d bytes, want %d", i, len(got), len(f.data))
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if _, err := readTextFrame(client); err != io.EOF {
		t.Errorf("after the last frame: %v, want EOF", err)
	}
}

// readTextFrame reads one unmasked final text frame.
func readTextFrame(r io.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	if h[0] != 0x81 || h[1]&0x80 != 0 {
		return nil, io.ErrUnexpectedEOF
	}
	n := uint64(h[1])
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return nil, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return nil, err
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	p := make([]byte, n)
	_, err := io.ReadFull(r, p)
	return p, err
}

// TestWriteTextFramesCountsWhole: when the connection fails mid-batch, the
// writer learns how many frames went out whole, so that it can give the
// others back to the session.
func TestWriteTextFramesCountsWhole(t *testing.T) {
	t.Parallel()
	frames := []outFrame{
		{data: bytes.Repeat([]byte("a"), 10)},  // 12 bytes framed
		{data: bytes.Repeat([]byte("b"), 200)}, // 204
		{data: bytes.Repeat([]byte("c"), 300)}, // 304
	}
	server, client := net.Pipe()
	type result struct {
		written int
		err     error
	}
	done := make(chan result, 1)
	go func() {
		n, err := writeTextFrames(server, frames)
		done <- result{n, err}
	}()
	if _, err := io.ReadFull(client, make([]byte, 12+204+3)); err != nil {
		t.Fatal(err)
	}
	_ = client.Close()
	r := <-done
	if r.err == nil || r.written != 2 {
		t.Errorf("written %d, err %v; want 2 and an error", r.written, r.err)
	}
	_ = server.Close()
}
