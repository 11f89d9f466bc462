package main

import (
	"errors"
	"io"
	"sync"
	"syscall"
)

// receiver reads every plain-TCP peer of a run from one epoll loop
// (level-triggered): one read per ready socket and no goroutine switch
// per message, so that the tool costs the machine less than the server
// it drives.
type receiver struct {
	l    *loader
	epfd int
	done chan struct{}
	wg   sync.WaitGroup
}

func newReceiver(l *loader) *receiver {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	r := &receiver{l: l, epfd: epfd, done: make(chan struct{})}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.loop()
	}()
	return r
}

// add starts reading p's socket; an error leaves p to a goroutine.
func (r *receiver) add(p *loadPeer) error {
	sc, ok := p.nc.(syscall.Conn)
	if !ok {
		return errors.ErrUnsupported // TLS
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	p.raw.Store(&rawReader{conn: raw, read: p.readRaw})
	var cerr error
	err = raw.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd), Pad: int32(p.idx)}
		cerr = syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	return errors.Join(err, cerr)
}

// remove stops reading p (before its socket is closed).
func (r *receiver) remove(p *loadPeer) {
	if rr := p.raw.Load(); rr != nil {
		_ = rr.conn.Control(func(fd uintptr) {
			_ = syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
		})
	}
}

func (r *receiver) loop() {
	events := make([]syscall.EpollEvent, 512)
	for {
		select {
		case <-r.done:
			return
		default:
		}
		n, err := syscall.EpollWait(r.epfd, events, 50)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			return
		}
		for i := range max(n, 0) {
			if idx := int(events[i].Pad); idx >= 0 && idx < len(r.l.peers) {
				r.l.peers[idx].readReady()
			}
		}
	}
}

// stop ends the loop; every peer has been removed by then.
func (r *receiver) stop() {
	close(r.done)
	r.wg.Wait()
	_ = syscall.Close(r.epfd)
}

// readReady reads what the socket has, once (the loop is level-triggered:
// more is reported again).
func (p *loadPeer) readReady() {
	rr := p.raw.Load()
	if rr == nil {
		return // a stale event
	}
	p.rspace = p.frames.space()
	if err := rr.conn.Read(rr.read); err != nil {
		p.finish(err) // closed meanwhile
		return
	}
	switch {
	case p.rerr == syscall.EAGAIN || p.rerr == syscall.EINTR:
	case p.rerr != nil:
		p.finish(p.rerr)
	case p.rn == 0:
		p.finish(io.EOF)
	case !p.frames.fill(p.rn, p.frame):
		p.finish(nil)
	}
}

// readRaw is the raw read's callback: one non-blocking read.
func (p *loadPeer) readRaw(fd uintptr) bool {
	p.rn, p.rerr = syscall.Read(int(fd), p.rspace)
	return true
}
