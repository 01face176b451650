package node

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loopgate/loopgate/camera/synth"
	"github.com/loopgate/loopgate/engine/decision"
	"github.com/loopgate/loopgate/internal/testenv"
	"github.com/loopgate/loopgate/internal/walkfixture"
)

// collector is a decision sink that keeps every event for assertions.
type collector struct {
	mu     sync.Mutex
	events []decision.Event
}

func (c *collector) Name() string { return "test" }
func (c *collector) Send(e decision.Event) {
	c.mu.Lock()
	c.events = append(c.events, e)
	c.mu.Unlock()
}
func (c *collector) Close() error { return nil }
func (c *collector) all() []decision.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}

type walkFixture = walkfixture.Fixture

const testGate = walkfixture.Gate

// vetMargin keeps test walkers' photo pairs this far inside the fused
// threshold: the walk frames are the walk photo scaled, blurred and
// composited, which moves its embedding by up to about 0.05 at the sizes
// the quality gate admits (engine/quality/THRESHOLDS.md measures drift).
const vetMargin = 0.05

var walkerID = walkfixture.WalkerID

func vettedWalkers(t *testing.T, enrolled, strangers int, seed int64) []synth.Walker {
	return walkfixture.Vetted(t, enrolled, strangers, seed, DefaultFusion.Threshold-vetMargin)
}

func newWalkFixture(t *testing.T, cfg synth.Config, enrolled, strangers, revoke int) *walkFixture {
	return walkfixture.New(t, cfg, vettedWalkers(t, enrolled, strangers, cfg.Seed), revoke)
}

func testConfig(t *testing.T, fx *walkFixture, fast bool) Config {
	cfg := Defaults()
	cfg.Gate = testGate
	cfg.Zones = []string{"bridge1"}
	cfg.Database.URL = fx.DBURL
	cfg.Models.Dir = testenv.ModelDir(t)
	cfg.Cameras = []CameraConfig{{Name: "lane-a", URI: fx.Clip, Lane: "a", Fast: fast}}
	cfg.Sinks.Stdout = false
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// run runs a node over the clip to its end and returns the decisions.
func runNode(t *testing.T, cfg Config) ([]decision.Event, *Node) {
	t.Helper()
	col := &collector{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n, err := New(ctx, cfg, Options{Sinks: []decision.Sink{col}, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Run(ctx); err != nil {
		t.Fatal(err)
	}
	n.sinks.Close() // flush before assertions (Close is idempotent)
	t.Cleanup(func() { n.Close() })
	return col.all(), n
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// matchWalkers assigns each decision to the walker whose frames it covers
// (first seen within the walker's frames) and checks the exact outcome.
func checkDecisions(t *testing.T, fx *walkFixture, events []decision.Event, start time.Time, realtime bool) {
	t.Helper()
	for _, e := range events {
		t.Logf("decision %s/%s person=%v distance=%v margin=%v frames=%d/%d skipped=%v first_seen=%s capture→decision=%.1f ms first_quality→decision=%.0f ms",
			e.Decision, e.Reason, personOf(e), fmtPtr(e.Distance), fmtPtr(e.Margin), e.FramesUsed, e.FramesSeen, e.SkippedFrames,
			sinceStart(e.FirstSeen, start), e.Timings.CaptureToDecisionMS, e.Timings.FirstQualityToDecisionMS)
		if e.Decision == decision.Open {
			if e.Person == nil || e.Distance == nil || *e.Distance > e.Threshold {
				t.Errorf("open without a person within the threshold: %+v", e)
			}
		}
	}
	man := fx.Manifest
	type want struct {
		w       synth.WalkerTruth
		outcome decision.Outcome
		reason  decision.Reason
	}
	var wants []want
	for _, w := range man.Walkers {
		switch {
		case !w.Enrolled:
			wants = append(wants, want{w, decision.Deny, decision.UnknownFace})
		case fx.Revoked[walkerID(w)]:
			wants = append(wants, want{w, decision.Deny, decision.Revoked})
		default:
			wants = append(wants, want{w, decision.Open, decision.Matched})
		}
	}
	if len(events) != len(wants) {
		t.Fatalf("%d decisions for %d walkers", len(events), len(wants))
	}
	// Walkers of one lane come one after another, and so do their
	// decisions; two lanes are matched by person.
	sort.Slice(events, func(i, j int) bool { return events[i].FirstSeen.Before(events[j].FirstSeen) })
	sort.Slice(wants, func(i, j int) bool { return wants[i].w.FirstFrame < wants[j].w.FirstFrame })
	used := make([]bool, len(events))
	for _, w := range wants {
		found := -1
		for i, e := range events {
			if used[i] || e.Decision != w.outcome || e.Reason != w.reason {
				continue
			}
			if w.outcome == decision.Deny && w.reason == decision.UnknownFace {
				found = i
				break
			}
			if e.Person != nil && e.Person.ExternalID == walkerID(w.w) {
				found = i
				break
			}
		}
		if found < 0 {
			t.Errorf("walker %s (%s, enrolled=%v): no %s/%s decision", w.w.ID, w.w.Name, w.w.Enrolled, w.outcome, w.reason)
			continue
		}
		used[found] = true
		e := events[found]
		// Decided before the walker's last visible frame: the time from
		// first sight to decision is within the walk.
		walk := time.Duration(float64(w.w.LastFrame-w.w.FirstFrame) / man.FPS * float64(time.Second))
		if took := e.DecidedAt.Sub(e.FirstSeen); realtime && w.outcome == decision.Open && took > walk {
			t.Errorf("walker %s decided %s after first sight, walk lasts %s", w.w.ID, took, walk)
		}
	}
}

func sinceStart(t, start time.Time) string {
	if start.IsZero() {
		return "-"
	}
	return t.Sub(start).Round(time.Millisecond).String()
}

func personOf(e decision.Event) string {
	if e.Person == nil {
		return "-"
	}
	return e.Person.ExternalID
}

func fmtPtr(f *float64) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%.3f", *f)
}

// TestWalkThroughSyntheticClip runs the node on a SYNTHETIC clip against
// the real database: each enrolled walker gets exactly one open with the
// right id, each stranger one deny, a revoked person a deny with that
// reason, and nothing else. The camera hands over every frame (fast mode),
// so the decisions do not depend on how loaded the test machine is; the
// clip at its own frame rate is TestWalkThroughRealtime's and the
// benchmark's (BenchmarkPipeline) subject.
func TestWalkThroughSyntheticClip(t *testing.T) {
	cfg := synth.DefaultConfig()
	cfg.Seed = 7
	fx := newWalkFixture(t, cfg, 4, 2, 1)
	events, _ := runNode(t, testConfig(t, fx, true))
	checkDecisions(t, fx, events, time.Time{}, false)
}

// TestWalkThroughTwoLanes: two walkers at once, side by side.
func TestWalkThroughTwoLanes(t *testing.T) {
	cfg := synth.DefaultConfig()
	cfg.Seed = 11
	cfg.TwoLanes = true
	fx := newWalkFixture(t, cfg, 3, 1, 0)
	events, _ := runNode(t, testConfig(t, fx, true))
	checkDecisions(t, fx, events, time.Time{}, false)
}

// TestWalkThroughRealtime plays the clip at its own 25 fps, as a camera
// delivers it (frames dropped when the engine is busy): the same exact
// decisions, and every open comes before the walker's last visible frame.
func TestWalkThroughRealtime(t *testing.T) {
	cfg := synth.DefaultConfig()
	cfg.Seed = 3
	fx := newWalkFixture(t, cfg, 2, 1, 0)
	start := time.Now()
	events, _ := runNode(t, testConfig(t, fx, false))
	checkDecisions(t, fx, events, start, true)
}
