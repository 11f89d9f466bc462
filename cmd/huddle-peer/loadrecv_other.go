//go:build !linux

package main

import "errors"

// receiver is Linux's epoll loop; elsewhere every peer reads in a
// goroutine of its own.
type receiver struct{}

func newReceiver(*loader) *receiver       { return nil }
func (r *receiver) add(p *loadPeer) error { return errors.ErrUnsupported }
func (r *receiver) remove(*loadPeer)      {}
func (r *receiver) stop()                 {}
