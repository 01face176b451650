package benchmarks

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/loopgate/loopgate/benchmarks/accuracy"
	"github.com/loopgate/loopgate/camera/synth"
	"github.com/loopgate/loopgate/engine/decision"
	"github.com/loopgate/loopgate/engine/pipeline"
	"github.com/loopgate/loopgate/internal/testenv"
	"github.com/loopgate/loopgate/internal/walkfixture"
	"github.com/loopgate/loopgate/node"
)

// BenchmarkPipeline runs a whole gate node (camera → YuNet → quality →
// crop+go-face → pgvector → decision) over a SYNTHETIC walk-through clip of
// 3 enrolled walkers and 2 strangers, at 640x480 and 1280x720:
//   - realtime: the camera delivers frames at the clip's 25 fps and the
//     engine takes the newest (drops counted): per-stage and whole-frame
//     p50/p99, capture→decision and first-quality-frame→decision, and how
//     many enrolled walkers were decided before their last visible frame;
//   - fast: every frame is handed over as soon as the engine can take it:
//     sustained frames per second.
//
// Run: make bench, or go test -run '^$' -bench Pipeline -benchtime 1x ./benchmarks/
func BenchmarkPipeline(b *testing.B) {
	walkers := walkfixture.Vetted(b, 3, 2, 1, node.DefaultFusion.Threshold-0.05)
	for _, size := range [][2]int{{640, 480}, {1280, 720}} {
		cfg := synth.DefaultConfig()
		cfg.Width, cfg.Height = size[0], size[1]
		fx := walkfixture.New(b, cfg, walkers, 0)
		for _, fast := range []bool{false, true} {
			mode := "realtime"
			if fast {
				mode = "fast"
			}
			b.Run(fmt.Sprintf("%dx%d/%s", size[0], size[1], mode), func(b *testing.B) {
				for b.Loop() {
					r := runPipeline(b, fx, fast)
					frames := len(r.stage[pipeline.StageFrame])
					b.ReportMetric(float64(frames)/r.wall.Seconds(), "frames/s")
					b.ReportMetric(r.dropped, "dropped")
					b.ReportMetric(ms(accuracy.LatencyQuantile(r.stage[pipeline.StageFrame], 0.5)), "frame-p50-ms")
					b.ReportMetric(ms(accuracy.LatencyQuantile(r.stage[pipeline.StageFrame], 0.99)), "frame-p99-ms")
					b.ReportMetric(ms(accuracy.LatencyQuantile(r.stage[pipeline.StageDetect], 0.5)), "detect-p50-ms")
					b.ReportMetric(ms(accuracy.LatencyQuantile(r.stage[pipeline.StageEmbed], 0.5)), "embed-p50-ms")
					b.ReportMetric(ms(accuracy.LatencyQuantile(r.stage[pipeline.StageSearch], 0.5)), "search-p50-ms")
					if !fast {
						b.ReportMetric(ms(accuracy.LatencyQuantile(r.c2d, 0.5)), "capture-to-decision-p50-ms")
						b.ReportMetric(ms(accuracy.LatencyQuantile(r.c2d, 0.99)), "capture-to-decision-p99-ms")
						b.ReportMetric(ms(accuracy.LatencyQuantile(r.fq2d, 0.5)), "firstquality-to-decision-p50-ms")
						b.ReportMetric(float64(r.openedInTime), "enrolled-opened-in-time")
					}
					b.ReportMetric(float64(r.decisions), "decisions")
				}
			})
		}
	}
}

type pipelineRun struct {
	wall         time.Duration
	stage        map[string][]time.Duration
	c2d, fq2d    []time.Duration
	dropped      float64
	decisions    int
	openedInTime int
}

func runPipeline(b *testing.B, fx *walkfixture.Fixture, fast bool) pipelineRun {
	b.Helper()
	cfg := node.Defaults()
	cfg.Gate = walkfixture.Gate
	cfg.Database.URL = fx.DBURL
	cfg.Models.Dir = testenv.ModelDir(b)
	cfg.Cameras = []node.CameraConfig{{Name: "lane-a", URI: fx.Clip, Lane: "a", Fast: fast}}
	cfg.Sinks.Stdout, cfg.Sinks.Audit = false, false
	var mu sync.Mutex
	r := pipelineRun{stage: map[string][]time.Duration{}}
	var events []decision.Event
	ctx := context.Background()
	n, err := node.New(ctx, cfg, node.Options{
		Logger: slog.New(slog.DiscardHandler),
		Sinks:  []decision.Sink{sinkFunc(func(e decision.Event) { mu.Lock(); events = append(events, e); mu.Unlock() })},
		Observe: func(_, stage string, d time.Duration) {
			mu.Lock()
			r.stage[stage] = append(r.stage[stage], d)
			mu.Unlock()
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	start := time.Now()
	if err := n.Run(ctx); err != nil {
		b.Fatal(err)
	}
	r.wall = time.Since(start)
	n.Close()
	for _, c := range n.Cameras() {
		r.dropped += float64(c.Stats().FramesDropped)
	}
	mu.Lock()
	defer mu.Unlock()
	r.decisions = len(events)
	walk := time.Duration(float64(time.Second) * fx.Manifest.WalkSeconds)
	for _, e := range events {
		r.c2d = append(r.c2d, time.Duration(e.Timings.CaptureToDecisionMS*float64(time.Millisecond)))
		if e.FirstQuality != nil {
			r.fq2d = append(r.fq2d, time.Duration(e.Timings.FirstQualityToDecisionMS*float64(time.Millisecond)))
		}
		if e.Decision == decision.Open && e.DecidedAt.Sub(e.FirstSeen) <= walk {
			r.openedInTime++
		}
	}
	return r
}

type sinkFunc func(decision.Event)

func (f sinkFunc) Name() string          { return "bench" }
func (f sinkFunc) Send(e decision.Event) { f(e) }
func (f sinkFunc) Close() error          { return nil }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
