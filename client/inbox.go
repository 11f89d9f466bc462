package client

import "sync"

// inbox carries pion's callbacks to the loop. Pushing never blocks: pion
// calls some handlers while holding its own locks, and a handler waiting on
// the loop while the loop waits on pion would deadlock. Its size is bounded
// by what pion reports (states, candidates, channels, tracks), not by what
// the network sends.
type inbox struct {
	mu     sync.Mutex
	items  []input
	ready  chan struct{} // holds a token while items is not empty
	closed bool
}

func newInbox() inbox { return inbox{ready: make(chan struct{}, 1)} }

func (q *inbox) push(in input) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.items = append(q.items, in)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *inbox) drain() []input {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}

func (q *inbox) close() {
	q.mu.Lock()
	q.closed = true
	q.items = nil
	q.mu.Unlock()
}
