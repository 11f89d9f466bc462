package turn

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the TURN REST format
	"encoding/base64"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

func TestAllocateAndRelay(t *testing.T) {
	t.Parallel()
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			allowLoopback(&cfg)
			s := startServer(t, cfg)
			username, password := mustMint(s, "alice")
			relay, err := pionClient(t, s, network, username, password)
			if err != nil {
				t.Fatalf("allocate over %s: %v", network, err)
			}
			ra := relay.LocalAddr().(*net.UDPAddr)
			if !ra.IP.Equal(net.IPv4(127, 0, 0, 1)) || ra.Port < 61000 {
				t.Fatalf("relay address %v: want 127.0.0.1 in %s", ra, testRelayPorts)
			}
			roundTripPeer(t, s, relay, listenPeer(t))
			if got := s.Stats().Allocations; got != 1 {
				t.Fatalf("Stats().Allocations = %d, want 1", got)
			}
		})
	}
}

func TestCredentialsRefused(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	clock := &testClock{}
	s := startServer(t, cfg, WithClock(clock.now))
	good, goodPassword := mustMint(s, "alice")
	other := newCredentials("another-secret-0123456789", time.Hour, clock.now)
	forged, forgedPassword := other.mint("alice")
	expiredUser := strconv.FormatInt(clock.now().Add(-time.Second).Unix(), 10) + ":alice"
	s.Revoke("mallory", clock.now().Add(time.Hour))
	revoked, revokedPassword := mustMint(s, "mallory")

	cases := []struct{ name, username, password string }{
		{"wrong password", good, goodPassword + "x"},
		{"forged with another secret", forged, forgedPassword},
		{"expired", expiredUser, s.creds.password(expiredUser)},
		{"malformed username", "alice", s.creds.password("alice")},
		{"signed timestamp", "+" + good, s.creds.password("+" + good)},
		{"revoked", revoked, revokedPassword},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Stats().AuthFailures
			c := newRawClient(t, s, tc.username, tc.password)
			r := c.allocate()
			if r.Type.Class != stun.ClassErrorResponse {
				t.Fatalf("allocation with %s: got %v, want an error", tc.name, r.Type)
			}
			if code := errorCode(r); code != stun.CodeBadRequest && code != stun.CodeUnauthorized {
				t.Fatalf("error code %d, want 400 or 401", code)
			}
			if got := s.Stats().AuthFailures; got <= before {
				t.Fatalf("AuthFailures = %d, want > %d", got, before)
			}
		})
	}
	t.Run("pion client", func(t *testing.T) {
		if _, err := pionClient(t, s, "udp", forged, forgedPassword); err == nil {
			t.Fatal("pion client allocated with forged credentials")
		}
	})
	t.Run("realm", func(t *testing.T) {
		c := newRawClient(t, s, good, goodPassword)
		c.learnNonce(c.roundTrip(build(t, stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP)))
		c.realm = "elsewhere"
		if r := c.allocate(); isSuccess(r) {
			t.Fatal("allocated under another realm")
		}
	})
	t.Run("good credentials still work", func(t *testing.T) {
		if r := newRawClient(t, s, good, goodPassword).allocate(); !isSuccess(r) {
			t.Fatalf("allocate: code %d", errorCode(r))
		}
	})
}

// Credentials are checked when an allocation is created; a call must keep
// its relay after they expire.
func TestExpiryMidAllocation(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	allowLoopback(&cfg)
	cfg.CredentialTTL = time.Minute
	clock := &testClock{}
	s := startServer(t, cfg, WithClock(clock.now))
	username, password := mustMint(s, "alice")
	c := newRawClient(t, s, username, password)
	relay := relayAddr(t, c.allocate())
	peer := listenPeer(t)
	peerUDP := peer.LocalAddr().(*net.UDPAddr)

	clock.advance(2 * time.Minute) // the credential is now expired

	if r := c.do(stun.MethodRefresh, lifetime(600)); !isSuccess(r) {
		t.Fatalf("refresh after expiry: code %d", errorCode(r))
	}
	if r := c.createPermission(peerAddr(peerUDP)); !isSuccess(r) {
		t.Fatalf("create permission after expiry: code %d", errorCode(r))
	}
	if r := c.do(stun.MethodChannelBind, channelNumber(0x4000), peerAddr(peerUDP)); !isSuccess(r) {
		t.Fatalf("channel bind after expiry: code %d", errorCode(r))
	}
	c.send(peerUDP, []byte("still here"))
	if got, from := readFrom(t, peer); string(got) != "still here" || from.String() != relay.String() {
		t.Fatalf("peer got %q from %v", got, from)
	}
	if _, err := peer.WriteTo([]byte("me too"), relay); err != nil {
		t.Fatal(err)
	}
	// Bound to channel 0x4000: the answer comes as ChannelData.
	got, _ := readFrom(t, c.conn)
	if len(got) < 4 || got[0] != 0x40 || got[1] != 0x00 || string(got[4:4+int(got[3])]) != "me too" {
		t.Fatalf("client got %q, want ChannelData 0x4000 \"me too\"", got)
	}

	// The same credential cannot make a new allocation, from anywhere.
	if r := newRawClient(t, s, username, password).allocate(); isSuccess(r) {
		t.Fatal("expired credential made a new allocation")
	}
	// Nor from the same source once its allocation is gone.
	if r := c.do(stun.MethodRefresh, lifetime(0)); !isSuccess(r) {
		t.Fatalf("deallocate: code %d", errorCode(r))
	}
	if r := c.allocate(); isSuccess(r) {
		t.Fatal("expired credential re-allocated from its old source")
	}
}

// The expiry also holds with the real clock and a 2 s TTL, with pion's own
// client keeping the allocation.
func TestExpiryRealClock(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	allowLoopback(&cfg)
	cfg.CredentialTTL = 2 * time.Second
	s := startServer(t, cfg)
	username, password := mustMint(s, "alice")
	relay, err := pionClient(t, s, "udp", username, password)
	if err != nil {
		t.Fatal(err)
	}
	expiry, _ := strconv.ParseInt(strings.SplitN(username, ":", 2)[0], 10, 64)
	waitFor(t, "the credential to expire", func() bool { return time.Now().Unix() > expiry })
	// A new peer needs a new permission, authenticated with the old credential.
	roundTripPeer(t, s, relay, listenPeer(t))
	if _, err := pionClient(t, s, "udp", username, password); err == nil {
		t.Fatal("expired credential made a new allocation")
	}
}

func TestQuota(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxAllocations = 2
	s := startServer(t, cfg)
	username, password := mustMint(s, "alice")
	first := newRawClient(t, s, username, password)
	for i, c := range []*rawClient{first, newRawClient(t, s, username, password)} {
		if r := c.allocate(); !isSuccess(r) {
			t.Fatalf("allocation %d: code %d", i+1, errorCode(r))
		}
	}
	third := newRawClient(t, s, username, password)
	if r := third.allocate(); errorCode(r) != stun.CodeAllocQuotaReached {
		t.Fatalf("third allocation: got %v code %d, want 486", r.Type, errorCode(r))
	}
	// The quota is per user: another credential user of the same peer id
	// (minted again at resume) shares it, another peer does not.
	again, againPassword := mustMint(s, "alice")
	if r := newRawClient(t, s, again, againPassword).allocate(); errorCode(r) != stun.CodeAllocQuotaReached {
		t.Fatalf("re-minted credential: code %d, want 486", errorCode(r))
	}
	bob, bobPassword := mustMint(s, "bob")
	if r := newRawClient(t, s, bob, bobPassword).allocate(); !isSuccess(r) {
		t.Fatalf("another user: code %d", errorCode(r))
	}
	// A released allocation frees its slot.
	if r := first.do(stun.MethodRefresh, lifetime(0)); !isSuccess(r) {
		t.Fatalf("deallocate: code %d", errorCode(r))
	}
	if r := third.allocate(); !isSuccess(r) {
		t.Fatalf("allocation after release: code %d", errorCode(r))
	}
	if got := s.Stats().QuotaRejections; got != 2 {
		t.Fatalf("QuotaRejections = %d, want 2", got)
	}
}

func TestPermissionBound(t *testing.T) {
	t.Parallel()
	s := startServer(t, testConfig())
	username, password := mustMint(s, "alice")
	c := newRawClient(t, s, username, password)
	if r := c.allocate(); !isSuccess(r) {
		t.Fatal(errorCode(r))
	}
	// Public documentation-free addresses: nothing is ever sent to them.
	public := func(i int) *net.UDPAddr { return &net.UDPAddr{IP: net.IPv4(1, 1, byte(i/250), byte(1+i%250)), Port: 9} }
	for i := range maxPermissions {
		if r := c.createPermission(peerAddr(public(i))); !isSuccess(r) {
			t.Fatalf("permission %d: %v", i, r.Type)
		}
	}
	if r := c.createPermission(peerAddr(public(maxPermissions))); isSuccess(r) {
		t.Fatal("permission beyond the bound was granted")
	}
	if r := c.createPermission(peerAddr(public(0))); !isSuccess(r) {
		t.Fatal("refreshing an existing permission failed at the bound")
	}
}

func TestChallengeRateLimit(t *testing.T) {
	t.Parallel()
	s := startServer(t, testConfig())
	c := newRawClient(t, s, "", "")
	const sent = 200
	start := time.Now()
	for range sent {
		c.write(build(t, stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP))
	}
	// Binding requests are answered in order after the burst: its answer
	// means every challenge that was going to come has come.
	marker := build(t, stun.TransactionID, stun.BindingRequest)
	c.write(marker)
	challenges := 0
	for {
		m := c.read()
		if m.TransactionID == marker.TransactionID {
			break
		}
		if errorCode(m) == stun.CodeUnauthorized {
			challenges++
		}
	}
	elapsed := time.Since(start)
	limit := challengeBurst + int(float64(challengeRate)*elapsed.Seconds()) + 1
	if challenges == 0 || challenges > limit {
		t.Fatalf("%d challenges answered for %d requests in %v, want 1..%d", challenges, sent, elapsed, limit)
	}
	if got := s.Stats().ChallengesDropped; got != uint64(sent-challenges) {
		t.Fatalf("ChallengesDropped = %d, want %d", got, sent-challenges)
	}
}

func TestCredentialFormat(t *testing.T) {
	t.Parallel()
	at := time.Unix(1_700_000_000, 0)
	c := newCredentials(testSecret, 12*time.Hour, func() time.Time { return at })
	username, credential := c.mint("peer-1")
	if want := "1700043200:peer-1"; username != want {
		t.Fatalf("username %q, want %q", username, want)
	}
	mac := hmac.New(sha1.New, []byte(testSecret))
	mac.Write([]byte(username))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); credential != want {
		t.Fatalf("credential %q, want %q", credential, want)
	}
}

func TestCloseEndsConnections(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	allowLoopback(&cfg)
	ln, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(cfg, ln, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	username, password := mustMint(s, "alice")
	if _, err := pionClient(t, s, "tcp", username, password); err != nil {
		t.Fatal(err)
	}
	idle, err := net.Dial("tcp", s.tcpAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	waitFor(t, "the idle connection to be accepted", func() bool {
		s.tcp[0].mu.Lock()
		defer s.tcp[0].mu.Unlock()
		return len(s.tcp[0].conns) == 2
	})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_ = idle.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := idle.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("idle connection after Close: read err %v, want EOF", err)
	}
	if got := s.Stats().Allocations; got != 0 {
		t.Fatalf("%d allocations after Close", got)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// A revoked user (kicked) makes no new allocation, but the relay it holds
// keeps its refreshes; the revocation ends at its time.
func TestRevoke(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	s := startServer(t, testConfig(), WithClock(clock.now))
	username, password := mustMint(s, "alice")
	c := newRawClient(t, s, username, password)
	if r := c.allocate(); !isSuccess(r) {
		t.Fatal(errorCode(r))
	}
	s.Revoke("alice", clock.now().Add(time.Hour))
	if r := newRawClient(t, s, username, password).allocate(); isSuccess(r) {
		t.Fatal("revoked user made a new allocation")
	}
	if r := c.do(stun.MethodRefresh, lifetime(600)); !isSuccess(r) {
		t.Fatalf("refresh of a live allocation after revoke: code %d", errorCode(r))
	}
	bob, bobPassword := mustMint(s, "bob")
	if r := newRawClient(t, s, bob, bobPassword).allocate(); !isSuccess(r) {
		t.Fatalf("another user refused: code %d", errorCode(r))
	}
	clock.advance(2 * time.Hour)
	username, password = mustMint(s, "alice")
	if r := newRawClient(t, s, username, password).allocate(); !isSuccess(r) {
		t.Fatalf("allocation after the revocation ended: code %d", errorCode(r))
	}
}

func TestIsChallenge(t *testing.T) {
	t.Parallel()
	nonce := stun.NewNonce("abc")
	realm := stun.NewRealm(testRealm)
	errType := stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse)
	cases := []struct {
		name string
		msg  *stun.Message
		want bool
	}{
		{"401 with nonce", build(t, stun.TransactionID, errType, stun.CodeUnauthorized, nonce, realm), true},
		{"438 with nonce", build(t, stun.TransactionID, errType, stun.CodeStaleNonce, nonce, realm), true},
		{"401 without nonce", build(t, stun.TransactionID, errType, stun.CodeUnauthorized), false},
		{"486", build(t, stun.TransactionID, errType, stun.CodeAllocQuotaReached, nonce), false},
		{"success", build(t, stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassSuccessResponse), nonce), false},
	}
	for _, tc := range cases {
		if got := isChallenge(tc.msg.Raw); got != tc.want {
			t.Errorf("%s: isChallenge = %v, want %v", tc.name, got, tc.want)
		}
	}
}
