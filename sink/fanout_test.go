package sink

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/loopgate/loopgate/engine/decision"
)

// panicky is a broken sink: Fanout must isolate the others from it.
type panicky struct{}

func (panicky) Name() string        { return "panicky" }
func (panicky) Send(decision.Event) { panic("broken sink") }
func (panicky) Close() error        { return errors.New("broken close") }

func TestFanoutDeliversToEverySink(t *testing.T) {
	rec := &receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { rec.accept(t, rec.record(req)) }))
	defer srv.Close()
	m := newTestMetrics(t)
	var buf bytes.Buffer
	jl := JSONLines(&buf, JSONLOptions{Metrics: m, Logger: testLogger(t)})
	wh, err := NewWebhook(WebhookConfig{URL: srv.URL, Metrics: m, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	f := NewFanout(testLogger(t), panicky{}, jl, nil, wh)
	if len(f.Sinks()) != 3 {
		t.Fatalf("fanout has %d sinks, want 3 (nil ignored)", len(f.Sinks()))
	}
	for i := range 3 {
		f.Send(testEvent(i))
	}
	err = f.Close()
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("panicky: broken close")) {
		t.Errorf("Close = %v, want the broken sink's error", err)
	}
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 3 || len(rec.accepted) != 3 {
		t.Fatalf("jsonl got %d lines, webhook %d events, want 3 each", len(lines), len(rec.accepted))
	}
	for i, line := range lines {
		var e decision.Event
		if err := json.Unmarshal(line, &e); err != nil || e.ID != rec.accepted[i].ID || e.TrackID != int64(i) {
			t.Errorf("event %d differs between sinks (err %v)", i, err)
		}
	}
}
