package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v4"
	"github.com/pion/webrtc/v4"
)

// TURNProbe is the outcome of one TURN allocation attempt of Check.
type TURNProbe struct {
	// URL is the TURN URL tried.
	URL string
	// OK is true when the server allocated a relay.
	OK bool
	// Relay is the relayed address allocated (then released).
	Relay string
	// Err is why the allocation failed, nil when OK.
	Err error
	// Elapsed is how long the attempt took.
	Elapsed time.Duration
}

// turnAllocateTimeout bounds one allocation: pion retransmits for much
// longer.
const turnAllocateTimeout = 5 * time.Second

// isTURN reports whether an ICE server URL is a TURN one.
func isTURN(raw string) bool {
	return strings.HasPrefix(raw, "turn:") || strings.HasPrefix(raw, "turns:")
}

// probeTURNServers tries an allocation on every TURN URL of servers.
func probeTURNServers(ctx context.Context, servers []webrtc.ICEServer, lf logging.LoggerFactory) []TURNProbe {
	var probes []TURNProbe
	for _, s := range servers {
		cred, _ := s.Credential.(string)
		for _, u := range s.URLs {
			if !isTURN(u) {
				continue
			}
			start := time.Now()
			relay, err := probeTURN(ctx, u, s.Username, cred, lf)
			probes = append(probes, TURNProbe{URL: u, OK: err == nil, Relay: relay, Err: err, Elapsed: time.Since(start)})
		}
	}
	return probes
}

// probeTURN allocates a relay on the TURN server at raw with the given
// credentials and releases it, returning the relayed address.
func probeTURN(ctx context.Context, raw, user, pass string, lf logging.LoggerFactory) (string, error) {
	u, err := stun.ParseURI(raw)
	if err != nil {
		return "", fmt.Errorf("bad URL: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, turnAllocateTimeout)
	defer cancel()
	addr := net.JoinHostPort(u.Host, strconv.Itoa(u.Port))
	conn, err := dialTURN(ctx, u, addr)
	if err != nil {
		return "", fmt.Errorf("unreachable: %w", err)
	}
	defer conn.Close()
	cl, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: user, Password: pass, LoggerFactory: lf,
	})
	if err != nil {
		return "", err
	}
	defer cl.Close()
	if err := cl.Listen(); err != nil {
		return "", err
	}
	type result struct {
		relay net.PacketConn
		err   error
	}
	done := make(chan result, 1)
	go func() {
		relay, err := cl.Allocate()
		done <- result{relay, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		cl.Close() // fails the pending transaction
		r = <-done
		if r.err == nil {
			_ = r.relay.Close()
		}
		return "", errors.New("no answer (server unreachable or filtered)")
	}
	if r.err != nil {
		return "", explainAllocate(r.err)
	}
	relay := r.relay.LocalAddr().String()
	_ = r.relay.Close()
	return relay, nil
}

func dialTURN(ctx context.Context, u *stun.URI, addr string) (net.PacketConn, error) {
	switch {
	case u.Scheme == stun.SchemeTypeTURNS:
		d := tls.Dialer{Config: &tls.Config{ServerName: u.Host, MinVersion: tls.VersionTLS12}}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return pionturn.NewSTUNConn(c), nil
	case u.Proto == stun.ProtoTypeTCP:
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return pionturn.NewSTUNConn(c), nil
	}
	return net.ListenPacket("udp4", "0.0.0.0:0")
}

// explainAllocate names the usual causes of a refused allocation. The
// credentialed Allocate comes after the server's 401 challenge, so a 401
// or 400 to it means the credentials were refused: RFC 8656 servers such
// as coturn answer 401, pion/turn (the bundled server) answers 400.
func explainAllocate(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "401"), strings.Contains(msg, "error 400"):
		return fmt.Errorf("credentials refused (TURN auth): %w", err)
	case strings.Contains(msg, "403"):
		return fmt.Errorf("forbidden (403): %w", err)
	case strings.Contains(msg, "486"):
		return fmt.Errorf("allocation quota reached (486): %w", err)
	}
	return err
}
