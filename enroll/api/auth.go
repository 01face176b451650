package api

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/loopgate/loopgate/enroll"
	"github.com/loopgate/loopgate/internal/webauth"
)

// SessionCookie holds the session id. Its name differs from the gate
// node's, because cookies do not separate ports on one host.
const SessionCookie = "loopgate_enrol_session"

// CSRFHeader must carry the session's CSRF token on every state-changing
// request authenticated by the session cookie.
const CSRFHeader = "X-CSRF-Token"

// anyRole admits every authenticated caller.
const anyRole = ""

// principal is who made a request.
type principal struct {
	name string
	kind string // "account" or "token"
	role string
	// session and sessionID are set for cookie logins.
	session   *webauth.Session
	sessionID string
	addr      string
}

func (p principal) actor() enroll.Actor {
	return enroll.Actor{Name: p.name, Kind: p.kind, Role: p.role, RemoteAddr: p.addr}
}

// may reports whether p holds role; an admin may do all an officer may.
func (p principal) may(role string) bool {
	switch role {
	case anyRole:
		return true
	case enroll.RoleOfficer:
		return p.role == enroll.RoleOfficer || p.role == enroll.RoleAdmin
	default:
		return p.role == role
	}
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, p principal)

// authenticate finds the caller: a bearer API token, else the session
// cookie. A session is re-checked against its account on every request, so
// disabling an account (or changing its role) takes effect at once.
func (s *Server) authenticate(r *http.Request) (principal, *apiError) {
	p := principal{addr: webauth.ClientAddr(r)}
	unauth := newError(http.StatusUnauthorized, CodeUnauthenticated, "log in or send an API token (Authorization: Bearer …)")
	if secret, present := webauth.Bearer(r); present {
		if secret == "" {
			return p, unauth
		}
		t, err := s.deps.Accounts.LookupToken(r.Context(), secret)
		if errors.Is(err, enroll.ErrBadCredentials) {
			s.log.Warn("refused API token (unknown or revoked)", "path", r.URL.Path, "client", p.addr)
			return p, newError(http.StatusUnauthorized, CodeUnauthenticated, "the API token is unknown or revoked")
		}
		if err != nil {
			return p, domainError(err)
		}
		p.name, p.kind, p.role = t.Name, "token", t.Role
		return p, nil
	}
	ck, err := r.Cookie(SessionCookie)
	if err != nil || ck.Value == "" {
		return p, unauth
	}
	sess, ok := s.sessions.Get(ck.Value)
	if !ok {
		return p, newError(http.StatusUnauthorized, CodeUnauthenticated, "the session has expired or ended; log in again")
	}
	acc, err := s.deps.Accounts.Active(r.Context(), sess.Name)
	if errors.Is(err, enroll.ErrBadCredentials) {
		s.sessions.Delete(ck.Value)
		s.log.Warn("ended the session of a disabled or deleted account", "account", sess.Name, "client", p.addr)
		return p, newError(http.StatusUnauthorized, CodeUnauthenticated, "the account is disabled; log in again")
	}
	if err != nil {
		return p, domainError(err)
	}
	p.name, p.kind, p.role, p.session, p.sessionID = acc.Username, "account", acc.Role, sess, ck.Value
	return p, nil
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// require authenticates the request, demands the CSRF header of a
// cookie-authenticated write, then checks the role, in that order: a
// forged request learns nothing about roles.
func (s *Server) require(role string, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, e := s.authenticate(r)
		if e != nil {
			s.fail(w, r, e)
			return
		}
		if p.session != nil && !safeMethod(r.Method) {
			got := r.Header.Get(CSRFHeader)
			if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(p.session.CSRF)) != 1 || !webauth.SameOrigin(r) {
				s.log.Warn("refused a session request without a valid CSRF token", "method", r.Method, "path", r.URL.Path,
					"account", p.name, "client", p.addr)
				s.fail(w, r, newError(http.StatusForbidden, CodeCSRF,
					"a state-changing request with a session cookie needs the "+CSRFHeader+" header holding csrf_token from /api/v1/session"))
				return
			}
		}
		if !p.may(role) {
			s.fail(w, r, newError(http.StatusForbidden, CodeForbidden, fmt.Sprintf("the %s role is required", role)))
			return
		}
		h(w, r, p)
	})
}

func (s *Server) secureCookies(r *http.Request) bool {
	return s.cfg.SecureCookies || r.TLS != nil
}

// sessionView is the body of /session and /login.
type sessionView struct {
	Username  string     `json:"username"`
	Role      string     `json:"role"`
	Kind      string     `json:"kind"`
	CSRFToken string     `json:"csrf_token"`
	ExpiresAt *time.Time `json:"expires_at"`
}

func viewOf(p principal) sessionView {
	v := sessionView{Username: p.name, Role: p.role, Kind: p.kind}
	if p.session != nil {
		v.CSRFToken = p.session.CSRF
		exp := p.session.Expires.UTC()
		v.ExpiresAt = &exp
	}
	return v
}

// accountKey is the per-account rate limit's key: usernames are lowercase
// and at most 64 characters, so nothing longer needs its own bucket.
func accountKey(username string) string {
	k := strings.ToLower(strings.TrimSpace(username))
	if len(k) > 64 {
		k = k[:64]
	}
	return k
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	addr := webauth.ClientAddr(r)
	if ok, wait := s.addrLimiter.Allow(addr); !ok {
		s.m.login("rate_limited_address")
		s.log.Warn("login rate limited (address)", "client", addr)
		e := newError(http.StatusTooManyRequests, CodeRateLimited, "too many login attempts from this address; wait and try again")
		e.retryAfter = webauth.RetryAfter(wait)
		s.fail(w, r, e)
		return
	}
	if e := requireJSON(r); e != nil {
		s.m.login("invalid")
		s.fail(w, r, e)
		return
	}
	if !webauth.SameOrigin(r) {
		s.m.login("invalid")
		s.fail(w, r, newError(http.StatusForbidden, CodeCSRF, "cross-site login refused"))
		return
	}
	var body struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	if e := decodeStrict(r.Body, &body); e != nil {
		s.m.login("invalid")
		s.fail(w, r, e)
		return
	}
	for _, f := range []struct{ name, v string }{{"username", body.Username}, {"password", body.Password}} {
		if f.v == "" {
			s.m.login("invalid")
			s.fail(w, r, fieldError(http.StatusUnprocessableEntity, CodeInvalidField, f.name, f.name+" is required"))
			return
		}
	}
	key := accountKey(body.Username)
	if wait := s.accountLimiter.Wait(key); wait > 0 {
		s.m.login("rate_limited_account")
		s.log.Warn("login rate limited (account)", "username", key, "client", addr)
		e := newError(http.StatusTooManyRequests, CodeRateLimited, "too many failed logins for this account; wait and try again")
		e.retryAfter = webauth.RetryAfter(wait)
		s.fail(w, r, e)
		return
	}
	acc, err := s.deps.Accounts.Authenticate(r.Context(), body.Username, body.Password)
	if errors.Is(err, enroll.ErrBadCredentials) {
		s.accountLimiter.Allow(key)
		s.m.login("bad_credentials")
		s.log.Warn("login refused: bad credentials", "username", key, "client", addr)
		if err := s.deps.Accounts.RecordLogin(r.Context(), key, addr, false); err != nil {
			s.log.Error("audit failed login", "err", err)
		}
		s.fail(w, r, newError(http.StatusUnauthorized, CodeBadCredentials, "wrong username or password, or the account is disabled"))
		return
	}
	if err != nil {
		s.fail(w, r, domainError(err))
		return
	}
	s.accountLimiter.Reset(key)
	if err := s.deps.Accounts.RecordLogin(r.Context(), acc.Username, addr, true); err != nil {
		s.log.Error("audit login", "err", err)
	}
	if old, err := r.Cookie(SessionCookie); err == nil {
		s.sessions.Delete(old.Value)
	}
	id, sess, err := s.sessions.Create(acc.Username, []string{acc.Role})
	if err != nil {
		s.fail(w, r, domainError(err))
		return
	}
	s.m.login("ok")
	s.log.Info("logged in", "account", acc.Username, "role", acc.Role, "client", addr)
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: id, Path: "/", MaxAge: int(s.cfg.SessionTTL / time.Second),
		HttpOnly: true, Secure: s.secureCookies(r), SameSite: http.SameSiteStrictMode})
	s.reply(w, http.StatusOK, viewOf(principal{name: acc.Username, kind: "account", role: acc.Role, session: sess}))
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request, p principal) {
	if p.session != nil {
		s.sessions.Delete(p.sessionID)
		s.log.Info("logged out", "account", p.name, "client", p.addr)
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secureCookies(r), SameSite: http.SameSiteStrictMode})
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleSession(w http.ResponseWriter, r *http.Request, p principal) {
	s.reply(w, http.StatusOK, viewOf(p))
}
