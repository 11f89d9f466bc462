package client_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/huddle-rtc/huddle/client"
	"github.com/huddle-rtc/huddle/internal/app"
	"github.com/huddle-rtc/huddle/signal"
	"github.com/huddle-rtc/huddle/signal/wire"
)

const testSecret = "0123456789abcdef0123456789abcdef"

func mint(t *testing.T, room string) string {
	t.Helper()
	tok, err := signal.MintToken([]byte(testSecret), signal.Claims{Subject: "bot", Room: room}, time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func tryJoin(t *testing.T, url string, room wire.RoomID, opts client.Options) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := client.Join(ctx, url, room, opts)
	if err == nil {
		_ = c.Close()
	}
	return err
}

func TestTokens(t *testing.T) {
	t.Parallel()
	node := startNode(t, func(c *app.Config) { c.Signal.JWTSecret = testSecret })

	err := tryJoin(t, node.WSURL(), "auth", fastOptions(t, "anon"))
	var he *client.HandshakeError
	if !errors.Is(err, client.ErrHandshake) || !errors.As(err, &he) || he.Status != 401 {
		t.Errorf("join without a token: %v, want a 401 handshake error", err)
	}
	opts := fastOptions(t, "wrong-room")
	opts.Token = mint(t, "auth")
	err = tryJoin(t, node.WSURL(), "other", opts)
	var we *wire.Error
	if !errors.Is(err, client.ErrJoinRefused) || !errors.As(err, &we) || we.Code != wire.CodeForbidden {
		t.Errorf("join of another room: %v, want a forbidden join error", err)
	}

	// A token source is asked before every connection, the resume too.
	var asked atomic.Int32
	opts = fastOptions(t, "b")
	opts.TokenSource = func(context.Context) (string, error) {
		asked.Add(1)
		return mint(t, "auth"), nil
	}
	optsA := fastOptions(t, "a")
	optsA.Token = mint(t, "auth")
	a := joinPeer(t, node.WSURL(), "auth", optsA)
	b := joinPeer(t, node.WSURL(), "auth", opts)
	roundTrip(t, a, b, "authorised")
	node.Signal().DropConnection(b.ID())
	re, _ := waitFor(t, b, 0, "reconnection", func(client.Reconnected) bool { return true })
	if !re.Resumed || asked.Load() != 2 {
		t.Errorf("resumed %v with the token source asked %d times, want resumed and 2", re.Resumed, asked.Load())
	}
}

func TestRoomFull(t *testing.T) {
	t.Parallel()
	node := startNode(t, func(c *app.Config) { c.Signal.MaxPeersPerRoom = 1 })
	joinPeer(t, node.WSURL(), "full", fastOptions(t, "a"))
	err := tryJoin(t, node.WSURL(), "full", fastOptions(t, "b"))
	var we *wire.Error
	if !errors.Is(err, client.ErrJoinRefused) || !errors.As(err, &we) || we.Code != wire.CodeRoomFull {
		t.Errorf("join of a full room: %v, want a room-full join error", err)
	}
}
