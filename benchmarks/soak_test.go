package benchmarks

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/loopgate/loopgate/benchmarks/accuracy"
	"github.com/loopgate/loopgate/camera/synth"
	"github.com/loopgate/loopgate/engine/decision"
	"github.com/loopgate/loopgate/internal/testenv"
	"github.com/loopgate/loopgate/internal/walkfixture"
	"github.com/loopgate/loopgate/node"
	"github.com/loopgate/loopgate/sink"
)

// Soak run settings. LOOPGATE_SOAK sets the length (a Go duration); the
// default is short enough for CI. A run given LOOPGATE_SOAK writes its
// report to results/soak.md (LOOPGATE_SOAK_OUT: another directory).
const (
	defaultSoak = 45 * time.Second
	// Above this length the node is sampled every soakEvery; shorter runs
	// take 15 samples.
	soakLong  = 5 * time.Minute
	soakEvery = 10 * time.Second
	// Flatness, after the warm-up: the mean of the last third of the samples
	// against the mean of the first third.
	soakMaxRSSGrowth  = 0.10
	soakMaxGoroutines = 5
	soakMaxFDs        = 5
)

// soakSample is the process and the node at one moment.
type soakSample struct {
	At              time.Duration
	HeapInuse       uint64 // bytes, after a forced GC: the live Go heap
	RSS             uint64 // bytes, /proc/self/status VmRSS: Go heap, cgo (OpenCV, dlib), stacks
	Goroutines      int
	FDs             int
	FramesRead      float64 // loopgate_camera_frames_total
	FramesProcessed float64 // loopgate_pipeline_frames_processed_total
	FramesDropped   float64 // loopgate_camera_frames_dropped_total
	Decisions       int
	Load1           float64 // /proc/loadavg, 1 minute
}

// soakSink counts decisions and checks each open against the ground truth.
type soakSink struct {
	mu        sync.Mutex
	byOutcome map[string]int
	wrongOpen []string
	ids       map[string]bool
	canOpen   map[string]bool
}

func (s *soakSink) Name() string { return "soak" }
func (s *soakSink) Close() error { return nil }
func (s *soakSink) Send(e decision.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byOutcome[string(e.Decision)+"/"+string(e.Reason)]++
	s.ids[e.ID] = true
	if e.Decision == decision.Open && (e.Person == nil || !s.canOpen[e.Person.ExternalID]) {
		s.wrongOpen = append(s.wrongOpen, e.ID)
	}
}

func (s *soakSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

// TestSoak runs a real gate node (camera → YuNet → quality → go-face →
// pgvector → audit table, webhook, HTTP side with /live frames) on a
// LOOPING SYNTHETIC walk-through clip at its own 25 fps for LOOPGATE_SOAK
// (default 45 s), sampling the process: Go heap in use, RSS (cgo memory
// counts there), goroutines, open file descriptors, frames and decisions.
// After a warm-up (a minute, or a third of a short run) the last third of
// the samples must not have grown over the first third: RSS by at most
// 10%, goroutines and descriptors by at most 5. Every decision must reach
// the webhook receiver and the audit table, and the gate must open only
// for the enrolled, unrevoked walkers.
//
//	LOOPGATE_SOAK=10m go test -count=1 -run '^TestSoak$' -timeout 30m -v ./benchmarks/
func TestSoak(t *testing.T) {
	length := defaultSoak
	report := false
	if v := os.Getenv("LOOPGATE_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 15*time.Second {
			t.Fatalf("LOOPGATE_SOAK=%q: want a duration of at least 15s", v)
		}
		length, report = d, true
	}
	every := soakEvery
	if length < soakLong {
		every = max(time.Second, length/15)
	}
	warmup := min(time.Minute, length/3)

	walkers := walkfixture.Vetted(t, 3, 2, 1, node.DefaultFusion.Threshold-0.05)
	clip := synth.DefaultConfig()
	fx := walkfixture.New(t, clip, walkers, 1)
	canOpen := map[string]bool{}
	for _, w := range fx.Manifest.Walkers {
		if w.Enrolled && !fx.Revoked[walkfixture.WalkerID(w)] {
			canOpen[walkfixture.WalkerID(w)] = true
		}
	}

	// The gate controller: counts each Idempotency-Key it is sent.
	var hookMu sync.Mutex
	hooked := map[string]int{}
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		hookMu.Lock()
		hooked[r.Header.Get(sink.IdempotencyHeader)]++
		hookMu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()

	cfg := node.Defaults()
	cfg.Gate = walkfixture.Gate
	cfg.Database.URL = fx.DBURL
	cfg.Models.Dir = testenv.ModelDir(t)
	cfg.Cameras = []node.CameraConfig{{Name: "lane-a", URI: fx.Clip, Lane: "a", Loop: true}}
	cfg.Sinks.Stdout = false
	cfg.Sinks.Audit = true
	cfg.Sinks.Webhook = &node.WebhookConfig{URL: receiver.URL + "/decisions"}
	cfg.HTTP.Addr = "127.0.0.1:0"
	logs := &soakLogs{counts: map[string]int{}}
	dec := &soakSink{byOutcome: map[string]int{}, ids: map[string]bool{}, canOpen: canOpen}
	ctx, cancel := context.WithTimeout(context.Background(), length+5*time.Minute)
	defer cancel()
	n, err := node.New(ctx, cfg, node.Options{
		Logger: slog.New(logs),
		Sinks:  []decision.Sink{dec},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	reg := n.Registry()

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- n.Run(runCtx) }()
	var samples []soakSample
	scrapeErrs := 0
	for tick := time.Duration(0); tick <= length; tick += every {
		if wait := time.Until(start.Add(tick)); wait > 0 {
			select {
			case <-time.After(wait):
			case err := <-done:
				t.Fatalf("node stopped after %s: %v", time.Since(start).Round(time.Second), err)
			}
		}
		// /metrics as Prometheus scrapes it, to keep the HTTP side busy too.
		if resp, err := http.Get("http://" + n.Addr() + "/metrics"); err != nil || resp.StatusCode != http.StatusOK {
			scrapeErrs++
		} else {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		s := sampleSoak(t, reg, dec)
		s.At = time.Since(start)
		samples = append(samples, s)
		t.Logf("%s", soakRow(s))
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	wall := time.Since(start)
	if err := n.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}

	// Nothing lost on the way out: each decision at the webhook receiver
	// and in the audit table.
	dec.mu.Lock()
	ids := make([]string, 0, len(dec.ids))
	for id := range dec.ids {
		ids = append(ids, id)
	}
	byOutcome := dec.byOutcome
	wrongOpen := dec.wrongOpen
	dec.mu.Unlock()
	hookMu.Lock()
	missingHook := 0
	for _, id := range ids {
		if hooked[id] == 0 {
			missingHook++
		}
	}
	hookMu.Unlock()
	stored, err := auditRows(ctx, fx.DBURL, ids)
	if err != nil {
		t.Fatal(err)
	}

	res := soakResult{
		Length: length, Every: every, Warmup: warmup, Wall: wall, Samples: samples,
		ClipFrames: fx.Manifest.Frames, ClipFPS: fx.Manifest.FPS, Walkers: soakWalkers(fx),
		ByOutcome: byOutcome, WrongOpens: len(wrongOpen), Decisions: len(ids),
		MissingWebhook: missingHook, MissingAudit: len(ids) - stored, ScrapeErrors: scrapeErrs,
		Logs: logs.snapshot(),
	}
	res.judge()
	for _, line := range strings.Split(res.summary(), "\n") {
		t.Log(line)
	}
	if report {
		dir := os.Getenv("LOOPGATE_SOAK_OUT")
		if dir == "" {
			dir = "results"
		}
		path := filepath.Join(dir, "soak.md")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(res.markdown(accuracy.DescribeMachine())), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("report: %s", path)
	}

	if len(res.post) < 3 {
		t.Fatalf("%d samples after the warm-up: too few to judge", len(res.post))
	}
	for _, f := range res.failures {
		t.Error(f)
	}
	if res.Decisions == 0 || samples[len(samples)-1].FramesProcessed == 0 {
		t.Errorf("the node decided %d times on %.0f frames: it did not work", res.Decisions, samples[len(samples)-1].FramesProcessed)
	}
	if len(wrongOpen) > 0 {
		t.Errorf("the gate opened for someone it must not: %v", wrongOpen)
	}
	if missingHook > 0 || res.MissingAudit != 0 {
		t.Errorf("of %d decisions, %d never reached the webhook and %d are not in the audit table", len(ids), missingHook, res.MissingAudit)
	}
	if scrapeErrs > 0 {
		t.Errorf("%d /metrics scrapes failed", scrapeErrs)
	}
}

// soakLogs counts the node's WARN and ERROR records by level and message.
type soakLogs struct {
	mu     sync.Mutex
	counts map[string]int
}

func (l *soakLogs) Enabled(_ context.Context, lvl slog.Level) bool { return lvl >= slog.LevelWarn }
func (l *soakLogs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.counts[r.Level.String()+" "+r.Message]++
	l.mu.Unlock()
	return nil
}
func (l *soakLogs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *soakLogs) WithGroup(string) slog.Handler      { return l }

func (l *soakLogs) snapshot() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.counts))
	for k, v := range l.counts {
		out[k] = v
	}
	return out
}

// soakWalkers says who walks in the clip.
func soakWalkers(fx *walkfixture.Fixture) string {
	var open, revoked, strangers int
	for _, w := range fx.Manifest.Walkers {
		switch {
		case !w.Enrolled:
			strangers++
		case fx.Revoked[walkfixture.WalkerID(w)]:
			revoked++
		default:
			open++
		}
	}
	return fmt.Sprintf("%d walkers: %d enrolled, %d enrolled and revoked, %d strangers", len(fx.Manifest.Walkers), open, revoked, strangers)
}

// sampleSoak reads the process and the node now.
func sampleSoak(t *testing.T, reg *prometheus.Registry, dec *soakSink) soakSample {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := soakSample{HeapInuse: ms.HeapInuse, Goroutines: runtime.NumGoroutine(), Decisions: dec.count()}
	var err error
	if s.RSS, err = vmRSS(); err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	s.FDs = len(fds)
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			s.Load1, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		total := 0.0
		for _, m := range f.GetMetric() {
			total += m.GetCounter().GetValue()
		}
		switch f.GetName() {
		case "loopgate_camera_frames_total":
			s.FramesRead = total
		case "loopgate_camera_frames_dropped_total":
			s.FramesDropped = total
		case "loopgate_pipeline_frames_processed_total":
			s.FramesProcessed = total
		}
	}
	return s
}

// vmRSS is this process's resident set from /proc/self/status, in bytes.
func vmRSS() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", v, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/self/status: %v", sc.Err())
}

// auditRows counts how many of ids the decisions table holds.
func auditRows(ctx context.Context, url string, ids []string) (int, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM decisions WHERE event_id = ANY($1)`, ids).Scan(&n)
	return n, err
}

// soakResult is a finished run and its verdict.
type soakResult struct {
	Length, Every, Warmup, Wall time.Duration
	Samples                     []soakSample
	ClipFrames                  int
	ClipFPS                     float64
	Walkers                     string // who walks in the clip
	ByOutcome                   map[string]int
	Decisions, WrongOpens       int
	MissingWebhook              int
	MissingAudit                int
	ScrapeErrors                int
	Logs                        map[string]int // WARN and ERROR records by level and message

	post                   []soakSample // after the warm-up
	first, last            soakMean
	rssGrowth              float64
	goroutineDiff, fdDiff  float64
	failures               []string
	load1Min, load1Max     float64
	processedFPS, dropRate float64
}

type soakMean struct{ rss, heap, goroutines, fds float64 }

func meanOf(ss []soakSample) soakMean {
	var m soakMean
	for _, s := range ss {
		m.rss += float64(s.RSS)
		m.heap += float64(s.HeapInuse)
		m.goroutines += float64(s.Goroutines)
		m.fds += float64(s.FDs)
	}
	k := float64(len(ss))
	return soakMean{m.rss / k, m.heap / k, m.goroutines / k, m.fds / k}
}

// judge compares the first and last thirds of the post-warm-up samples.
func (r *soakResult) judge() {
	for _, s := range r.Samples {
		if s.At >= r.Warmup {
			r.post = append(r.post, s)
		}
	}
	r.load1Min, r.load1Max = r.Samples[0].Load1, r.Samples[0].Load1
	for _, s := range r.Samples {
		r.load1Min, r.load1Max = min(r.load1Min, s.Load1), max(r.load1Max, s.Load1)
	}
	end := r.Samples[len(r.Samples)-1]
	if secs := end.At.Seconds(); secs > 0 {
		r.processedFPS = end.FramesProcessed / secs
	}
	if end.FramesRead > 0 {
		r.dropRate = end.FramesDropped / end.FramesRead
	}
	if len(r.post) < 3 {
		return
	}
	third := len(r.post) / 3
	r.first, r.last = meanOf(r.post[:third]), meanOf(r.post[len(r.post)-third:])
	r.rssGrowth = r.last.rss/r.first.rss - 1
	r.goroutineDiff = r.last.goroutines - r.first.goroutines
	r.fdDiff = r.last.fds - r.first.fds
	if r.rssGrowth > soakMaxRSSGrowth {
		r.failures = append(r.failures, fmt.Sprintf("RSS grew %.1f%% (%.1f → %.1f MiB), more than %.0f%%",
			100*r.rssGrowth, r.first.rss/mib, r.last.rss/mib, 100*soakMaxRSSGrowth))
	}
	if r.goroutineDiff > soakMaxGoroutines || r.goroutineDiff < -soakMaxGoroutines {
		r.failures = append(r.failures, fmt.Sprintf("goroutines moved by %.1f (%.1f → %.1f), more than ±%d",
			r.goroutineDiff, r.first.goroutines, r.last.goroutines, soakMaxGoroutines))
	}
	if r.fdDiff > soakMaxFDs || r.fdDiff < -soakMaxFDs {
		r.failures = append(r.failures, fmt.Sprintf("open descriptors moved by %.1f (%.1f → %.1f), more than ±%d",
			r.fdDiff, r.first.fds, r.last.fds, soakMaxFDs))
	}
}

const mib = 1 << 20

func soakRow(s soakSample) string {
	return fmt.Sprintf("| %s | %.1f | %.1f | %d | %d | %.0f | %.0f | %.0f | %d | %.2f |",
		s.At.Round(time.Second), float64(s.HeapInuse)/mib, float64(s.RSS)/mib, s.Goroutines, s.FDs,
		s.FramesRead, s.FramesProcessed, s.FramesDropped, s.Decisions, s.Load1)
}

const soakHeader = "| t | heap in use (MiB) | RSS (MiB) | goroutines | open fds | frames read | frames processed | frames dropped | decisions | load 1 min |\n|---|---|---|---|---|---|---|---|---|---|\n"

func (r *soakResult) summary() string {
	var b strings.Builder
	verdict := "FLAT"
	if len(r.failures) > 0 {
		verdict = "NOT FLAT: " + strings.Join(r.failures, "; ")
	}
	fmt.Fprintf(&b, "soak %s (wall %s), sampled every %s, warm-up %s: %s\n", r.Length, r.Wall.Round(time.Second), r.Every, r.Warmup, verdict)
	if len(r.post) >= 3 {
		fmt.Fprintf(&b, "first third after warm-up → last third (means): RSS %.1f → %.1f MiB (%+.1f%%), heap in use %.1f → %.1f MiB, goroutines %.1f → %.1f, open fds %.1f → %.1f\n",
			r.first.rss/mib, r.last.rss/mib, 100*r.rssGrowth, r.first.heap/mib, r.last.heap/mib,
			r.first.goroutines, r.last.goroutines, r.first.fds, r.last.fds)
	}
	end := r.Samples[len(r.Samples)-1]
	fmt.Fprintf(&b, "frames read %.0f (%.1f clip loops of %d), processed %.0f (%.1f fps of the clip's %.0f), dropped %.0f (%.1f%%); load average 1 min %.2f-%.2f on %d cores\n",
		end.FramesRead, end.FramesRead/float64(r.ClipFrames), r.ClipFrames, end.FramesProcessed, r.processedFPS, r.ClipFPS,
		end.FramesDropped, 100*r.dropRate, r.load1Min, r.load1Max, runtime.NumCPU())
	fmt.Fprintf(&b, "log records: %s\n", r.logSummary())
	fmt.Fprintf(&b, "decisions %d (%s); opens for someone not enrolled or revoked: %d; missing at the webhook: %d, in the audit table: %d; failed /metrics scrapes: %d",
		r.Decisions, r.outcomes(), r.WrongOpens, r.MissingWebhook, r.MissingAudit, r.ScrapeErrors)
	return b.String()
}

func (r *soakResult) logSummary() string {
	if len(r.Logs) == 0 {
		return "no WARN or ERROR"
	}
	keys := make([]string, 0, len(r.Logs))
	for k := range r.Logs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%dx %q", r.Logs[k], k))
	}
	return strings.Join(parts, ", ")
}

func (r *soakResult) outcomes() string {
	keys := make([]string, 0, len(r.ByOutcome))
	for k := range r.ByOutcome {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, r.ByOutcome[k]))
	}
	return strings.Join(parts, ", ")
}

func (r *soakResult) markdown(m accuracy.Machine) string {
	var b strings.Builder
	b.WriteString("# Soak: a gate node on a looping clip\n\n")
	fmt.Fprintf(&b, "Generated by `LOOPGATE_SOAK=%s go test -count=1 -run '^TestSoak$' -timeout 30m -v ./benchmarks/` (benchmarks/soak_test.go). ", r.Length)
	fmt.Fprintf(&b, "A whole gate node (camera → YuNet → quality → go-face → pgvector → decision → audit table, webhook to a local receiver, HTTP side with `/live` frames at 5 fps and `/metrics` scraped at every sample) runs on a SYNTHETIC walk-through clip (%s; %d frames, 640x480) played in a loop at its own %.0f fps, for %s. ",
		r.Walkers, r.ClipFrames, r.ClipFPS, r.Length)
	fmt.Fprintf(&b, "Every %s the test forces a GC and records the Go heap in use, the process's RSS (`VmRSS` in /proc/self/status, which includes OpenCV's and dlib's C++ memory), goroutines, open file descriptors (/proc/self/fd), the node's frame counters and decisions, and the 1-minute load average.\n\n", r.Every)
	b.WriteString(m.Markdown())
	fmt.Fprintf(&b, "\n## Verdict\n\n")
	if len(r.failures) == 0 {
		fmt.Fprintf(&b, "**Flat.** ")
	} else {
		fmt.Fprintf(&b, "**Not flat:** %s. ", strings.Join(r.failures, "; "))
	}
	fmt.Fprintf(&b, "After a %s warm-up, the mean of the last third of the samples against the first third (limits: RSS +%.0f%%, goroutines ±%d, open fds ±%d):\n\n",
		r.Warmup, 100*soakMaxRSSGrowth, soakMaxGoroutines, soakMaxFDs)
	b.WriteString("| | first third | last third | change |\n|---|---|---|---|\n")
	if len(r.post) >= 3 {
		fmt.Fprintf(&b, "| RSS (MiB) | %.1f | %.1f | %+.1f%% |\n", r.first.rss/mib, r.last.rss/mib, 100*r.rssGrowth)
		fmt.Fprintf(&b, "| Go heap in use (MiB) | %.1f | %.1f | %+.1f%% |\n", r.first.heap/mib, r.last.heap/mib, 100*(r.last.heap/r.first.heap-1))
		fmt.Fprintf(&b, "| goroutines | %.1f | %.1f | %+.1f |\n", r.first.goroutines, r.last.goroutines, r.goroutineDiff)
		fmt.Fprintf(&b, "| open fds | %.1f | %.1f | %+.1f |\n", r.first.fds, r.last.fds, r.fdDiff)
	}
	end := r.Samples[len(r.Samples)-1]
	fmt.Fprintf(&b, "\n## Work done\n\n")
	fmt.Fprintf(&b, "- Frames read by the camera: %.0f (%.1f loops of the clip); processed by the pipeline: %.0f (%.1f fps); dropped as stale (the engine took the newest frame): %.0f (%.1f%%).\n",
		end.FramesRead, end.FramesRead/float64(r.ClipFrames), end.FramesProcessed, r.processedFPS, end.FramesDropped, 100*r.dropRate)
	fmt.Fprintf(&b, "- Decisions: %d (%s). Opens for someone not enrolled or revoked: %d.\n", r.Decisions, r.outcomes(), r.WrongOpens)
	fmt.Fprintf(&b, "- Delivery: %d decisions missing at the webhook receiver, %d missing in the audit table after Close; %d failed `/metrics` scrapes.\n",
		r.MissingWebhook, r.MissingAudit, r.ScrapeErrors)
	fmt.Fprintf(&b, "- Node log, WARN and ERROR records: %s.\n", r.logSummary())
	fmt.Fprintf(&b, "- Load: the 1-minute load average ranged %.2f-%.2f on %d cores. The machine was shared with other engineers' builds and tests during the run: a load above the core count means they competed for the CPU, which lowers the processed frame rate and raises the drops (and so the decisions per loop), not the memory.\n",
		r.load1Min, r.load1Max, runtime.NumCPU())
	fmt.Fprintf(&b, "\n## Samples\n\n%s", soakHeader)
	for _, s := range r.Samples {
		b.WriteString(soakRow(s) + "\n")
	}
	return b.String()
}
