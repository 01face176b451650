package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/loopgate/loopgate/benchmarks/accuracy"
	"github.com/loopgate/loopgate/camera/synth"
	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/decision"
	"github.com/loopgate/loopgate/engine/pipeline"
	"github.com/loopgate/loopgate/enroll"
	"github.com/loopgate/loopgate/node"
	"github.com/loopgate/loopgate/server"
)

// The demo is the main job on an embedded default: a SYNTHETIC walk-through
// clip (LFW people walking toward a camera over a drawn footbridge), its
// enrolled walkers registered for the demo gate (one of them revoked), and
// `serve` watching the clip at its own frame rate. Each decision is printed
// as it happens against the clip's ground truth; a latency table follows.

const (
	demoGate     = "demo-gate"
	demoClipName = "demo-walk-synthetic-640x480.avi"
)

func runDemo(ctx context.Context, cfg Config, args []string) error {
	if len(args) > 0 && args[0] == "stills" {
		return runDemoStills(ctx, cfg, args[1:])
	}
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	clipDir := fs.String("clips", ".loopgate/clips", "where the synthetic demo clip is kept")
	httpAddr := fs.String("http", envOr("LOOPGATE_DEMO_HTTP", "127.0.0.1:8088"), "address for /live, /events and /metrics (empty: none)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v (or: demo stills)", errUsage, err)
	}
	clip := filepath.Join(*clipDir, demoClipName)
	if _, err := os.Stat(synth.ManifestPath(clip)); err != nil {
		fmt.Printf("== make the SYNTHETIC walk-through clip (first run only) ==\n")
		if err := runSynth(ctx, cfg, []string{"walk", "--out", *clipDir, "--name", demoClipName,
			"--enrolled", "4", "--strangers", "2", "--seed", "3",
			// The clip shows the pipeline, not the model's accuracy (that is
			// benchmarks/results/identify.md): walkers whose two photos the
			// model clearly matches at the gate's threshold.
			"--vet-threshold", fmt.Sprint(node.DefaultFusion.Threshold - 0.05)}); err != nil {
			return err
		}
		fmt.Println()
	}
	man, err := synth.ReadManifest(clip)
	if err != nil {
		return err
	}
	enrolled, revoked, err := demoEnrol(ctx, cfg, man)
	if err != nil {
		return err
	}

	ncfg := node.Defaults()
	ncfg.Gate = demoGate
	ncfg.Database.URL = cfg.DatabaseURL
	ncfg.Models.Dir = cfg.ModelDir
	ncfg.Cameras = []node.CameraConfig{{Name: "bridge-cam", URI: clip, Lane: "a"}}
	ncfg.Sinks.Stdout = false // the demo prints its own lines
	ncfg.HTTP.Addr = *httpAddr
	secret := ""
	if *httpAddr != "" {
		var hash string
		if secret, hash, err = server.NewTokenSecret(); err != nil {
			return err
		}
		ncfg.HTTP.Tokens = []node.TokenConfig{{Name: "demo-operator", SHA256: hash, Roles: []string{"operator"}}}
	}
	if err := ncfg.Validate(); err != nil {
		return err
	}
	printer := &demoPrinter{man: man, enrolled: enrolled, revoked: revoked, out: os.Stdout}
	stats := &stageStats{}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := node.New(ctx, ncfg, node.Options{Sinks: []decision.Sink{printer}, Observe: stats.observe, Logger: logger})
	if err != nil {
		return err
	}
	defer n.Close()
	fmt.Printf("== serve: gate %q, camera reads %s at its own frame rate (%d frames, %.0f fps, %dx%d) ==\n",
		demoGate, clip, man.Frames, man.FPS, man.Width, man.Height)
	fmt.Printf("   fusion: threshold %.2f, margin %.2f, %d-%d quality frames; model %s\n",
		ncfg.Fusion.Threshold, ncfg.Fusion.Margin, ncfg.Fusion.MinFrames, ncfg.Fusion.MaxFrames, n.ModelTag())
	if addr := n.Addr(); addr != "" {
		fmt.Printf("   watch it live: http://%s/live  (log in with the one-time operator token %s)\n", addr, secret)
		fmt.Printf("   metrics: http://%s/metrics\n", addr)
	}
	fmt.Println()
	printer.start = time.Now()
	if err := n.Run(ctx); err != nil {
		return err
	}
	n.Close() // flushes the sinks, so every decision has been printed
	printer.summary(n, stats)
	return nil
}

// demoEnrol registers the clip's enrolled walkers for the demo gate and
// revokes the last one, so the demo shows every kind of decision. A photo
// the enrolment quality gate refuses is reported, and that walker then
// walks as a stranger. It is idempotent: a second run stores nothing new.
func demoEnrol(ctx context.Context, cfg Config, man synth.Manifest) (enrolled, revoked map[string]bool, err error) {
	a, err := openApp(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	defer a.Close()
	fmt.Printf("== enrol the clip's walkers for gate %q (one photo each, not the one they walk with) ==\n", demoGate)
	var ids []string
	for _, w := range man.Walkers {
		if !w.Enrolled {
			continue
		}
		id := demoID(w)
		data, err := readBounded(w.EnrolPhoto, int64(engine.DefaultImageLimits.MaxBytes))
		if err != nil {
			return nil, nil, err
		}
		res, err := a.enroller.Enrol(ctx, enroll.Request{ExternalID: id, Name: demoName(w), Source: "demo", Operator: "demo",
			Gates: []string{demoGate}, Photos: []enroll.Photo{{Name: w.EnrolPhoto, Data: data}}})
		var rej *enroll.RejectedError
		if errors.As(err, &rej) {
			fmt.Printf("  %-30s REFUSED by the enrolment quality gate: %v\n  %-30s walks as a stranger\n", id, rej.Photos[0].Err, "")
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("enrol %s: %w", id, err)
		}
		fmt.Printf("  %-30s %-26q %d template(s) added, %d already enrolled\n", id, demoName(w), res.Stored.Added, res.Stored.AlreadyEnrolled)
		ids = append(ids, id)
	}
	enrolled = map[string]bool{}
	for _, id := range ids {
		enrolled[id] = true
	}
	revoked = map[string]bool{}
	if len(ids) > 1 {
		last := ids[len(ids)-1]
		if err := a.gallery.Reinstate(ctx, last); err != nil {
			return nil, nil, err
		}
		if err := a.gallery.Revoke(ctx, last, "demo: badge reported lost"); err != nil {
			return nil, nil, err
		}
		revoked[last] = true
		fmt.Printf("  revoked %s (demo: badge reported lost): the gate must deny them with that reason\n", last)
	}
	st, err := a.gallery.Stats(ctx)
	if err != nil {
		return nil, nil, err
	}
	fmt.Printf("  database: %d people, %d templates in all; the gate searches only those registered for it\n\n", st.People, st.Templates)
	return enrolled, revoked, nil
}

func demoID(w synth.WalkerTruth) string   { return "lfw-" + w.Name }
func demoName(w synth.WalkerTruth) string { return strings.ReplaceAll(w.Name, "_", " ") }

// demoPrinter prints each decision as it happens with what the clip's
// ground truth expected.
type demoPrinter struct {
	man      synth.Manifest
	enrolled map[string]bool // walkers whose enrolment was accepted
	revoked  map[string]bool
	out      io.Writer
	start    time.Time

	mu      sync.Mutex
	events  []decision.Event
	correct int
	wrong   []string
}

func (p *demoPrinter) Name() string { return "demo" }
func (p *demoPrinter) Close() error { return nil }

// walkerAt is the walker in view at clip time t (single-lane clip).
func (p *demoPrinter) walkerAt(t time.Duration) (synth.WalkerTruth, bool) {
	sec := t.Seconds()
	for _, w := range p.man.Walkers {
		if sec >= float64(w.FirstFrame)/p.man.FPS-0.5 && sec <= float64(w.LastFrame)/p.man.FPS+0.5 {
			return w, true
		}
	}
	return synth.WalkerTruth{}, false
}

func (p *demoPrinter) Send(e decision.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, e)
	at := e.FirstSeen.Sub(p.start)
	w, ok := p.walkerAt(at)
	want := "nobody in view"
	if ok {
		switch {
		case !p.enrolled[demoID(w)]:
			want = "deny (stranger " + w.Name + ")"
		case p.revoked[demoID(w)]:
			want = "deny revoked " + demoID(w)
		default:
			want = "open " + demoID(w)
		}
	}
	got := string(e.Decision)
	if e.Decision == decision.Open || e.Reason == decision.Revoked {
		got += " " + e.Person.ExternalID
		if e.Decision == decision.Deny {
			got = "deny revoked " + e.Person.ExternalID
		}
	} else {
		got += " (" + string(e.Reason) + ")"
	}
	verdict := "✓"
	switch {
	case !ok:
		verdict = "✗ no walker in view"
	case !p.enrolled[demoID(w)] && e.Decision == decision.Deny:
	case p.enrolled[demoID(w)] && !p.revoked[demoID(w)] && e.Decision == decision.Open && e.Person.ExternalID == demoID(w):
	case p.revoked[demoID(w)] && e.Reason == decision.Revoked && e.Person.ExternalID == demoID(w):
	default:
		verdict = "✗"
		if e.Decision == decision.Open {
			verdict = "✗ FALSE OPEN"
		}
	}
	if strings.HasPrefix(verdict, "✓") {
		p.correct++
	} else {
		p.wrong = append(p.wrong, fmt.Sprintf("%s at %.1f s: got %s, want %s", w.ID, at.Seconds(), got, want))
	}
	dist := "-"
	if e.Distance != nil {
		dist = fmt.Sprintf("%.3f", *e.Distance)
	}
	fmt.Fprintf(p.out, "  %6.2f s  track %-4d %-44s dist %-5s frames %2d/%-3d decided %4.0f ms after 1st quality frame, capture→decision %5.1f ms  want %-36s %s\n",
		at.Seconds(), e.TrackID%1_000_000, strings.ToUpper(got[:4])+got[4:], dist, e.FramesUsed, e.FramesSeen,
		e.Timings.FirstQualityToDecisionMS, e.Timings.CaptureToDecisionMS, want, verdict)
}

func (p *demoPrinter) summary(n *node.Node, stats *stageStats) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Printf("\n%d decisions for %d walkers, %d as the ground truth says\n", len(p.events), len(p.man.Walkers), p.correct)
	for _, w := range p.wrong {
		fmt.Printf("  ✗ %s\n", w)
	}
	if missing := len(p.man.Walkers) - len(p.events); missing > 0 {
		fmt.Printf("  ✗ %d walker(s) got no decision\n", missing)
	}
	for _, c := range n.Cameras() {
		st := c.Stats()
		fmt.Printf("camera %s: %d frames read, %d dropped while the engine was busy (newest frame wins)\n", c.Name(), st.FramesRead, st.FramesDropped)
	}
	var c2d, fq2d []time.Duration
	for _, e := range p.events {
		c2d = append(c2d, time.Duration(e.Timings.CaptureToDecisionMS*float64(time.Millisecond)))
		if e.FirstQuality != nil {
			fq2d = append(fq2d, time.Duration(e.Timings.FirstQualityToDecisionMS*float64(time.Millisecond)))
		}
	}
	fmt.Printf("\nlatency on this machine (%s):\n", "measured in this run")
	fmt.Printf("  %-34s %6s %9s %9s %9s\n", "stage", "n", "p50", "p99", "max")
	for _, s := range []string{pipeline.StageDecode, pipeline.StageDetect, pipeline.StageQuality, pipeline.StageEmbed, pipeline.StageSearch, pipeline.StageFrame} {
		printQuantiles(s+stageUnit[s], stats.get(s))
	}
	printQuantiles("capture → decision", c2d)
	printQuantiles("first quality frame → decision", fq2d)
}

var stageUnit = map[string]string{
	pipeline.StageDecode: " (per frame)", pipeline.StageDetect: " (YuNet, per frame)", pipeline.StageQuality: " (per face)",
	pipeline.StageEmbed: " (crop+go-face, per face)", pipeline.StageSearch: " (in-memory copy, per query)", pipeline.StageFrame: " (whole frame)",
}

func printQuantiles(name string, ds []time.Duration) {
	if len(ds) == 0 {
		fmt.Printf("  %-34s %6d %9s %9s %9s\n", name, 0, "-", "-", "-")
		return
	}
	fmt.Printf("  %-34s %6d %9s %9s %9s\n", name, len(ds), ms(accuracy.LatencyQuantile(ds, 0.5)),
		ms(accuracy.LatencyQuantile(ds, 0.99)), ms(slices.Max(ds)))
}

// stageStats keeps every stage time of a run (the demo is short).
type stageStats struct {
	mu sync.Mutex
	by map[string][]time.Duration
}

func (s *stageStats) observe(_, stage string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.by == nil {
		s.by = map[string][]time.Duration{}
	}
	s.by[stage] = append(s.by[stage], d)
}

func (s *stageStats) get(stage string) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.by[stage])
}
