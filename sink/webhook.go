package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/loopgate/loopgate/engine/decision"
)

// IdempotencyHeader carries Event.ID on every webhook POST, retries
// included, so the gate controller acts on each decision once.
const IdempotencyHeader = "Idempotency-Key"

// ErrBadWebhookConfig wraps every configuration error NewWebhook returns.
var ErrBadWebhookConfig = errors.New("sink: bad webhook config")

// WebhookConfig configures a Webhook. Only URL is required.
//
// Overflow policy: when the queue is full the OLDEST event is dropped
// (dropped_total{reason="queue_full"}). A gate controller acts on the
// present: the traveller in front of the gate is the one in the newest
// decision. Decisions that waited out a controller outage are about people
// who have walked on or turned back; delivering them late while discarding
// the fresh ones would open the gate for someone no longer there and keep
// the current traveller waiting. MaxAge drops events that grew too old while
// waiting for the same reason.
type WebhookConfig struct {
	// Name labels the metrics and logs; default "webhook".
	Name string
	// URL receives one POST per event, body = the Event as JSON.
	URL string
	// Timeout bounds each attempt (connect to response headers and body);
	// default 2 s.
	Timeout time.Duration
	// QueueSize bounds the in-memory backlog; default 256.
	QueueSize int
	// MinBackoff and MaxBackoff bound the capped exponential backoff between
	// attempts; defaults 100 ms and 5 s. A Retry-After header is honoured up
	// to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// MaxAttempts per event (first try included); default 10, -1 for no
	// limit (then only MaxAge or Close ends the retries).
	MaxAttempts int
	// MaxAge drops an event, instead of (re)sending it, once this long has
	// passed since its DecidedAt; 0 never drops for age.
	MaxAge time.Duration
	// BearerToken, when set, is sent as "Authorization: Bearer …".
	BearerToken string
	// Headers are added to every request (e.g. a controller's API key).
	Headers http.Header
	// FlushTimeout bounds how long Close keeps delivering the backlog;
	// default 5 s.
	FlushTimeout time.Duration
	// Client is used for the POSTs; default a client of its own that does
	// not follow redirects.
	Client  *http.Client
	Metrics *Metrics
	Logger  *slog.Logger
}

// Webhook POSTs each event as JSON to the gate controller from its own
// goroutine, in order, one at a time. Network errors, 5xx, 408 and 429 are
// retried with capped exponential backoff; any other status is counted,
// logged and not retried (sending the same body again cannot succeed).
type Webhook struct {
	cfg     WebhookConfig
	p       pump
	backoff backoff
}

var _ decision.Sink = (*Webhook)(nil)

// NewWebhook validates cfg, applies defaults and starts the sender.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: url: %v", ErrBadWebhookConfig, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: url %q must be http(s)://host/…", ErrBadWebhookConfig, u.Redacted())
	}
	if cfg.Timeout < 0 || cfg.QueueSize < 0 || cfg.MinBackoff < 0 || cfg.MaxBackoff < 0 || cfg.MaxAge < 0 || cfg.FlushTimeout < 0 {
		return nil, fmt.Errorf("%w: durations and sizes must not be negative", ErrBadWebhookConfig)
	}
	cfg.Name = orDefault(cfg.Name, "webhook")
	cfg.Timeout = orDefault(cfg.Timeout, 2*time.Second)
	cfg.QueueSize = orDefault(cfg.QueueSize, 256)
	cfg.MinBackoff = orDefault(cfg.MinBackoff, 100*time.Millisecond)
	cfg.MaxBackoff = orDefault(cfg.MaxBackoff, 5*time.Second)
	cfg.MaxAttempts = orDefault(cfg.MaxAttempts, 10)
	cfg.FlushTimeout = orDefault(cfg.FlushTimeout, 5*time.Second)
	cfg.Logger = orDefaultLogger(cfg.Logger)
	if cfg.MaxBackoff < cfg.MinBackoff {
		return nil, fmt.Errorf("%w: MaxBackoff %v < MinBackoff %v", ErrBadWebhookConfig, cfg.MaxBackoff, cfg.MinBackoff)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if cfg.BearerToken != "" && u.Scheme == "http" && !isLoopback(u.Hostname()) {
		cfg.Logger.Warn("WARNING: webhook sends its bearer token and personal data over plain http", "sink", cfg.Name, "url", u.Redacted())
	}
	w := &Webhook{cfg: cfg, backoff: backoff{min: cfg.MinBackoff, max: cfg.MaxBackoff}}
	w.p = pump{
		name:         cfg.Name,
		q:            newQueue(cfg.QueueSize),
		m:            cfg.Metrics,
		log:          cfg.Logger,
		flushTimeout: cfg.FlushTimeout,
		deliver:      w.deliver,
	}
	w.p.start()
	return w, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Name is the metrics label.
func (w *Webhook) Name() string { return w.cfg.Name }

// Send queues e; never blocks.
func (w *Webhook) Send(e decision.Event) { w.p.send(e) }

// Close delivers the backlog within FlushTimeout, then stops; what is left
// is dropped and counted, and the error says how many.
func (w *Webhook) Close() error { return w.p.close() }

// Shutdown is Close bounded by ctx as well.
func (w *Webhook) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.FlushTimeout)
	defer cancel()
	return w.p.shutdown(ctx)
}

// attemptError is one failed POST.
type attemptError struct {
	reason     string // a Fail* label
	retry      bool
	status     int
	body       string
	retryAfter time.Duration
	err        error
}

func (e *attemptError) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return fmt.Sprintf("HTTP %d: %s", e.status, e.body)
}

func (w *Webhook) deliver(ctx context.Context, e decision.Event) bool {
	name, log := w.cfg.Name, w.cfg.Logger
	body, err := json.Marshal(e)
	if err != nil {
		w.p.m.failed(name, FailMarshal)
		log.Error("webhook: decision not sent: cannot encode it", "sink", name, "event_id", e.ID, "err", err)
		return true
	}
	for attempt := 0; ; attempt++ {
		if w.cfg.MaxAge > 0 && time.Since(e.DecidedAt) > w.cfg.MaxAge {
			w.p.m.dropped(name, DropStale, 1)
			log.Warn("webhook: decision too old to send", "sink", name, "event_id", e.ID,
				"age", time.Since(e.DecidedAt).Round(time.Millisecond), "attempts", attempt)
			return true
		}
		aerr := w.post(ctx, e.ID, body)
		if aerr == nil {
			w.p.m.delivered(name)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		w.p.m.failed(name, aerr.reason)
		if !aerr.retry {
			log.Error("webhook: gate controller refused the decision; not retrying", "sink", name,
				"event_id", e.ID, "status", aerr.status, "response", aerr.body)
			return true
		}
		if w.cfg.MaxAttempts > 0 && attempt+1 >= w.cfg.MaxAttempts {
			w.p.m.failed(name, FailGaveUp)
			log.Error("webhook: giving up on decision", "sink", name, "event_id", e.ID,
				"attempts", attempt+1, "err", aerr)
			return true
		}
		wait := w.backoff.delay(attempt)
		if aerr.retryAfter > wait {
			wait = min(aerr.retryAfter, w.cfg.MaxBackoff)
		}
		log.Warn("webhook: delivery failed; retrying", "sink", name, "event_id", e.ID,
			"attempt", attempt+1, "retry_in", wait, "err", aerr)
		w.p.m.retried(name)
		if !sleep(ctx, wait) {
			return false
		}
	}
}

func (w *Webhook) post(ctx context.Context, id string, body []byte) *attemptError {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return &attemptError{reason: FailNetwork, err: err}
	}
	for k, vs := range w.cfg.Headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "loopgate-gate-node")
	req.Header.Set(IdempotencyHeader, id)
	if w.cfg.BearerToken != "" {
		req.Header.Set("Authorization", "Bearer "+w.cfg.BearerToken)
	}
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		return &attemptError{reason: FailNetwork, retry: true, err: err}
	}
	defer resp.Body.Close()
	// Keep a little of the body for the log; read (bounded) the rest so the
	// connection can be reused.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return nil
	case code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests:
		reason := FailStatus5xx
		if code < 500 {
			reason = FailThrottled
		}
		return &attemptError{reason: reason, retry: true, status: code, body: string(snippet),
			retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
	case code >= 400:
		return &attemptError{reason: FailStatus4xx, status: code, body: string(snippet)}
	default:
		return &attemptError{reason: FailStatusOther, status: code, body: string(snippet)}
	}
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return 0
}
