package main

import (
	"encoding/binary"
)

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// maxLoadFrame bounds a frame from the server (its limit is far lower).
const maxLoadFrame = 16 << 20

// frameReader parses the server's frames from what is read off the
// socket: unmasked, possibly fragmented (continuation frames).
type frameReader struct {
	buf    []byte // read, not yet parsed
	frag   []byte // the start of a fragmented message
	inFrag bool
	bad    bool // the stream is not one a server may send
}

// space returns room to read into at the end of the buffer.
func (r *frameReader) space() []byte {
	if cap(r.buf)-len(r.buf) < 1024 {
		grown := make([]byte, len(r.buf), max(2*cap(r.buf), len(r.buf)+4096))
		copy(grown, r.buf)
		r.buf = grown
	}
	return r.buf[len(r.buf):cap(r.buf)]
}

// fill takes n bytes read into space() and hands every complete message
// or control frame to serve, whose payload is valid only during the call.
// It reports false when serve did, or when the stream is not valid.
func (r *frameReader) fill(n int, serve func(op byte, payload []byte) bool) bool {
	r.buf = r.buf[:len(r.buf)+n]
	b := r.buf
	ok := true
	for ok {
		op, fin, payload, size := parseFrame(b)
		if size == 0 {
			break
		}
		if size < 0 {
			r.bad = true
			return false
		}
		b = b[size:]
		switch {
		case op >= opClose: // control frames are never fragmented
			ok = serve(op, payload)
		case op == opContinuation && r.inFrag:
			r.frag = append(r.frag, payload...)
			if fin {
				r.inFrag = false
				ok = serve(opText, r.frag)
			}
		case fin:
			ok = serve(op, payload)
		default:
			r.frag, r.inFrag = append(r.frag[:0], payload...), true
		}
	}
	r.buf = r.buf[:copy(r.buf, b)]
	return ok
}

// parseFrame reads the frame at the start of b: its size is 0 while it is
// incomplete and -1 when it is not a frame a server may send.
func parseFrame(b []byte) (op byte, fin bool, payload []byte, size int) {
	if len(b) < 2 {
		return 0, false, nil, 0
	}
	if b[1]&0x80 != 0 || b[0]&0x70 != 0 {
		return 0, false, nil, -1 // masked, or with reserved bits (no extension is offered)
	}
	n, h := uint64(b[1]&0x7F), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return 0, false, nil, 0
		}
		n, h = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return 0, false, nil, 0
		}
		n, h = binary.BigEndian.Uint64(b[2:]), 10
	}
	if n > maxLoadFrame {
		return 0, false, nil, -1
	}
	if uint64(len(b)-h) < n {
		return 0, false, nil, 0
	}
	return b[0] & 0x0F, b[0]&0x80 != 0, b[h : h+int(n)], h + int(n)
}

// appendClientFrame appends one final frame as a client sends it: masked,
// with a key of zeros, so the payload goes out as it is (RFC 6455 lets the
// server take any key; a load tool need not hide its payload from
// proxies).
func appendClientFrame(b []byte, op byte, payload []byte) []byte {
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|op, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|op, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|op, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, 0, 0, 0, 0)
	return append(b, payload...)
}
