package api

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/loopgate/loopgate/enroll"
	"github.com/loopgate/loopgate/internal/testenv"
)

func personJSON(id, name, park string, gates ...string) map[string]any {
	if gates == nil {
		gates = []string{}
	}
	return map[string]any{"external_id": id, "name": name, "home_park": park, "gates": gates}
}

func decodePerson(t *testing.T, body []byte) enroll.Person {
	t.Helper()
	return decode[enroll.Person](t, body)
}

// TestAuthRulesForEveryOperation walks openapi.yaml: every operation but
// the public ones refuses the anonymous and unknown tokens with 401, and
// every admin operation refuses an officer (session and token) with 403,
// each with a request that would otherwise succeed; nothing changes.
func TestAuthRulesForEveryOperation(t *testing.T) {
	s := newStack(t, Config{})
	loadSpec(t)
	adm := s.admin()
	otto := s.officer("otto")
	ottoToken, kiosk := s.token("intake-kiosk", enroll.RoleOfficer)
	good := s.goodPhotos("Colin_Powell", 1)[0]
	if resp, body := adm.sendJSON(http.MethodPost, "/api/v1/people", personJSON("P-1", "Pat Example", "hk")); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create P-1: %d %s", resp.StatusCode, body)
	}
	// A request for each operation that succeeds when the caller may make it.
	type req struct {
		body        []byte
		contentType string
		query       string
	}
	photoBody, photoCT := multipartBody(t, []part{photoPart("p.jpg", good.Data)})
	jsonBody := func(v any) req {
		b, _ := json.Marshal(v)
		return req{body: b, contentType: "application/json"}
	}
	requests := map[string]req{
		"post /api/v1/people":                      jsonBody(personJSON("ANON-1", "Anon", "hk")),
		"patch /api/v1/people/{external_id}":       jsonBody(map[string]any{"name": "Changed"}),
		"delete /api/v1/people/{external_id}":      {query: "?reason=" + url.QueryEscape("erasure request")},
		"post /api/v1/people/{external_id}/revoke": jsonBody(map[string]any{"reason": "left the company"}),
		"post /api/v1/people/{external_id}/photos": {body: photoBody, contentType: photoCT},
		"post /api/v1/quality":                     {body: photoBody, contentType: photoCT},
		"post /api/v1/accounts":                    jsonBody(map[string]any{"username": "mallory", "password": "a long enough password", "role": "admin"}),
		"post /api/v1/tokens":                      jsonBody(map[string]any{"name": "mallory", "role": "admin"}),
	}
	fill := strings.NewReplacer("{external_id}", "P-1", "{username}", "otto", "{id}", strconv.FormatInt(kiosk.Token.ID, 10))
	before := s.snapshot()
	checked := 0
	for _, op := range operations() {
		if op.role == "none" {
			continue
		}
		method := strings.ToUpper(op.method)
		r, ok := requests[op.method+" "+op.path]
		if ok {
			delete(requests, op.method+" "+op.path)
		}
		path := fill.Replace(op.path) + r.query
		send := func(c *client, hdr ...string) (*http.Response, []byte) {
			return c.do(method, path, bytes.NewReader(r.body), r.contentType, hdr...)
		}
		what := method + " " + path
		resp, body := send(s.anon())
		expectError(t, "anonymous "+what, resp, body, http.StatusUnauthorized, CodeUnauthenticated)
		if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("anonymous %s: no WWW-Authenticate challenge", what)
		}
		for _, bad := range []string{"lgt_" + strings.Repeat("A", 43), kiosk.Secret + "x", "not-a-token"} {
			resp, body = send(s.bearer(bad))
			expectError(t, "unknown token on "+what, resp, body, http.StatusUnauthorized, CodeUnauthenticated)
		}
		resp, body = send(s.anon(), "Authorization", "Basic YWRhOnB3")
		expectError(t, "basic auth on "+what, resp, body, http.StatusUnauthorized, CodeUnauthenticated)
		if op.role == "admin" {
			resp, body = send(otto)
			expectError(t, "officer session on "+what, resp, body, http.StatusForbidden, CodeForbidden)
			resp, body = send(ottoToken)
			expectError(t, "officer token on "+what, resp, body, http.StatusForbidden, CodeForbidden)
		}
		checked++
	}
	if checked < 20 || len(requests) > 0 {
		t.Errorf("checked %d operations; request bodies for no operation: %v", checked, requests)
	}
	s.assertUnchanged("refused callers", before)
	// The officer may still do what officers do.
	if resp, body := otto.get("/api/v1/people/P-1"); resp.StatusCode != http.StatusOK {
		t.Errorf("officer GET person: %d %s", resp.StatusCode, body)
	}
}

// TestLoginSessionAndCSRF: login sets a strict HttpOnly cookie; every
// cookie-authenticated write needs the session's X-CSRF-Token, so a
// cross-site form post (urlencoded or multipart) is refused; logout ends
// the session.
func TestLoginSessionAndCSRF(t *testing.T) {
	s := newStack(t, Config{})
	c := s.anon()

	// Login itself: JSON only, same origin only, strict fields.
	resp, body := c.do(http.MethodPost, "/api/v1/login", strings.NewReader("username=ada&password="+url.QueryEscape(adminPassword)), "application/x-www-form-urlencoded")
	expectError(t, "form login", resp, body, http.StatusUnsupportedMediaType, CodeUnsupportedMedia)
	resp, body = c.sendJSON(http.MethodPost, "/api/v1/login", map[string]string{"username": adminUser, "password": adminPassword}, "Origin", "https://evil.example")
	expectError(t, "cross-site login", resp, body, http.StatusForbidden, CodeCSRF)
	resp, body = c.sendJSON(http.MethodPost, "/api/v1/login", map[string]string{"username": adminUser, "password": adminPassword, "otp": "1"})
	expectError(t, "login with an unknown field", resp, body, http.StatusBadRequest, CodeUnknownField, "otp")
	resp, body = c.sendJSON(http.MethodPost, "/api/v1/login", map[string]string{"username": adminUser})
	expectError(t, "login without a password", resp, body, http.StatusUnprocessableEntity, CodeInvalidField, "password")
	resp, body = c.sendJSON(http.MethodPost, "/api/v1/login", map[string]string{"username": adminUser, "password": "wrong password!"})
	expectError(t, "wrong password", resp, body, http.StatusUnauthorized, CodeBadCredentials)
	resp, body = c.sendJSON(http.MethodPost, "/api/v1/login", map[string]string{"username": "nobody", "password": adminPassword})
	expectError(t, "unknown user", resp, body, http.StatusUnauthorized, CodeBadCredentials)

	resp, body = c.sendJSON(http.MethodPost, "/api/v1/login", map[string]string{"username": adminUser, "password": adminPassword})
	expectStatus(t, "login", resp, body, http.StatusOK)
	var ck *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == SessionCookie {
			ck = k
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.Secure || ck.MaxAge != int((8*time.Hour)/time.Second) {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/, 8 h, not Secure over plain HTTP", ck)
	}
	v := decode[sessionView](t, body)
	if v.Username != adminUser || v.Role != enroll.RoleAdmin || v.Kind != "account" || len(v.CSRFToken) < 30 || v.ExpiresAt == nil {
		t.Fatalf("login body %s", body)
	}
	resp, body = c.get("/api/v1/session")
	if got := decode[sessionView](t, body); resp.StatusCode != http.StatusOK || got.CSRFToken != v.CSRFToken {
		t.Fatalf("GET /session: %d %s", resp.StatusCode, body)
	}
	for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}

	// Reads need no CSRF token; writes do.
	if resp, body := c.get("/api/v1/people"); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /people with the cookie: %d %s", resp.StatusCode, body)
	}
	before := s.snapshot()
	person, _ := json.Marshal(personJSON("CSRF-1", "Csrf Victim", "hk"))
	resp, body = c.do(http.MethodPost, "/api/v1/people", bytes.NewReader(person), "application/json")
	expectError(t, "JSON write without the CSRF header", resp, body, http.StatusForbidden, CodeCSRF)
	resp, body = c.do(http.MethodPost, "/api/v1/people", strings.NewReader("external_id=CSRF-1&name=Csrf+Victim&home_park=hk"), "application/x-www-form-urlencoded")
	expectError(t, "cross-site form post (urlencoded)", resp, body, http.StatusForbidden, CodeCSRF)
	mp, mpCT := multipartBody(t, []part{jsonPart("person", personJSON("CSRF-1", "Csrf Victim", "hk"))})
	resp, body = c.do(http.MethodPost, "/api/v1/people", bytes.NewReader(mp), mpCT)
	expectError(t, "cross-site form post (multipart)", resp, body, http.StatusForbidden, CodeCSRF)
	resp, body = c.do(http.MethodPost, "/api/v1/people", bytes.NewReader(person), "application/json", CSRFHeader, "not-the-token")
	expectError(t, "wrong CSRF token", resp, body, http.StatusForbidden, CodeCSRF)
	resp, body = c.do(http.MethodPost, "/api/v1/people", bytes.NewReader(person), "application/json", CSRFHeader, v.CSRFToken, "Origin", "https://evil.example")
	expectError(t, "right token from another origin", resp, body, http.StatusForbidden, CodeCSRF)
	resp, body = c.do(http.MethodDelete, "/api/v1/people/NOPE?reason=cleanup", nil, "")
	expectError(t, "DELETE without the CSRF header", resp, body, http.StatusForbidden, CodeCSRF)
	s.assertUnchanged("requests without a valid CSRF token", before)

	resp, body = c.do(http.MethodPost, "/api/v1/people", bytes.NewReader(person), "application/json", CSRFHeader, v.CSRFToken, "Origin", s.base)
	expectStatus(t, "write with the CSRF header", resp, body, http.StatusCreated)

	// Logout needs the token too, then the cookie is worthless.
	resp, body = c.do(http.MethodPost, "/api/v1/logout", nil, "")
	expectError(t, "logout without CSRF", resp, body, http.StatusForbidden, CodeCSRF)
	resp, body = c.do(http.MethodPost, "/api/v1/logout", nil, "", CSRFHeader, v.CSRFToken)
	expectStatus(t, "logout", resp, body, http.StatusNoContent)
	resp, body = c.get("/api/v1/session")
	expectError(t, "session after logout", resp, body, http.StatusUnauthorized, CodeUnauthenticated)
	replay := s.anon()
	u, _ := url.Parse(s.base)
	replay.hc.Jar.SetCookies(u, []*http.Cookie{{Name: SessionCookie, Value: ck.Value}})
	resp, body = replay.get("/api/v1/people")
	expectError(t, "replayed cookie after logout", resp, body, http.StatusUnauthorized, CodeUnauthenticated)

	// Logins are audited with where they came from.
	resp, body = s.admin().get("/api/v1/audit?action=login.failed")
	page := decode[auditPage](t, body)
	if resp.StatusCode != http.StatusOK || len(page.Entries) != 2 || page.Entries[0].RemoteAddr != testAddr {
		t.Errorf("failed logins in the audit: %s", body)
	}
	if strings.Contains(string(body), "wrong password!") {
		t.Error("the audit holds a tried password")
	}
}

// TestLoginRateLimitPerAddress: every attempt from one address counts;
// the one over the limit gets 429 with Retry-After, even with the right
// password, until the bucket refills.
func TestLoginRateLimitPerAddress(t *testing.T) {
	s := newStack(t, Config{LoginPerMinute: 3, AccountFailures: 100})
	c := s.anon()
	for i := range 3 {
		resp, body := c.sendJSON(http.MethodPost, "/api/v1/login", map[string]string{"username": fmt.Sprintf("user%d", i), "password": "guess guess guess"})
		expectError(t, fmt.Sprintf("attempt %d", i+1), resp, body, http.StatusUnauthorized, CodeBadCredentials)
	}
	resp, body := c.sendJSON(http.MethodPost, "/api/v1/login", map[string]string{"username": adminUser, "password": adminPassword})
	expectError(t, "4th attempt in a minute", resp, body, http.StatusTooManyRequests, CodeRateLimited)
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 21 {
		t.Errorf("Retry-After %q, want 1-21 s", resp.Header.Get("Retry-After"))
	}
	if got := s.metricValue("loopgate_enrol_api_login_attempts_total", "result", "rate_limited_address"); got != 1 {
		t.Errorf("rate_limited_address = %v, want 1", got)
	}
	if got := s.metricValue("loopgate_enrol_api_login_attempts_total", "result", "bad_credentials"); got != 3 {
		t.Errorf("bad_credentials = %v, want 3", got)
	}
	s.clock.Store(int64(61 * time.Second))
	resp, body = c.sendJSON(http.MethodPost, "/api/v1/login", map[string]string{"username": adminUser, "password": adminPassword})
	expectStatus(t, "login after a minute", resp, body, http.StatusOK)
}

// TestLoginRateLimitPerAccount: failed logins for one account throttle that
// account (whatever the address), not others; a success clears them.
func TestLoginRateLimitPerAccount(t *testing.T) {
	s := newStack(t, Config{LoginPerMinute: 1000, AccountFailures: 3, AccountRetryEvery: time.Minute})
	if _, err := s.acc.AddUser(context.Background(), enroll.Actor{Name: "setup", Kind: "cli"}, "otto", "officer password otto", enroll.RoleOfficer); err != nil {
		t.Fatal(err)
	}
	c := s.anon()
	login := func(user, pw string) (*http.Response, []byte) {
		return c.sendJSON(http.MethodPost, "/api/v1/login", map[string]string{"username": user, "password": pw})
	}
	for i := range 3 {
		resp, body := login(adminUser, fmt.Sprintf("wrong password %d", i))
		expectError(t, fmt.Sprintf("failure %d", i+1), resp, body, http.StatusUnauthorized, CodeBadCredentials)
	}
	resp, body := login(adminUser, adminPassword)
	expectError(t, "right password after 3 failures", resp, body, http.StatusTooManyRequests, CodeRateLimited)
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 61 {
		t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	resp, body = login(" ADA ", adminPassword)
	expectError(t, "the same account spelled differently", resp, body, http.StatusTooManyRequests, CodeRateLimited)
	resp, body = login("otto", "officer password otto")
	expectStatus(t, "another account", resp, body, http.StatusOK)

	s.clock.Store(int64(61 * time.Second))
	resp, body = login(adminUser, adminPassword)
	expectStatus(t, "after the retry interval", resp, body, http.StatusOK)
	// The success cleared the failures: three more are absorbed again.
	for i := range 3 {
		resp, body := login(adminUser, "wrong again "+strconv.Itoa(i))
		expectError(t, fmt.Sprintf("failure %d after success", i+1), resp, body, http.StatusUnauthorized, CodeBadCredentials)
	}
	if got := s.metricValue("loopgate_enrol_api_login_attempts_total", "result", "rate_limited_account"); got != 2 {
		t.Errorf("rate_limited_account = %v, want 2", got)
	}
	if got := s.metricValue("loopgate_enrol_api_login_attempts_total", "result", "bad_credentials"); got != 6 {
		t.Errorf("bad_credentials = %v, want 6", got)
	}
}

// TestAccountsAndTokens: admins manage accounts and tokens; a token's
// secret is shown once; a revoked token and a disabled account's session
// are refused at once.
func TestAccountsAndTokens(t *testing.T) {
	s := newStack(t, Config{})
	adm := s.admin()
	resp, body := adm.sendJSON(http.MethodPost, "/api/v1/accounts", map[string]string{"username": "otto", "password": "officer password otto", "role": "officer"})
	expectStatus(t, "create officer", resp, body, http.StatusCreated)
	if acc := decode[enroll.Account](t, body); acc.Username != "otto" || acc.Role != enroll.RoleOfficer || acc.DisabledAt != nil {
		t.Errorf("created %s", body)
	}
	if strings.Contains(string(body), "password") || strings.Contains(string(body), "argon2") {
		t.Errorf("account response shows the password or its hash: %s", body)
	}
	before := s.snapshot()
	for _, c := range []struct {
		name, code, field string
		status            int
		body              any
	}{
		{"taken username", CodeIDConflict, "", 409, map[string]string{"username": "otto", "password": "another long password", "role": "officer"}},
		{"short password", CodeInvalidField, "password", 422, map[string]string{"username": "olga", "password": "short", "role": "officer"}},
		{"unknown role", CodeInvalidField, "role", 422, map[string]string{"username": "olga", "password": "long enough password", "role": "root"}},
		{"bad username", CodeInvalidField, "username", 422, map[string]string{"username": "Olga Smith", "password": "long enough password", "role": "officer"}},
		{"unknown field", CodeUnknownField, "admin", 400, map[string]any{"username": "olga", "password": "long enough password", "role": "officer", "admin": true}},
		{"wrong type", CodeWrongType, "role", 400, map[string]any{"username": "olga", "password": "long enough password", "role": 1}},
	} {
		resp, body := adm.sendJSON(http.MethodPost, "/api/v1/accounts", c.body)
		expectError(t, c.name, resp, body, c.status, c.code, c.field)
	}
	s.assertUnchanged("refused account requests", before)
	resp, body = adm.get("/api/v1/accounts")
	var names []string
	for _, a := range decode[struct{ Accounts []enroll.Account }](t, body).Accounts {
		names = append(names, a.Username)
	}
	if !slices.Equal(names, []string{"ada", "otto"}) {
		t.Errorf("accounts %v", names)
	}

	// Tokens: the secret once, hashes only at rest.
	resp, body = adm.sendJSON(http.MethodPost, "/api/v1/tokens", map[string]string{"name": "intake-kiosk", "role": "officer"})
	expectStatus(t, "create token", resp, body, http.StatusCreated)
	ct := decode[createdToken](t, body)
	if !strings.HasPrefix(ct.Secret, enroll.TokenPrefix) || len(ct.Secret) < 40 || ct.Token.CreatedBy != adminUser {
		t.Fatalf("token %s", body)
	}
	resp, body = adm.sendJSON(http.MethodPost, "/api/v1/tokens", map[string]string{"name": "intake-kiosk", "role": "officer"})
	expectError(t, "taken token name", resp, body, http.StatusConflict, CodeIDConflict)
	resp, body = adm.get("/api/v1/tokens")
	if resp.StatusCode != http.StatusOK || strings.Contains(string(body), ct.Secret) || !strings.Contains(string(body), "intake-kiosk") {
		t.Errorf("token list: %s", body)
	}
	// At rest only the secret's SHA-256.
	sum := sha256.Sum256([]byte(ct.Secret))
	var stored int
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM api_tokens WHERE id = $1 AND secret_sha256 = $2`, ct.Token.ID, sum[:]).Scan(&stored); err != nil || stored != 1 {
		t.Errorf("token not stored as its hash (%d, %v)", stored, err)
	}
	kiosk := s.bearer(ct.Secret)
	resp, body = kiosk.get("/api/v1/session")
	if v := decode[sessionView](t, body); resp.StatusCode != http.StatusOK || v.Kind != "token" || v.Role != enroll.RoleOfficer || v.CSRFToken != "" || v.ExpiresAt != nil {
		t.Errorf("token session: %s", body)
	}
	// Bearer writes need no CSRF token.
	resp, body = kiosk.sendJSON(http.MethodPost, "/api/v1/people", personJSON("K-1", "Kiosk Person", "sz"))
	expectStatus(t, "token create person", resp, body, http.StatusCreated)
	resp, body = kiosk.do(http.MethodDelete, "/api/v1/people/K-1?reason=testing+roles", nil, "")
	expectError(t, "officer token deletes", resp, body, http.StatusForbidden, CodeForbidden)

	resp, body = adm.do(http.MethodDelete, "/api/v1/tokens/abc", nil, "")
	expectError(t, "token id not a number", resp, body, http.StatusBadRequest, CodeInvalidParameter, "id")
	resp, body = adm.do(http.MethodDelete, "/api/v1/tokens/999999", nil, "")
	expectError(t, "unknown token id", resp, body, http.StatusNotFound, CodeNotFound)
	resp, body = adm.do(http.MethodDelete, fmt.Sprintf("/api/v1/tokens/%d", ct.Token.ID), nil, "")
	expectStatus(t, "revoke token", resp, body, http.StatusNoContent)
	resp, body = kiosk.get("/api/v1/people")
	expectError(t, "revoked token", resp, body, http.StatusUnauthorized, CodeUnauthenticated)
	resp, body = adm.do(http.MethodDelete, fmt.Sprintf("/api/v1/tokens/%d", ct.Token.ID), nil, "")
	expectError(t, "revoke twice", resp, body, http.StatusNotFound, CodeNotFound)

	// An admin token can do admin things.
	adminTok, _ := s.token("ops-admin", enroll.RoleAdmin)
	resp, body = adminTok.do(http.MethodDelete, "/api/v1/people/K-1?reason=testing+roles", nil, "")
	expectStatus(t, "admin token deletes", resp, body, http.StatusNoContent)

	// Disabling an account ends its session at once.
	otto := s.login("otto", "officer password otto")
	resp, body = otto.do(http.MethodPost, "/api/v1/accounts/otto/disable", nil, "")
	expectError(t, "officer disables", resp, body, http.StatusForbidden, CodeForbidden)
	resp, body = adm.do(http.MethodPost, "/api/v1/accounts/otto/disable", nil, "")
	expectStatus(t, "disable", resp, body, http.StatusNoContent)
	resp, body = otto.get("/api/v1/session")
	expectError(t, "disabled account's session", resp, body, http.StatusUnauthorized, CodeUnauthenticated)
	resp, body = s.anon().sendJSON(http.MethodPost, "/api/v1/login", map[string]string{"username": "otto", "password": "officer password otto"})
	expectError(t, "disabled account logs in", resp, body, http.StatusUnauthorized, CodeBadCredentials)
	resp, body = adm.do(http.MethodPost, "/api/v1/accounts/otto/disable", nil, "")
	expectError(t, "disable twice", resp, body, http.StatusNotFound, CodeNotFound)
	resp, body = adm.sendJSON(http.MethodPost, "/api/v1/accounts/nobody/disable", map[string]any{"now": true})
	expectError(t, "disable with a body", resp, body, http.StatusBadRequest, CodeUnknownField, "now")

	resp, body = adm.get("/api/v1/audit")
	var actions []string
	for _, e := range decode[auditPage](t, body).Entries {
		if e.Actor == adminUser && e.RemoteAddr != testAddr {
			t.Errorf("audit entry %d without the client address: %+v", e.ID, e)
		}
		actions = append(actions, e.Action)
	}
	for _, want := range []string{"account.created", "token.created", "token.revoked", "account.disabled", "person.created", "person.deleted"} {
		if !slices.Contains(actions, want) {
			t.Errorf("audit lacks %s: %v", want, actions)
		}
	}
}

// TestPeopleLifecycle: create, read, list with paging and search, patch
// with merge semantics, revoke, reinstate and delete, each refusal precise
// and harmless, every change audited.
func TestPeopleLifecycle(t *testing.T) {
	s := newStack(t, Config{})
	off := s.officer("otto")
	adm := s.admin()

	resp, body := off.sendJSON(http.MethodPost, "/api/v1/people", map[string]any{
		"external_id": "HK-0001", "name": "Colin Powell", "organisation": "State Dept", "home_park": "hk",
		"gates": []string{"bridge-b", "bridge-a", "bridge-a"}, "valid_until": "2027-01-01T00:00:00Z",
	})
	expectStatus(t, "create", resp, body, http.StatusCreated)
	if resp.Header.Get("Location") != "/api/v1/people/HK-0001" {
		t.Errorf("Location %q", resp.Header.Get("Location"))
	}
	res := decode[enroll.AddResult](t, body)
	if p := res.Person; p.Templates != 0 || p.Status != "active" || !slices.Equal(p.Gates, []string{"bridge-a", "bridge-b"}) ||
		p.ValidUntil == nil || !p.ValidUntil.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) || p.ValidFrom != nil || res.Added != 0 {
		t.Fatalf("created %s", body)
	}
	for _, p := range []map[string]any{personJSON("HK-0002", "George Bush", "sz", "bridge-a"), personJSON("SZ-0003", "Tony Blair", "sz")} {
		resp, body := off.sendJSON(http.MethodPost, "/api/v1/people", p)
		expectStatus(t, "create", resp, body, http.StatusCreated)
	}
	before := s.snapshot()
	resp, body = off.sendJSON(http.MethodPost, "/api/v1/people", personJSON("HK-0001", "Someone Else", "sz"))
	expectError(t, "conflicting id", resp, body, http.StatusConflict, CodeIDConflict)
	s.assertUnchanged("conflicting id", before)

	// Reads, paging, search.
	resp, body = off.get("/api/v1/people/HK-0001")
	if p := decodePerson(t, body); resp.StatusCode != http.StatusOK || p.Organisation != "State Dept" {
		t.Errorf("get: %s", body)
	}
	resp, body = off.get("/api/v1/people/NOPE")
	expectError(t, "unknown id", resp, body, http.StatusNotFound, CodeNotFound)
	ids := func(path string) ([]string, string) {
		t.Helper()
		resp, body := off.get(path)
		expectStatus(t, path, resp, body, http.StatusOK)
		page := decode[enroll.Page](t, body)
		var out []string
		for _, p := range page.People {
			out = append(out, p.ExternalID)
		}
		return out, page.Next
	}
	if got, next := ids("/api/v1/people?limit=2"); !slices.Equal(got, []string{"HK-0001", "HK-0002"}) || next != "HK-0002" {
		t.Errorf("page 1: %v next %q", got, next)
	}
	if got, next := ids("/api/v1/people?limit=2&after=HK-0002"); !slices.Equal(got, []string{"SZ-0003"}) || next != "" {
		t.Errorf("page 2: %v next %q", got, next)
	}
	for q, want := range map[string][]string{
		"q=blair": {"SZ-0003"}, "q=hk-": {"HK-0001", "HK-0002"}, "gate=bridge-b": {"HK-0001"},
		"q=bush&gate=bridge-a": {"HK-0002"}, "status=revoked": nil, "q=" + url.QueryEscape("%"): nil,
	} {
		if got, _ := ids("/api/v1/people?" + q); !slices.Equal(got, want) {
			t.Errorf("?%s: %v, want %v", q, got, want)
		}
	}

	// PATCH: merge semantics.
	resp, body = off.sendJSON(http.MethodPatch, "/api/v1/people/HK-0001", map[string]any{
		"name": "Colin L. Powell", "gates": []string{"bridge-c"}, "valid_from": "2026-01-01T08:00:00+08:00",
	})
	p := decodePerson(t, body)
	if resp.StatusCode != http.StatusOK || p.Name != "Colin L. Powell" || !slices.Equal(p.Gates, []string{"bridge-c"}) ||
		p.ValidFrom == nil || !p.ValidFrom.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) || p.ValidUntil == nil || p.Organisation != "State Dept" {
		t.Fatalf("patch: %d %s", resp.StatusCode, body)
	}
	resp, body = off.do(http.MethodPatch, "/api/v1/people/HK-0001", strings.NewReader(`{"valid_until":null,"organisation":null}`), "application/merge-patch+json")
	p = decodePerson(t, body)
	if resp.StatusCode != http.StatusOK || p.ValidUntil != nil || p.ValidFrom == nil || p.Organisation != "" || p.Name != "Colin L. Powell" {
		t.Fatalf("patch with nulls: %d %s", resp.StatusCode, body)
	}
	before = s.snapshot()
	for _, c := range []struct {
		name, body, code, field string
		status                  int
	}{
		{"empty patch", `{}`, CodeInvalidField, "body", 422},
		{"null name", `{"name":null}`, CodeInvalidField, "name", 422},
		{"null home park", `{"home_park":null}`, CodeInvalidField, "home_park", 422},
		{"status is not patchable", `{"status":"revoked"}`, CodeUnknownField, "status", 400},
		{"external id is not patchable", `{"external_id":"HK-9"}`, CodeUnknownField, "external_id", 400},
		{"gates as a string", `{"gates":"bridge-a"}`, CodeWrongType, "gates", 400},
		{"name as a number", `{"name":42}`, CodeWrongType, "name", 400},
		{"date in words", `{"valid_until":"next week"}`, CodeWrongType, "valid_until", 400},
		{"window backwards", `{"valid_until":"2025-01-01T00:00:00Z"}`, CodeInvalidField, "valid_until", 422},
		{"bad gate name", `{"gates":["bridge a"]}`, CodeInvalidField, "gates", 422},
		{"bad home park", `{"home_park":"uk"}`, CodeInvalidField, "home_park", 422},
		{"malformed", `{"name":`, CodeMalformedJSON, "", 400},
	} {
		resp, body := off.sendJSON(http.MethodPatch, "/api/v1/people/HK-0001", c.body)
		expectError(t, c.name, resp, body, c.status, c.code, c.field)
	}
	resp, body = off.do(http.MethodPatch, "/api/v1/people/HK-0001", strings.NewReader(`{"name":"X"}`), "text/plain")
	expectError(t, "patch as text/plain", resp, body, http.StatusUnsupportedMediaType, CodeUnsupportedMedia)
	resp, body = off.sendJSON(http.MethodPatch, "/api/v1/people/NOPE", `{"name":"X"}`)
	expectError(t, "patch unknown id", resp, body, http.StatusNotFound, CodeNotFound)
	s.assertUnchanged("refused patches", before)

	// Revoke and reinstate.
	resp, body = off.sendJSON(http.MethodPost, "/api/v1/people/HK-0002/revoke", map[string]string{"reason": "left the company"})
	if p := decodePerson(t, body); resp.StatusCode != http.StatusOK || p.Status != "revoked" || p.RevokedAt == nil || p.RevokedReason != "left the company" {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	before = s.snapshot()
	resp, body = off.sendJSON(http.MethodPost, "/api/v1/people/HK-0002/revoke", map[string]string{"reason": "again"})
	expectError(t, "revoke twice", resp, body, http.StatusConflict, CodeStateConflict)
	resp, body = off.sendJSON(http.MethodPost, "/api/v1/people/HK-0001/revoke", map[string]string{"reason": ""})
	expectError(t, "revoke without a reason", resp, body, http.StatusUnprocessableEntity, CodeInvalidField, "reason")
	resp, body = off.sendJSON(http.MethodPost, "/api/v1/people/HK-0001/revoke", map[string]any{"reason": true})
	expectError(t, "reason as a bool", resp, body, http.StatusBadRequest, CodeWrongType, "reason")
	resp, body = off.sendJSON(http.MethodPost, "/api/v1/people/NOPE/revoke", map[string]string{"reason": "no such person"})
	expectError(t, "revoke unknown id", resp, body, http.StatusNotFound, CodeNotFound)
	s.assertUnchanged("refused revokes", before)
	if got, _ := ids("/api/v1/people?status=revoked"); !slices.Equal(got, []string{"HK-0002"}) {
		t.Errorf("revoked: %v", got)
	}
	resp, body = off.sendJSON(http.MethodPost, "/api/v1/people/HK-0002/reinstate", map[string]any{"why": "x"})
	expectError(t, "reinstate with a field", resp, body, http.StatusBadRequest, CodeUnknownField, "why")
	resp, body = off.do(http.MethodPost, "/api/v1/people/HK-0002/reinstate", nil, "")
	if p := decodePerson(t, body); resp.StatusCode != http.StatusOK || p.Status != "active" || p.RevokedAt != nil {
		t.Fatalf("reinstate: %d %s", resp.StatusCode, body)
	}
	resp, body = off.sendJSON(http.MethodPost, "/api/v1/people/HK-0002/reinstate", `{}`)
	expectError(t, "reinstate an active person", resp, body, http.StatusConflict, CodeStateConflict)

	// Delete: admins, with a reason.
	before = s.snapshot()
	resp, body = off.do(http.MethodDelete, "/api/v1/people/HK-0002?reason=erasure+request", nil, "")
	expectError(t, "officer deletes", resp, body, http.StatusForbidden, CodeForbidden)
	resp, body = adm.do(http.MethodDelete, "/api/v1/people/HK-0002", nil, "")
	expectError(t, "delete without a reason", resp, body, http.StatusUnprocessableEntity, CodeInvalidField, "reason")
	resp, body = adm.sendJSON(http.MethodDelete, "/api/v1/people/HK-0002?reason=a", map[string]string{"reason": "b"})
	expectError(t, "delete with two reasons", resp, body, http.StatusBadRequest, CodeInvalidParameter, "reason")
	resp, body = adm.do(http.MethodDelete, "/api/v1/people/NOPE?reason=erasure+request", nil, "")
	expectError(t, "delete unknown id", resp, body, http.StatusNotFound, CodeNotFound)
	s.assertUnchanged("refused deletes", before)
	resp, body = adm.sendJSON(http.MethodDelete, "/api/v1/people/HK-0002", map[string]string{"reason": "erasure request 42"})
	expectStatus(t, "delete with a body reason", resp, body, http.StatusNoContent)
	resp, body = adm.do(http.MethodDelete, "/api/v1/people/SZ-0003?reason="+url.QueryEscape("duplicate record"), nil, "")
	expectStatus(t, "delete with ?reason=", resp, body, http.StatusNoContent)
	resp, body = off.get("/api/v1/people/HK-0002")
	expectError(t, "get deleted", resp, body, http.StatusNotFound, CodeNotFound)

	// The audit: who, what, when, from where.
	resp, body = adm.get("/api/v1/audit?subject=HK-0002")
	page := decode[auditPage](t, body)
	var got []string
	for _, e := range page.Entries {
		got = append(got, e.Action+" by "+e.Actor)
		if e.RemoteAddr != testAddr || e.ActorKind != "account" || e.At.IsZero() {
			t.Errorf("audit entry %+v", e)
		}
	}
	want := []string{"person.deleted by ada", "person.reinstated by otto", "person.revoked by otto", "person.created by otto"}
	if !slices.Equal(got, want) {
		t.Errorf("audit of HK-0002: %v, want %v", got, want)
	}
	if !strings.Contains(string(page.Entries[0].Detail), "erasure request 42") {
		t.Errorf("delete reason not audited: %s", page.Entries[0].Detail)
	}
	// Audit paging.
	resp, body = adm.get("/api/v1/audit?subject=HK-0002&limit=1")
	p1 := decode[auditPage](t, body)
	resp, body = adm.get(fmt.Sprintf("/api/v1/audit?subject=HK-0002&limit=1&before=%d", p1.NextBefore))
	p2 := decode[auditPage](t, body)
	if len(p1.Entries) != 1 || len(p2.Entries) != 1 || p2.Entries[0].Action != "person.reinstated" {
		t.Errorf("audit paging: %+v then %+v", p1, p2)
	}
	for q, field := range map[string]string{"limit=abc": "limit", "limit=5000": "limit", "before=-1": "before"} {
		resp, body := adm.get("/api/v1/audit?" + q)
		expectError(t, "audit ?"+q, resp, body, http.StatusBadRequest, CodeInvalidParameter, field)
	}
	resp, body = adm.get("/api/v1/audit?who=ada")
	expectError(t, "audit unknown parameter", resp, body, http.StatusBadRequest, CodeUnknownParameter, "who")
}

// TestPhotosEnrolListAndReplace: a multipart create stores the person and
// templates together; photos are added and replaced; the template list is
// metadata only; PNG works.
func TestPhotosEnrolListAndReplace(t *testing.T) {
	s := newStack(t, Config{})
	off := s.officer("otto")
	powell := s.goodPhotos("Colin_Powell", 3)

	parts := append([]part{jsonPart("person", personJSON("HK-0001", "Colin Powell", "hk", "bridge-a"))}, photoParts(powell[:2])...)
	resp, body := off.sendMultipart(http.MethodPost, "/api/v1/people", parts)
	expectStatus(t, "multipart create", resp, body, http.StatusCreated)
	res := decode[enroll.AddResult](t, body)
	if res.Added != 2 || res.Person.Templates != 2 || len(res.Photos) != 2 {
		t.Fatalf("create with photos: %s", body)
	}
	for i, rep := range res.Photos {
		sum := sha256.Sum256(powell[i].Data)
		if !rep.Accepted || rep.FaceBox == nil || rep.FaceBox.W < 40 || rep.SHA256 != hex.EncodeToString(sum[:]) || rep.Name != powell[i].Name {
			t.Errorf("report %d: %+v", i, rep)
		}
	}
	resp, body = off.get("/api/v1/people/HK-0001/photos")
	ts := decode[struct{ Templates []enroll.TemplateInfo }](t, body).Templates
	if resp.StatusCode != http.StatusOK || len(ts) != 2 || ts[0].Operator != "otto" || ts[0].Source != "account" || ts[0].PhotoSHA256 != res.Photos[0].SHA256 || ts[0].FaceBox.W == 0 {
		t.Fatalf("templates: %s", body)
	}

	resp, body = off.sendMultipart(http.MethodPost, "/api/v1/people/HK-0001/photos", []part{photoPart(powell[2].Name, powell[2].Data), textPart("mode", "add")})
	if r := decode[enroll.AddResult](t, body); resp.StatusCode != http.StatusOK || r.Added != 1 || r.Person.Templates != 3 {
		t.Fatalf("add: %d %s", resp.StatusCode, body)
	}
	before := s.snapshot()
	resp, body = off.sendMultipart(http.MethodPost, "/api/v1/people/HK-0001/photos", []part{photoPart(powell[2].Name, powell[2].Data)})
	e := expectError(t, "the same photo again", resp, body, http.StatusConflict, CodeDuplicateIdentity)
	if len(e.Photos) != 1 || !hasReason(e.Photos[0], enroll.ReasonAlreadyEnrolled) {
		t.Errorf("same photo again: %s", body)
	}
	resp, body = off.sendMultipart(http.MethodPost, "/api/v1/people/HK-0001/photos", []part{photoPart("x.jpg", powell[0].Data), textPart("mode", "merge")})
	expectError(t, "unknown mode", resp, body, http.StatusUnprocessableEntity, CodeInvalidField, "mode")
	resp, body = off.sendMultipart(http.MethodPost, "/api/v1/people/HK-0001/photos", []part{textPart("mode", "add")})
	expectError(t, "no photo", resp, body, http.StatusUnprocessableEntity, CodeInvalidField, "photo")
	resp, body = off.sendMultipart(http.MethodPost, "/api/v1/people/NOPE/photos", []part{photoPart("x.jpg", powell[0].Data)})
	expectError(t, "photos for an unknown id", resp, body, http.StatusNotFound, CodeNotFound)
	resp, body = off.get("/api/v1/people/NOPE/photos")
	expectError(t, "templates of an unknown id", resp, body, http.StatusNotFound, CodeNotFound)
	resp, body = off.sendJSON(http.MethodPost, "/api/v1/people/HK-0001/photos", map[string]string{"photo": "base64..."})
	expectError(t, "photos as JSON", resp, body, http.StatusUnsupportedMediaType, CodeUnsupportedMedia)
	s.assertUnchanged("refused photo uploads", before)

	resp, body = off.sendMultipart(http.MethodPost, "/api/v1/people/HK-0001/photos", []part{photoPart(powell[1].Name, powell[1].Data), textPart("mode", "replace")})
	if r := decode[enroll.AddResult](t, body); resp.StatusCode != http.StatusOK || r.Replaced != 3 || r.Added != 1 || r.Person.Templates != 1 {
		t.Fatalf("replace: %d %s", resp.StatusCode, body)
	}
	resp, body = off.get("/api/v1/people/HK-0001/photos")
	if ts := decode[struct{ Templates []enroll.TemplateInfo }](t, body).Templates; len(ts) != 1 {
		t.Errorf("after replace: %s", body)
	}

	// PNG goes through OpenCV like JPEG.
	png := testenv.SharedFile(t, "media/lin-manuel-miranda.png")
	resp, body = off.sendMultipart(http.MethodPost, "/api/v1/people", []part{jsonPart("person", personJSON("LMM-1", "Lin-Manuel Miranda", "sz")), photoPart("lmm.png", png)})
	if r := decode[enroll.AddResult](t, body); resp.StatusCode != http.StatusCreated || r.Added != 1 {
		t.Fatalf("PNG create: %d %s", resp.StatusCode, body)
	}
	if got := s.metricValue("loopgate_enrol_api_photos_total", "result", "accepted"); got != 5 {
		t.Errorf("accepted photos metric = %v, want 5", got)
	}
}

// TestPhotoRejectionsChangeNothing: each kind of bad upload gets its own
// precise refusal and stores nothing (not the person, not the good photos
// beside a bad one).
func TestPhotoRejectionsChangeNothing(t *testing.T) {
	s := newStack(t, Config{})
	off := s.officer("otto")
	powell := s.goodPhotos("Colin_Powell", 1)[0]
	bush := s.goodPhotos("George_W_Bush", 1)[0]
	resp, body := off.sendMultipart(http.MethodPost, "/api/v1/people", []part{jsonPart("person", personJSON("HK-0001", "Colin Powell", "hk")), photoPart(powell.Name, powell.Data)})
	expectStatus(t, "create HK-0001", resp, body, http.StatusCreated)
	person := func(id string) part { return jsonPart("person", personJSON(id, "Rita Reject", "hk")) }
	twoFaces := testenv.SharedFile(t, "media/two_people.jpg")
	before := s.snapshot()

	// Photos the domain refuses, with their reason codes.
	for _, c := range []struct {
		name   string
		photos []part
		reason []string // per photo; "" = accepted
	}{
		{"no face (scenery)", []part{photoPart("wall.jpg", sceneryJPEG(t))}, []string{enroll.ReasonNoFace}},
		{"two faces (group photo)", []part{photoPart("two.jpg", twoFaces)}, []string{enroll.ReasonMultipleFaces}},
		{"fake image (text named .jpg)", []part{photoPart("id-card.jpg", []byte("name,id\nRita,R-1\nthis is a CSV file\n"))}, []string{enroll.ReasonUnsupportedFormat}},
		{"truncated JPEG", []part{photoPart("cut.jpg", powell.Data[:len(powell.Data)/2])}, []string{enroll.ReasonDecodeFailed}},
		{"empty file", []part{photoPart("empty.jpg", nil)}, []string{enroll.ReasonDecodeFailed}},
		{"one bad among good", []part{photoPart("good.jpg", bush.Data), photoPart("wall.jpg", sceneryJPEG(t))}, []string{"", enroll.ReasonNoFace}},
	} {
		resp, body := off.sendMultipart(http.MethodPost, "/api/v1/people", append([]part{person("R-1")}, c.photos...))
		e := expectError(t, c.name, resp, body, http.StatusUnprocessableEntity, CodePhotoRejected)
		if len(e.Photos) != len(c.reason) {
			t.Errorf("%s: %d reports for %d photos", c.name, len(e.Photos), len(c.reason))
			continue
		}
		for i, want := range c.reason {
			rep := e.Photos[i]
			if want == "" && !rep.Accepted || want != "" && (rep.Accepted || !hasReason(rep, want)) {
				t.Errorf("%s: photo %d reasons %v, want %q", c.name, i+1, reasonCodes(rep), want)
			}
		}
		t.Logf("%s → 422 %s", c.name, e.Message)
	}

	// Requests refused before any photo is analysed.
	tooBig := append(bytes.Clone(powell.Data), make([]byte, 10<<20-len(powell.Data)+1)...)
	many := make([]part, 11)
	for i := range many {
		many[i] = photoPart(fmt.Sprintf("p%d.jpg", i), []byte("x"))
	}
	for _, c := range []struct {
		name   string
		parts  []part
		status int
		code   string
		field  string
	}{
		{"photo over 10 MB", []part{person("R-1"), photoPart("big.jpg", tooBig)}, 413, CodeTooLarge, "photo"},
		{"11 photos", append([]part{person("R-1")}, many...), 400, CodeTooManyPhotos, "photo"},
		{"unknown part", []part{person("R-1"), {name: "photos", filename: "a.jpg", data: powell.Data}}, 400, CodeUnknownField, "photos"},
		{"no person part", []part{photoPart("a.jpg", powell.Data)}, 422, CodeInvalidField, "person"},
		{"person part twice", []part{person("R-1"), person("R-2")}, 400, CodeInvalidMultipart, "person"},
		{"person part malformed", []part{jsonPart("person", `{"external_id":`)}, 400, CodeMalformedJSON, ""},
		{"person part unknown field", []part{jsonPart("person", `{"external_id":"R-1","name":"R","home_park":"hk","photo":"x"}`)}, 400, CodeUnknownField, "photo"},
		{"person part wrong type", []part{jsonPart("person", `{"external_id":"R-1","name":["R"],"home_park":"hk"}`)}, 400, CodeWrongType, "name"},
		{"bad external id", []part{jsonPart("person", personJSON("R 1!", "Rita", "hk")), photoPart("a.jpg", bush.Data)}, 422, CodeInvalidField, "external_id"},
		{"bad home park", []part{jsonPart("person", personJSON("R-1", "Rita", "uk")), photoPart("a.jpg", bush.Data)}, 422, CodeInvalidField, "home_park"},
		{"conflicting id with photos", []part{jsonPart("person", personJSON("HK-0001", "George Bush", "hk")), photoPart("a.jpg", bush.Data)}, 409, CodeIDConflict, ""},
		{"override by an officer", []part{person("R-1"), photoPart("a.jpg", bush.Data), textPart("override_duplicate", "I say so")}, 403, CodeForbidden, ""},
	} {
		resp, body := off.sendMultipart(http.MethodPost, "/api/v1/people", c.parts)
		expectError(t, c.name, resp, body, c.status, c.code, c.field)
	}
	resp, body = off.do(http.MethodPost, "/api/v1/people", strings.NewReader("--nope\r\ngarbage"), "multipart/form-data; boundary=xyz")
	expectError(t, "broken multipart", resp, body, http.StatusBadRequest, CodeInvalidMultipart)
	resp, body = off.do(http.MethodPost, "/api/v1/people", strings.NewReader("x"), "multipart/form-data")
	expectError(t, "multipart without a boundary", resp, body, http.StatusUnsupportedMediaType, CodeUnsupportedMedia)
	s.assertUnchanged("refused uploads", before)
	resp, body = off.get("/api/v1/people/R-1")
	expectError(t, "the refused person", resp, body, http.StatusNotFound, CodeNotFound)
	if got := s.metricValue("loopgate_enrol_api_photo_rejection_reasons_total", "reason", enroll.ReasonNoFace); got != 2 {
		t.Errorf("no_face rejections metric = %v, want 2", got)
	}
}

// TestRequestSizeLimitsBeforeReading: a declared Content-Length over the
// request's bound is refused before the body is read.
func TestRequestSizeLimitsBeforeReading(t *testing.T) {
	s := newStack(t, Config{MaxPhotoBytes: 256 << 10, MaxPhotos: 2, MaxBodyBytes: 4 << 10})
	off := s.officer("otto")
	before := s.snapshot()
	big := make([]byte, 300<<10)
	resp, body := off.sendMultipart(http.MethodPost, "/api/v1/quality", []part{photoPart("big.jpg", big)})
	expectError(t, "photo over MaxPhotoBytes", resp, body, http.StatusRequestEntityTooLarge, CodeTooLarge, "photo")
	parts := []part{jsonPart("person", personJSON("R-1", "R", "hk")), photoPart("a.jpg", big[:200<<10]), photoPart("b.jpg", big[:200<<10]), photoPart("c.jpg", big[:200<<10])}
	resp, body = off.sendMultipart(http.MethodPost, "/api/v1/people", parts)
	expectError(t, "request over its bound (Content-Length)", resp, body, http.StatusRequestEntityTooLarge, CodeTooLarge)
	resp, body = off.sendJSON(http.MethodPost, "/api/v1/people", map[string]any{"external_id": "R-1", "name": strings.Repeat("n", 5<<10), "home_park": "hk"})
	expectError(t, "JSON body over MaxBodyBytes", resp, body, http.StatusRequestEntityTooLarge, CodeTooLarge)
	resp, body = off.sendMultipart(http.MethodPost, "/api/v1/people", []part{jsonPart("person", `{"external_id":"R-1","name":"`+strings.Repeat("n", 5<<10)+`","home_park":"hk"}`)})
	expectError(t, "person part over MaxBodyBytes", resp, body, http.StatusRequestEntityTooLarge, CodeTooLarge, "person")
	s.assertUnchanged("oversized requests", before)
}

// TestDuplicateIdentity: one face cannot hold two identities. The same
// face under a second id is refused naming the first; an officer cannot
// override; an admin can, with a reason, and it is audited.
func TestDuplicateIdentity(t *testing.T) {
	s := newStack(t, Config{})
	off := s.officer("otto")
	adm := s.admin()
	powell := s.goodPhotos("Colin_Powell", 2)
	bush := s.goodPhotos("George_W_Bush", 1)
	resp, body := off.sendMultipart(http.MethodPost, "/api/v1/people", []part{jsonPart("person", personJSON("P-1", "Colin Powell", "hk")), photoPart(powell[0].Name, powell[0].Data)})
	expectStatus(t, "enrol P-1", resp, body, http.StatusCreated)

	second := []part{jsonPart("person", personJSON("P-2", "C. Powell", "sz")), photoPart(powell[1].Name, powell[1].Data)}
	before := s.snapshot()
	resp, body = off.sendMultipart(http.MethodPost, "/api/v1/people", second)
	e := expectError(t, "same face, second id", resp, body, http.StatusConflict, CodeDuplicateIdentity)
	if e.DuplicateOf != "P-1" || len(e.Photos) != 1 || e.Photos[0].Duplicate == nil || e.Photos[0].Duplicate.ExternalID != "P-1" ||
		!hasReason(e.Photos[0], enroll.ReasonDuplicateIdentity) {
		t.Fatalf("duplicate refusal: %s", body)
	}
	t.Logf("duplicate of P-1 at distance %.3f", e.Photos[0].Duplicate.Distance)
	resp, body = off.sendMultipart(http.MethodPost, "/api/v1/people", append(second, textPart("override_duplicate", "twin brother")))
	expectError(t, "officer override", resp, body, http.StatusForbidden, CodeForbidden)
	resp, body = adm.sendMultipart(http.MethodPost, "/api/v1/people", append(second, textPart("override_duplicate", "x")))
	expectError(t, "override with a one-letter reason", resp, body, http.StatusUnprocessableEntity, CodeInvalidField, "override_duplicate")
	// A different face cannot join P-1.
	resp, body = off.sendMultipart(http.MethodPost, "/api/v1/people/P-1/photos", []part{photoPart(bush[0].Name, bush[0].Data)})
	e = expectError(t, "another face for P-1", resp, body, http.StatusConflict, CodeDuplicateIdentity)
	if len(e.Photos) != 1 || !hasReason(e.Photos[0], enroll.ReasonNotSamePerson) {
		t.Errorf("not the same person: %s", body)
	}
	s.assertUnchanged("refused duplicates", before)

	resp, body = adm.sendMultipart(http.MethodPost, "/api/v1/people", append(second, textPart("override_duplicate", "twin brother, verified by passport")))
	if r := decode[enroll.AddResult](t, body); resp.StatusCode != http.StatusCreated || r.Added != 1 {
		t.Fatalf("admin override: %d %s", resp.StatusCode, body)
	}
	resp, body = adm.get("/api/v1/audit?subject=P-2&action=identity_check.overridden")
	page := decode[auditPage](t, body)
	if len(page.Entries) != 1 || page.Entries[0].Actor != adminUser || page.Entries[0].RemoteAddr != testAddr ||
		!strings.Contains(string(page.Entries[0].Detail), "verified by passport") {
		t.Errorf("override audit: %s", body)
	}
}

// TestQualityCheckStoresNothing: the instant check reports on one photo
// and stores nothing; unreadable data is 422.
func TestQualityCheckStoresNothing(t *testing.T) {
	s := newStack(t, Config{})
	off := s.officer("otto")
	good := s.goodPhotos("Colin_Powell", 1)[0]
	before := s.snapshot()
	check := func(name string, data []byte) (*http.Response, []byte) {
		return off.sendMultipart(http.MethodPost, "/api/v1/quality", []part{photoPart(name, data)})
	}
	resp, body := check(good.Name, good.Data)
	rep := decode[enroll.PhotoReport](t, body)
	if resp.StatusCode != http.StatusOK || !rep.Accepted || rep.FaceBox == nil || rep.Faces != 1 || rep.Quality.Measures.InterEyePx <= 0 || len(rep.Reasons) != 0 {
		t.Fatalf("good photo: %d %s", resp.StatusCode, body)
	}
	for name, c := range map[string]struct {
		data   []byte
		reason string
	}{
		"wall.jpg": {sceneryJPEG(t), enroll.ReasonNoFace},
		"two.jpg":  {testenv.SharedFile(t, "media/two_people.jpg"), enroll.ReasonMultipleFaces},
	} {
		resp, body := check(name, c.data)
		rep := decode[enroll.PhotoReport](t, body)
		if resp.StatusCode != http.StatusOK || rep.Accepted || !hasReason(rep, c.reason) {
			t.Errorf("%s: %d %s, want 200 with %s", name, resp.StatusCode, body, c.reason)
		}
	}
	for name, c := range map[string]struct {
		data   []byte
		reason string
	}{
		"fake.jpg": {[]byte("just text pretending to be a JPEG"), enroll.ReasonUnsupportedFormat},
		"cut.jpg":  {good.Data[:len(good.Data)/3], enroll.ReasonDecodeFailed},
	} {
		resp, body := check(name, c.data)
		e := expectError(t, name, resp, body, http.StatusUnprocessableEntity, CodePhotoRejected)
		if len(e.Photos) != 1 || !hasReason(e.Photos[0], c.reason) {
			t.Errorf("%s: %s, want %s", name, body, c.reason)
		}
	}
	resp, body = off.sendMultipart(http.MethodPost, "/api/v1/quality", []part{photoPart("a.jpg", good.Data), photoPart("b.jpg", good.Data)})
	expectError(t, "two photos", resp, body, http.StatusBadRequest, CodeTooManyPhotos, "photo")
	resp, body = off.sendMultipart(http.MethodPost, "/api/v1/quality", []part{textPart("note", "hi")})
	expectError(t, "unknown part", resp, body, http.StatusBadRequest, CodeUnknownField, "note")
	resp, body = off.sendMultipart(http.MethodPost, "/api/v1/quality", nil)
	expectError(t, "no photo", resp, body, http.StatusUnprocessableEntity, CodeInvalidField, "photo")
	resp, body = off.sendJSON(http.MethodPost, "/api/v1/quality", map[string]string{"photo": "x"})
	expectError(t, "JSON", resp, body, http.StatusUnsupportedMediaType, CodeUnsupportedMedia)
	resp, body = check("big.jpg", append(bytes.Clone(good.Data), make([]byte, 10<<20)...))
	expectError(t, "oversized", resp, body, http.StatusRequestEntityTooLarge, CodeTooLarge, "photo")
	s.assertUnchanged("quality checks", before)
}

// TestMalformedJSONChangesNothing: each malformed body, wrong type,
// unknown field, bad query and wrong method has its own code.
func TestMalformedJSONChangesNothing(t *testing.T) {
	s := newStack(t, Config{})
	off := s.officer("otto")
	before := s.snapshot()
	for _, c := range []struct {
		name, body, code, field string
		status                  int
	}{
		{"truncated", `{"external_id":"M-1",`, CodeMalformedJSON, "", 400},
		{"empty", ``, CodeMalformedJSON, "", 400},
		{"array", `[{"external_id":"M-1"}]`, CodeMalformedJSON, "", 400},
		{"null", `null`, CodeMalformedJSON, "", 400},
		{"two values", `{"external_id":"M-1","name":"M","home_park":"hk"} {}`, CodeMalformedJSON, "", 400},
		{"syntax error", `{"external_id":"M-1" "name":"M"}`, CodeMalformedJSON, "", 400},
		{"unknown field", `{"external_id":"M-1","name":"M","home_park":"hk","photo":"x"}`, CodeUnknownField, "photo", 400},
		{"name as a number", `{"external_id":"M-1","name":5,"home_park":"hk"}`, CodeWrongType, "name", 400},
		{"gates as a string", `{"external_id":"M-1","name":"M","home_park":"hk","gates":"a"}`, CodeWrongType, "gates", 400},
		{"gates of numbers", `{"external_id":"M-1","name":"M","home_park":"hk","gates":[1]}`, CodeWrongType, "gates", 400},
		{"date in words", `{"external_id":"M-1","name":"M","home_park":"hk","valid_from":"tomorrow"}`, CodeWrongType, "valid_from", 400},
		{"date as a number", `{"external_id":"M-1","name":"M","home_park":"hk","valid_until":1767225600}`, CodeWrongType, "valid_until", 400},
		{"missing name", `{"external_id":"M-1","home_park":"hk"}`, CodeInvalidField, "name", 422},
		{"missing home park", `{"external_id":"M-1","name":"M"}`, CodeInvalidField, "home_park", 422},
		{"control character in name", `{"external_id":"M-1","name":"M\nX","home_park":"hk"}`, CodeInvalidField, "name", 422},
	} {
		resp, body := off.sendJSON(http.MethodPost, "/api/v1/people", c.body)
		expectError(t, c.name, resp, body, c.status, c.code, c.field)
	}
	resp, body := off.do(http.MethodPost, "/api/v1/people", strings.NewReader(`{"external_id":"M-1","name":"M","home_park":"hk"}`), "text/plain")
	expectError(t, "text/plain", resp, body, http.StatusUnsupportedMediaType, CodeUnsupportedMedia)
	for q, c := range map[string]struct{ code, field string }{
		"sort=name":                     {CodeUnknownParameter, "sort"},
		"limit=abc":                     {CodeInvalidParameter, "limit"},
		"limit=500":                     {CodeInvalidParameter, "limit"},
		"status=gone":                   {CodeInvalidParameter, "status"},
		"gate=" + "a%20b":               {CodeInvalidParameter, "gate"},
		"q=a&q=b":                       {CodeInvalidParameter, "q"},
		"after=" + "%zz":                {CodeInvalidParameter, ""},
		"q=" + strings.Repeat("x", 101): {CodeInvalidParameter, "q"},
	} {
		resp, body := off.get("/api/v1/people?" + q)
		expectError(t, "GET /people?"+q, resp, body, http.StatusBadRequest, c.code, c.field)
	}
	resp, body = off.do(http.MethodPut, "/api/v1/people", nil, "")
	e := expectError(t, "PUT /people", resp, body, http.StatusMethodNotAllowed, CodeMethodNotAllowed)
	if resp.Header.Get("Allow") != "GET, POST" {
		t.Errorf("Allow %q (%+v)", resp.Header.Get("Allow"), e)
	}
	resp, body = off.get("/api/v1/nope")
	expectError(t, "unknown endpoint", resp, body, http.StatusNotFound, CodeNotFound)
	resp, body = s.anon().get("/api/v1/nope")
	expectError(t, "unknown endpoint, anonymous", resp, body, http.StatusNotFound, CodeNotFound)
	s.assertUnchanged("malformed requests", before)
}

// TestHealthReadinessMetrics: the open endpoints, readiness following the
// database, and metrics that carry no personal data.
func TestHealthReadinessMetrics(t *testing.T) {
	s := newStack(t, Config{})
	off := s.officer("otto")
	if resp, body := off.sendJSON(http.MethodPost, "/api/v1/people", personJSON("HK-7777", "Personal Name", "hk")); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	c := s.anon()
	resp, body := c.get("/healthz")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"alive"`) {
		t.Errorf("healthz: %d %s", resp.StatusCode, body)
	}
	resp, body = c.get("/readyz")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"ready"`) {
		t.Errorf("readyz: %d %s", resp.StatusCode, body)
	}
	resp, body = c.get("/metrics")
	m := string(body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(m, `loopgate_enrol_api_requests_total{code="201",route="/api/v1/people"} 1`) ||
		!strings.Contains(m, `loopgate_enrol_api_login_attempts_total{result="ok"}`) {
		t.Errorf("metrics:\n%s", m)
	}
	for _, personal := range []string{"HK-7777", "Personal Name", "otto"} {
		if strings.Contains(m, personal) {
			t.Errorf("metrics contain %q", personal)
		}
	}

	// The officers' page is served beside the API, with its headers.
	for _, path := range []string{"/", "/login"} {
		resp, body := c.get(path)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
			!strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") || len(body) == 0 {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}

	// Readiness follows the database: a server whose pool is closed is not
	// ready, and says which check failed but not why.
	pool, err := pgxpool.New(context.Background(), testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	pool.Close()
	down, err := New(Config{Addr: "127.0.0.1:0"}, Deps{Registry: s.reg, Accounts: s.acc, DB: pool, Logger: s.srv.log})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(down.Handler())
	defer ts.Close()
	dc := (&stack{t: t, base: ts.URL, transport: http.DefaultTransport}).anon()
	resp, body = dc.get("/readyz")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"not_ready"`) || strings.Contains(string(body), "closed") {
		t.Errorf("readyz with the database down: %d %s", resp.StatusCode, body)
	}
}

// TestTLSAndPlainHTTPWarning: with a certificate the server speaks HTTPS,
// marks the cookie Secure and sends HSTS, and does not warn; without one
// it warns at start.
func TestTLSAndPlainHTTPWarning(t *testing.T) {
	plain := newStack(t, Config{})
	if !strings.Contains(plain.logs.String(), "WARNING: enrolment API serving HTTP without TLS") {
		t.Error("no warning when serving without TLS")
	}

	certFile, keyFile, pool := writeSelfSigned(t, t.TempDir())
	s := newStack(t, Config{TLSCertFile: certFile, TLSKeyFile: keyFile})
	if !strings.HasPrefix(s.base, "https://") {
		t.Fatalf("base %s", s.base)
	}
	s.transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	if strings.Contains(s.logs.String(), "without TLS") {
		t.Error("TLS server warns about plain HTTP")
	}
	c := s.anon()
	resp, body := c.sendJSON(http.MethodPost, "/api/v1/login", map[string]string{"username": adminUser, "password": adminPassword})
	expectStatus(t, "login over TLS", resp, body, http.StatusOK)
	var secure bool
	for _, k := range resp.Cookies() {
		secure = secure || (k.Name == SessionCookie && k.Secure)
	}
	if !secure || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("over TLS: cookie Secure=%v, HSTS %q", secure, resp.Header.Get("Strict-Transport-Security"))
	}

	// Behind a TLS proxy: SecureCookies.
	proxied := newStack(t, Config{SecureCookies: true})
	resp, body = proxied.anon().sendJSON(http.MethodPost, "/api/v1/login", map[string]string{"username": adminUser, "password": adminPassword})
	expectStatus(t, "login behind a proxy", resp, body, http.StatusOK)
	for _, k := range resp.Cookies() {
		if k.Name == SessionCookie && !k.Secure {
			t.Error("SecureCookies: cookie not Secure")
		}
	}
}

func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "enrolment.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP(testAddr)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
}

// TestConfigValidation: New refuses what it cannot serve.
func TestConfigValidation(t *testing.T) {
	s := newStack(t, Config{})
	deps := Deps{Registry: s.reg, Accounts: s.acc, DB: s.pool}
	for name, c := range map[string]struct {
		cfg  Config
		deps Deps
	}{
		"no address":      {Config{}, deps},
		"no registry":     {Config{Addr: ":0"}, Deps{Accounts: s.acc, DB: s.pool}},
		"no database":     {Config{Addr: ":0"}, Deps{Registry: s.reg, Accounts: s.acc}},
		"half TLS":        {Config{Addr: ":0", TLSCertFile: "cert.pem"}, deps},
		"missing cert":    {Config{Addr: ":0", TLSCertFile: "/nonexistent/cert.pem", TLSKeyFile: "/nonexistent/key.pem"}, deps},
		"negative limit":  {Config{Addr: ":0", MaxPhotos: -1}, deps},
		"negative window": {Config{Addr: ":0", AccountRetryEvery: -time.Second}, deps},
	} {
		if _, err := New(c.cfg, c.deps); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: %v, want ErrBadConfig", name, err)
		}
	}
	srv, err := New(Config{Addr: ":0"}, deps)
	if err != nil {
		t.Fatal(err)
	}
	if srv.cfg.MaxPhotoBytes != 10<<20 || srv.cfg.MaxPhotos != 10 || srv.cfg.SessionTTL != 8*time.Hour || srv.cfg.LoginPerMinute != 10 || srv.cfg.AccountFailures != 5 {
		t.Errorf("defaults: %+v", srv.cfg)
	}
}
