package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/huddle-rtc/huddle/signal/wire"
	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"
)

// convertICEServer turns a welcome's RTCIceServer into pion's, dropping
// the URLs pion would refuse (one bad URL makes NewPeerConnection fail).
func convertICEServer(s wire.ICEServer, log *slog.Logger) (webrtc.ICEServer, bool) {
	out := webrtc.ICEServer{Username: s.Username}
	if s.Credential != "" {
		out.Credential = s.Credential
		out.CredentialType = webrtc.ICECredentialTypePassword
	}
	for _, raw := range s.URLs {
		u, err := stun.ParseURI(raw)
		if err != nil {
			log.Warn("ICE server URL ignored", "url", raw, "err", err)
			continue
		}
		isTURN := u.Scheme == stun.SchemeTypeTURN || u.Scheme == stun.SchemeTypeTURNS
		if isTURN && (s.Username == "" || s.Credential == "") {
			log.Warn("TURN URL without credentials ignored", "url", raw)
			continue
		}
		out.URLs = append(out.URLs, raw)
	}
	return out, len(out.URLs) > 0
}

var errBadCandidate = errors.New("client: malformed candidate")

// parseCandidate decodes the candidate field of a candidate message: an
// RTCIceCandidateInit, or null for the end of candidates (returned as an
// init with an empty candidate, which pion takes as the end).
func parseCandidate(raw json.RawMessage) (webrtc.ICECandidateInit, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return webrtc.ICECandidateInit{}, nil
	}
	if raw[0] != '{' {
		return webrtc.ICECandidateInit{}, fmt.Errorf("%w: not an object", errBadCandidate)
	}
	var init webrtc.ICECandidateInit
	if err := json.Unmarshal(raw, &init); err != nil {
		return webrtc.ICECandidateInit{}, fmt.Errorf("%w: %w", errBadCandidate, err)
	}
	return init, nil
}

// encodeCandidate is the candidate field for a local candidate, or null
// when gathering is complete.
func encodeCandidate(c *webrtc.ICECandidate) (json.RawMessage, error) {
	if c == nil {
		return json.RawMessage("null"), nil
	}
	init := c.ToJSON()
	return json.Marshal(init)
}
