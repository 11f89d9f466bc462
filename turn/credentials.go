package turn

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // SHA-1 HMAC is what the TURN REST format and coturn use.
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The TURN REST credential format (draft-uberti-behave-turn-rest-00 §2.2,
// coturn's use-auth-secret), as docs/PROTOCOL.md "TURN credentials" fixes it:
//
//	username   = "<expiry unix seconds>:<user>"
//	credential = base64(HMAC-SHA1(secret, username))
//
// This file is the only code that knows it.

// credentials mints and checks TURN REST credentials. It is read-only after
// construction and safe for concurrent use.
type credentials struct {
	secret []byte
	ttl    time.Duration
	now    func() time.Time
}

func newCredentials(secret string, ttl time.Duration, now func() time.Time) *credentials {
	return &credentials{secret: []byte(secret), ttl: ttl, now: now}
}

// randomSecret makes a per-process secret for when none is configured.
func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+).
	return base64.RawStdEncoding.EncodeToString(b)
}

// mint returns a username and credential for user, valid for the TTL.
func (c *credentials) mint(user string) (username, credential string) {
	expiry := c.now().Add(c.ttl).Unix()
	username = strconv.FormatInt(expiry, 10) + ":" + user
	return username, c.password(username)
}

// password is the credential the secret gives username.
func (c *credentials) password(username string) string {
	mac := hmac.New(sha1.New, c.secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// restUsername is a parsed TURN REST username.
type restUsername struct {
	expiry int64  // unix seconds
	user   string // may be empty: coturn accepts a bare timestamp
}

// maxExpiryDigits bounds the timestamp: 19 digits hold any int64 second.
const maxExpiryDigits = 18

// parseUsername parses "<expiry>:<user>" or a bare "<expiry>". It reads
// untrusted input from STUN requests: only ASCII digits are taken as the
// expiry (no sign, no spaces), and the user is everything after the first
// colon.
func parseUsername(username string) (restUsername, error) {
	ts, user, _ := strings.Cut(username, ":")
	if ts == "" || len(ts) > maxExpiryDigits {
		return restUsername{}, fmt.Errorf("%w: bad timestamp length", errBadUsername)
	}
	var expiry int64
	for i := 0; i < len(ts); i++ {
		d := ts[i]
		if d < '0' || d > '9' {
			return restUsername{}, fmt.Errorf("%w: timestamp is not decimal", errBadUsername)
		}
		expiry = expiry*10 + int64(d-'0')
	}
	return restUsername{expiry: expiry, user: user}, nil
}

// expired reports whether a credential with this expiry is past at now. The
// expiry second itself is still valid.
func expired(expiry int64, now time.Time) bool {
	return now.Unix() > expiry
}
