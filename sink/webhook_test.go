package sink

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/loopgate/loopgate/engine/decision"
)

// receiver is a gate controller stand-in that records every request.
type receiver struct {
	mu       sync.Mutex
	keys     []string // Idempotency-Key per attempt
	accepted []decision.Event
	bodies   [][]byte
	auth     []string
	apiKey   []string
}

func (r *receiver) attempts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.keys)
}

func (r *receiver) record(req *http.Request) []byte {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = append(r.keys, req.Header.Get(IdempotencyHeader))
	r.auth = append(r.auth, req.Header.Get("Authorization"))
	r.apiKey = append(r.apiKey, req.Header.Get("X-Api-Key"))
	return body
}

func (r *receiver) accept(t *testing.T, body []byte) {
	var e decision.Event
	if err := json.Unmarshal(body, &e); err != nil {
		t.Errorf("webhook body is not an event: %v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.accepted = append(r.accepted, e)
	r.bodies = append(r.bodies, body)
}

func TestWebhookRetries503ThenDeliversOnce(t *testing.T) {
	sch := eventSchema(t)
	rec := &receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body := rec.record(req)
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
			t.Errorf("got %s with Content-Type %q", req.Method, req.Header.Get("Content-Type"))
		}
		if rec.attempts() <= 2 {
			http.Error(w, "controller restarting", http.StatusServiceUnavailable)
			return
		}
		rec.accept(t, body)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()

	m := newTestMetrics(t)
	wh, err := NewWebhook(WebhookConfig{
		URL: srv.URL, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		BearerToken: "controller-secret", Headers: http.Header{"X-Api-Key": {"k1"}},
		Metrics: m, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	e := testEvent(0)
	wh.Send(e)
	waitFor(t, "delivery", func() bool { return counter(m.Delivered.WithLabelValues("webhook")) == 1 })
	if err := wh.Close(); err != nil {
		t.Fatal(err)
	}

	if rec.attempts() != 3 {
		t.Errorf("%d attempts, want 3 (two 503s, then accepted)", rec.attempts())
	}
	for i, k := range rec.keys {
		if k != e.ID {
			t.Errorf("attempt %d: Idempotency-Key %q, want the event ID %q", i, k, e.ID)
		}
		if rec.auth[i] != "Bearer controller-secret" || rec.apiKey[i] != "k1" {
			t.Errorf("attempt %d: Authorization %q, X-Api-Key %q", i, rec.auth[i], rec.apiKey[i])
		}
	}
	if len(rec.accepted) != 1 || rec.accepted[0].ID != e.ID {
		t.Fatalf("accepted %d events, want exactly the one sent", len(rec.accepted))
	}
	validateEvent(t, sch, rec.bodies[0])
	if got := counter(m.Retried.WithLabelValues("webhook")); got != 2 {
		t.Errorf("retried = %v, want 2", got)
	}
	if got := counter(m.Failed.WithLabelValues("webhook", FailStatus5xx)); got != 2 {
		t.Errorf("failed(http_5xx) = %v, want 2", got)
	}
}

func TestWebhookHungReceiverNeverBlocksSend(t *testing.T) {
	const queueSize, total = 4, 20
	rec := &receiver{}
	firstArrived := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body := rec.record(req)
		once.Do(func() { close(firstArrived) })
		<-release // hung until the test lets go
		rec.accept(t, body)
	}))
	defer srv.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	m := newTestMetrics(t)
	wh, err := NewWebhook(WebhookConfig{URL: srv.URL, QueueSize: queueSize, Timeout: time.Minute, Metrics: m, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	events := make([]decision.Event, total)
	for i := range events {
		events[i] = testEvent(i)
	}
	wh.Send(events[0])
	<-firstArrived // the sender is now stuck inside the POST of event 0

	sent := make(chan struct{})
	go func() {
		for _, e := range events[1:] {
			wh.Send(e)
		}
		close(sent)
	}()
	select {
	case <-sent:
	case <-time.After(10 * time.Second):
		t.Fatal("Send blocked behind a hung receiver")
	}
	wantDropped := float64(total - 1 - queueSize)
	if got := counter(m.Dropped.WithLabelValues("webhook", DropQueueFull)); got != wantDropped {
		t.Errorf("dropped(queue_full) = %v, want %v", got, wantDropped)
	}
	if got := counter(m.QueueLength.WithLabelValues("webhook")); got != queueSize {
		t.Errorf("queue_length = %v, want %d", got, queueSize)
	}

	close(release)
	waitFor(t, "backlog delivery", func() bool { return counter(m.Delivered.WithLabelValues("webhook")) == 1+queueSize })
	if err := wh.Close(); err != nil {
		t.Fatal(err)
	}
	// Drop-oldest: the controller got the in-flight event, then the newest.
	want := append([]decision.Event{events[0]}, events[total-queueSize:]...)
	if len(rec.accepted) != len(want) {
		t.Fatalf("accepted %d events, want %d", len(rec.accepted), len(want))
	}
	for i := range want {
		if rec.accepted[i].ID != want[i].ID {
			t.Errorf("accepted[%d] = track %d, want track %d", i, rec.accepted[i].TrackID, want[i].TrackID)
		}
	}
}

func TestWebhook4xxIsNotRetried(t *testing.T) {
	rec := &receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec.record(req)
		http.Error(w, `{"error":"unknown gate"}`, http.StatusUnprocessableEntity)
	}))
	defer srv.Close()
	m := newTestMetrics(t)
	wh, err := NewWebhook(WebhookConfig{URL: srv.URL, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, Metrics: m, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	wh.Send(testEvent(0))
	wh.Send(testEvent(1))
	if err := wh.Close(); err != nil { // Close drains: both were attempted
		t.Fatal(err)
	}
	if rec.attempts() != 2 {
		t.Errorf("%d attempts for 2 refused events, want 2 (no retries)", rec.attempts())
	}
	if got := counter(m.Failed.WithLabelValues("webhook", FailStatus4xx)); got != 2 {
		t.Errorf("failed(http_4xx) = %v, want 2", got)
	}
	if got := counter(m.Retried.WithLabelValues("webhook")); got != 0 {
		t.Errorf("retried = %v, want 0", got)
	}
	if got := counter(m.Delivered.WithLabelValues("webhook")); got != 0 {
		t.Errorf("delivered = %v, want 0", got)
	}
}

// A controller that is down (connection refused) gets retries until Close's
// deadline; what is left is counted and reported.
func TestWebhookUnreachableCloseReportsUnflushed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/decisions"
	ln.Close() // nothing listens there any more

	m := newTestMetrics(t)
	wh, err := NewWebhook(WebhookConfig{URL: url, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		MaxAttempts: -1, FlushTimeout: 200 * time.Millisecond, Metrics: m, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	wh.Send(testEvent(0))
	wh.Send(testEvent(1))
	waitFor(t, "a retry", func() bool { return counter(m.Retried.WithLabelValues("webhook")) >= 2 })
	err = wh.Close()
	if !errors.Is(err, ErrUnflushed) {
		t.Fatalf("Close = %v, want ErrUnflushed", err)
	}
	if got := counter(m.Dropped.WithLabelValues("webhook", DropShutdown)); got != 2 {
		t.Errorf("dropped(shutdown) = %v, want 2", got)
	}
	if counter(m.Failed.WithLabelValues("webhook", FailNetwork)) < 2 {
		t.Error("network failures not counted")
	}
	wh.Send(testEvent(2))
	if got := counter(m.Dropped.WithLabelValues("webhook", DropClosed)); got != 1 {
		t.Errorf("dropped(closed) = %v, want 1", got)
	}
}

func TestWebhookDropsStaleDecisions(t *testing.T) {
	rec := &receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { rec.accept(t, rec.record(req)) }))
	defer srv.Close()
	m := newTestMetrics(t)
	wh, err := NewWebhook(WebhookConfig{URL: srv.URL, MaxAge: time.Minute, Metrics: m, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	old, fresh := testEvent(0), testEvent(1)
	old.DecidedAt = old.DecidedAt.Add(-time.Hour)
	wh.Send(old)
	wh.Send(fresh)
	if err := wh.Close(); err != nil {
		t.Fatal(err)
	}
	if len(rec.accepted) != 1 || rec.accepted[0].ID != fresh.ID {
		t.Errorf("controller got %d events, want only the fresh one", len(rec.accepted))
	}
	if got := counter(m.Dropped.WithLabelValues("webhook", DropStale)); got != 1 {
		t.Errorf("dropped(stale) = %v, want 1", got)
	}
}

func TestWebhookConfigValidation(t *testing.T) {
	for _, cfg := range []WebhookConfig{
		{},
		{URL: "ftp://controller/x"},
		{URL: "http:///nohost"},
		{URL: "http://c/x", MinBackoff: time.Second, MaxBackoff: time.Millisecond},
		{URL: "http://c/x", QueueSize: -1},
	} {
		if _, err := NewWebhook(cfg); !errors.Is(err, ErrBadWebhookConfig) {
			t.Errorf("NewWebhook(%+v) = %v, want ErrBadWebhookConfig", cfg, err)
		}
	}
}
