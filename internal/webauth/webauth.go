// Package webauth holds the pieces of browser and token authentication that
// loopgate's HTTP servers share: random secrets, an in-memory session store
// keyed by the hash of the session id, token-bucket rate limiting, and the
// request helpers (client address, bearer header, same-origin check, local
// redirects).
package webauth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// RandomString returns n random bytes, base64url-encoded without padding.
func RandomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("webauth: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Session is one browser login.
type Session struct {
	// Name is who logged in (an account or token name).
	Name  string
	Roles []string
	// CSRF is the session's anti-forgery token: pages send it back with
	// every state-changing request.
	CSRF    string
	Expires time.Time
}

// Has reports whether the session carries role.
func (s *Session) Has(role string) bool { return slices.Contains(s.Roles, role) }

// SessionStore keeps sessions in memory. The cookie holds a random id; the
// store keys sessions by the id's SHA-256, so a memory dump does not yield
// usable cookies.
type SessionStore struct {
	mu    sync.Mutex
	ttl   time.Duration
	max   int
	now   func() time.Time
	byKey map[[32]byte]*Session
}

// NewSessionStore makes a store whose sessions last ttl, holding at most
// max live sessions (the one closest to expiry is evicted to make room).
// now is the clock (tests move it).
func NewSessionStore(ttl time.Duration, max int, now func() time.Time) *SessionStore {
	if now == nil {
		now = time.Now
	}
	return &SessionStore{ttl: ttl, max: max, now: now, byKey: map[[32]byte]*Session{}}
}

// Create starts a session for name with roles and returns its id (for the
// cookie) and the session.
func (st *SessionStore) Create(name string, roles []string) (id string, s *Session, err error) {
	id, err = RandomString(32)
	if err != nil {
		return "", nil, err
	}
	csrf, err := RandomString(24)
	if err != nil {
		return "", nil, err
	}
	s = &Session{Name: name, Roles: slices.Clone(roles), CSRF: csrf, Expires: st.now().Add(st.ttl)}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.pruneLocked()
	if len(st.byKey) >= st.max {
		// Full of live sessions: evict the one closest to expiry.
		var oldest [32]byte
		var at time.Time
		for k, v := range st.byKey {
			if at.IsZero() || v.Expires.Before(at) {
				oldest, at = k, v.Expires
			}
		}
		delete(st.byKey, oldest)
	}
	st.byKey[sha256.Sum256([]byte(id))] = s
	return id, s, nil
}

// Get returns the live session with this id.
func (st *SessionStore) Get(id string) (*Session, bool) {
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
	if !st.now().Before(s.Expires) {
		delete(st.byKey, k)
		return nil, false
	}
	return s, true
}

// Delete ends the session with this id (logout).
func (st *SessionStore) Delete(id string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.byKey, sha256.Sum256([]byte(id)))
}

// DeleteName ends every session of name (a disabled account) and says how
// many there were.
func (st *SessionStore) DeleteName(name string) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	n := 0
	for k, s := range st.byKey {
		if s.Name == name {
			delete(st.byKey, k)
			n++
		}
	}
	return n
}

func (st *SessionStore) pruneLocked() {
	now := st.now()
	for k, s := range st.byKey {
		if !now.Before(s.Expires) {
			delete(st.byKey, k)
		}
	}
}

// maxBuckets is how many keys a RateLimiter tracks before it forgets the
// full (refilled) ones.
const maxBuckets = 10000

// RateLimiter is a token bucket per key (a client address, an account):
// burst tokens, one more every refill.
type RateLimiter struct {
	mu      sync.Mutex
	burst   float64
	refill  time.Duration
	now     func() time.Time
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewRateLimiter makes a limiter allowing burst at once and then one every
// refill. now is the clock (tests move it).
func NewRateLimiter(burst int, refill time.Duration, now func() time.Time) *RateLimiter {
	if now == nil {
		now = time.Now
	}
	return &RateLimiter{burst: float64(max(burst, 1)), refill: max(refill, time.Nanosecond), now: now, buckets: map[string]*bucket{}}
}

// PerMinute makes a limiter of n a minute with a burst of n.
func PerMinute(n int, now func() time.Time) *RateLimiter {
	n = max(n, 1)
	return NewRateLimiter(n, time.Minute/time.Duration(n), now)
}

// bucketLocked returns key's bucket, refilled to now.
func (rl *RateLimiter) bucketLocked(key string) *bucket {
	now := rl.now()
	if len(rl.buckets) > maxBuckets {
		full := time.Duration(rl.burst * float64(rl.refill))
		for k, b := range rl.buckets {
			if now.Sub(b.last) > full { // refilled by now: forgetting it changes nothing
				delete(rl.buckets, k)
			}
		}
	}
	b, ok := rl.buckets[key]
	if !ok {
		b = &bucket{tokens: rl.burst, last: now}
		rl.buckets[key] = b
	}
	b.tokens = min(rl.burst, b.tokens+float64(now.Sub(b.last))/float64(rl.refill))
	b.last = now
	return b
}

func (rl *RateLimiter) waitLocked(b *bucket) time.Duration {
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(rl.refill))
}

// Allow takes one token for key; when none is left it says how long until
// the next one.
func (rl *RateLimiter) Allow(key string) (bool, time.Duration) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	b := rl.bucketLocked(key)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, rl.waitLocked(b)
}

// Wait is how long until key has a token, without taking one (0: now).
func (rl *RateLimiter) Wait(key string) time.Duration {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return rl.waitLocked(rl.bucketLocked(key))
}

// Reset refills key's bucket (a successful login clears its failures).
func (rl *RateLimiter) Reset(key string) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	delete(rl.buckets, key)
}

// RetryAfter is the value of a Retry-After header for a wait: whole
// seconds, rounded up, at least 1.
func RetryAfter(wait time.Duration) string {
	return fmt.Sprint(int(wait/time.Second) + 1)
}

// ClientAddr is the peer's IP. X-Forwarded-For is not trusted: anyone can
// set it. Behind a reverse proxy all clients share the proxy's budget.
func ClientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Bearer returns the secret of an "Authorization: Bearer …" header.
// present is true whenever an Authorization header was sent, so a
// malformed one is refused rather than ignored.
func Bearer(r *http.Request) (secret string, present bool) {
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

// SameOrigin rejects a request whose Origin header names another site.
// Browsers send Origin on every POST; its absence (curl) is left to the
// caller's CSRF token check.
func SameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// LocalRedirect keeps a ?next= target on this server: a path, never a
// scheme-relative or absolute URL (no open redirect).
func LocalRedirect(next, fallback string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") ||
		strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\r\n") {
		return fallback
	}
	return next
}
