// Package httpserve runs an http.Server on a listener until a context ends,
// with TLS when a certificate is given (a warning when not) and a bounded
// graceful shutdown: the one serving loop of the gate node's HTTP side and
// the enrolment API.
package httpserve

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Options describe one server.
type Options struct {
	// Name is the server in log lines ("gate node HTTP", "enrolment API").
	Name    string
	Handler http.Handler
	// Cert enables TLS 1.2+; nil serves plain HTTP and logs PlainWarning.
	Cert         *tls.Certificate
	PlainWarning string
	// ReadTimeout and WriteTimeout bound one request (headers always 5 s).
	ReadTimeout, WriteTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown; then connections are cut.
	ShutdownTimeout time.Duration
	// OnStop runs once serving ends, before the shutdown (to end streams
	// that would otherwise hold it up).
	OnStop func()
	Logger *slog.Logger
}

// Serve serves on ln until ctx ends (then shuts down gracefully within
// ShutdownTimeout) or the listener fails. It closes ln.
func Serve(ctx context.Context, ln net.Listener, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	srv := &http.Server{
		Handler:           o.Handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       o.ReadTimeout,
		WriteTimeout:      o.WriteTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if o.Cert != nil {
		scheme = "https"
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*o.Cert}}
		ln = tls.NewListener(ln, srv.TLSConfig)
	} else {
		log.Warn(o.PlainWarning, "addr", ln.Addr().String())
	}
	log.Info(o.Name+" listening", "url", scheme+"://"+ln.Addr().String())
	stop := func() {
		if o.OnStop != nil {
			o.OnStop()
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		stop()
		return err
	case <-ctx.Done():
	}
	stop()
	sctx, cancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("graceful shutdown incomplete; closing connections", "server", o.Name, "err", err)
		_ = srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	log.Info(o.Name + " stopped")
	return nil
}

// statusWriter records the status for the request metric. Unwrap lets
// http.ResponseController reach Flush and SetWriteDeadline underneath.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Instrument calls record with each request's route (the mux pattern, or
// "unmatched"), status and duration.
func Instrument(next http.Handler, record func(route string, status int, elapsed time.Duration)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		route := r.Pattern // set by the mux on this request
		if route == "" {
			route = "unmatched"
		}
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		record(route, sw.status, time.Since(start))
	})
}

// SecurityHeaders sets the headers every response of ours carries: the
// given Content-Security-Policy, no sniffing or framing, same-origin
// referrers and opener, and HSTS over TLS. (same-origin, not no-referrer:
// under no-referrer a browser sends "Origin: null" on form POSTs, which a
// login's origin check refuses.)
func SecurityHeaders(csp string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}
