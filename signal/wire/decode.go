package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// Decode turns one frame from a client into a validated message. It is the
// only place the server turns untrusted bytes into a typed message. A
// returned *Error is what to send back to the client (bad-message or
// unknown-type), with the message's ref when the ref itself was valid.
func Decode(data []byte) (Message, *Error) {
	var m Message
	if decodeFast(data, &m) {
		if err := m.Validate(); err != nil {
			err.Ref = validRef(m.Ref)
			return Message{}, err
		}
		return m, nil
	}
	return decodeSlow(data)
}

// decodeSlow is Decode with encoding/json, for what decodeFast declines:
// its own function, so that only its message escapes to the heap.
func decodeSlow(data []byte) (Message, *Error) {
	var m Message
	if err := unmarshalObject(data, &m); err != nil {
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) {
			return Message{}, err.(*Error)
		}
		// encoding/json decodes the rest of the object after a type error,
		// so the type and ref are known if they were well-formed.
		if typeErr.Field == "ref" {
			return Message{}, Errorf(CodeBadMessage, "ref must be a string")
		}
		if m.Type == "" || typeErr.Field == "type" {
			e := Errorf(CodeBadMessage, "type must be a string")
			e.Ref = validRef(m.Ref)
			return Message{}, e
		}
		if !isClientType(m.Type) {
			return Message{}, unknownType(m)
		}
		e := Errorf(CodeBadMessage, "%s: field %q has the wrong type", m.Type, typeErr.Field)
		e.Ref = validRef(m.Ref)
		return Message{}, e
	}
	if err := m.Validate(); err != nil {
		err.Ref = validRef(m.Ref)
		return Message{}, err
	}
	return m, nil
}

// Parse decodes one frame from the server without the server's validation,
// for clients. It fails only for frames that are not a JSON object with a
// string type.
func Parse(data []byte) (Message, error) {
	var m Message
	if err := unmarshalObject(data, &m); err != nil {
		return Message{}, err
	}
	if m.Type == "" {
		return Message{}, Errorf(CodeBadMessage, "missing type")
	}
	return m, nil
}

// Encode marshals a message (a Message, a Welcome, or any JSON value) to the
// bytes of one text frame.
func Encode(v any) ([]byte, error) {
	return json.Marshal(v)
}

func unmarshalObject(data []byte, m *Message) error {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		if json.Valid(data) {
			return Errorf(CodeBadMessage, "not a JSON object")
		}
		return Errorf(CodeBadMessage, "not JSON")
	}
	if err := json.Unmarshal(data, m); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return err
		}
		return Errorf(CodeBadMessage, "not JSON")
	}
	return nil
}

// Validate checks a client-to-server message: a known type, its required
// fields present and well-formed. Its default case refuses every type a
// client may not send.
func (m *Message) Validate() *Error {
	if m.Type == "" {
		return Errorf(CodeBadMessage, "missing type")
	}
	if validRef(m.Ref) != m.Ref {
		return Errorf(CodeBadMessage, "ref is longer than %d characters", MaxRefLen)
	}
	switch m.Type {
	case TypeJoin:
		return m.validateJoin()
	case TypeOffer, TypeAnswer:
		if err := m.validateTo(true); err != nil {
			return err
		}
		if m.SDP == "" {
			return Errorf(CodeBadMessage, "%s: missing sdp", m.Type)
		}
	case TypeCandidate:
		if err := m.validateTo(true); err != nil {
			return err
		}
		if len(m.Candidate) == 0 {
			return Errorf(CodeBadMessage, "candidate: missing candidate (null ends the candidates)")
		}
		if c := m.Candidate[0]; c != '{' && c != 'n' {
			return Errorf(CodeBadMessage, "candidate: candidate must be an object or null")
		}
	case TypeMessage:
		if err := m.validateTo(false); err != nil {
			return err
		}
		if len(m.Data) == 0 {
			return Errorf(CodeBadMessage, "message: missing data")
		}
	case TypeLeave, TypePing:
	default:
		return unknownType(*m)
	}
	return nil
}

func (m *Message) validateJoin() *Error {
	if m.Room == "" {
		return Errorf(CodeBadMessage, "join: missing room")
	}
	if !ValidRoom(m.Room) {
		return Errorf(CodeBadMessage, "join: room must be 1 to %d characters of [A-Za-z0-9._~-]", MaxRoomLen)
	}
	if utf8.RuneCountInString(m.Name) > MaxNameLen {
		return Errorf(CodeBadMessage, "join: name is longer than %d characters", MaxNameLen)
	}
	if len(m.Meta) > 0 {
		if bytes.Equal(m.Meta, []byte("null")) {
			m.Meta = nil
			return nil
		}
		if m.Meta[0] != '{' {
			return Errorf(CodeBadMessage, "join: meta must be a JSON object")
		}
		// Measure meta as Encode writes it (compacted, with <, > and &
		// escaped), so that what is accepted is accepted again once relayed.
		meta, err := json.Marshal(m.Meta)
		if err != nil {
			return Errorf(CodeBadMessage, "join: meta is not valid JSON")
		}
		if len(meta) > MaxMetaLen {
			return Errorf(CodeBadMessage, "join: meta is larger than %d bytes", MaxMetaLen)
		}
		m.Meta = meta
	}
	return nil
}

func (m *Message) validateTo(required bool) *Error {
	if m.To == "" {
		if required {
			return Errorf(CodeBadMessage, "%s: missing to", m.Type)
		}
		return nil
	}
	if len(m.To) > MaxPeerIDLen {
		return Errorf(CodeBadMessage, "%s: to is longer than %d characters", m.Type, MaxPeerIDLen)
	}
	return nil
}

// ValidRoom reports whether r is a valid room name.
func ValidRoom(r RoomID) bool {
	if len(r) == 0 || len(r) > MaxRoomLen {
		return false
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '_' || c == '~' || c == '-':
		default:
			return false
		}
	}
	return true
}

func isClientType(t Type) bool {
	switch t {
	case TypeJoin, TypeOffer, TypeAnswer, TypeCandidate, TypeMessage, TypeLeave, TypePing:
		return true
	}
	return false
}

func unknownType(m Message) *Error {
	e := Errorf(CodeUnknownType, "unknown message type %q", truncate(string(m.Type), 64))
	e.Ref = validRef(m.Ref)
	return e
}

func validRef(ref string) string {
	if len(ref) > MaxRefLen && utf8.RuneCountInString(ref) > MaxRefLen {
		return ""
	}
	return ref
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
