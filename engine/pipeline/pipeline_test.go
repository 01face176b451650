package pipeline

import (
	"context"
	"image"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/decision"
	"github.com/loopgate/loopgate/engine/detect"
	"github.com/loopgate/loopgate/engine/fuse"
	"github.com/loopgate/loopgate/engine/quality"
	"github.com/loopgate/loopgate/engine/track"
	"github.com/loopgate/loopgate/engine/vision"
	"github.com/loopgate/loopgate/internal/testenv"
)

// blackFrames is a covered camera: n black 1280x720 frames at 25 fps.
type blackFrames struct {
	n, i int
	t0   time.Time
}

func (b *blackFrames) Name() string { return "covered" }
func (b *blackFrames) Next(ctx context.Context) (vision.Frame, error) {
	if b.i == b.n {
		return vision.Frame{}, io.EOF
	}
	b.i++
	m := gocv.NewMatWithSize(720, 1280, gocv.MatTypeCV8UC3)
	return vision.Frame{Camera: "covered", Seq: int64(b.i), Captured: b.t0.Add(time.Duration(b.i) * 40 * time.Millisecond), Mat: m}, nil
}

type noEmbed struct{ t *testing.T }

func (e noEmbed) EmbedFace(gocv.Mat, image.Rectangle) (engine.Embedding, error) {
	e.t.Error("embedder called on a black frame")
	return engine.Embedding{}, engine.ErrNoFace
}

type noSearch struct{ t *testing.T }

func (s noSearch) NearestPeople(context.Context, engine.Embedding, string, []string, int) ([]engine.PersonMatch, error) {
	s.t.Error("gallery searched for a black frame")
	return nil, nil
}
func (s noSearch) PersonDistance(context.Context, engine.Embedding, string, string) (engine.PersonMatch, error) {
	s.t.Error("gallery searched for a black frame")
	return engine.PersonMatch{}, nil
}

type events struct {
	mu sync.Mutex
	ev []decision.Event
}

func (e *events) Name() string           { return "test" }
func (e *events) Close() error           { return nil }
func (e *events) Send(ev decision.Event) { e.mu.Lock(); e.ev = append(e.ev, ev); e.mu.Unlock() }

// TestCoveredCameraMakesNoDecisions: YuNet (the real model) reports large
// low-scoring boxes on black frames; they fail the quality gate, are never
// embedded or searched, and their tracks are dropped as noise instead of
// raising "no usable capture" denies.
func TestCoveredCameraMakesNoDecisions(t *testing.T) {
	det, err := detect.NewYuNet(filepath.Join(testenv.ModelDir(t), detect.ModelName), detect.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	sink := &events{}
	p, err := New(Config{
		Gate: "g", Scope: []string{"g"}, Model: "m",
		Rule:  fuse.Rule{Threshold: 0.45, Margin: 0.04, MinFrames: 3, MaxFrames: 8, ClaimThreshold: 0.5},
		Track: track.DefaultConfig, Quality: quality.Gate, MinTrackHits: 4,
	}, Deps{Embedder: noEmbed{t}, Searcher: noSearch{t}, Sink: sink, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.RunCamera(context.Background(), &blackFrames{n: 40, t0: time.Now()}, det, "a"); err != nil {
		t.Fatal(err)
	}
	faces := testutil.ToFloat64(m.Faces.WithLabelValues("covered"))
	discarded := testutil.ToFloat64(m.DiscardedTracks.WithLabelValues("covered"))
	t.Logf("40 black frames: %v detections, %v tracks discarded, %d decisions", faces, discarded, len(sink.ev))
	if faces == 0 {
		t.Fatal("YuNet reported no box on black frames: this test no longer exercises the noise rule")
	}
	if len(sink.ev) != 0 || discarded == 0 {
		t.Fatalf("decisions %+v, discarded %v: want none and at least one discarded", sink.ev, discarded)
	}
	if got := testutil.ToFloat64(m.Frames.WithLabelValues("covered")); got != 40 {
		t.Fatalf("frames processed %v, want 40", got)
	}
}
