package wire

import (
	"encoding/json"
	"unicode/utf8"
)

// This file is the hub's hot path: a decoder for the frames clients send
// most (a flat object of known, lower-case keys) and an encoder for the
// frames it relays, each a single pass without reflection. Both give
// exactly what encoding/json gives (the fuzz targets compare them); the
// decoder declines anything unusual (an unknown or differently cased key,
// a \u escape, a value of the wrong type, deep nesting, invalid UTF-8 in
// a field) and Decode then takes the encoding/json path, errors included.

// maxFastDepth bounds the nesting of a raw value (meta, candidate, data)
// the fast decoder accepts; deeper ones go to encoding/json.
const maxFastDepth = 32

// fastField is a key the fast decoder knows.
type fastField int

const (
	fieldNone fastField = iota
	fieldType
	fieldRef
	fieldRoom
	fieldName
	fieldResume
	fieldTo
	fieldFrom
	fieldSDP
	fieldMeta
	fieldCandidate
	fieldData
)

func fastFieldOf(key []byte) fastField {
	switch string(key) { // no allocation: the compiler compares in place
	case "type":
		return fieldType
	case "ref":
		return fieldRef
	case "room":
		return fieldRoom
	case "name":
		return fieldName
	case "resume":
		return fieldResume
	case "to":
		return fieldTo
	case "from":
		return fieldFrom
	case "sdp":
		return fieldSDP
	case "meta":
		return fieldMeta
	case "candidate":
		return fieldCandidate
	case "data":
		return fieldData
	}
	return fieldNone
}

// decodeFast decodes data into m as json.Unmarshal would, and reports
// whether it could; when it reports false, m is garbage and the caller
// decodes again with encoding/json.
func decodeFast(data []byte, m *Message) bool {
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == '}' {
		return skipWS(data, i+1) == len(data)
	}
	for {
		key, next, ok := plainKey(data, i)
		if !ok {
			return false
		}
		i = skipWS(data, next)
		if i >= len(data) || data[i] != ':' {
			return false
		}
		if i, ok = decodeField(data, skipWS(data, i+1), fastFieldOf(key), m); !ok {
			return false
		}
		i = skipWS(data, i)
		if i >= len(data) {
			return false
		}
		switch data[i] {
		case ',':
			i = skipWS(data, i+1)
		case '}':
			return skipWS(data, i+1) == len(data)
		default:
			return false
		}
	}
}

// decodeField decodes the value at data[i:] into field f of m and returns
// where the value ends.
func decodeField(data []byte, i int, f fastField, m *Message) (int, bool) {
	switch f {
	case fieldMeta, fieldCandidate, fieldData:
		end, ok := skipValue(data, i)
		if !ok {
			return 0, false
		}
		raw := json.RawMessage(append([]byte(nil), data[i:end]...))
		switch f {
		case fieldMeta:
			m.Meta = raw
		case fieldCandidate:
			m.Candidate = raw
		default:
			m.Data = raw
		}
		return end, true
	case fieldNone:
		return 0, false
	}
	if i+4 <= len(data) && string(data[i:i+4]) == "null" {
		return i + 4, true // null leaves a string as it was
	}
	raw, end, escaped, ok := stringValue(data, i)
	if !ok {
		return 0, false
	}
	if f == fieldType && !escaped {
		m.Type = internType(raw)
		return end, true
	}
	s := unquote(raw, escaped)
	switch f {
	case fieldType:
		m.Type = Type(s)
	case fieldRef:
		m.Ref = s
	case fieldRoom:
		m.Room = RoomID(s)
	case fieldName:
		m.Name = s
	case fieldResume:
		m.Resume = s
	case fieldTo:
		m.To = PeerID(s)
	case fieldFrom:
		m.From = PeerID(s)
	case fieldSDP:
		m.SDP = s
	}
	return end, true
}

// internType returns the constant for a known type, sparing an allocation.
func internType(b []byte) Type {
	switch string(b) {
	case "candidate":
		return TypeCandidate
	case "message":
		return TypeMessage
	case "offer":
		return TypeOffer
	case "answer":
		return TypeAnswer
	case "ping":
		return TypePing
	case "join":
		return TypeJoin
	case "leave":
		return TypeLeave
	}
	return Type(b)
}

func skipWS(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// plainKey reads a key without escapes or non-ASCII bytes at data[i:].
func plainKey(data []byte, i int) ([]byte, int, bool) {
	if i >= len(data) || data[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			return data[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20 || c >= utf8.RuneSelf:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// stringValue finds the string at data[i:]: its content between the
// quotes, its end, and whether it has escapes. It declines \u escapes,
// control characters and invalid UTF-8 (encoding/json replaces the latter
// with U+FFFD; the hub refuses such frames before decoding anyway).
func stringValue(data []byte, i int) (raw []byte, end int, escaped, ok bool) {
	if i >= len(data) || data[i] != '"' {
		return nil, 0, false, false
	}
	j := i + 1
	for j < len(data) {
		c := data[j]
		switch {
		case c == '"':
			return data[i+1 : j], j + 1, escaped, true
		case c == '\\':
			if j+1 >= len(data) || unescape(data[j+1]) == 0 {
				return nil, 0, false, false
			}
			escaped = true
			j += 2
		case c < 0x20:
			return nil, 0, false, false
		case c < utf8.RuneSelf:
			j++
		default:
			r, size := utf8.DecodeRune(data[j:])
			if r == utf8.RuneError && size == 1 {
				return nil, 0, false, false
			}
			j += size
		}
	}
	return nil, 0, false, false
}

// unescape is the byte an escape's letter stands for; 0 for \u (and for
// letters that are not escapes).
func unescape(c byte) byte {
	switch c {
	case '"', '\\', '/':
		return c
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	}
	return 0
}

// unquote turns the checked content of a string into its value.
func unquote(raw []byte, escaped bool) string {
	if !escaped {
		return string(raw)
	}
	out := make([]byte, 0, len(raw))
	for j := 0; j < len(raw); j++ {
		if raw[j] == '\\' {
			j++
			out = append(out, unescape(raw[j]))
			continue
		}
		out = append(out, raw[j])
	}
	return string(out)
}

// skipValue returns where the JSON value at data[i:] ends, checking it as
// encoding/json does (any bytes from 0x20 up inside strings, escapes
// \uXXXX included). It is iterative: nesting beyond maxFastDepth declines.
func skipValue(data []byte, i int) (int, bool) {
	var stack [maxFastDepth]byte // the open containers: '{' or '['
	depth := 0
	for {
		// i is at the start of a value.
		if i >= len(data) {
			return 0, false
		}
		var ok bool
		if c := data[i]; c == '{' || c == '[' {
			i = skipWS(data, i+1)
			if i < len(data) && data[i] == c+2 { // '}' or ']': empty
				i++
			} else {
				if depth == len(stack) {
					return 0, false
				}
				stack[depth] = c
				depth++
				if c == '{' {
					if i, ok = skipKey(data, i); !ok {
						return 0, false
					}
				}
				continue
			}
		} else if i, ok = skipScalar(data, i); !ok {
			return 0, false
		}
		// A value ended at i: close containers or go to the next element.
		for {
			if depth == 0 {
				return i, true
			}
			i = skipWS(data, i)
			if i >= len(data) {
				return 0, false
			}
			open := stack[depth-1]
			if data[i] == open+2 {
				depth--
				i++
				continue
			}
			if data[i] != ',' {
				return 0, false
			}
			i = skipWS(data, i+1)
			if open == '{' {
				if i, ok = skipKey(data, i); !ok {
					return 0, false
				}
			}
			break
		}
	}
}

// skipKey skips an object's `"key" :` and the whitespace after it.
func skipKey(data []byte, i int) (int, bool) {
	i, ok := skipString(data, i)
	if !ok {
		return 0, false
	}
	i = skipWS(data, i)
	if i >= len(data) || data[i] != ':' {
		return 0, false
	}
	return skipWS(data, i+1), true
}

func skipScalar(data []byte, i int) (int, bool) {
	switch c := data[i]; {
	case c == '"':
		return skipString(data, i)
	case c == 't':
		return skipLiteral(data, i, "true")
	case c == 'f':
		return skipLiteral(data, i, "false")
	case c == 'n':
		return skipLiteral(data, i, "null")
	case c == '-' || ('0' <= c && c <= '9'):
		return skipNumber(data, i)
	}
	return 0, false
}

func skipLiteral(data []byte, i int, lit string) (int, bool) {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return 0, false
	}
	return i + len(lit), true
}

// skipString skips a JSON string as encoding/json's scanner checks it.
func skipString(data []byte, i int) (int, bool) {
	if i >= len(data) || data[i] != '"' {
		return 0, false
	}
	for j := i + 1; j < len(data); {
		switch c := data[j]; {
		case c == '"':
			return j + 1, true
		case c == '\\':
			if j+1 >= len(data) {
				return 0, false
			}
			if data[j+1] == 'u' {
				if j+6 > len(data) || !isHex4(data[j+2:j+6]) {
					return 0, false
				}
				j += 6
				continue
			}
			if unescape(data[j+1]) == 0 {
				return 0, false
			}
			j += 2
		case c < 0x20:
			return 0, false
		default:
			j++
		}
	}
	return 0, false
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// skipNumber skips -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func skipNumber(data []byte, i int) (int, bool) {
	if data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && '1' <= data[i] && data[i] <= '9':
		i = skipDigits(data, i)
	default:
		return 0, false
	}
	if i < len(data) && data[i] == '.' {
		j := skipDigits(data, i+1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := skipDigits(data, i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}

func skipDigits(data []byte, i int) int {
	for i < len(data) && '0' <= data[i] && data[i] <= '9' {
		i++
	}
	return i
}

// EncodeRelay returns the frame the hub relays for m, a validated offer,
// answer, candidate or message, sent by from: m's type, to and own field
// (sdp, candidate or data) with from set. The bytes are those of
// Encode(Message{Type: m.Type, To: m.To, From: from, <that field>}),
// without reflection and in one allocation.
func EncodeRelay(m *Message, from PeerID) []byte {
	var field string
	var str string
	var raw []byte
	switch m.Type {
	case TypeOffer, TypeAnswer:
		field, str = `,"sdp":`, m.SDP
	case TypeCandidate:
		field, raw = `,"candidate":`, m.Candidate
	default:
		field, raw = `,"data":`, m.Data
	}
	b := make([]byte, 0, 48+len(m.Type)+len(m.To)+len(from)+len(str)+len(raw)+len(str)/8)
	b = append(b, `{"type":`...)
	b = appendString(b, string(m.Type))
	if m.To != "" {
		b = append(b, `,"to":`...)
		b = appendString(b, string(m.To))
	}
	if from != "" {
		b = append(b, `,"from":`...)
		b = appendString(b, string(from))
	}
	switch {
	case str != "":
		b = append(b, field...)
		b = appendString(b, str)
	case len(raw) > 0:
		b = append(b, field...)
		b = appendCompact(b, raw)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as encoding/json writes a string (HTML-safe:
// <, > and & escaped, as are U+2028 and U+2029; invalid UTF-8 becomes
// U+FFFD).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendCompact appends the valid JSON value raw as encoding/json writes a
// json.RawMessage: whitespace between tokens removed, <, > and & in
// strings escaped, as are U+2028 and U+2029.
func appendCompact(b []byte, raw []byte) []byte {
	start := 0
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if !inString {
			switch c {
			case ' ', '\t', '\n', '\r':
				b = append(b, raw[start:i]...)
				start = i + 1
			case '"':
				inString = true
			}
			continue
		}
		switch {
		case c == '\\':
			i++ // the escaped byte cannot end the string
		case c == '"':
			inString = false
		case c == '<' || c == '>' || c == '&':
			b = append(b, raw[start:i]...)
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			start = i + 1
		case c == 0xE2 && i+2 < len(raw) && raw[i+1] == 0x80 && raw[i+2]&^1 == 0xA8:
			b = append(b, raw[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[raw[i+2]&0xF])
			i += 2
			start = i + 1
		}
	}
	return append(b, raw[start:]...)
}
