package signal_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

// TestRelayToOnePeer: offer, answer, candidate (an object and null) and
// message go to the one addressee, as sent plus from, and nowhere else.
func TestRelayToOnePeer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	cs := h.joinRoom(t, "relay-one", 3)
	a, b, c := cs[0], cs[1], cs[2]
	sdp := "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
	cand := map[string]any{"candidate": "candidate:842163049 1 udp 1677729535 192.0.2.3 46154 typ srflx", "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "EsIN"}
	for _, tc := range []struct {
		send  map[string]any
		field string // the payload field, compared as JSON
	}{
		{send: map[string]any{"type": "offer", "to": b.id, "sdp": sdp}, field: "sdp"},
		{send: map[string]any{"type": "answer", "to": b.id, "sdp": sdp + "a=x\r\n"}, field: "sdp"},
		{send: map[string]any{"type": "candidate", "to": b.id, "candidate": cand}, field: "candidate"},
		{send: map[string]any{"type": "candidate", "to": b.id, "candidate": nil}, field: "candidate"},
		{send: map[string]any{"type": "message", "to": b.id, "data": map[string]any{"chat": "héllo <b>", "n": []any{1.5, true, nil}}}, field: "data"},
		{send: map[string]any{"type": "message", "to": b.id, "data": nil}, field: "data"},
	} {
		a.send(tc.send)
		f := b.nextRaw()
		var got map[string]json.RawMessage
		if err := json.Unmarshal(f.raw, &got); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"type": tc.send["type"], "from": a.id, "to": b.id, tc.field: tc.send[tc.field]}
		if !sameJSONObject(t, got, want) {
			t.Errorf("b got %s, want %v", f.raw, want)
		}
	}
	a.quiet()
	c.quiet()
}

// TestRelayFromStamped: a client's from is overwritten, its ref is not
// forwarded, and fields foreign to the type are not relayed.
func TestRelayFromStamped(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	cs := h.joinRoom(t, "relay-from", 2)
	a, b := cs[0], cs[1]
	for _, forged := range []string{string(b.id), string(wire.ServerID), "", "someone"} {
		a.send(map[string]any{"type": "message", "to": b.id, "from": forged, "data": forged, "ref": "mine",
			"id": "X", "peer": map[string]any{"id": "X", "name": "fake"}, "reason": "kicked", "code": "forbidden", "room": "elsewhere"})
		f := b.nextRaw()
		var got map[string]json.RawMessage
		if err := json.Unmarshal(f.raw, &got); err != nil {
			t.Fatal(err)
		}
		if !sameJSONObject(t, got, map[string]any{"type": "message", "from": a.id, "to": b.id, "data": forged}) {
			t.Errorf("b got %s: want from %s and only the message's fields", f.raw, a.id)
		}
	}
	b.quiet()
}

// TestRelayBroadcast: a message without to (or with to null) reaches every
// other peer, without to, and not the sender.
func TestRelayBroadcast(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig(nil), signal.Options{})
	cs := h.joinRoom(t, "relay-all", 4)
	outsider := h.joinRoom(t, "relay-all-other", 1)[0]
	a := cs[1]
	a.send(map[string]any{"type": "message", "data": "to all"})
	a.send(map[string]any{"type": "message", "to": nil, "data": "to all again"})
	for _, c := range cs {
		if c == a {
			continue
		}
		for _, want := range []string{`"to all"`, `"to all again"`} {
			f := c.nextRaw()
			var got map[string]json.RawMessage
			if err := json.Unmarshal(f.raw, &got); err != nil {
				t.Fatal(err)
			}
			if !sameJSONObject(t, got, map[string]any{"type": "message", "from": a.id, "data": json.RawMessage(want)}) {
				t.Errorf("got %s, want a broadcast %s from %s without to", f.raw, want, a.id)
			}
		}
		c.quiet()
	}
	a.quiet()
	outsider.quiet()
}

// TestRelayOrder: what one peer sends to another arrives in the order
// sent, for every pair at once, under load: two senders each send 1000
// numbered messages to one receiver and a broadcast stream to all.
func TestRelayOrder(t *testing.T) {
	t.Parallel()
	const n = 1000
	h := newHarness(t, testConfig(func(c *signal.Config) {
		c.RateLimit, c.RateBurst = 1e6, 1e6
		c.SendQueue = signal.ResumeQueue - 1
	}), signal.Options{})
	cs := h.joinRoom(t, "relay-order", 3)
	recv, senders := cs[0], cs[1:]

	// Each sender writes from its own goroutine (gorilla allows one
	// writer per connection); write errors end the stream. A window of
	// unreceived messages per sender keeps the receiver's queue, which a
	// reading client can still overflow (4011), from deciding the test.
	const window = 100
	credits := map[wire.PeerID]chan struct{}{}
	for _, s := range senders {
		credits[s.id] = make(chan struct{}, window)
		for range window {
			credits[s.id] <- struct{}{}
		}
	}
	stop := make(chan struct{})
	errs := make(chan error, len(senders))
	var wg sync.WaitGroup
	defer func() {
		close(stop)
		wg.Wait()
	}()
	for _, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				select {
				case <-credits[s.id]:
				case <-stop:
					return
				}
				to := any(recv.id)
				if i%10 == 0 {
					to = nil // a broadcast, ordered with the rest
				}
				b, _ := json.Marshal(map[string]any{"type": "message", "to": to, "data": i})
				if err := s.write(1, b); err != nil {
					errs <- fmt.Errorf("sender %s: %w", s.id, err)
					return
				}
			}
		}()
	}
	next := map[wire.PeerID]int{}
	for range 2 * n {
		m := recv.expect(wire.TypeMessage)
		i, err := strconv.Atoi(string(m.Data))
		if err != nil {
			t.Fatalf("data %s", m.Data)
		}
		if i != next[m.From] {
			t.Fatalf("from %s: got message %d, want %d", m.From, i, next[m.From])
		}
		next[m.From]++
		credits[m.From] <- struct{}{}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	recv.quiet()
	// Each sender got the other's broadcasts, in order too.
	for k, s := range senders {
		other := senders[1-k].id
		for i := 0; i < n; i += 10 {
			m := s.expect(wire.TypeMessage)
			if m.From != other || string(m.Data) != strconv.Itoa(i) {
				t.Fatalf("got %s, want broadcast %d from %s", describe(m), i, other)
			}
		}
		s.quiet()
	}
}

// sameJSONObject compares a received object with the fields wanted, by
// JSON value, and requires it to have no other field.
func sameJSONObject(t *testing.T, got map[string]json.RawMessage, want map[string]any) bool {
	t.Helper()
	if len(got) != len(want) {
		return false
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			return false
		}
		wb, err := json.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		if canonical(t, g) != canonical(t, wb) {
			return false
		}
	}
	return true
}

func canonical(t *testing.T, raw []byte) string {
	t.Helper()
	var v any
	d := json.NewDecoder(strings.NewReader(string(raw)))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
