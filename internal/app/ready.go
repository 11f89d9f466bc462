package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pion/stun/v4"
)

// turnReadyTimeout bounds the STUN round trip of a readiness check.
const turnReadyTimeout = time.Second

// turnReady checks that the bundled TURN server answers on its UDP port: a
// STUN Binding request to it over loopback (when it listens on every
// address) must be answered. Nil when the bundled server is off.
func (a *App) turnReady(ctx context.Context) error {
	if a.turnUDP == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, turnReadyTimeout)
	defer cancel()
	if err := stunPing(ctx, loopbackIfUnspecified(a.turnUDP)); err != nil {
		return fmt.Errorf("TURN server not answering on %s/udp: %w", a.turnUDP, err)
	}
	return nil
}

// stunPing sends one STUN Binding request to addr and waits for the
// success response (RFC 8489 section 6).
func stunPing(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if _, err := c.Write(req.Raw); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		var res stun.Message
		res.Raw = buf[:n]
		if res.Decode() != nil || res.TransactionID != req.TransactionID {
			continue // not the answer to this request
		}
		if res.Type != stun.BindingSuccess {
			return errors.New("answered " + res.Type.String())
		}
		return nil
	}
}

// loopbackIfUnspecified is addr, dialed on loopback when its host is the
// unspecified address (a server listening on every address).
func loopbackIfUnspecified(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
