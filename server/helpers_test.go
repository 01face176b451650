package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loopgate/loopgate/engine/decision"
)

// Secrets of the test tokens; the server is only given their hashes.
const (
	operatorSecret = "op-7f3c9a0e5b2d4c18a6e1f09b3d7c5a21"
	laneSecret     = "lane-0c4e8b2f6a1d3e5c7b9a0f2e4d6c8b1a"
	bothSecret     = "both-5e7a9c1b3d5f7a9c1e3b5d7f9a1c3e5b"
)

func testTokens() []Token {
	return []Token{
		{Name: "desk-1", SHA256: HashToken(operatorSecret), Roles: []string{RoleOperator}},
		{Name: "lane-a-reader", SHA256: HashToken(laneSecret), Roles: []string{RoleLane}},
		{Name: "supervisor", SHA256: HashToken(bothSecret), Roles: []string{RoleOperator, RoleLane}},
	}
}

// fakeClaimer stands in for the engine's claim registry (the lead's), with
// the lanes and people a gate would know.
type fakeClaimer struct {
	mu     sync.Mutex
	claims []ClaimInfo
}

func (c *fakeClaimer) Claim(_ context.Context, lane, externalID string, ttl time.Duration) (ClaimInfo, error) {
	if lane != "a" && lane != "b" {
		return ClaimInfo{}, ErrUnknownLane
	}
	if externalID != "E123" {
		return ClaimInfo{}, ErrUnknownPerson
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	info := ClaimInfo{ID: "claim-" + lane + "-" + externalID, Lane: lane, ExternalID: externalID, Expires: time.Now().Add(ttl).UTC()}
	c.claims = append(c.claims, info)
	return info, nil
}

type testNode struct {
	srv     *Server
	base    string
	events  *Broadcaster
	frames  *LiveFrames
	claimer *fakeClaimer
	reg     *prometheus.Registry
	cancel  context.CancelFunc
	done    chan error
	// clockOffset moves the server's clock (sessions, rate limits) forward.
	clockOffset atomic.Int64
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startNode serves a real Server on 127.0.0.1:0 until the test ends.
func startNode(t *testing.T, cfg Config, deps Deps) *testNode {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Tokens == nil {
		cfg.Tokens = testTokens()
	}
	if cfg.Gate == "" {
		cfg.Gate = "north-1"
	}
	n := &testNode{reg: reg, claimer: &fakeClaimer{}}
	if deps.Events == nil {
		deps.Events = NewBroadcaster(BroadcasterOptions{}) // New gives it deps.Metrics
	}
	if deps.Frames == nil {
		deps.Frames = NewLiveFrames("cam-a", "cam-b")
	}
	if deps.Claimer == nil {
		deps.Claimer = n.claimer
	}
	deps.Gatherer, deps.Metrics, deps.Logger = reg, m, testLogger(t)
	srv, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	srv.now = func() time.Time { return time.Now().Add(time.Duration(n.clockOffset.Load())) }
	ctx, cancel := context.WithCancel(context.Background())
	n.srv, n.events, n.frames, n.cancel, n.done = srv, deps.Events, deps.Frames, cancel, make(chan error, 1)
	scheme := "http"
	if srv.TLS() {
		scheme = "https"
	}
	n.base = scheme + "://" + ln.Addr().String()
	go func() { n.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-n.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("server did not shut down")
		}
	})
	return n
}

// client does not follow redirects, so tests see them.
func client(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func do(t *testing.T, c *http.Client, method, url, token string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// errCode extracts {"error":{"code":…}} and checks the shape.
func errCode(t *testing.T, b []byte) string {
	t.Helper()
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("not a JSON error body: %s", b)
	}
	return e.Error.Code
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// loginForm fetches /login and returns the form's CSRF value (the cookie
// lands in the client's jar).
func loginForm(t *testing.T, c *http.Client, base string) string {
	t.Helper()
	resp, body := do(t, c, http.MethodGet, base+"/login", "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /login: %d", resp.StatusCode)
	}
	m := csrfField.FindSubmatch(body)
	if m == nil {
		t.Fatalf("login form has no CSRF field:\n%s", body)
	}
	return string(m[1])
}

func postLogin(t *testing.T, c *http.Client, base, csrf, token string) *http.Response {
	t.Helper()
	form := url.Values{"token": {token}, "next": {"/live"}}
	if csrf != "" {
		form.Set("csrf", csrf)
	}
	resp, _ := do(t, c, http.MethodPost, base+"/login", "", strings.NewReader(form.Encode()),
		"Content-Type", "application/x-www-form-urlencoded")
	return resp
}

func ptr[T any](v T) *T { return &v }

func openEvent(id string) decision.Event {
	now := time.Now().UTC()
	return decision.Event{
		ID: id, Decision: decision.Open, Reason: decision.Matched, Gate: "north-1", Lane: "a", Camera: "cam-a", TrackID: 17,
		Person:   &decision.Person{ID: 42, ExternalID: "E123", Name: "George W Bush"},
		Distance: ptr(0.382), Margin: ptr(0.214), Threshold: 0.6, FramesUsed: 4, FramesSeen: 9,
		FirstSeen: now.Add(-600 * time.Millisecond), DecidedAt: now,
		Timings: decision.Timings{DetectMS: 31, QualityMS: 2, EmbedMS: 170, SearchMS: 3, CaptureToDecisionMS: 96.4},
	}
}

func denyEvent(id string) decision.Event {
	now := time.Now().UTC()
	return decision.Event{
		ID: id, Decision: decision.Deny, Reason: decision.UnknownFace, Detail: "nearest registered face is too far",
		Gate: "north-1", Camera: "cam-b", TrackID: 18, Distance: ptr(0.731), Threshold: 0.6, FramesUsed: 3, FramesSeen: 5,
		FirstSeen: now.Add(-500 * time.Millisecond), DecidedAt: now,
		Timings: decision.Timings{DetectMS: 25, EmbedMS: 150, SearchMS: 2, CaptureToDecisionMS: 88.2},
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
