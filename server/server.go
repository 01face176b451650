// Package server is the gate node's HTTP side: metrics, health and
// readiness, the operators' live page and decision stream, and the lane
// claims API, with token authentication for everything that shows or
// changes personal data.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/loopgate/loopgate/internal/httpserve"
	"github.com/loopgate/loopgate/internal/webauth"
)

// ErrBadConfig wraps every configuration error New returns.
var ErrBadConfig = errors.New("server: bad config")

// Config is the HTTP side's configuration. Zero durations and limits take
// the defaults noted.
type Config struct {
	// Addr to listen on, e.g. "0.0.0.0:8443" or "127.0.0.1:0".
	Addr string
	// TLSCertFile and TLSKeyFile enable HTTPS (both or neither). Without
	// them the server logs a WARNING: tokens and names cross the network
	// in clear text.
	TLSCertFile, TLSKeyFile string
	// SecureCookies marks cookies Secure even without TLS here, for a node
	// behind a TLS-terminating proxy. With TLS they always are.
	SecureCookies bool
	// Gate names this node on the live page.
	Gate string
	// Tokens are the credentials (hashes only).
	Tokens []Token
	// SessionTTL is how long a browser login lasts; default 12 h.
	SessionTTL time.Duration
	// MaxSessions bounds live browser sessions; default 1000.
	MaxSessions int
	// LoginPerMinute is the login POSTs allowed per client address per
	// minute (burst the same); default 5.
	LoginPerMinute int
	// Heartbeat is the interval of SSE comment lines that keep proxies and
	// the browser from timing the stream out; default 15 s.
	Heartbeat time.Duration
	// ReplayOnConnect is how many recent decisions a new live page gets;
	// default 50.
	ReplayOnConnect int
	// CheckTimeout bounds each readiness check; default 2 s.
	CheckTimeout time.Duration
	// DefaultClaimTTL applies when a claim gives no ttl_seconds (default
	// 10 s); MaxClaimTTL caps it (default 5 min); ClaimTimeout bounds the
	// Claimer call (default 5 s).
	DefaultClaimTTL, MaxClaimTTL, ClaimTimeout time.Duration
	// ShutdownTimeout bounds graceful shutdown; default 10 s.
	ShutdownTimeout time.Duration
}

// Check is one readiness condition: models loaded, gallery reachable,
// cameras opened. Fn returns nil when it holds.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
	// Detail, when set, is shown with the check's result to every caller
	// (so only facts fit for anonymous callers, like the gallery copy's
	// age); the error's text goes to the log only.
	Detail func() string
}

// Deps are what the server shows and calls.
type Deps struct {
	// Gatherer is served on /metrics; default prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// Metrics are the server's own (NewMetrics); nil records nothing. A
	// Broadcaster built without metrics records into these.
	Metrics *Metrics
	// Events is the decision stream (also a sink in the pipeline's fan-out).
	Events *Broadcaster
	// Frames holds the latest annotated frame per camera.
	Frames *LiveFrames
	// Checks decide /readyz.
	Checks []Check
	// Claimer takes lane claims; nil answers 501 claims_disabled.
	Claimer Claimer
	Logger  *slog.Logger
}

// Server is the gate node's HTTP server. Serve (or Run) it once.
type Server struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	m        *Metrics
	creds    []credential
	tlsCert  *tls.Certificate
	sessions *webauth.SessionStore
	limiter  *webauth.RateLimiter
	now      func() time.Time
	pages    *template.Template
	static   fs.FS
	handler  http.Handler
	ready    *readiness

	stopOnce sync.Once
	stopping chan struct{} // closed at shutdown: ends the long-lived streams
}

// New validates cfg and deps and builds the server; it does not listen.
func New(cfg Config, deps Deps) (*Server, error) {
	if cfg.Addr == "" {
		return nil, fmt.Errorf("%w: Addr is required", ErrBadConfig)
	}
	if deps.Events == nil || deps.Frames == nil {
		return nil, fmt.Errorf("%w: Deps.Events and Deps.Frames are required", ErrBadConfig)
	}
	for i, c := range deps.Checks {
		if c.Name == "" || c.Fn == nil {
			return nil, fmt.Errorf("%w: check %d needs a name and a func", ErrBadConfig, i)
		}
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, fmt.Errorf("%w: TLSCertFile and TLSKeyFile go together", ErrBadConfig)
	}
	if cfg.SessionTTL < 0 || cfg.MaxSessions < 0 || cfg.LoginPerMinute < 0 || cfg.Heartbeat < 0 || cfg.CheckTimeout < 0 ||
		cfg.DefaultClaimTTL < 0 || cfg.MaxClaimTTL < 0 || cfg.ClaimTimeout < 0 || cfg.ShutdownTimeout < 0 || cfg.ReplayOnConnect < 0 {
		return nil, fmt.Errorf("%w: durations and limits must not be negative", ErrBadConfig)
	}
	creds, err := parseTokens(cfg.Tokens)
	if err != nil {
		return nil, err
	}
	cfg.SessionTTL = orDefault(cfg.SessionTTL, 12*time.Hour)
	cfg.MaxSessions = orDefault(cfg.MaxSessions, 1000)
	cfg.LoginPerMinute = orDefault(cfg.LoginPerMinute, 5)
	cfg.Heartbeat = orDefault(cfg.Heartbeat, 15*time.Second)
	cfg.ReplayOnConnect = orDefault(cfg.ReplayOnConnect, 50)
	cfg.CheckTimeout = orDefault(cfg.CheckTimeout, 2*time.Second)
	cfg.DefaultClaimTTL = orDefault(cfg.DefaultClaimTTL, 10*time.Second)
	cfg.MaxClaimTTL = orDefault(cfg.MaxClaimTTL, 5*time.Minute)
	cfg.ClaimTimeout = orDefault(cfg.ClaimTimeout, 5*time.Second)
	cfg.ShutdownTimeout = orDefault(cfg.ShutdownTimeout, 10*time.Second)
	if cfg.DefaultClaimTTL > cfg.MaxClaimTTL {
		return nil, fmt.Errorf("%w: DefaultClaimTTL %v exceeds MaxClaimTTL %v", ErrBadConfig, cfg.DefaultClaimTTL, cfg.MaxClaimTTL)
	}
	if deps.Gatherer == nil {
		deps.Gatherer = prometheus.DefaultGatherer
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	deps.Events.useMetrics(deps.Metrics)
	s := &Server{
		cfg: cfg, deps: deps, log: deps.Logger, m: deps.Metrics, creds: creds,
		now:      time.Now,
		stopping: make(chan struct{}),
	}
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: TLS key pair: %v", ErrBadConfig, err)
		}
		s.tlsCert = &cert
	}
	if len(creds) == 0 {
		s.log.Warn("no tokens configured: the live page, /events and claims refuse everyone")
	}
	s.sessions = webauth.NewSessionStore(cfg.SessionTTL, cfg.MaxSessions, func() time.Time { return s.now() })
	s.limiter = webauth.PerMinute(cfg.LoginPerMinute, func() time.Time { return s.now() })
	s.ready = newReadiness(deps.Checks, cfg.CheckTimeout, s.log)
	if s.pages, s.static, err = loadWeb(); err != nil {
		return nil, err
	}
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

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.deps.Gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)}))
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)

	mux.HandleFunc("GET /login", s.handleLoginPage)
	mux.HandleFunc("POST /login", s.handleLogin)
	mux.HandleFunc("POST /logout", s.handleLogout)
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticHandler(s.static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/live", http.StatusSeeOther) })

	mux.Handle("GET /live", s.require(RoleOperator, page, s.handleLive))
	mux.Handle("GET /live/cameras", s.require(RoleOperator, api, s.handleCameras))
	mux.Handle("GET /live/frame/{file}", s.require(RoleOperator, api, s.handleFrame))
	mux.Handle("GET /events", s.require(RoleOperator, api, s.handleEvents))
	mux.Handle("POST /api/v1/claims", s.require(RoleLane, bearerOnly, s.handleClaim))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, CodeNotFound, "no such endpoint")
	})
	return httpserve.Instrument(httpserve.SecurityHeaders(contentSecurityPolicy, mux), func(route string, status int, _ time.Duration) { s.m.request(route, status) })
}

// Run listens on cfg.Addr and serves until ctx ends, then shuts down
// gracefully.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("server: listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends (then shuts down gracefully within
// ShutdownTimeout) or the listener fails. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	err := httpserve.Serve(ctx, ln, httpserve.Options{
		Name: "gate node HTTP", Handler: s.handler, Cert: s.tlsCert,
		PlainWarning: "WARNING: serving HTTP without TLS: tokens, session cookies, names and faces cross the network in clear text; configure a certificate or put a TLS proxy in front",
		ReadTimeout:  15 * time.Second,
		// Streams (/events) lift this for themselves.
		WriteTimeout:    30 * time.Second,
		ShutdownTimeout: s.cfg.ShutdownTimeout,
		OnStop:          s.stop,
		Logger:          s.log,
	})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}

func (s *Server) stop() { s.stopOnce.Do(func() { close(s.stopping) }) }

const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
