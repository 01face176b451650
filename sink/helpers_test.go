package sink

import (
	"bytes"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/loopgate/loopgate/engine/decision"
)

func ptr[T any](v T) *T { return &v }

// testEvent is a decision shaped like the pipeline's: even i opens for a
// matched person, odd i denies an unknown face.
func testEvent(i int) decision.Event {
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	e := decision.Event{
		ID:         fmt.Sprintf("north-1/cam-a/%d/%d", i, t0.UnixNano()),
		Gate:       "north-1",
		Lane:       "a",
		Camera:     "cam-a",
		TrackID:    int64(i),
		Threshold:  0.6,
		FramesUsed: 3,
		FramesSeen: 5,
		FirstSeen:  t0.Add(-400 * time.Millisecond),
		DecidedAt:  t0,
		SkippedFrames: map[string]int{
			"blur": 2,
		},
		Timings: decision.Timings{DetectMS: 21.5, QualityMS: 1.5, EmbedMS: 160, SearchMS: 2.5, CaptureToDecisionMS: 95},
	}
	if i%2 == 0 {
		e.Decision, e.Reason = decision.Open, decision.Matched
		e.Person = &decision.Person{ID: int64(100 + i), ExternalID: fmt.Sprintf("E%03d", i), Name: "Ada Lovelace"}
		e.Distance, e.Margin = ptr(0.41), ptr(0.2)
	} else {
		e.Decision, e.Reason = decision.Deny, decision.UnknownFace
		e.Distance = ptr(0.72)
	}
	return e
}

func eventSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(decision.Schema()))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("event.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	return c.MustCompile("event.schema.json")
}

func validateEvent(t *testing.T, sch *jsonschema.Schema, raw []byte) {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("not JSON: %v: %s", err, raw)
	}
	if err := sch.Validate(inst); err != nil {
		t.Errorf("event does not match the schema: %v\n%s", err, raw)
	}
}

// waitFor polls cond; the deadline only detects a hang, it asserts no speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// counter reads a counter's or gauge's current value.
func counter(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// testLogger writes to the test's output (shown with -v or on failure).
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newTestMetrics(t *testing.T) *Metrics {
	t.Helper()
	return NewMetrics(prometheus.NewPedanticRegistry())
}
