package signal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// api is the room API for app backends, served under /api/ when an admin
// token is configured (docs/protocol.md, Room API). It reaches rooms
// through the broker alone, so that it answers for the whole cluster.
type api struct {
	s       *Server
	enabled bool
	token   [32]byte // SHA-256 of the admin token: compared in constant time
	mux     *http.ServeMux

	requests *prometheus.CounterVec
	streams  prometheus.Gauge
}

// apiError is the JSON body of every refusal.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type roomsJSON struct {
	Rooms []roomCountJSON `json:"rooms"`
}

type roomCountJSON struct {
	Room  wire.RoomID `json:"room"`
	Peers int         `json:"peers"`
}

type roomJSON struct {
	Room  wire.RoomID  `json:"room"`
	Peers []memberJSON `json:"peers"`
}

type memberJSON struct {
	ID        wire.PeerID     `json:"id"`
	Name      string          `json:"name"`
	Meta      json.RawMessage `json:"meta"`
	JoinedAt  time.Time       `json:"joinedAt"`
	Resumable bool            `json:"resumable"`
}

func newAPI(s *Server, reg prometheus.Registerer) *api {
	a := &api{
		s:       s,
		enabled: s.cfg.AdminToken != "",
		token:   sha256.Sum256([]byte(s.cfg.AdminToken)),
		mux:     http.NewServeMux(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "huddle_api_requests_total", Help: "Room API requests, by route and HTTP status.",
		}, []string{"route", "status"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "huddle_api_event_streams", Help: "Open room API event streams (GET /api/events).",
		}),
	}
	if reg != nil {
		reg.MustRegister(a.requests, a.streams)
	}
	a.mux.HandleFunc("GET /api/rooms", a.listRooms)
	a.mux.HandleFunc("GET /api/rooms/{room}", a.getRoom)
	a.mux.HandleFunc("DELETE /api/rooms/{room}/peers/{id}", a.kick)
	a.mux.HandleFunc("POST /api/rooms/{room}/messages", a.announce)
	a.mux.HandleFunc("GET /api/events", a.serveEvents)
	// The same paths with other methods, and other paths, answer in JSON
	// too (ServeMux's own answers are plain text).
	for path, allow := range map[string]string{
		"/api/rooms":                   "GET, HEAD",
		"/api/rooms/{room}":            "GET, HEAD",
		"/api/rooms/{room}/peers/{id}": "DELETE",
		"/api/rooms/{room}/messages":   "POST",
		"/api/events":                  "GET, HEAD",
	} {
		a.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			a.error(w, r, http.StatusMethodNotAllowed, "method-not-allowed", r.Method+" is not allowed here; use "+allow)
		})
	}
	a.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		a.error(w, r, http.StatusNotFound, "not-found", "no such route")
	})
	return a
}

// ServeHTTP answers 404 to everything while the API is off, 401 to a
// request without the admin token, and routes the others.
func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !a.enabled {
		a.error(w, r, http.StatusNotFound, "not-found", "the room API is off (set HUDDLE_ADMIN_TOKEN)")
		return
	}
	if !a.authorized(r) {
		// Debug, and never the header: whoever sends bad tokens must not
		// fill the logs, and a near-miss token must not land in them.
		a.s.log.Debug("room API request refused", "status", http.StatusUnauthorized, "addr", a.s.limits.clientAddr(r))
		w.Header().Set("WWW-Authenticate", `Bearer realm="huddle"`)
		a.error(w, r, http.StatusUnauthorized, "unauthorized", "missing or wrong admin token (Authorization: Bearer <token>)")
		return
	}
	a.mux.ServeHTTP(w, r)
}

// authorized checks the bearer token. Comparing digests keeps the time
// independent of the token's length as well as of its content.
func (a *api) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(sum[:], a.token[:]) == 1
}

// GET /api/rooms
func (a *api) listRooms(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), brokerTimeout)
	defer cancel()
	rooms, err := a.s.broker.Rooms(ctx)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	out := roomsJSON{Rooms: make([]roomCountJSON, len(rooms))}
	for i, rc := range rooms {
		out.Rooms[i] = roomCountJSON{Room: rc.Room, Peers: rc.Peers}
	}
	a.reply(w, r, http.StatusOK, out)
}

// GET /api/rooms/{room}
func (a *api) getRoom(w http.ResponseWriter, r *http.Request) {
	room, ok := a.room(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), brokerTimeout)
	defer cancel()
	members, err := a.s.broker.Roster(ctx, room)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	if len(members) == 0 {
		a.unknownRoom(w, r, room)
		return
	}
	out := roomJSON{Room: room, Peers: make([]memberJSON, len(members))}
	for i, m := range members {
		meta := m.Meta
		if meta == nil {
			meta = json.RawMessage("{}")
		}
		out.Peers[i] = memberJSON{ID: m.ID, Name: m.Name, Meta: meta, JoinedAt: m.JoinedAt.UTC(), Resumable: m.Detached}
	}
	a.reply(w, r, http.StatusOK, out)
}

// DELETE /api/rooms/{room}/peers/{id}
func (a *api) kick(w http.ResponseWriter, r *http.Request) {
	room, ok := a.room(w, r)
	if !ok {
		return
	}
	id := wire.PeerID(r.PathValue("id"))
	ctx, cancel := context.WithTimeout(r.Context(), brokerTimeout)
	defer cancel()
	err := ErrUnknownPeer
	if id != "" && len(id) <= wire.MaxPeerIDLen {
		err = a.s.broker.Kick(ctx, room, id)
	}
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
		a.count(r, http.StatusNoContent)
	case errors.Is(err, ErrUnknownPeer):
		a.error(w, r, http.StatusNotFound, "unknown-peer", fmt.Sprintf("no peer %q in room %q", id, room))
	default:
		a.internal(w, r, err)
	}
}

// POST /api/rooms/{room}/messages {"data": ...}
func (a *api) announce(w http.ResponseWriter, r *http.Request) {
	room, ok := a.room(w, r)
	if !ok {
		return
	}
	data, ok := a.messageData(w, r)
	if !ok {
		return
	}
	frame, err := wire.Encode(wire.Message{Type: wire.TypeMessage, From: wire.ServerID, Data: data})
	if err != nil {
		a.internal(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), brokerTimeout)
	defer cancel()
	members, err := a.s.broker.Members(ctx, room)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	if len(members) == 0 {
		a.unknownRoom(w, r, room)
		return
	}
	if err := a.s.broker.Publish(ctx, Envelope{Room: room, Frame: frame}); err != nil {
		a.internal(w, r, err)
		return
	}
	a.s.log.Info("server message sent", "room", room, "peers", len(members), "bytes", len(data))
	w.WriteHeader(http.StatusAccepted)
	a.count(r, http.StatusAccepted)
}

// messageData reads the body {"data": <any JSON>}, bounded by the frame
// size limit, or answers why not.
func (a *api) messageData(w http.ResponseWriter, r *http.Request) (json.RawMessage, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.s.cfg.MaxMessageBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		a.error(w, r, http.StatusRequestEntityTooLarge, "too-large",
			"the body is larger than "+strconv.FormatInt(tooBig.Limit, 10)+" bytes (HUDDLE_MAX_MESSAGE_BYTES)")
		return nil, false
	case err != nil:
		a.error(w, r, http.StatusBadRequest, "bad-request", "cannot read the body")
		return nil, false
	}
	var in struct {
		Data json.RawMessage `json:"data"`
	}
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		a.error(w, r, http.StatusBadRequest, "bad-request", `the body must be a JSON object {"data": ...}`)
		return nil, false
	}
	if err := json.Unmarshal(body, &in); err != nil {
		a.error(w, r, http.StatusBadRequest, "bad-request", "the body is not valid JSON")
		return nil, false
	}
	if len(in.Data) == 0 {
		a.error(w, r, http.StatusBadRequest, "bad-request", `missing "data" (any JSON value, null included)`)
		return nil, false
	}
	return in.Data, true
}

// room reads and checks the {room} of the path.
func (a *api) room(w http.ResponseWriter, r *http.Request) (wire.RoomID, bool) {
	room := wire.RoomID(r.PathValue("room"))
	if !wire.ValidRoom(room) {
		a.error(w, r, http.StatusBadRequest, "bad-request", "room must be 1 to 64 characters of [A-Za-z0-9._~-]")
		return "", false
	}
	return room, true
}

func (a *api) unknownRoom(w http.ResponseWriter, r *http.Request, room wire.RoomID) {
	a.error(w, r, http.StatusNotFound, "unknown-room", fmt.Sprintf("no peer in room %q", room))
}

func (a *api) internal(w http.ResponseWriter, r *http.Request, err error) {
	a.s.log.Error("room API request failed", "route", r.Pattern, "err", err)
	a.error(w, r, http.StatusInternalServerError, "internal", "internal error")
}

func (a *api) error(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	a.reply(w, r, status, apiError{Code: code, Message: message})
}

// reply writes v as the JSON body with status.
func (a *api) reply(w http.ResponseWriter, r *http.Request, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"code":"internal","message":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
	a.count(r, status)
}

// count records a request by its route pattern (no room, no peer id).
func (a *api) count(r *http.Request, status int) {
	route := r.Pattern
	if route == "" {
		route = "none"
	}
	a.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
}
