package api

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/color"
	stdjpeg "image/jpeg"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/engine/still"
	"github.com/loopgate/loopgate/enroll"
	"github.com/loopgate/loopgate/internal/testenv"
)

// The real engine is loaded once for the package (go-face's models take
// seconds); each test gets its own database schema and server.
var engineOnce struct {
	sync.Once
	rec    *facerec.Recognizer
	stills *still.Analyzer
	err    error
}

func realEngine(t *testing.T) (*still.Analyzer, string) {
	t.Helper()
	dir := testenv.ModelDir(t)
	engineOnce.Do(func() {
		engineOnce.rec, engineOnce.err = facerec.New(facerec.Config{ModelDir: dir})
		if engineOnce.err != nil {
			return
		}
		engineOnce.stills, engineOnce.err = still.New(still.Config{ModelDir: dir}, engineOnce.rec)
	})
	if engineOnce.err != nil {
		t.Fatal(engineOnce.err)
	}
	return engineOnce.stills, engineOnce.rec.ModelTag()
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if engineOnce.stills != nil {
		engineOnce.stills.Close()
	}
	if engineOnce.rec != nil {
		engineOnce.rec.Close()
	}
	// A full run must have called every documented operation successfully
	// (and had the response validated against openapi.yaml).
	if code == 0 && flag.Lookup("test.run").Value.String() == "" && flag.Lookup("test.skip").Value.String() == "" && coverage.used() {
		if missing := coverage.missing(); len(missing) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: operations in openapi.yaml never answered 2xx in the tests:\n  %s\n", strings.Join(missing, "\n  "))
			code = 1
		}
	}
	os.Exit(code)
}

const (
	adminUser     = "ada"
	adminPassword = "correct horse battery staple"
	testAddr      = "127.0.0.1"
)

// stack is one real server: PostgreSQL schema, registry with go-face and
// YuNet, and the API on a loopback port.
type stack struct {
	t    *testing.T
	pool *pgxpool.Pool
	reg  *enroll.Registry
	acc  *enroll.Accounts
	srv  *Server
	base string
	prom *prometheus.Registry
	logs *syncBuffer
	// transport carries the clients' requests (TLS tests trust their
	// certificate through it).
	transport http.RoundTripper
	// clock moves the server's clock (sessions, rate limits) forward.
	clock atomic.Int64
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newStack(t *testing.T, cfg Config) *stack {
	t.Helper()
	stills, model := realEngine(t)
	g, _, err := gallery.Open(context.Background(), testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	reg, err := enroll.NewRegistry(enroll.RegistryConfig{Pool: g.Pool(), Checker: &enroll.Service{Stills: stills, Model: model}})
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, pool: g.Pool(), reg: reg, acc: enroll.NewAccounts(g.Pool()), prom: prometheus.NewPedanticRegistry(), logs: &syncBuffer{},
		transport: http.DefaultTransport}
	if cfg.Addr == "" {
		cfg.Addr = testAddr + ":0"
	}
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), s.logs), &slog.HandlerOptions{Level: slog.LevelDebug}))
	s.srv, err = New(cfg, Deps{Registry: reg, Accounts: s.acc, DB: g.Pool(), Registerer: s.prom, Gatherer: s.prom, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	s.srv.now = func() time.Time { return time.Now().Add(time.Duration(s.clock.Load())) }
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	scheme := "http"
	if s.srv.TLS() {
		scheme = "https"
	}
	s.base = scheme + "://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("server did not shut down")
		}
	})
	// The first admin comes from the CLI, as in production.
	if _, err := s.acc.AddUser(context.Background(), enroll.Actor{Name: "setup", Kind: "cli"}, adminUser, adminPassword, enroll.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	return s
}

// client is one caller: anonymous, a browser session (cookie + CSRF
// token) or a bearer token. Every response it receives is validated
// against openapi.yaml and searched for templates.
type client struct {
	t     *testing.T
	s     *stack
	hc    *http.Client
	token string
	csrf  string
}

func (s *stack) anon() *client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		s.t.Fatal(err)
	}
	return &client{t: s.t, s: s, hc: &http.Client{Jar: jar, Timeout: 3 * time.Minute,
		Transport:     &validating{t: s.t, base: s.transport},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (s *stack) bearer(secret string) *client {
	c := s.anon()
	c.token = secret
	return c
}

// login logs in through the API and keeps the session's CSRF token.
func (s *stack) login(username, password string) *client {
	s.t.Helper()
	c := s.anon()
	resp, body := c.sendJSON(http.MethodPost, "/api/v1/login", map[string]string{"username": username, "password": password})
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("login %s: %d %s", username, resp.StatusCode, body)
	}
	v := decode[sessionView](s.t, body)
	if v.CSRFToken == "" || v.Username != username {
		s.t.Fatalf("login %s: %s", username, body)
	}
	c.csrf = v.CSRFToken
	return c
}

// admin is the bootstrap admin's session.
func (s *stack) admin() *client { return s.login(adminUser, adminPassword) }

// officer creates an officer account through the API and logs it in.
func (s *stack) officer(name string) *client {
	s.t.Helper()
	pw := "officer password " + name
	resp, body := s.admin().sendJSON(http.MethodPost, "/api/v1/accounts", map[string]string{"username": name, "password": pw, "role": "officer"})
	if resp.StatusCode != http.StatusCreated {
		s.t.Fatalf("create officer %s: %d %s", name, resp.StatusCode, body)
	}
	return s.login(name, pw)
}

// token creates an API token through the API.
func (s *stack) token(name, role string) (*client, createdToken) {
	s.t.Helper()
	resp, body := s.admin().sendJSON(http.MethodPost, "/api/v1/tokens", map[string]string{"name": name, "role": role})
	if resp.StatusCode != http.StatusCreated {
		s.t.Fatalf("create token %s: %d %s", name, resp.StatusCode, body)
	}
	ct := decode[createdToken](s.t, body)
	return s.bearer(ct.Secret), ct
}

// do sends one request; hdr are extra header name/value pairs. A session
// client adds its CSRF token unless hdr sets X-CSRF-Token itself (to "" to
// leave it out).
func (c *client) do(method, path string, body io.Reader, contentType string, hdr ...string) (*http.Response, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.s.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.csrf != "" {
		req.Header.Set(CSRFHeader, c.csrf)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, b
}

func (c *client) get(path string) (*http.Response, []byte) {
	c.t.Helper()
	return c.do(http.MethodGet, path, nil, "")
}

// sendJSON sends v as JSON; a string or []byte goes as it is (malformed
// bodies).
func (c *client) sendJSON(method, path string, v any, hdr ...string) (*http.Response, []byte) {
	c.t.Helper()
	var raw []byte
	switch b := v.(type) {
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(v); err != nil {
			c.t.Fatal(err)
		}
	}
	return c.do(method, path, bytes.NewReader(raw), "application/json", hdr...)
}

// part is one multipart part; a file part has a filename.
type part struct {
	name, filename, contentType string
	data                        []byte
}

func photoPart(filename string, data []byte) part {
	return part{name: "photo", filename: filename, data: data}
}
func textPart(name, value string) part { return part{name: name, data: []byte(value)} }

func jsonPart(name string, v any) part {
	raw, ok := v.(string)
	if !ok {
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		raw = string(b)
	}
	return part{name: name, contentType: "application/json", data: []byte(raw)}
}

func multipartBody(t *testing.T, parts []part) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		disp := fmt.Sprintf(`form-data; name=%q`, p.name)
		if p.filename != "" {
			disp += fmt.Sprintf(`; filename=%q`, p.filename)
		}
		h.Set("Content-Disposition", disp)
		if p.contentType != "" {
			h.Set("Content-Type", p.contentType)
		} else if p.filename != "" {
			h.Set("Content-Type", "application/octet-stream")
		}
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(p.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), mw.FormDataContentType()
}

func (c *client) sendMultipart(method, path string, parts []part, hdr ...string) (*http.Response, []byte) {
	c.t.Helper()
	body, ct := multipartBody(c.t, parts)
	return c.do(method, path, bytes.NewReader(body), ct, hdr...)
}

func decode[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode %T: %v\n%s", v, err, body)
	}
	return v
}

// apiErr is a decoded error body.
type apiErr struct {
	Code, Message, Field string
	DuplicateOf          string               `json:"duplicate_of"`
	Photos               []enroll.PhotoReport `json:"photos"`
}

func errorOf(t *testing.T, body []byte) apiErr {
	t.Helper()
	var e struct {
		Error apiErr `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("not a JSON error body: %s", body)
	}
	return e.Error
}

// expectError checks status, code and (when given) field of a refusal.
func expectError(t *testing.T, what string, resp *http.Response, body []byte, status int, code string, field ...string) apiErr {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("%s: status %d, want %d: %s", what, resp.StatusCode, status, body)
		return apiErr{}
	}
	e := errorOf(t, body)
	if e.Code != code {
		t.Errorf("%s: code %q, want %q (%s)", what, e.Code, code, e.Message)
	}
	if len(field) > 0 && e.Field != field[0] {
		t.Errorf("%s: field %q, want %q (%s)", what, e.Field, field[0], e.Message)
	}
	return e
}

func expectStatus(t *testing.T, what string, resp *http.Response, body []byte, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s: status %d, want %d: %s", what, resp.StatusCode, status, body)
	}
}

// ---- database snapshots: a refused request changes nothing ----

var countedTables = []string{"people", "person_gates", "face_templates", "enrolments", "template_history", "photos", "accounts", "api_tokens", "enrolment_audit"}

// snapshot is the row count of every enrolment table, and the latest
// change to any person.
type snapshot map[string]string

func (s *stack) snapshot() snapshot {
	s.t.Helper()
	out := snapshot{}
	for _, table := range countedTables {
		var n int
		if err := s.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			s.t.Fatalf("count %s: %v", table, err)
		}
		out[table] = fmt.Sprint(n)
	}
	var updated string
	if err := s.pool.QueryRow(context.Background(), "SELECT coalesce(max(updated_at)::text, '') FROM people").Scan(&updated); err != nil {
		s.t.Fatal(err)
	}
	out["max(people.updated_at)"] = updated
	return out
}

func (s *stack) assertUnchanged(what string, before snapshot) {
	s.t.Helper()
	after := s.snapshot()
	for k, v := range before {
		if after[k] != v {
			s.t.Errorf("%s changed the database: %s %s → %s", what, k, v, after[k])
		}
	}
}

// ---- photos ----

var goodPhotoCache sync.Map // LFW name → []enroll.Photo

// goodPhotos returns the first n photos of an LFW person that pass the
// enrolment checks (the profile refuses about half of LFW's news photos).
func (s *stack) goodPhotos(name string, n int) []enroll.Photo {
	s.t.Helper()
	if v, ok := goodPhotoCache.Load(name); ok && len(v.([]enroll.Photo)) >= n {
		return v.([]enroll.Photo)[:n]
	}
	var out []enroll.Photo
	for i := 1; i <= 40 && len(out) < n; i++ {
		rel := fmt.Sprintf("datasets/lfw/images/%s/%s_%04d.jpg", name, name, i)
		if _, err := os.Stat(filepath.Join(testenv.SharedDir(s.t), rel)); err != nil {
			break
		}
		p := enroll.Photo{Name: filepath.Base(rel), Data: testenv.SharedFile(s.t, rel)}
		if s.reg.CheckPhoto(context.Background(), p).Accepted {
			out = append(out, p)
		}
	}
	if len(out) < n {
		s.t.Fatalf("%s: only %d LFW photos pass the enrolment checks, want %d", name, len(out), n)
	}
	goodPhotoCache.Store(name, out)
	return out
}

func photoParts(photos []enroll.Photo) []part {
	out := make([]part, len(photos))
	for i, p := range photos {
		out[i] = photoPart(p.Name, p.Data)
	}
	return out
}

// sceneryJPEG is a picture with no face in it: a drawn landscape (sky,
// sun, fields), 640x480.
func sceneryJPEG(t *testing.T) []byte {
	t.Helper()
	const w, h, horizon = 640, 480, 300
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			var c color.RGBA
			switch {
			case (x-480)*(x-480)+(y-90)*(y-90) < 40*40:
				c = color.RGBA{250, 220, 90, 255} // sun
			case y < horizon:
				c = color.RGBA{uint8(110 + y/5), uint8(160 + y/6), 235, 255} // sky
			case (y-horizon)/30%2 == 0:
				c = color.RGBA{70, uint8(140 + (y-horizon)/4), 60, 255} // field
			default:
				c = color.RGBA{110, uint8(120 + (y-horizon)/5), 50, 255} // furrows
			}
			img.Set(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := stdjpeg.Encode(&buf, img, &stdjpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func reasonCodes(rep enroll.PhotoReport) []string {
	out := make([]string, len(rep.Reasons))
	for i, r := range rep.Reasons {
		out[i] = r.Code
	}
	return out
}

func hasReason(rep enroll.PhotoReport, code string) bool {
	for _, r := range rep.Reasons {
		if r.Code == code {
			return true
		}
	}
	return false
}

// metricValue reads one sample from /metrics, through the real endpoint.
func (s *stack) metricValue(name string, labels ...string) float64 {
	s.t.Helper()
	resp, body := s.anon().get("/metrics")
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	want := name
	if len(labels) > 0 {
		var l []string
		for i := 0; i+1 < len(labels); i += 2 {
			l = append(l, fmt.Sprintf("%s=%q", labels[i], labels[i+1]))
		}
		want += "{" + strings.Join(l, ",") + "}"
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, want+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				s.t.Fatalf("metric %s: %q", want, v)
			}
			return f
		}
	}
	return 0
}
