package signal

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/huddle-rtc/huddle/signal/wire"
)

// DefaultEventBacklog is how many presence events a node keeps for
// event-stream clients that reconnect with Last-Event-ID; one that missed
// more gets a reset event.
const DefaultEventBacklog = 1024

// DefaultEventHeartbeat is how often an idle event stream gets a comment
// line, so that proxies do not time it out.
const DefaultEventHeartbeat = 15 * time.Second

// eventData is the JSON of an event-stream event's data line.
type eventData struct {
	Room   wire.RoomID    `json:"room"`
	Peer   *wire.PeerInfo `json:"peer,omitempty"`   // peer-joined
	ID     wire.PeerID    `json:"id,omitempty"`     // peer-left
	Reason string         `json:"reason,omitempty"` // peer-left
	Time   time.Time      `json:"time"`
}

// logEntry is one event of the log, encoded once in the event-stream
// format for every subscriber.
type logEntry struct {
	id    uint64
	room  wire.RoomID
	frame []byte
}

// eventLog is this node's recent presence events: a bounded ring that
// event streams read by id. Appending never waits for a reader; a reader
// that falls more than the ring behind is told to reset.
//
// Ids increase by one per event. The first is the node's start time in
// milliseconds times 1000, so that an id from an earlier run of the node
// (smaller) or from another node (almost surely not held) is taken as
// unknown rather than replayed from the wrong place.
type eventLog struct {
	mu     sync.Mutex // guards the fields below; a leaf lock
	ring   []logEntry // event id lives at ring[id % len(ring)]
	oldest uint64     // the oldest id held; == next when none is
	next   uint64     // the id of the next event
	wake   chan struct{}
}

func newEventLog(backlog int, now time.Time) *eventLog {
	first := uint64(now.UnixMilli()) * 1000
	return &eventLog{
		ring:   make([]logEntry, backlog),
		oldest: first,
		next:   first,
		wake:   make(chan struct{}),
	}
}

// append records ev and wakes the streams.
func (l *eventLog) append(ev PresenceEvent) {
	data := eventData{Room: ev.Room, Time: ev.Time.UTC()}
	switch ev.Kind {
	case PeerJoined:
		p := ev.Peer
		data.Peer = &p
	case PeerLeft:
		data.ID, data.Reason = ev.Peer.ID, ev.Reason
	}
	body, err := json.Marshal(data)
	if err != nil {
		panic(err) // built by the server from valid parts
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	id := l.next
	l.ring[id%uint64(len(l.ring))] = logEntry{id: id, room: ev.Room, frame: sseFrame(id, string(ev.Kind), body)}
	l.next++
	if l.next-l.oldest > uint64(len(l.ring)) {
		l.oldest++
	}
	close(l.wake)
	l.wake = make(chan struct{})
}

// last is the id of the latest event (one below the first when none).
func (l *eventLog) last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next - 1
}

// since appends to dst the events after id (of room alone, unless room is
// empty) and returns them with the latest id and a channel closed by the
// next append. reset is true when the events right after id are no longer
// held, or id is not one this log gave: the caller must say so and go on
// from last.
func (l *eventLog) since(id uint64, room wire.RoomID, dst []logEntry) (events []logEntry, last uint64, reset bool, wake <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	last = l.next - 1
	if id > last || id+1 < l.oldest {
		return dst, last, true, l.wake
	}
	for i := id + 1; i < l.next; i++ {
		e := l.ring[i%uint64(len(l.ring))]
		if room == "" || e.room == room {
			dst = append(dst, e)
		}
	}
	return dst, last, false, l.wake
}

// sseFrame encodes one event in the text/event-stream format.
func sseFrame(id uint64, event string, data []byte) []byte {
	b := make([]byte, 0, len(data)+len(event)+40)
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, "\nevent: "...)
	b = append(b, event...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

func resetFrame(last uint64) []byte {
	return sseFrame(last, "reset", []byte(`{"lastEventId":`+strconv.FormatUint(last, 10)+`}`))
}

var heartbeatFrame = []byte(": heartbeat\n\n")

// stream is one open event stream: its writer's deadline can be cut from
// another goroutine when the server closes.
type stream struct {
	w  http.ResponseWriter
	rc *http.ResponseController

	mu      sync.Mutex
	aborted bool
}

// deadline bounds the next writes.
func (st *stream) deadline(d time.Duration) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.aborted {
		_ = st.rc.SetWriteDeadline(time.Now().Add(d))
	}
}

// clearDeadline removes the write deadline of a stream that ends well.
func (st *stream) clearDeadline() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.aborted {
		_ = st.rc.SetWriteDeadline(time.Time{})
	}
}

// abort makes a blocked write fail now.
func (st *stream) abort() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.aborted = true
	_ = st.rc.SetWriteDeadline(time.Now())
}

// serveEvents is GET /api/events: the presence events of every room (or
// of ?room=) as a text/event-stream, from the event after Last-Event-ID
// (or ?lastEventId=) when given, else from now on.
func (a *api) serveEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	room := wire.RoomID(q.Get("room"))
	if room != "" && !wire.ValidRoom(room) {
		a.error(w, r, http.StatusBadRequest, "bad-request", "room must be 1 to 64 characters of [A-Za-z0-9._~-]")
		return
	}
	s := a.s
	st := &stream{w: w, rc: http.NewResponseController(w)}
	if !s.openStream(st) {
		a.error(w, r, http.StatusServiceUnavailable, "unavailable", "the server is draining; reconnect to another node")
		return
	}
	defer s.closeStream(st)
	defer st.clearDeadline() // the connection may serve another request

	cursor, replay := lastEventID(r)
	var pending []byte
	if !replay {
		cursor = s.hub.events.last()
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no") // nginx: do not buffer
	w.WriteHeader(http.StatusOK)
	a.count(r, http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	s.log.Debug("event stream opened", "room", room)
	heartbeat := time.NewTicker(s.eventHeartbeat)
	defer heartbeat.Stop()
	var batch []logEntry
	started := false // the headers are out
	for {
		var last uint64
		var reset bool
		var wake <-chan struct{}
		batch, last, reset, wake = s.hub.events.since(cursor, room, batch[:0])
		if reset {
			pending = append(pending, resetFrame(last)...)
		}
		for _, e := range batch {
			pending = append(pending, e.frame...)
		}
		cursor = last
		if len(pending) > 0 || !started {
			if !st.write(s.cfg.WriteTimeout, pending) {
				return
			}
			pending, started = pending[:0], true
		}
		select {
		case <-wake:
		case <-heartbeat.C:
			pending = append(pending, heartbeatFrame...)
		case <-r.Context().Done():
			return
		case <-s.stop:
			return
		}
	}
}

// write sends b (possibly nothing) and flushes, within timeout.
func (st *stream) write(timeout time.Duration, b []byte) bool {
	st.deadline(timeout)
	if len(b) > 0 {
		if _, err := st.w.Write(b); err != nil {
			return false
		}
	}
	return st.rc.Flush() == nil
}

// lastEventID reads the id a reconnecting client last saw: the
// Last-Event-ID header, or ?lastEventId= (for clients that cannot set
// headers). An id that does not parse is taken as unknown: the stream
// starts with a reset.
func lastEventID(r *http.Request) (uint64, bool) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("lastEventId")
	}
	if v == "" {
		return 0, false
	}
	id, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return ^uint64(0), true // beyond any id: a reset
	}
	return id, true
}
