// Package api is the enrolment service's HTTP side: a JSON API under
// /api/v1 (documented in openapi.yaml, served at /api/v1/openapi.yaml) for
// officers' accounts, API tokens and the people they enrol, with health,
// readiness and metrics, and the officers' enrolment page (web.go). Every
// read of personal data and every write needs a session (officer or admin
// account) or an API token; templates never leave through it.
package api

import (
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/loopgate/loopgate/enroll"
	"github.com/loopgate/loopgate/internal/httpserve"
	"github.com/loopgate/loopgate/internal/webauth"
)

// OpenAPI is the API's OpenAPI 3.0 description.
//
//go:embed openapi.yaml
var OpenAPI []byte

// ErrBadConfig wraps every configuration error New returns.
var ErrBadConfig = errors.New("enroll/api: bad config")

// Config is the API server's configuration. Zero values take the defaults
// noted.
type Config struct {
	// Addr to listen on, e.g. "0.0.0.0:8444" or "127.0.0.1:0".
	Addr string
	// TLSCertFile and TLSKeyFile enable HTTPS (both or neither). Without
	// them the server logs a WARNING: passwords, session cookies, names and
	// photos cross the network in clear text.
	TLSCertFile, TLSKeyFile string
	// SecureCookies marks cookies Secure even without TLS here, for a
	// server behind a TLS-terminating proxy. With TLS they always are.
	SecureCookies bool
	// SessionTTL is how long a login lasts; default 8 h (a shift).
	SessionTTL time.Duration
	// MaxSessions bounds live sessions; default 1000.
	MaxSessions int
	// LoginPerMinute is the login attempts allowed per client address per
	// minute (burst the same); default 10.
	LoginPerMinute int
	// AccountFailures is how many failed logins an account absorbs before
	// it is throttled (default 5); then AccountRetryEvery (default 1 min)
	// must pass for each further attempt. A successful login clears it.
	AccountFailures   int
	AccountRetryEvery time.Duration
	// MaxPhotoBytes bounds each uploaded photo; default 10 MB.
	MaxPhotoBytes int64
	// MaxPhotos bounds the photos of one request; default 10.
	MaxPhotos int
	// MaxBodyBytes bounds a JSON body (and each non-photo multipart part);
	// default 64 KiB.
	MaxBodyBytes int64
	// CheckTimeout bounds the readiness check; default 2 s.
	CheckTimeout time.Duration
	// ShutdownTimeout bounds graceful shutdown; default 10 s.
	ShutdownTimeout time.Duration
}

// Pinger is what /readyz checks (a *pgxpool.Pool).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Deps are what the API serves.
type Deps struct {
	Registry *enroll.Registry
	Accounts *enroll.Accounts
	// DB is pinged by /readyz.
	DB Pinger
	// Registerer takes the API's metrics (nil: not registered); Gatherer is
	// served on /metrics (default prometheus.DefaultGatherer).
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	Logger     *slog.Logger
}

// Server is the enrolment API server. Serve (or Run) it once.
type Server struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	m        *Metrics
	tlsCert  *tls.Certificate
	sessions *webauth.SessionStore
	// addrLimiter counts every login attempt per client address;
	// accountLimiter counts failed ones per username.
	addrLimiter    *webauth.RateLimiter
	accountLimiter *webauth.RateLimiter
	now            func() time.Time
	handler        http.Handler
}

// New validates cfg and deps and builds the server; it does not listen.
func New(cfg Config, deps Deps) (*Server, error) {
	if cfg.Addr == "" {
		return nil, fmt.Errorf("%w: Addr is required", ErrBadConfig)
	}
	if deps.Registry == nil || deps.Accounts == nil || deps.DB == nil {
		return nil, fmt.Errorf("%w: Deps.Registry, Deps.Accounts and Deps.DB are required", ErrBadConfig)
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, fmt.Errorf("%w: TLSCertFile and TLSKeyFile go together", ErrBadConfig)
	}
	if cfg.SessionTTL < 0 || cfg.MaxSessions < 0 || cfg.LoginPerMinute < 0 || cfg.AccountFailures < 0 || cfg.AccountRetryEvery < 0 ||
		cfg.MaxPhotoBytes < 0 || cfg.MaxPhotos < 0 || cfg.MaxBodyBytes < 0 || cfg.CheckTimeout < 0 || cfg.ShutdownTimeout < 0 {
		return nil, fmt.Errorf("%w: durations and limits must not be negative", ErrBadConfig)
	}
	cfg.SessionTTL = orDefault(cfg.SessionTTL, 8*time.Hour)
	cfg.MaxSessions = orDefault(cfg.MaxSessions, 1000)
	cfg.LoginPerMinute = orDefault(cfg.LoginPerMinute, 10)
	cfg.AccountFailures = orDefault(cfg.AccountFailures, 5)
	cfg.AccountRetryEvery = orDefault(cfg.AccountRetryEvery, time.Minute)
	cfg.MaxPhotoBytes = orDefault(cfg.MaxPhotoBytes, 10<<20)
	cfg.MaxPhotos = orDefault(cfg.MaxPhotos, 10)
	cfg.MaxBodyBytes = orDefault(cfg.MaxBodyBytes, 64<<10)
	cfg.CheckTimeout = orDefault(cfg.CheckTimeout, 2*time.Second)
	cfg.ShutdownTimeout = orDefault(cfg.ShutdownTimeout, 10*time.Second)
	if deps.Gatherer == nil {
		deps.Gatherer = prometheus.DefaultGatherer
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger, m: NewMetrics(deps.Registerer), now: time.Now}
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: TLS key pair: %v", ErrBadConfig, err)
		}
		s.tlsCert = &cert
	}
	clock := func() time.Time { return s.now() }
	s.sessions = webauth.NewSessionStore(cfg.SessionTTL, cfg.MaxSessions, clock)
	s.addrLimiter = webauth.PerMinute(cfg.LoginPerMinute, clock)
	s.accountLimiter = webauth.NewRateLimiter(cfg.AccountFailures, cfg.AccountRetryEvery, clock)
	s.handler = s.routes()
	return s, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// TLS reports whether the server serves HTTPS.
func (s *Server) TLS() bool { return s.tlsCert != nil }

// Handler is the whole HTTP surface (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// methods routes one path by method, answering others with a JSON 405.
type methods map[string]http.Handler

func (s *Server) route(mux *http.ServeMux, path string, ms methods) {
	allowed := make([]string, 0, len(ms))
	for m := range ms {
		allowed = append(allowed, m)
	}
	slices.Sort(allowed)
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		h, ok := ms[r.Method]
		if !ok && r.Method == http.MethodHead {
			h, ok = ms[http.MethodGet]
		}
		if !ok {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			s.fail(w, r, newError(http.StatusMethodNotAllowed, CodeMethodNotAllowed,
				fmt.Sprintf("%s is not allowed here (allowed: %s)", r.Method, strings.Join(allowed, ", "))))
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.deps.Gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)}))
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)

	const v1 = "/api/v1"
	s.route(mux, v1+"/login", methods{"POST": http.HandlerFunc(s.handleLogin)})
	s.route(mux, v1+"/logout", methods{"POST": s.require(anyRole, s.handleLogout)})
	s.route(mux, v1+"/session", methods{"GET": s.require(anyRole, s.handleSession)})
	s.route(mux, v1+"/openapi.yaml", methods{"GET": s.require(anyRole, s.handleOpenAPI)})

	s.route(mux, v1+"/people", methods{
		"GET":  s.require(enroll.RoleOfficer, s.handleListPeople),
		"POST": s.require(enroll.RoleOfficer, s.handleCreatePerson),
	})
	s.route(mux, v1+"/people/{external_id}", methods{
		"GET":    s.require(enroll.RoleOfficer, s.handleGetPerson),
		"PATCH":  s.require(enroll.RoleOfficer, s.handleUpdatePerson),
		"DELETE": s.require(enroll.RoleAdmin, s.handleDeletePerson),
	})
	s.route(mux, v1+"/people/{external_id}/revoke", methods{"POST": s.require(enroll.RoleOfficer, s.handleRevoke)})
	s.route(mux, v1+"/people/{external_id}/reinstate", methods{"POST": s.require(enroll.RoleOfficer, s.handleReinstate)})
	s.route(mux, v1+"/people/{external_id}/photos", methods{
		"GET":  s.require(enroll.RoleOfficer, s.handleListTemplates),
		"POST": s.require(enroll.RoleOfficer, s.handleAddPhotos),
	})
	s.route(mux, v1+"/quality", methods{"POST": s.require(enroll.RoleOfficer, s.handleQuality)})

	s.route(mux, v1+"/accounts", methods{
		"GET":  s.require(enroll.RoleAdmin, s.handleListAccounts),
		"POST": s.require(enroll.RoleAdmin, s.handleCreateAccount),
	})
	s.route(mux, v1+"/accounts/{username}/disable", methods{"POST": s.require(enroll.RoleAdmin, s.handleDisableAccount)})
	s.route(mux, v1+"/tokens", methods{
		"GET":  s.require(enroll.RoleAdmin, s.handleListTokens),
		"POST": s.require(enroll.RoleAdmin, s.handleCreateToken),
	})
	s.route(mux, v1+"/tokens/{id}", methods{"DELETE": s.require(enroll.RoleAdmin, s.handleRevokeToken)})
	s.route(mux, v1+"/audit", methods{"GET": s.require(enroll.RoleAdmin, s.handleAudit)})
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, newError(http.StatusNotFound, CodeNotFound, "no such endpoint"))
	})
	mux.Handle("/", webHandler()) // WEB PAGE HOOK: the officers' page at / and /login, its files under /static/ (web.go)
	return httpserve.Instrument(httpserve.SecurityHeaders(contentSecurityPolicy, mux), s.m.request)
}

// Run listens on cfg.Addr and serves until ctx ends, then shuts down
// gracefully.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("enroll/api: listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends (then shuts down gracefully within
// ShutdownTimeout) or the listener fails. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	err := httpserve.Serve(ctx, ln, httpserve.Options{
		Name: "enrolment API", Handler: s.handler, Cert: s.tlsCert,
		PlainWarning: "WARNING: enrolment API serving HTTP without TLS: passwords, session cookies, names and face photos cross the network in clear text; configure a certificate or put a TLS proxy in front",
		// Uploads of up to MaxPhotos photos over a slow office link, then
		// face analysis of each before the answer.
		ReadTimeout:     2 * time.Minute,
		WriteTimeout:    3 * time.Minute,
		ShutdownTimeout: s.cfg.ShutdownTimeout,
		Logger:          s.log,
	})
	if err != nil {
		return fmt.Errorf("enroll/api: %w", err)
	}
	return nil
}

// blob: and data: images: the enrolment page previews the photos an
// officer picks before uploading them.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
