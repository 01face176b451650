package server

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Roles a token can carry.
const (
	// RoleOperator may watch the live page and the decision stream: both
	// show names.
	RoleOperator = "operator"
	// RoleLane may make 1:1 claims at a lane.
	RoleLane = "lane"
)

var knownRoles = []string{RoleOperator, RoleLane}

// Token is one credential. Only the SHA-256 of the secret is configured:
// the server never stores or compares a plain secret.
type Token struct {
	// Name says whose token it is (logs, the page header).
	Name string
	// SHA256 is the lowercase hex SHA-256 of the secret (see HashToken).
	SHA256 string
	Roles  []string
}

// HashToken returns the value for Token.SHA256.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// NewTokenSecret returns a fresh random secret (256 bits, base64url) for a
// client, and its hash for the server's configuration.
func NewTokenSecret() (secret, sha256Hex string, err error) {
	secret, err = randomString(32)
	if err != nil {
		return "", "", err
	}
	return secret, HashToken(secret), nil
}

func randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("server: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

type credential struct {
	name  string
	hash  [32]byte
	roles []string
}

func parseTokens(tokens []Token) ([]credential, error) {
	var creds []credential
	names := map[string]bool{}
	hashes := map[[32]byte]bool{}
	for i, t := range tokens {
		if t.Name == "" {
			return nil, fmt.Errorf("%w: token %d has no name", ErrBadConfig, i)
		}
		if names[t.Name] {
			return nil, fmt.Errorf("%w: token name %q used twice", ErrBadConfig, t.Name)
		}
		names[t.Name] = true
		raw, err := hex.DecodeString(strings.ToLower(t.SHA256))
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("%w: token %q: SHA256 must be 64 hex digits (the hash of the secret, not the secret)", ErrBadConfig, t.Name)
		}
		var h [32]byte
		copy(h[:], raw)
		if hashes[h] {
			return nil, fmt.Errorf("%w: token %q: same secret as another token", ErrBadConfig, t.Name)
		}
		hashes[h] = true
		if len(t.Roles) == 0 {
			return nil, fmt.Errorf("%w: token %q has no roles", ErrBadConfig, t.Name)
		}
		for _, r := range t.Roles {
			if !slices.Contains(knownRoles, r) {
				return nil, fmt.Errorf("%w: token %q: unknown role %q (known: %s)", ErrBadConfig, t.Name, r, strings.Join(knownRoles, ", "))
			}
		}
		creds = append(creds, credential{name: t.Name, hash: h, roles: slices.Clone(t.Roles)})
	}
	return creds, nil
}

// lookup finds the credential for a presented secret. It hashes the secret
// and compares against every configured hash in constant time, without
// stopping at a match, so timing says nothing about which token matched.
func lookup(creds []credential, secret string) (credential, bool) {
	h := sha256.Sum256([]byte(secret))
	found := -1
	for i := range creds {
		if subtle.ConstantTimeCompare(h[:], creds[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 || secret == "" {
		return credential{}, false
	}
	return creds[found], true
}

// principal is who made a request.
type principal struct {
	name    string
	roles   []string
	session *session // nil for bearer tokens
}

func (p principal) has(role string) bool { return slices.Contains(p.roles, role) }

// session is a browser login. The cookie holds a random ID; the store keys
// sessions by the ID's hash, so a memory dump does not yield usable cookies.
type session struct {
	name    string
	roles   []string
	csrf    string // for the logout form
	expires time.Time
}

type sessionStore struct {
	mu    sync.Mutex
	ttl   time.Duration
	max   int
	now   func() time.Time
	byKey map[[32]byte]*session
}

func newSessionStore(ttl time.Duration, max int, now func() time.Time) *sessionStore {
	return &sessionStore{ttl: ttl, max: max, now: now, byKey: map[[32]byte]*session{}}
}

func (st *sessionStore) create(c credential) (id string, s *session, err error) {
	id, err = randomString(32)
	if err != nil {
		return "", nil, err
	}
	csrf, err := randomString(24)
	if err != nil {
		return "", nil, err
	}
	s = &session{name: c.name, roles: c.roles, csrf: csrf, expires: st.now().Add(st.ttl)}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.pruneLocked()
	if len(st.byKey) >= st.max {
		// Full of live sessions: evict the one closest to expiry.
		var oldest [32]byte
		var at time.Time
		for k, v := range st.byKey {
			if at.IsZero() || v.expires.Before(at) {
				oldest, at = k, v.expires
			}
		}
		delete(st.byKey, oldest)
	}
	st.byKey[sha256.Sum256([]byte(id))] = s
	return id, s, nil
}

func (st *sessionStore) get(id string) (*session, bool) {
	if id == "" {
		return nil, false
	}
	k := sha256.Sum256([]byte(id))
	st.mu.Lock()
	defer st.mu.Unlock()
	s, ok := st.byKey[k]
	if !ok {
		return nil, false
	}
	if !st.now().Before(s.expires) {
		delete(st.byKey, k)
		return nil, false
	}
	return s, true
}

func (st *sessionStore) delete(id string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.byKey, sha256.Sum256([]byte(id)))
}

func (st *sessionStore) pruneLocked() {
	now := st.now()
	for k, s := range st.byKey {
		if !now.Before(s.expires) {
			delete(st.byKey, k)
		}
	}
}

// rateLimiter is a token bucket per client address.
type rateLimiter struct {
	mu      sync.Mutex
	perMin  float64
	burst   float64
	now     func() time.Time
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(perMinute int, now func() time.Time) *rateLimiter {
	return &rateLimiter{perMin: float64(perMinute), burst: float64(perMinute), now: now, buckets: map[string]*bucket{}}
}

// allow takes one token for addr; when none is left it says how long until
// the next one.
func (rl *rateLimiter) allow(addr string) (bool, time.Duration) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	now := rl.now()
	if len(rl.buckets) > 10000 {
		for k, b := range rl.buckets {
			if now.Sub(b.last) > time.Minute { // refilled by now: forgetting it changes nothing
				delete(rl.buckets, k)
			}
		}
	}
	b, ok := rl.buckets[addr]
	if !ok {
		b = &bucket{tokens: rl.burst, last: now}
		rl.buckets[addr] = b
	}
	b.tokens = min(rl.burst, b.tokens+now.Sub(b.last).Minutes()*rl.perMin)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / rl.perMin * float64(time.Minute))
	return false, wait
}

// clientAddr is the peer's IP. X-Forwarded-For is not trusted: anyone can
// set it. Behind a reverse proxy all clients share the proxy's budget.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// bearer returns the secret of an "Authorization: Bearer …" header.
func bearer(r *http.Request) (secret string, present bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	return strings.TrimSpace(rest), true
}

// localRedirect keeps a ?next= target on this server: a path, never a
// scheme-relative or absolute URL (no open redirect).
func localRedirect(next, fallback string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") ||
		strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\r\n") {
		return fallback
	}
	return next
}
