package webauth

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)} }
func roles(r ...string) []string     { return r }
func mustCreate(t *testing.T, st *SessionStore, name string) (string, *Session) {
	t.Helper()
	id, s, err := st.Create(name, roles("officer"))
	if err != nil {
		t.Fatal(err)
	}
	return id, s
}

func TestSessionStoreLifecycle(t *testing.T) {
	c := newClock()
	st := NewSessionStore(time.Hour, 10, c.now)
	id, s := mustCreate(t, st, "alice")
	if len(id) < 40 || len(s.CSRF) < 30 || s.CSRF == id {
		t.Fatalf("weak secrets: id %q csrf %q", id, s.CSRF)
	}
	if !s.Has("officer") || s.Has("admin") {
		t.Errorf("roles: %v", s.Roles)
	}
	got, ok := st.Get(id)
	if !ok || got != s {
		t.Fatalf("Get(own id) = %v, %v", got, ok)
	}
	if _, ok := st.Get(s.CSRF); ok {
		t.Error("the CSRF token opened a session")
	}
	if _, ok := st.Get(""); ok {
		t.Error("the empty id opened a session")
	}
	// The store never holds the id itself, only its hash.
	for k := range st.byKey {
		if string(k[:]) == id {
			t.Error("session id stored in clear")
		}
	}
	c.add(time.Hour - time.Second)
	if _, ok := st.Get(id); !ok {
		t.Error("session gone before its TTL")
	}
	c.add(time.Second)
	if _, ok := st.Get(id); ok {
		t.Error("session alive at its TTL")
	}

	id2, _ := mustCreate(t, st, "bob")
	st.Delete(id2)
	if _, ok := st.Get(id2); ok {
		t.Error("deleted session still valid")
	}
}

func TestSessionStoreEvictsClosestToExpiry(t *testing.T) {
	c := newClock()
	st := NewSessionStore(time.Hour, 3, c.now)
	var first string
	for i := range 3 {
		id, _ := mustCreate(t, st, "u")
		if i == 0 {
			first = id
		}
		c.add(time.Minute)
	}
	last, _ := mustCreate(t, st, "u")
	if _, ok := st.Get(first); ok {
		t.Error("oldest session survived a full store")
	}
	if _, ok := st.Get(last); !ok {
		t.Error("newest session missing")
	}
	if len(st.byKey) != 3 {
		t.Errorf("store holds %d sessions, max 3", len(st.byKey))
	}
}

func TestSessionStoreDeleteName(t *testing.T) {
	st := NewSessionStore(time.Hour, 10, nil)
	a1, _ := mustCreate(t, st, "alice")
	a2, _ := mustCreate(t, st, "alice")
	b, _ := mustCreate(t, st, "bob")
	if n := st.DeleteName("alice"); n != 2 {
		t.Errorf("DeleteName(alice) = %d, want 2", n)
	}
	for _, id := range []string{a1, a2} {
		if _, ok := st.Get(id); ok {
			t.Error("a disabled account's session survived")
		}
	}
	if _, ok := st.Get(b); !ok {
		t.Error("another account's session was ended")
	}
}

func TestRateLimiterBurstAndRefill(t *testing.T) {
	c := newClock()
	rl := NewRateLimiter(3, 20*time.Second, c.now)
	for i := range 3 {
		if ok, _ := rl.Allow("10.0.0.1"); !ok {
			t.Fatalf("attempt %d within the burst refused", i+1)
		}
	}
	ok, wait := rl.Allow("10.0.0.1")
	if ok || wait != 20*time.Second {
		t.Fatalf("4th attempt: allowed=%v wait=%v, want refused with 20s", ok, wait)
	}
	if ok, _ := rl.Allow("10.0.0.2"); !ok {
		t.Error("another key shares the bucket")
	}
	c.add(15 * time.Second)
	if w := rl.Wait("10.0.0.1"); w != 5*time.Second {
		t.Errorf("Wait after 15s = %v, want 5s", w)
	}
	c.add(5 * time.Second)
	if w := rl.Wait("10.0.0.1"); w != 0 {
		t.Errorf("Wait after a refill = %v, want 0", w)
	}
	if ok, _ := rl.Allow("10.0.0.1"); !ok {
		t.Error("refilled token refused")
	}
	if ok, _ := rl.Allow("10.0.0.1"); ok {
		t.Error("Wait took a token or refill too generous")
	}
	rl.Reset("10.0.0.1")
	for i := range 3 {
		if ok, _ := rl.Allow("10.0.0.1"); !ok {
			t.Fatalf("after Reset, attempt %d refused", i+1)
		}
	}
}

func TestPerMinute(t *testing.T) {
	c := newClock()
	rl := PerMinute(5, c.now)
	for range 5 {
		rl.Allow("a")
	}
	ok, wait := rl.Allow("a")
	if ok || wait != 12*time.Second || RetryAfter(wait) != "13" {
		t.Errorf("6th in a minute: %v %v (Retry-After %s), want refused, 12s, 13", ok, wait, RetryAfter(wait))
	}
	c.add(time.Minute)
	for i := range 5 {
		if ok, _ := rl.Allow("a"); !ok {
			t.Fatalf("after a minute, attempt %d refused", i+1)
		}
	}
}

func TestRateLimiterForgetsFullBuckets(t *testing.T) {
	c := newClock()
	rl := NewRateLimiter(1, time.Second, c.now)
	for i := range maxBuckets + 1 {
		rl.Allow(string(rune(i)))
	}
	c.add(2 * time.Second)
	rl.Allow("new")
	if len(rl.buckets) != 1 {
		t.Errorf("%d buckets kept after all refilled, want 1", len(rl.buckets))
	}
}

func TestRequestHelpers(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "http://gate.example:8443/x", nil)
	r.RemoteAddr = "192.0.2.7:51234"
	r.Header.Set("X-Forwarded-For", "198.51.100.1")
	if got := ClientAddr(r); got != "192.0.2.7" {
		t.Errorf("ClientAddr = %q (X-Forwarded-For must not be trusted)", got)
	}
	r.RemoteAddr = "[2001:db8::1]:443"
	if got := ClientAddr(r); got != "2001:db8::1" {
		t.Errorf("ClientAddr(v6) = %q", got)
	}

	for _, c := range []struct {
		header, secret string
		present        bool
	}{
		{"", "", false},
		{"Bearer abc", "abc", true},
		{"bearer  abc ", "abc", true},
		{"Basic abc", "", true},
		{"Bearer", "", true},
	} {
		r.Header.Set("Authorization", c.header)
		s, p := Bearer(r)
		if s != c.secret || p != c.present {
			t.Errorf("Bearer(%q) = %q, %v; want %q, %v", c.header, s, p, c.secret, c.present)
		}
	}

	r.Host = "gate.example:8443"
	for origin, want := range map[string]bool{
		"":                          true,
		"https://gate.example:8443": true,
		"https://evil.example":      false,
		"null":                      false,
	} {
		r.Header.Set("Origin", origin)
		if got := SameOrigin(r); got != want {
			t.Errorf("SameOrigin(Origin %q) = %v", origin, got)
		}
	}

	for next, want := range map[string]string{
		"/people?q=a":        "/people?q=a",
		"":                   "/",
		"//evil.example":     "/",
		"https://evil":       "/",
		"/\\evil.example":    "/",
		"/ok\r\nSet-Cookie:": "/",
	} {
		if got := LocalRedirect(next, "/"); got != want {
			t.Errorf("LocalRedirect(%q) = %q, want %q", next, got, want)
		}
	}
}
