package turn

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	pionturn "github.com/pion/turn/v4"
)

// The gate holds what pion's callbacks need to decide: credentials, expiry,
// revocations, quotas and permission counts. Pion v4 calls them with little
// context, so the gate rebuilds it from the allocation events:
//
//   - AuthHandler runs for every authenticated request (Allocate, Refresh,
//     CreatePermission, ChannelBind) and sees only username, realm and source.
//     It accepts an expired or revoked credential only from a source that
//     holds a live allocation made with that very username, so refreshes,
//     permissions and channel binds of a running call keep working.
//   - QuotaHandler runs only for Allocate, right before the allocation is
//     created. It re-checks expiry and revocation strictly (no new allocation
//     on a stale credential, even from a source that had one) and counts the
//     allocation against the user's quota.
//   - PermissionHandler sees the client's source and the peer IP: the address
//     policy and the per-allocation permission bound apply there.
//
// Lock order: gate.mu is a leaf; no pion call is made while holding it.

// maxPermissions bounds the peer addresses one allocation may hold. One
// WebRTC peer connection needs a few (the remote's candidate addresses).
const maxPermissions = 64

// pendingTimeout forgets a quota slot whose allocation pion never reported.
const pendingTimeout = 10 * time.Second

// srcKey identifies a client transport address (pion's 5-tuple minus the
// server side, which its callbacks do not pass).
type srcKey struct {
	tcp  bool
	addr netip.AddrPort
}

func keyOf(a net.Addr) srcKey {
	switch a := a.(type) {
	case *net.UDPAddr:
		ap := a.AddrPort()
		return srcKey{addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
	case *net.TCPAddr:
		ap := a.AddrPort()
		return srcKey{tcp: true, addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
	}
	return srcKey{}
}

type tupleKey struct {
	username string
	src      srcKey
}

type pendingAlloc struct {
	user string
	at   time.Time
}

type gate struct {
	creds     *credentials
	realm     string
	maxAllocs int
	policy    *policy
	log       *slog.Logger

	authFailures    atomic.Uint64
	quotaRejections atomic.Uint64
	peersDenied     atomic.Uint64

	mu      sync.Mutex
	users   map[string]int                     // live and pending allocations per user
	tuples  map[tupleKey]int                   // live allocations per (username, source)
	pending map[srcKey]pendingAlloc            // quota slots awaiting their allocation
	perms   map[srcKey]map[netip.Addr]struct{} // permissions per allocation
	revoked map[string]time.Time               // user -> refused until
	live    int                                // live allocations
	idle    chan struct{}                      // closed while live == 0
}

func newGate(creds *credentials, realm string, maxAllocs int, pol *policy, log *slog.Logger) *gate {
	return &gate{
		creds:     creds,
		realm:     realm,
		maxAllocs: maxAllocs,
		policy:    pol,
		log:       log,
		users:     make(map[string]int),
		tuples:    make(map[tupleKey]int),
		pending:   make(map[srcKey]pendingAlloc),
		perms:     make(map[srcKey]map[netip.Addr]struct{}),
		revoked:   make(map[string]time.Time),
		idle:      closedChan(),
	}
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

func (g *gate) fail(reason, username string, src net.Addr) {
	g.authFailures.Add(1)
	if g.log.Enabled(context.Background(), slog.LevelDebug) {
		g.log.Debug("turn auth refused", "reason", reason, "username", username, "src", src.String())
	}
}

// authHandler implements pionturn.AuthHandler.
func (g *gate) authHandler(username, realm string, src net.Addr) ([]byte, bool) {
	if realm != g.realm {
		g.fail("realm", username, src)
		return nil, false
	}
	ru, err := parseUsername(username)
	if err != nil {
		g.fail("malformed", username, src)
		return nil, false
	}
	if reason := g.stale(ru, g.creds.now()); reason != "" && !g.allocatedFrom(username, src) {
		g.fail(reason, username, src)
		return nil, false
	}
	return pionturn.GenerateAuthKey(username, realm, g.creds.password(username)), true
}

// stale says why a credential may not create an allocation now, or "".
func (g *gate) stale(ru restUsername, now time.Time) string {
	if expired(ru.expiry, now) {
		return "expired"
	}
	g.mu.Lock()
	until, ok := g.revoked[ru.user]
	g.mu.Unlock()
	if ok && now.Before(until) {
		return "revoked"
	}
	return ""
}

func (g *gate) allocatedFrom(username string, src net.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.tuples[tupleKey{username, keyOf(src)}] > 0
}

// quotaHandler implements pionturn.QuotaHandler; pion answers false with 486.
func (g *gate) quotaHandler(username, _ string, src net.Addr) bool {
	ru, err := parseUsername(username)
	if err != nil {
		g.fail("malformed", username, src)
		return false
	}
	if reason := g.stale(ru, g.creds.now()); reason != "" {
		g.fail(reason, username, src)
		return false
	}
	now := time.Now()
	key := keyOf(src)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.prunePending(now)
	if p, ok := g.pending[key]; ok {
		g.release(p.user)
		delete(g.pending, key)
	}
	if g.users[ru.user] >= g.maxAllocs {
		g.quotaRejections.Add(1)
		g.log.Debug("turn allocation quota reached", "user", ru.user, "src", src.String())
		return false
	}
	g.users[ru.user]++
	g.pending[key] = pendingAlloc{user: ru.user, at: now}
	return true
}

func (g *gate) prunePending(now time.Time) {
	for k, p := range g.pending {
		if now.Sub(p.at) > pendingTimeout {
			g.release(p.user)
			delete(g.pending, k)
		}
	}
}

func (g *gate) release(user string) {
	if g.users[user]--; g.users[user] <= 0 {
		delete(g.users, user)
	}
}

// allocationCreated turns the quota slot of src into a live allocation.
func (g *gate) allocationCreated(src net.Addr, username string) {
	key := keyOf(src)
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.pending[key]; ok {
		delete(g.pending, key)
	} else {
		ru, _ := parseUsername(username)
		g.users[ru.user]++
	}
	g.tuples[tupleKey{username, key}]++
	if g.live == 0 {
		g.idle = make(chan struct{})
	}
	g.live++
}

func (g *gate) allocationDeleted(src net.Addr, username string) {
	ru, _ := parseUsername(username)
	key := keyOf(src)
	tk := tupleKey{username, key}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.release(ru.user)
	if g.tuples[tk]--; g.tuples[tk] <= 0 {
		delete(g.tuples, tk)
	}
	delete(g.perms, key)
	if g.live--; g.live == 0 {
		close(g.idle)
	}
}

// allocationFailed frees the quota slot of a request pion failed after the
// quota check (no relay port, for one).
func (g *gate) allocationFailed(src net.Addr) {
	key := keyOf(src)
	g.mu.Lock()
	defer g.mu.Unlock()
	if p, ok := g.pending[key]; ok {
		g.release(p.user)
		delete(g.pending, key)
	}
}

// permissionHandler implements pionturn.PermissionHandler.
func (g *gate) permissionHandler(client net.Addr, peerIP net.IP) bool {
	peer, ok := netIPAddr(peerIP)
	if !ok || !g.policy.permitIP(peer) {
		g.peersDenied.Add(1)
		g.log.Debug("turn peer denied", "src", client.String(), "peer", peerIP.String())
		return false
	}
	key := keyOf(client)
	g.mu.Lock()
	defer g.mu.Unlock()
	set := g.perms[key]
	if _, ok := set[peer]; ok || len(set) < maxPermissions {
		return true
	}
	g.peersDenied.Add(1)
	g.log.Debug("turn permission bound reached", "src", client.String(), "peer", peerIP.String())
	return false
}

func (g *gate) permissionCreated(src net.Addr, peerIP net.IP) {
	peer, ok := netIPAddr(peerIP)
	if !ok {
		return
	}
	key := keyOf(src)
	g.mu.Lock()
	defer g.mu.Unlock()
	set := g.perms[key]
	if set == nil {
		set = make(map[netip.Addr]struct{})
		g.perms[key] = set
	}
	set[peer] = struct{}{}
}

func (g *gate) permissionDeleted(src net.Addr, peerIP net.IP) {
	peer, ok := netIPAddr(peerIP)
	if !ok {
		return
	}
	key := keyOf(src)
	g.mu.Lock()
	defer g.mu.Unlock()
	if set := g.perms[key]; set != nil {
		delete(set, peer)
		if len(set) == 0 {
			delete(g.perms, key)
		}
	}
}

// revoke refuses user's credentials for new allocations until until.
func (g *gate) revoke(user string, until time.Time) {
	now := g.creds.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	for u, t := range g.revoked {
		if !now.Before(t) {
			delete(g.revoked, u)
		}
	}
	if until.After(g.revoked[user]) && now.Before(until) {
		g.revoked[user] = until
	}
}

func (g *gate) liveAllocations() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.live
}

// idleChan is closed once no allocation is live: pion has reported the
// deletion of every allocation, the last thing its relay goroutines do.
func (g *gate) idleChan() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.idle
}
