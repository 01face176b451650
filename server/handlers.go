package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/loopgate/loopgate/engine/decision"
	"github.com/loopgate/loopgate/internal/webauth"
)

type ctxKey struct{}

func principalFrom(r *http.Request) principal {
	p, _ := r.Context().Value(ctxKey{}).(principal)
	return p
}

// How a route authenticates and answers the unauthenticated.
type authKind int

const (
	page       authKind = iota // session cookie or bearer; anonymous → redirect to /login
	api                        // session cookie or bearer; anonymous → 401 JSON
	bearerOnly                 // bearer only (state-changing API: a cookie could be ridden by CSRF)
)

const (
	sessionCookie = "loopgate_session"
	csrfCookie    = "loopgate_csrf"
)

func (s *Server) authenticate(r *http.Request, kind authKind) (principal, bool, bool) {
	if secret, present := webauth.Bearer(r); present {
		c, ok := lookup(s.creds, secret)
		if !ok {
			return principal{}, false, true
		}
		return principal{name: c.name, roles: c.roles}, true, true
	}
	if kind == bearerOnly {
		return principal{}, false, false
	}
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return principal{}, false, false
	}
	sess, ok := s.sessions.Get(ck.Value)
	if !ok {
		return principal{}, false, false
	}
	return principal{name: sess.Name, roles: sess.Roles, session: sess}, true, false
}

// require lets through requests that authenticate and hold role.
func (s *Server) require(role string, kind authKind, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok, triedBearer := s.authenticate(r, kind)
		if !ok {
			if triedBearer {
				s.log.Warn("rejected bearer token", "path", r.URL.Path, "client", webauth.ClientAddr(r))
			}
			if kind == page && !triedBearer {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="loopgate"`)
			writeError(w, http.StatusUnauthorized, CodeUnauthenticated, "a valid token is required")
			return
		}
		if !p.has(role) {
			writeError(w, http.StatusForbidden, CodeForbidden, fmt.Sprintf("the %q role is required", role))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, p)))
	})
}

func (s *Server) secureCookies(r *http.Request) bool {
	return s.cfg.SecureCookies || r.TLS != nil
}

type loginView struct {
	Gate, CSRF, Next, Error string
}

func (s *Server) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	next := webauth.LocalRedirect(r.URL.Query().Get("next"), "/live")
	if p, ok, _ := s.authenticate(r, page); ok && p.session != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	s.renderLogin(w, r, http.StatusOK, next, "")
}

// renderLogin shows the form with a fresh double-submit CSRF token: the
// same random value in a SameSite=Strict cookie and in a hidden field.
func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, next, msg string) {
	csrf, err := webauth.RandomString(24)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: csrf, Path: "/login", MaxAge: 3600,
		HttpOnly: true, Secure: s.secureCookies(r), SameSite: http.SameSiteStrictMode})
	s.renderPage(w, status, "login.html", loginView{Gate: s.cfg.Gate, CSRF: csrf, Next: next, Error: msg})
}

func (s *Server) renderPage(w http.ResponseWriter, status int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := s.pages.ExecuteTemplate(w, name, data); err != nil {
		s.log.Error("render page", "page", name, "err", err)
	}
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	addr := webauth.ClientAddr(r)
	if ok, wait := s.limiter.Allow(addr); !ok {
		s.m.login("rate_limited")
		s.log.Warn("login rate limited", "client", addr)
		w.Header().Set("Retry-After", webauth.RetryAfter(wait))
		s.renderLogin(w, r, http.StatusTooManyRequests, "/live", "Too many attempts. Wait a minute and try again.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		s.renderLogin(w, r, http.StatusBadRequest, "/live", "The form could not be read.")
		return
	}
	next := webauth.LocalRedirect(r.PostForm.Get("next"), "/live")
	ck, err := r.Cookie(csrfCookie)
	form := r.PostForm.Get("csrf")
	if err != nil || ck.Value == "" || form == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(form)) != 1 || !webauth.SameOrigin(r) {
		s.m.login("csrf")
		s.log.Warn("login refused: missing or wrong CSRF token", "client", addr)
		s.renderLogin(w, r, http.StatusForbidden, next, "The form expired. Please try again.")
		return
	}
	c, ok := lookup(s.creds, strings.TrimSpace(r.PostForm.Get("token")))
	if !ok {
		s.m.login("bad_token")
		s.log.Warn("login refused: unknown token", "client", addr)
		s.renderLogin(w, r, http.StatusUnauthorized, next, "That token is not valid.")
		return
	}
	id, _, err := s.sessions.Create(c.name, c.roles)
	if err != nil {
		s.log.Error("create session", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	s.m.login("ok")
	s.log.Info("operator logged in", "token", c.name, "client", addr)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: "", Path: "/login", MaxAge: -1,
		HttpOnly: true, Secure: s.secureCookies(r), SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", MaxAge: int(s.cfg.SessionTTL / time.Second),
		HttpOnly: true, Secure: s.secureCookies(r), SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	_ = r.ParseForm()
	if ck, err := r.Cookie(sessionCookie); err == nil {
		if sess, ok := s.sessions.Get(ck.Value); ok {
			if subtle.ConstantTimeCompare([]byte(sess.CSRF), []byte(r.PostForm.Get("csrf"))) != 1 || !webauth.SameOrigin(r) {
				writeError(w, http.StatusForbidden, CodeCSRF, "logout needs the page's CSRF token")
				return
			}
			s.sessions.Delete(ck.Value)
			s.log.Info("operator logged out", "token", sess.Name, "client", webauth.ClientAddr(r))
		}
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secureCookies(r), SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

type liveView struct {
	Gate, User, CSRF string
	Heartbeat        int
	Replay           int
}

func (s *Server) handleLive(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r)
	v := liveView{Gate: s.cfg.Gate, User: p.name, Replay: s.cfg.ReplayOnConnect}
	if p.session != nil {
		v.CSRF = p.session.CSRF
	}
	s.renderPage(w, http.StatusOK, "live.html", v)
}

type cameraStatus struct {
	Name     string     `json:"name"`
	Seq      uint64     `json:"seq"`
	Captured *time.Time `json:"captured,omitempty"`
}

func (s *Server) handleCameras(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Gate    string         `json:"gate"`
		Now     time.Time      `json:"now"`
		Cameras []cameraStatus `json:"cameras"`
	}{Gate: s.cfg.Gate, Now: s.now(), Cameras: []cameraStatus{}}
	for _, name := range s.deps.Frames.Cameras() {
		f, _ := s.deps.Frames.Latest(name)
		st := cameraStatus{Name: name, Seq: f.Seq}
		if f.Seq > 0 {
			st.Captured = &f.Captured
		}
		out.Cameras = append(out.Cameras, st)
	}
	writeJSON(w, http.StatusOK, out)
}

// handleFrame serves a camera's latest JPEG. With ?after=N it answers 204
// when there is nothing newer than frame N, so an idle camera costs a page
// a header, not a picture.
func (s *Server) handleFrame(w http.ResponseWriter, r *http.Request) {
	camera, ok := strings.CutSuffix(r.PathValue("file"), ".jpg")
	if !ok {
		writeError(w, http.StatusNotFound, CodeUnknownCamera, "frames are /live/frame/{camera}.jpg")
		return
	}
	f, ok := s.deps.Frames.Latest(camera)
	if !ok {
		writeError(w, http.StatusNotFound, CodeUnknownCamera, "no such camera")
		return
	}
	after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	w.Header().Set("Cache-Control", "no-store")
	if f.Seq == 0 || f.Seq <= after {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "image/jpeg")
	h.Set("Content-Length", strconv.Itoa(len(f.JPEG)))
	h.Set("X-Frame-Seq", strconv.FormatUint(f.Seq, 10))
	h.Set("X-Frame-Captured", f.Captured.UTC().Format(time.RFC3339Nano))
	h.Set("X-Frame-Age-Ms", strconv.FormatInt(s.now().Sub(f.Captured).Milliseconds(), 10))
	_, _ = w.Write(f.JPEG)
	s.m.frameServed()
}

// handleEvents streams decisions as server-sent events: "event: decision",
// "id: <event id>", "data: <event JSON>". A reconnecting EventSource sends
// Last-Event-ID and gets what it missed (from the replay ring); ?recent=N
// asks a new stream for the last N decisions first.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r)
	rc := http.NewResponseController(w)
	// The stream outlives the server's WriteTimeout by design; heartbeats
	// detect dead clients instead.
	if err := rc.SetWriteDeadline(time.Time{}); err != nil {
		s.log.Warn("events: cannot lift the write deadline", "err", err)
	}
	recent, _ := strconv.Atoi(r.URL.Query().Get("recent"))
	recent = min(max(recent, 0), 1000)
	replay, sub := s.deps.Events.Subscribe(r.Header.Get("Last-Event-ID"), recent)
	defer sub.Close()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 2000\n\n"); err != nil {
		return
	}
	for _, e := range replay {
		if writeEvent(w, e) != nil {
			return
		}
	}
	if rc.Flush() != nil {
		return
	}
	heartbeat := time.NewTicker(s.cfg.Heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case e, ok := <-sub.C:
			if !ok {
				if sub.Dropped() {
					s.log.Warn("events: slow client dropped", "token", p.name, "client", webauth.ClientAddr(r))
				}
				return
			}
			if writeEvent(w, e) != nil || rc.Flush() != nil {
				return
			}
		case now := <-heartbeat.C:
			if p.session != nil && !now.Before(p.session.Expires) {
				return // the login expired: the reconnect will be refused
			}
			if _, err := fmt.Fprintf(w, ": heartbeat %s\n\n", now.UTC().Format(time.RFC3339)); err != nil || rc.Flush() != nil {
				return
			}
		case <-r.Context().Done():
			return
		case <-s.stopping:
			return
		}
	}
}

func writeEvent(w http.ResponseWriter, e decision.Event) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	// An id with a line break would corrupt the stream; such an event goes
	// out without one (it just cannot be resumed from).
	if e.ID != "" && !strings.ContainsAny(e.ID, "\r\n\x00") {
		_, err = fmt.Fprintf(w, "id: %s\nevent: decision\ndata: %s\n\n", e.ID, data)
	} else {
		_, err = fmt.Fprintf(w, "event: decision\ndata: %s\n\n", data)
	}
	return err
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
}

// readiness runs the checks and logs when one changes state (the response
// names failing checks only; the reasons go to the log, not to anonymous
// callers).
type readiness struct {
	checks  []Check
	timeout time.Duration
	log     *slog.Logger
	mu      sync.Mutex
	last    map[string]string // check → last error ("" when passing)
}

func newReadiness(checks []Check, timeout time.Duration, log *slog.Logger) *readiness {
	return &readiness{checks: checks, timeout: timeout, log: log, last: map[string]string{}}
}

type checkResult struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

func (rd *readiness) run(ctx context.Context) (results []checkResult, failing []string) {
	errs := make([]error, len(rd.checks))
	var wg sync.WaitGroup
	for i, c := range rd.checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, rd.timeout)
			defer cancel()
			errs[i] = runCheck(cctx, c)
		})
	}
	wg.Wait()
	failing = []string{}
	rd.mu.Lock()
	defer rd.mu.Unlock()
	for i, c := range rd.checks {
		msg := ""
		if errs[i] != nil {
			msg = errs[i].Error()
			failing = append(failing, c.Name)
		}
		prev, seen := rd.last[c.Name]
		if !seen || prev != msg {
			if msg != "" {
				rd.log.Warn("readiness check failing", "check", c.Name, "err", msg)
			} else if seen {
				rd.log.Info("readiness check passing again", "check", c.Name)
			}
			rd.last[c.Name] = msg
		}
		r := checkResult{Name: c.Name, OK: errs[i] == nil}
		if c.Detail != nil {
			r.Detail = c.Detail()
		}
		results = append(results, r)
	}
	return results, failing
}

// runCheck bounds a check by ctx even if the check ignores it.
func runCheck(ctx context.Context, c Check) error {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("check panicked: %v", r)
			}
		}()
		done <- c.Fn(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("check did not answer in time: %w", ctx.Err())
	}
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	results, failing := s.ready.run(r.Context())
	body := map[string]any{"status": "ready", "checks": results, "failing": failing}
	status := http.StatusOK
	if len(failing) > 0 {
		body["status"] = "not_ready"
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, body)
}
