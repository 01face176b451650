package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/loopgate/loopgate/engine/decision"
)

func TestAnonymousAccess(t *testing.T) {
	n := startNode(t, Config{}, Deps{})
	c := client(t)

	resp, _ := do(t, c, http.MethodGet, n.base+"/live", "", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next=%2Flive" {
		t.Errorf("anonymous /live: %d → %q, want 303 → /login?next=%%2Flive", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, path := range []string{"/events", "/live/cameras", "/live/frame/cam-a.jpg"} {
		resp, body := do(t, c, http.MethodGet, n.base+path, "", nil)
		if resp.StatusCode != http.StatusUnauthorized || errCode(t, body) != CodeUnauthenticated {
			t.Errorf("anonymous %s: %d %s, want 401 unauthenticated", path, resp.StatusCode, body)
		}
		if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("anonymous %s: no WWW-Authenticate challenge", path)
		}
	}
	// Open endpoints.
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/login", "/static/app.css", "/static/live.js"} {
		if resp, _ := do(t, c, http.MethodGet, n.base+path, "", nil); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d, want 200", path, resp.StatusCode)
		}
	}
	resp, _ = do(t, c, http.MethodGet, n.base+"/live", "", nil)
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("no CSP on pages: %q", csp)
	}
}

func TestWrongToken(t *testing.T) {
	n := startNode(t, Config{}, Deps{})
	c := client(t)
	for _, tok := range []string{"not-a-token", operatorSecret + "x", HashToken(operatorSecret)} { // the hash itself is no credential
		for _, path := range []string{"/events", "/live"} {
			resp, body := do(t, c, http.MethodGet, n.base+path, tok, nil)
			if resp.StatusCode != http.StatusUnauthorized || errCode(t, body) != CodeUnauthenticated {
				t.Errorf("GET %s with a wrong token: %d %s, want 401", path, resp.StatusCode, body)
			}
		}
	}
	resp, body := do(t, c, http.MethodGet, n.base+"/events", laneSecret, nil)
	if resp.StatusCode != http.StatusForbidden || errCode(t, body) != CodeForbidden {
		t.Errorf("lane token on /events: %d %s, want 403", resp.StatusCode, body)
	}
}

func TestLoginFlow(t *testing.T) {
	n := startNode(t, Config{}, Deps{})
	c := client(t)

	// No CSRF token: refused, even with a good secret.
	loginForm(t, c, n.base)
	if resp := postLogin(t, c, n.base, "", operatorSecret); resp.StatusCode != http.StatusForbidden {
		t.Errorf("login without CSRF token: %d, want 403", resp.StatusCode)
	}
	// A CSRF field that does not match the cookie: refused.
	loginForm(t, c, n.base)
	if resp := postLogin(t, c, n.base, "forged-value", operatorSecret); resp.StatusCode != http.StatusForbidden {
		t.Errorf("login with a forged CSRF token: %d, want 403", resp.StatusCode)
	}
	// A cross-site POST (Origin of another site) with a valid pair: refused.
	csrf := loginForm(t, c, n.base)
	resp, _ := do(t, c, http.MethodPost, n.base+"/login", "", strings.NewReader("csrf="+csrf+"&token="+operatorSecret),
		"Content-Type", "application/x-www-form-urlencoded", "Origin", "https://evil.example")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin login: %d, want 403", resp.StatusCode)
	}

	csrf = loginForm(t, c, n.base)
	if resp := postLogin(t, c, n.base, csrf, "wrong-secret"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("login with a wrong token: %d, want 401", resp.StatusCode)
	}
	csrf = loginForm(t, c, n.base)
	resp = postLogin(t, c, n.base, csrf, operatorSecret)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/live" {
		t.Fatalf("login: %d → %q, want 303 → /live", resp.StatusCode, resp.Header.Get("Location"))
	}
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			session = ck
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Secure || session.Path != "/" {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, not Secure without TLS", session)
	}
	if strings.Contains(session.Value, operatorSecret) {
		t.Fatal("the session cookie carries the secret")
	}

	resp, body := do(t, c, http.MethodGet, n.base+"/live", "", nil)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("desk-1")) {
		t.Fatalf("/live after login: %d", resp.StatusCode)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Error("the live page may be cached")
	}
	// A session authenticates reads, never the claims API.
	resp, body = do(t, c, http.MethodPost, n.base+"/api/v1/claims", "", strings.NewReader(`{"lane":"a","external_id":"E123"}`),
		"Content-Type", "application/json")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("claims with a session cookie: %d %s, want 401 (bearer only)", resp.StatusCode, body)
	}

	// Logout needs the page's CSRF token.
	if resp, _ := do(t, c, http.MethodPost, n.base+"/logout", "", strings.NewReader("csrf=nope"),
		"Content-Type", "application/x-www-form-urlencoded"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout with a wrong CSRF token: %d, want 403", resp.StatusCode)
	}
	_, live := do(t, c, http.MethodGet, n.base+"/live", "", nil)
	pageCSRF := csrfField.FindSubmatch(live)
	if pageCSRF == nil {
		t.Fatal("live page has no logout CSRF field")
	}
	resp, _ = do(t, c, http.MethodPost, n.base+"/logout", "", strings.NewReader("csrf="+string(pageCSRF[1])),
		"Content-Type", "application/x-www-form-urlencoded")
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("logout: %d, want 303", resp.StatusCode)
	}
	// The old cookie value is dead on the server too, not just cleared.
	old := client(t)
	req, _ := http.NewRequest(http.MethodGet, n.base+"/live", nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: session.Value})
	r2, err := old.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusSeeOther {
		t.Errorf("/live with a logged-out session: %d, want 303 to /login", r2.StatusCode)
	}
}

func TestLoginRateLimit(t *testing.T) {
	n := startNode(t, Config{LoginPerMinute: 5}, Deps{})
	c := client(t)
	for i := range 5 {
		csrf := loginForm(t, c, n.base)
		if resp := postLogin(t, c, n.base, csrf, "wrong-secret"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	csrf := loginForm(t, c, n.base)
	resp := postLogin(t, c, n.base, csrf, operatorSecret) // even the right token waits
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("6th attempt in a minute: %d (Retry-After %q), want 429", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// A minute later the budget is back.
	n.clockOffset.Store(int64(61 * time.Second))
	csrf = loginForm(t, c, n.base)
	if resp := postLogin(t, c, n.base, csrf, operatorSecret); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after a minute: %d, want 303", resp.StatusCode)
	}
}

func TestSessionExpires(t *testing.T) {
	n := startNode(t, Config{SessionTTL: time.Hour}, Deps{})
	c := client(t)
	csrf := loginForm(t, c, n.base)
	if resp := postLogin(t, c, n.base, csrf, operatorSecret); resp.StatusCode != http.StatusSeeOther {
		t.Fatal("login failed")
	}
	if resp, _ := do(t, c, http.MethodGet, n.base+"/live", "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("/live: %d", resp.StatusCode)
	}
	n.clockOffset.Store(int64(time.Hour + time.Second))
	if resp, _ := do(t, c, http.MethodGet, n.base+"/live", "", nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("/live after the session expired: %d, want 303", resp.StatusCode)
	}
}

func TestClaimsAPI(t *testing.T) {
	n := startNode(t, Config{}, Deps{})
	c := client(t)
	post := func(token, body string, hdr ...string) (*http.Response, []byte) {
		if len(hdr) == 0 {
			hdr = []string{"Content-Type", "application/json"}
		}
		return do(t, c, http.MethodPost, n.base+"/api/v1/claims", token, strings.NewReader(body), hdr...)
	}

	resp, body := post(laneSecret, `{"lane":"a","external_id":"E123","ttl_seconds":10}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("claim with a lane token: %d %s, want 201", resp.StatusCode, body)
	}
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["id"] != "claim-a-E123" || raw["lane"] != "a" || raw["external_id"] != "E123" || raw["expires"] == nil {
		t.Errorf("claim response %s", body)
	}
	if len(n.claimer.claims) != 1 || n.claimer.claims[0].ExternalID != "E123" {
		t.Errorf("claimer got %+v", n.claimer.claims)
	}
	if d := time.Until(n.claimer.claims[0].Expires); d <= 0 || d > 10*time.Second {
		t.Errorf("claimer got ttl ending in %v, want within 10 s", d)
	}
	// Without ttl_seconds the default applies.
	if resp, body := post(bothSecret, `{"lane":"b","external_id":"E123"}`); resp.StatusCode != http.StatusCreated {
		t.Errorf("claim without ttl: %d %s", resp.StatusCode, body)
	}

	cases := []struct {
		name, token, body string
		hdr               []string
		status            int
		code              string
	}{
		{"operator-only token", operatorSecret, `{"lane":"a","external_id":"E123"}`, nil, 403, CodeForbidden},
		{"wrong token", "nope", `{"lane":"a","external_id":"E123"}`, nil, 401, CodeUnauthenticated},
		{"no token", "", `{"lane":"a","external_id":"E123"}`, nil, 401, CodeUnauthenticated},
		{"bad JSON", laneSecret, `{"lane":"a",`, nil, 400, CodeInvalidJSON},
		{"not an object", laneSecret, `["a"]`, nil, 400, CodeInvalidJSON},
		{"two objects", laneSecret, `{"lane":"a","external_id":"E123"}{}`, nil, 400, CodeInvalidJSON},
		{"empty body", laneSecret, ``, nil, 400, CodeInvalidJSON},
		{"unknown field", laneSecret, `{"lane":"a","external_id":"E123","force_open":true}`, nil, 400, CodeUnknownField},
		{"ttl as string", laneSecret, `{"lane":"a","external_id":"E123","ttl_seconds":"10"}`, nil, 400, CodeInvalidType},
		{"ttl fractional", laneSecret, `{"lane":"a","external_id":"E123","ttl_seconds":1.5}`, nil, 400, CodeInvalidType},
		{"lane as number", laneSecret, `{"lane":1,"external_id":"E123"}`, nil, 400, CodeInvalidType},
		{"ttl zero", laneSecret, `{"lane":"a","external_id":"E123","ttl_seconds":0}`, nil, 400, CodeInvalidField},
		{"ttl too long", laneSecret, `{"lane":"a","external_id":"E123","ttl_seconds":100000}`, nil, 400, CodeInvalidField},
		{"missing lane", laneSecret, `{"external_id":"E123"}`, nil, 400, CodeInvalidField},
		{"bad lane", laneSecret, `{"lane":"../a","external_id":"E123"}`, nil, 400, CodeInvalidField},
		{"missing external id", laneSecret, `{"lane":"a"}`, nil, 400, CodeInvalidField},
		{"control char in id", laneSecret, `{"lane":"a","external_id":"E1\u000023"}`, nil, 400, CodeInvalidField},
		{"form body", laneSecret, `lane=a`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, CodeUnsupportedMedia},
		{"huge body", laneSecret, `{"lane":"a","external_id":"` + strings.Repeat("x", 8000) + `"}`, nil, 413, CodeBodyTooLarge},
		{"unknown lane", laneSecret, `{"lane":"z","external_id":"E123"}`, nil, 404, CodeUnknownLane},
		{"unknown person", laneSecret, `{"lane":"a","external_id":"E999"}`, nil, 404, CodeUnknownPerson},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(tc.token, tc.body, tc.hdr...)
			if resp.StatusCode != tc.status || errCode(t, body) != tc.code {
				t.Errorf("%d %s, want %d %s", resp.StatusCode, body, tc.status, tc.code)
			}
		})
	}
	if len(n.claimer.claims) != 2 {
		t.Errorf("the claimer was called for refused requests: %d claims", len(n.claimer.claims))
	}
}

func TestClaimsDisabledWithoutClaimer(t *testing.T) {
	srv, err := New(Config{Addr: "127.0.0.1:0", Tokens: testTokens()}, Deps{Events: NewBroadcaster(BroadcasterOptions{}), Frames: NewLiveFrames(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	req, _ := http.NewRequest(http.MethodPost, "/api/v1/claims", strings.NewReader(`{"lane":"a","external_id":"E123"}`))
	req.Header.Set("Authorization", "Bearer "+laneSecret)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotImplemented || errCode(t, rec.Body.Bytes()) != CodeClaimsDisabled {
		t.Errorf("%d %s, want 501 claims_disabled", rec.Code, rec.Body.Bytes())
	}
}

func TestEventsStream(t *testing.T) {
	schemaDoc, err := jsonschema.UnmarshalJSON(bytes.NewReader(decision.Schema()))
	if err != nil {
		t.Fatal(err)
	}
	comp := jsonschema.NewCompiler()
	if err := comp.AddResource("event.schema.json", schemaDoc); err != nil {
		t.Fatal(err)
	}
	sch := comp.MustCompile("event.schema.json")

	n := startNode(t, Config{Heartbeat: 50 * time.Millisecond}, Deps{})
	n.events.Send(openEvent("before-1")) // replayed with ?recent=1

	req, _ := http.NewRequest(http.MethodGet, n.base+"/events?recent=1", nil)
	req.Header.Set("Authorization", "Bearer "+operatorSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("/events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	rd := bufio.NewReader(resp.Body)
	readEvent := func() (id string, data []byte, heartbeat bool) {
		t.Helper()
		for {
			var lines []string
			for {
				line, err := rd.ReadString('\n')
				if err != nil {
					t.Fatalf("stream ended: %v", err)
				}
				line = strings.TrimRight(line, "\n")
				if line == "" {
					break
				}
				lines = append(lines, line)
			}
			for _, l := range lines {
				switch {
				case strings.HasPrefix(l, ": heartbeat"):
					heartbeat = true
				case strings.HasPrefix(l, "id: "):
					id = l[4:]
				case strings.HasPrefix(l, "data: "):
					data = []byte(l[6:])
				}
			}
			if data != nil || heartbeat {
				return id, data, heartbeat
			}
		}
	}
	if id, _, _ := readEvent(); id != "before-1" {
		t.Fatalf("first event %q, want the replayed before-1", id)
	}
	waitFor(t, "the subscription", func() bool { return n.events.Subscribers() == 1 })
	n.events.Send(denyEvent("live-1"))
	sawHeartbeat := false
	for {
		id, data, hb := readEvent()
		if hb {
			sawHeartbeat = true
			continue
		}
		if id != "live-1" {
			t.Fatalf("event %q, want live-1", id)
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(inst); err != nil {
			t.Errorf("streamed event does not match the schema: %v", err)
		}
		break
	}
	for !sawHeartbeat {
		_, _, sawHeartbeat = readEvent()
	}
}

// A client that stops reading is dropped; Send never waits for it, and the
// next connection resumes from Last-Event-ID.
func TestBroadcasterDropsSlowSubscriber(t *testing.T) {
	b := NewBroadcaster(BroadcasterOptions{Buffer: 2, Recent: 10})
	_, slow := b.Subscribe("", 0)
	_, fast := b.Subscribe("", 0)
	got := make(chan decision.Event)
	go func() {
		for e := range fast.C {
			got <- e
		}
		close(got)
	}()
	// Each event reaches the fast subscriber before the next is sent; the
	// slow one never reads, so the third event finds its buffer full.
	done := make(chan error)
	go func() {
		for i := range 5 {
			id := "e" + string(rune('0'+i))
			b.Send(openEvent(id))
			if e, ok := <-got; !ok || e.ID != id {
				done <- fmt.Errorf("fast subscriber got %q (open %v), want %s", e.ID, ok, id)
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Send blocked on a slow subscriber")
	}
	if !slow.Dropped() || fast.Dropped() {
		t.Fatalf("dropped: slow %v, fast %v; want only the slow one", slow.Dropped(), fast.Dropped())
	}
	n := 0
	for range slow.C { // buffered events, then closed
		n++
	}
	if n != 2 {
		t.Errorf("slow subscriber got %d buffered events, want 2", n)
	}
	replay, again := b.Subscribe("e1", 0)
	defer again.Close()
	if len(replay) != 3 || replay[0].ID != "e2" || replay[2].ID != "e4" {
		t.Errorf("resume after e1 replayed %v", ids(replay))
	}
	replay, fresh := b.Subscribe("gone-long-ago", 2)
	defer fresh.Close()
	if len(replay) != 2 || replay[1].ID != "e4" {
		t.Errorf("unknown Last-Event-ID replayed %v, want the last 2", ids(replay))
	}
	fast.Close()
	if b.Subscribers() != 2 {
		t.Errorf("%d subscribers, want 2", b.Subscribers())
	}
}

func ids(es []decision.Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

func TestFrames(t *testing.T) {
	n := startNode(t, Config{}, Deps{})
	c := client(t)
	get := func(path string) (*http.Response, []byte) {
		return do(t, c, http.MethodGet, n.base+path, operatorSecret, nil)
	}
	if resp, _ := get("/live/frame/cam-a.jpg"); resp.StatusCode != http.StatusNoContent {
		t.Errorf("camera without a frame: %d, want 204", resp.StatusCode)
	}
	jpeg := []byte("\xff\xd8\xff\xe0 not really a jpeg \xff\xd9")
	captured := time.Now().Add(-80 * time.Millisecond)
	n.frames.PublishFrame("cam-a", jpeg, captured)
	resp, body := get("/live/frame/cam-a.jpg")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, jpeg) || resp.Header.Get("Content-Type") != "image/jpeg" ||
		resp.Header.Get("X-Frame-Seq") != "1" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("frame: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, _ := get("/live/frame/cam-a.jpg?after=1"); resp.StatusCode != http.StatusNoContent {
		t.Errorf("nothing newer: %d, want 204", resp.StatusCode)
	}
	n.frames.PublishFrame("cam-a", jpeg, captured)
	if resp, _ := get("/live/frame/cam-a.jpg?after=1"); resp.StatusCode != http.StatusOK || resp.Header.Get("X-Frame-Seq") != "2" {
		t.Errorf("newer frame: %d seq %s", resp.StatusCode, resp.Header.Get("X-Frame-Seq"))
	}
	if resp, body := get("/live/frame/cam-z.jpg"); resp.StatusCode != http.StatusNotFound || errCode(t, body) != CodeUnknownCamera {
		t.Errorf("unknown camera: %d", resp.StatusCode)
	}
	n.frames.PublishFrame("cam-c", jpeg, captured) // a camera the hub learns of later
	resp, body = get("/live/cameras")
	var cams struct {
		Gate    string `json:"gate"`
		Cameras []struct {
			Name string `json:"name"`
			Seq  uint64 `json:"seq"`
		} `json:"cameras"`
	}
	if err := json.Unmarshal(body, &cams); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/live/cameras: %d %s", resp.StatusCode, body)
	}
	if cams.Gate != "north-1" || len(cams.Cameras) != 3 || cams.Cameras[0].Name != "cam-a" || cams.Cameras[0].Seq != 2 || cams.Cameras[2].Name != "cam-c" {
		t.Errorf("/live/cameras = %s", body)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	var galleryDown atomic.Bool
	galleryDown.Store(true)
	checks := []Check{
		{Name: "models", Fn: func(context.Context) error { return nil }},
		{Name: "gallery", Fn: func(context.Context) error {
			if galleryDown.Load() {
				return errors.New("dial unix /run/pg/.s.PGSQL.5432: connect: no such file")
			}
			return nil
		}},
		{Name: "cameras", Fn: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}, // hangs until the timeout
	}
	n := startNode(t, Config{CheckTimeout: 100 * time.Millisecond}, Deps{Checks: checks})
	c := client(t)
	if resp, body := do(t, c, http.MethodGet, n.base+"/healthz", "", nil); resp.StatusCode != 200 || !bytes.Contains(body, []byte("alive")) {
		t.Errorf("/healthz: %d %s", resp.StatusCode, body)
	}
	resp, body := do(t, c, http.MethodGet, n.base+"/readyz", "", nil)
	var rd struct {
		Status  string   `json:"status"`
		Failing []string `json:"failing"`
	}
	_ = json.Unmarshal(body, &rd)
	if resp.StatusCode != http.StatusServiceUnavailable || rd.Status != "not_ready" || strings.Join(rd.Failing, ",") != "gallery,cameras" {
		t.Errorf("/readyz: %d %s, want 503 naming gallery and cameras", resp.StatusCode, body)
	}
	if bytes.Contains(body, []byte("PGSQL")) {
		t.Error("/readyz leaks check errors to anonymous callers")
	}

	n2 := startNode(t, Config{}, Deps{Checks: checks[:2]})
	galleryDown.Store(false)
	if resp, body := do(t, c, http.MethodGet, n2.base+"/readyz", "", nil); resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"status":"ready"`)) {
		t.Errorf("/readyz all passing: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, c, http.MethodGet, n.base+"/metrics", "", nil)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`loopgate_http_requests_total{code="503",route="GET /readyz"} 1`)) ||
		!bytes.Contains(body, []byte("loopgate_events_subscribers 0")) {
		t.Errorf("/metrics lacks the request counter:\n%s", body)
	}
}

func TestGracefulShutdownEndsStreams(t *testing.T) {
	n := startNode(t, Config{ShutdownTimeout: 5 * time.Second}, Deps{})
	req, _ := http.NewRequest(http.MethodGet, n.base+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+operatorSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	waitFor(t, "the subscription", func() bool { return n.events.Subscribers() == 1 })
	n.cancel()
	select {
	case err := <-n.done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
		n.done <- nil // for the cleanup
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after ctx was cancelled")
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\x00'); err == nil {
		t.Error("the stream is still open")
	}
	if n.events.Subscribers() != 0 {
		t.Error("subscription leaked")
	}
}

func TestTLSMarksCookiesSecure(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeSelfSigned(t, dir)
	n := startNode(t, Config{TLSCertFile: certFile, TLSKeyFile: keyFile}, Deps{})
	if !strings.HasPrefix(n.base, "https://") {
		t.Fatal("server not on TLS")
	}
	c := client(t)
	c.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // self-signed test cert
	csrf := loginForm(t, c, n.base)
	resp := postLogin(t, c, n.base, csrf, operatorSecret)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login over TLS: %d", resp.StatusCode)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie && !ck.Secure {
			t.Error("session cookie not Secure over TLS")
		}
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS over TLS")
	}
}

func writeSelfSigned(t *testing.T, dir string) (string, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gate-node.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestConfigValidation(t *testing.T) {
	deps := Deps{Events: NewBroadcaster(BroadcasterOptions{}), Frames: NewLiveFrames()}
	good := Token{Name: "a", SHA256: HashToken("s"), Roles: []string{RoleOperator}}
	bad := []Config{
		{},
		{Addr: ":0", Tokens: []Token{{Name: "a", SHA256: "plain-secret", Roles: []string{RoleOperator}}}},
		{Addr: ":0", Tokens: []Token{{Name: "a", SHA256: HashToken("s"), Roles: []string{"admin"}}}},
		{Addr: ":0", Tokens: []Token{{Name: "a", SHA256: HashToken("s")}}},
		{Addr: ":0", Tokens: []Token{good, good}},
		{Addr: ":0", Tokens: []Token{good, {Name: "b", SHA256: HashToken("s"), Roles: []string{RoleLane}}}},
		{Addr: ":0", TLSCertFile: "cert.pem"},
		{Addr: ":0", TLSCertFile: "/nonexistent/cert.pem", TLSKeyFile: "/nonexistent/key.pem"},
		{Addr: ":0", DefaultClaimTTL: time.Hour},
	}
	for i, cfg := range bad {
		if _, err := New(cfg, deps); !errors.Is(err, ErrBadConfig) {
			t.Errorf("config %d: %v, want ErrBadConfig", i, err)
		}
	}
	if _, err := New(Config{Addr: ":0"}, Deps{}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("missing deps: %v, want ErrBadConfig", err)
	}
	if _, err := New(Config{Addr: ":0", Tokens: []Token{good}}, deps); err != nil {
		t.Errorf("good config: %v", err)
	}
	secret, hash, err := NewTokenSecret()
	if err != nil || HashToken(secret) != hash || len(secret) < 40 {
		t.Errorf("NewTokenSecret: %q %q %v", secret, hash, err)
	}
}
