package signal_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// sseEvent is one event (or comment) of an event stream.
type sseEvent struct {
	id, event, data string
	comment         string // a comment line, alone
}

// eventData is the data of a presence event.
type eventData struct {
	Room   wire.RoomID    `json:"room"`
	Peer   *wire.PeerInfo `json:"peer"`
	ID     wire.PeerID    `json:"id"`
	Reason string         `json:"reason"`
	Time   time.Time      `json:"time"`
}

// sseClient reads one event stream: a reader goroutine parses it into a
// channel, the test reads that with deadlines.
type sseClient struct {
	t       testing.TB
	resp    *http.Response
	cancel  context.CancelFunc
	events  chan sseEvent
	stop    chan struct{} // closed by close: the reader stops
	done    chan struct{} // closed when the reader has ended
	started sync.Once
	err     error // why the reader ended; read after done
}

// streamOpts change how a test opens an event stream.
type streamOpts struct {
	query  string      // after ?
	header http.Header // Last-Event-ID...
	client *http.Client
	noRead bool // the test starts the reader itself (startReading)
}

// openEvents opens GET /api/events and fails unless it answers 200 with
// text/event-stream. The stream is closed at cleanup.
func (h *harness) openEvents(t testing.TB, o streamOpts) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	url := h.ts.URL + "/api/events"
	if o.query != "" {
		url += "?" + o.query
	}
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range o.header {
		req.Header[k] = vs
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	hc := o.client
	if hc == nil {
		hc = h.ts.Client()
	}
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET /api/events: %v", err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		_ = resp.Body.Close()
		t.Fatalf("GET /api/events: HTTP %d, %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &sseClient{
		t: t, resp: resp, cancel: cancel,
		events: make(chan sseEvent, 1024),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	t.Cleanup(c.close)
	if !o.noRead {
		c.startReading()
	}
	return c
}

func (c *sseClient) startReading() {
	c.started.Do(func() { go c.readLoop() })
}

func (c *sseClient) readLoop() {
	defer close(c.done)
	r := bufio.NewReader(c.resp.Body)
	var ev sseEvent
	emit := func(ev sseEvent) bool {
		select {
		case c.events <- ev:
			return true
		case <-c.stop:
			return false
		}
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			c.err = err
			return
		}
		line = strings.TrimSuffix(line, "\n")
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		ok := true
		switch {
		case line == "":
			if ev != (sseEvent{}) {
				ok = emit(ev)
			}
			ev = sseEvent{}
		case field == "":
			ok = emit(sseEvent{comment: value})
		case field == "id":
			ev.id = value
		case field == "event":
			ev.event = value
		case field == "data":
			ev.data += value
		default:
			c.err = fmt.Errorf("unexpected line %q", line)
			return
		}
		if !ok {
			return
		}
	}
}

// close ends the stream and waits for the reader.
func (c *sseClient) close() {
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	c.cancel()
	_ = c.resp.Body.Close()
	c.startReading() // so that done is closed
	<-c.done
}

// smallBufferClient is an HTTP client whose connections have a small TCP
// receive buffer, so that a stream it stops reading fills it quickly.
func smallBufferClient(t testing.TB) *http.Client {
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<10)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	tr := &http.Transport{DialContext: d.DialContext, ReadBufferSize: 1024}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// next returns the next event or comment, failing after the deadline.
func (c *sseClient) nextAny() sseEvent {
	c.t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case ev := <-c.events:
		return ev
	case <-c.done:
		select {
		case ev := <-c.events:
			return ev
		default:
		}
		c.t.Fatalf("event stream ended: %v", c.err)
	case <-timer.C:
		c.t.Fatalf("no event within %s", wait)
	}
	return sseEvent{}
}

// next returns the next event, skipping comments.
func (c *sseClient) next() sseEvent {
	c.t.Helper()
	for {
		if ev := c.nextAny(); ev.comment == "" {
			return ev
		}
	}
}

// expect returns the next event's data, failing unless it is of kind in
// room.
func (c *sseClient) expect(kind string, room string) (sseEvent, eventData) {
	c.t.Helper()
	ev := c.next()
	var d eventData
	if err := json.Unmarshal([]byte(ev.data), &d); err != nil {
		c.t.Fatalf("event %+v: data %v", ev, err)
	}
	if ev.event != kind || string(d.Room) != room {
		c.t.Fatalf("got event %s %s, want %s in room %s", ev.event, ev.data, kind, room)
	}
	if d.Time.IsZero() || time.Since(d.Time) > time.Minute {
		c.t.Errorf("event %s: time %s", ev.event, d.Time)
	}
	return ev, d
}

// expectJoined, expectLeft check a peer's events.
func (c *sseClient) expectJoined(room string, id wire.PeerID) sseEvent {
	c.t.Helper()
	ev, d := c.expect("peer-joined", room)
	if d.Peer == nil || d.Peer.ID != id {
		c.t.Fatalf("peer-joined %s, want %s", ev.data, id)
	}
	return ev
}

func (c *sseClient) expectLeft(room string, id wire.PeerID, reason string) sseEvent {
	c.t.Helper()
	ev, d := c.expect("peer-left", room)
	if d.ID != id || d.Reason != reason {
		c.t.Fatalf("peer-left %s, want %s %s", ev.data, id, reason)
	}
	return ev
}

// expectReset fails unless the next event is a reset, and returns its id.
func (c *sseClient) expectReset() uint64 {
	c.t.Helper()
	ev := c.next()
	var d struct {
		LastEventID uint64 `json:"lastEventId"`
	}
	if ev.event != "reset" || json.Unmarshal([]byte(ev.data), &d) != nil || strconv.FormatUint(d.LastEventID, 10) != ev.id {
		c.t.Fatalf("got %+v, want a reset whose data names its id", ev)
	}
	return d.LastEventID
}

// expectEnd fails unless the stream ends (after any events).
func (c *sseClient) expectEnd() {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(wait):
		c.t.Fatalf("event stream still open after %s", wait)
	}
}

func parseID(t testing.TB, ev sseEvent) uint64 {
	t.Helper()
	id, err := strconv.ParseUint(ev.id, 10, 64)
	if err != nil {
		t.Fatalf("event %+v: id %v", ev, err)
	}
	return id
}

// TestEvents: room-created, peer-joined, peer-left with each reason and
// room-closed, in order, with increasing ids; ?room= streams one room.
func TestEvents(t *testing.T) {
	t.Parallel()
	h := newHarness(t, apiConfig(func(c *signal.Config) { c.ResumeGrace = 50 * time.Millisecond }), signal.Options{}, withAPI)
	all := h.openEvents(t, streamOpts{})
	one := h.openEvents(t, streamOpts{query: "room=main"})

	cs := h.joinRoom(t, "main", 2)
	a, b := cs[0], cs[1]
	gone := h.joinRoom(t, "side", 1)[0]
	b.send(map[string]any{"type": "leave"})
	b.expectClose(1000)
	a.expect(wire.TypePeerLeft)
	gone.close() // times out after its grace
	h.call(t, "DELETE", "/api/rooms/main/peers/"+string(a.id), "").expectStatus(t, http.StatusNoContent, "")

	var ids []uint64
	ev, _ := all.expect("room-created", "main")
	ids = append(ids, parseID(t, ev))
	ev, d := all.expect("peer-joined", "main")
	if d.Peer == nil || d.Peer.ID != a.id || string(d.Peer.Meta) != "{}" {
		t.Errorf("peer-joined %s, want %s with meta {}", ev.data, a.id)
	}
	ids = append(ids, parseID(t, ev))
	for _, ev := range []sseEvent{
		all.expectJoined("main", b.id),
		func() sseEvent { ev, _ := all.expect("room-created", "side"); return ev }(),
		all.expectJoined("side", gone.id),
		all.expectLeft("main", b.id, wire.ReasonLeft),
	} {
		ids = append(ids, parseID(t, ev))
	}
	// The timeout and the kick race; each room's events keep their order.
	var side, main []string
	for range 4 {
		ev := all.next()
		ids = append(ids, parseID(t, ev))
		var d eventData
		if err := json.Unmarshal([]byte(ev.data), &d); err != nil {
			t.Fatal(err)
		}
		desc := ev.event + " " + string(d.ID) + " " + d.Reason
		if d.Room == "side" {
			side = append(side, desc)
		} else {
			main = append(main, desc)
		}
	}
	if want := []string{"peer-left " + string(gone.id) + " timeout", "room-closed  "}; fmt.Sprint(side) != fmt.Sprint(want) {
		t.Errorf("side: %q, want %q", side, want)
	}
	if want := []string{"peer-left " + string(a.id) + " kicked", "room-closed  "}; fmt.Sprint(main) != fmt.Sprint(want) {
		t.Errorf("main: %q, want %q", main, want)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] != ids[i-1]+1 {
			t.Errorf("ids %v: want each one more than the last", ids)
			break
		}
	}

	// The filtered stream saw main's events alone, with the same ids.
	ev, _ = one.expect("room-created", "main")
	if parseID(t, ev) != ids[0] {
		t.Errorf("filtered stream: id %s, want %d", ev.id, ids[0])
	}
	one.expectJoined("main", a.id)
	one.expectJoined("main", b.id)
	one.expectLeft("main", b.id, wire.ReasonLeft)
	one.expectLeft("main", a.id, wire.ReasonKicked)
	one.expect("room-closed", "main")
	// Nothing of side came before this: a new event of main is next.
	h.joinRoom(t, "main", 1)
	one.expect("room-created", "main")
}

// TestEventsReplay: a client that reconnects with Last-Event-ID (or
// ?lastEventId=) gets what it missed, in order, then live events; one
// without gets live events only, and an up-to-date id replays nothing.
func TestEventsReplay(t *testing.T) {
	t.Parallel()
	h := newHarness(t, apiConfig(nil), signal.Options{}, withAPI)
	s1 := h.openEvents(t, streamOpts{})
	a := h.joinRoom(t, "replay", 1)[0]
	s1.expect("room-created", "replay")
	last := s1.expectJoined("replay", a.id)
	s1.close()

	// Missed: three joins and a leave.
	cs := h.joinRoom(t, "replay", 3)
	for range cs {
		a.expect(wire.TypePeerJoined)
	}
	cs[0].send(map[string]any{"type": "leave"})
	cs[0].expectClose(1000)
	for _, c := range []*client{a, cs[1], cs[2]} {
		c.expect(wire.TypePeerLeft)
	}

	fresh := h.openEvents(t, streamOpts{})
	byHeader := h.openEvents(t, streamOpts{header: http.Header{"Last-Event-Id": {last.id}}})
	byQuery := h.openEvents(t, streamOpts{query: "lastEventId=" + last.id})
	for _, s := range []*sseClient{byHeader, byQuery} {
		prev := parseID(t, last)
		for _, ev := range []sseEvent{
			s.expectJoined("replay", cs[0].id),
			s.expectJoined("replay", cs[1].id),
			s.expectJoined("replay", cs[2].id),
			s.expectLeft("replay", cs[0].id, wire.ReasonLeft),
		} {
			if id := parseID(t, ev); id != prev+1 {
				t.Errorf("replayed id %d after %d", id, prev)
			}
			prev = parseID(t, ev)
		}
	}
	cs[1].send(map[string]any{"type": "leave"})
	cs[1].expectClose(1000)
	cs[2].expect(wire.TypePeerLeft)
	var live sseEvent
	for _, s := range []*sseClient{byHeader, byQuery, fresh} {
		live = s.expectLeft("replay", cs[1].id, wire.ReasonLeft)
	}

	upToDate := h.openEvents(t, streamOpts{header: http.Header{"Last-Event-Id": {live.id}}})
	cs[2].send(map[string]any{"type": "leave"})
	cs[2].expectClose(1000)
	upToDate.expectLeft("replay", cs[2].id, wire.ReasonLeft)
}

// TestEventsReset: an id older than the backlog, from the future, or
// unparsable gets a reset event with the current last id, then live
// events; nothing is replayed from the wrong place. The oldest id still
// held replays the rest.
func TestEventsReset(t *testing.T) {
	t.Parallel()
	h := newHarness(t, apiConfig(nil), signal.Options{EventBacklog: 4}, withAPI)
	// s1 reads each step's events before the next step: with a backlog
	// of 4 a burst of more would reset it too.
	s1 := h.openEvents(t, streamOpts{})
	a := h.joinRoom(t, "reset", 1)[0]
	first, _ := s1.expect("room-created", "reset")
	s1.expectJoined("reset", a.id)
	cs := make([]*client, 3)
	var last sseEvent
	for i := range cs {
		cs[i] = h.dial(t)
		cs[i].join("other")
		if i == 0 {
			s1.expect("room-created", "other")
		}
		last = s1.expectJoined("other", cs[i].id)
	}
	firstID, lastID := parseID(t, first), parseID(t, last)
	if firstID != lastID-5 {
		t.Fatalf("ids %d..%d: want 6 events", firstID, lastID)
	}

	var resets []*sseClient
	for name, o := range map[string]streamOpts{
		"just gone":  {header: http.Header{"Last-Event-Id": {first.id}}},
		"from 1":     {header: http.Header{"Last-Event-Id": {"1"}}},
		"future":     {header: http.Header{"Last-Event-Id": {strconv.FormatUint(lastID+1, 10)}}},
		"unparsable": {query: "lastEventId=x"},
	} {
		s := h.openEvents(t, o)
		if got := s.expectReset(); got != lastID {
			t.Errorf("%s: reset to %d, want %d", name, got, lastID)
		}
		resets = append(resets, s)
	}
	oldest := h.openEvents(t, streamOpts{header: http.Header{"Last-Event-Id": {strconv.FormatUint(lastID-4, 10)}}})
	if ev, _ := oldest.expect("room-created", "other"); parseID(t, ev) != lastID-3 {
		t.Errorf("replayed id %s, want %d", ev.id, lastID-3)
	}
	for _, c := range cs {
		if ev := oldest.expectJoined("other", c.id); parseID(t, ev) <= lastID-4 {
			t.Errorf("replayed id %s", ev.id)
		}
	}
	a.send(map[string]any{"type": "leave"})
	a.expectClose(1000)
	for _, s := range append(resets, oldest) {
		if ev := s.expectLeft("reset", a.id, wire.ReasonLeft); parseID(t, ev) != lastID+1 {
			t.Errorf("live event %s after reset to %d", ev.id, lastID)
		}
	}
}

// TestEventsSlowSubscriber: a stream whose client stops reading blocks
// nobody: joins go on, and when it reads again it finds a reset where it
// fell more than the backlog behind, then live events.
func TestEventsSlowSubscriber(t *testing.T) {
	t.Parallel()
	h := newHarness(t, apiConfig(func(c *signal.Config) {
		c.WriteTimeout = time.Minute // the stream must wait for its reader
	}), signal.Options{EventBacklog: 8}, withAPI, smallSendBuffers)
	slow := h.openEvents(t, streamOpts{client: smallBufferClient(t), noRead: true})
	// Each join is a peer-joined of about 1 KB: far more than the socket
	// buffers hold, so the stream's writer blocks part way.
	meta := map[string]any{"pad": strings.Repeat("m", 1000)}
	for range 200 {
		c := h.dial(t)
		c.join("slow", "meta", meta)
		c.send(map[string]any{"type": "leave"})
		c.expectClose(1000)
	}
	slow.startReading()
	// What was written before the writer blocked arrives, then a reset
	// where events were lost (more than one when the writer also fell
	// behind while the joins went on), then live events, none lost: a
	// room created after the latest reset shows up.
	var prev uint64
	var marker *client
	markerRoom := ""
	for {
		ev := slow.next()
		id := parseID(t, ev)
		switch {
		case prev == 0:
		case ev.event == "reset" && id < prev+2:
			t.Fatalf("reset to %d after event %d: nothing was lost", id, prev)
		case ev.event != "reset" && id != prev+1:
			t.Fatalf("event %d after %d: events lost without a reset", id, prev)
		}
		prev = id
		if ev.event == "reset" {
			// The marker of an earlier reset may be among the lost.
			markerRoom = "marker" + ev.id
			marker = h.joinRoom(t, markerRoom, 1)[0]
			continue
		}
		if ev.event == "peer-joined" && marker != nil && strings.Contains(ev.data, `"room":"`+markerRoom+`"`) {
			var d eventData
			if err := json.Unmarshal([]byte(ev.data), &d); err != nil || d.Peer.ID != marker.id {
				t.Fatalf("marker event %s", ev.data)
			}
			return
		}
	}
}

// TestEventsHeartbeat: an idle stream gets a comment line every
// heartbeat interval.
func TestEventsHeartbeat(t *testing.T) {
	t.Parallel()
	h := newHarness(t, apiConfig(nil), signal.Options{EventHeartbeat: 20 * time.Millisecond}, withAPI)
	s := h.openEvents(t, streamOpts{})
	for range 2 {
		if ev := s.nextAny(); ev.comment == "" {
			t.Fatalf("got %+v, want a heartbeat comment", ev)
		}
	}
	a := h.joinRoom(t, "beat", 1)[0]
	s.expect("room-created", "beat")
	s.expectJoined("beat", a.id)
}

// TestEventsDrain: draining ends every event stream and refuses new ones
// (503, JSON); the other routes still answer.
func TestEventsDrain(t *testing.T) {
	t.Parallel()
	h := newHarness(t, apiConfig(nil), signal.Options{}, withAPI)
	s := h.openEvents(t, streamOpts{})
	filtered := h.openEvents(t, streamOpts{query: "room=x"})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := h.srv.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	s.expectEnd()
	filtered.expectEnd()
	h.call(t, "GET", "/api/events", "").expectStatus(t, http.StatusServiceUnavailable, "unavailable")
	h.call(t, "GET", "/api/rooms", "").expectStatus(t, http.StatusOK, "")
}

// TestEventsClose: closing the server ends every event stream, also one
// whose client does not read.
func TestEventsClose(t *testing.T) {
	t.Parallel()
	h := newHarness(t, apiConfig(nil), signal.Options{}, withAPI, smallSendBuffers)
	stuck := h.openEvents(t, streamOpts{client: smallBufferClient(t), noRead: true})
	s := h.openEvents(t, streamOpts{})
	// Events of about 1 KB fill the stuck client's buffers: its stream's
	// writer blocks.
	meta := map[string]any{"pad": strings.Repeat("m", 1000)}
	for range 100 {
		c := h.dial(t)
		c.join("stuck", "meta", meta)
		c.send(map[string]any{"type": "leave"})
		c.expectClose(1000)
	}
	s.expect("room-created", "stuck")
	if err := h.srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s.expectEnd()
	stuck.startReading()
	stuck.expectEnd()
}

// TestEventsBadRoom: ?room= must be a valid room name.
func TestEventsBadRoom(t *testing.T) {
	t.Parallel()
	h := newHarness(t, apiConfig(nil), signal.Options{}, withAPI)
	h.call(t, "GET", "/api/events?room=a%20b", "").expectStatus(t, http.StatusBadRequest, "bad-request")
}
