package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/loopgate/loopgate/camera/synth"
	"github.com/loopgate/loopgate/engine/decision"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/internal/pgcluster"
	"github.com/loopgate/loopgate/internal/testenv"
)

// outageDecisions is how many decisions each outage test waits for while
// the database is down.
const outageDecisions = 3

// walkScene is a looping SYNTHETIC clip of one enrolled walker and one
// stranger, with the enrolled walker's enrolment ready to commit; a test
// builds it once and gives each subtest its own database.
type walkScene struct {
	clip       string
	enrolled   string // external ID
	enrolments map[string]gallery.Enrolment
}

func newWalkScene(t *testing.T, seed int64) *walkScene {
	t.Helper()
	walkers := vettedWalkers(t, 1, 1, seed)
	clipCfg := synth.DefaultConfig()
	clipCfg.Seed = seed
	// Short walks and gaps: more decisions per second of test.
	clipCfg.WalkSeconds = 2
	clipCfg.GapSeconds = 0.4
	clip, _ := faultClip(t, clipCfg, walkers)
	sc := &walkScene{clip: clip, enrolments: enrolmentsOf(t, walkers, []string{testGate})}
	for id := range sc.enrolments {
		sc.enrolled = id
	}
	return sc
}

// outageWorld is a scene on its own primary, the enrolled walker enrolled.
type outageWorld struct {
	*walkScene
	primary *pgcluster.Cluster
}

func (sc *walkScene) onPrimary(t *testing.T) *outageWorld {
	t.Helper()
	p, g := primaryWithGallery(t)
	for _, e := range sc.enrolments {
		if _, err := g.Enrol(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	return &outageWorld{walkScene: sc, primary: p}
}

// faultNodeConfig is a node on dbURL with clip looping (fast: every frame,
// as fast as the engine takes them), one recogniser, and the audit sink
// spooled to local disk.
func faultNodeConfig(t *testing.T, dbURL, clip string) Config {
	cfg := Defaults()
	cfg.Gate = testGate
	cfg.Database.URL = dbURL
	cfg.Models.Dir = modelDir(t)
	cfg.Cameras = []CameraConfig{{Name: "lane-a", URI: clip, Lane: "a", Fast: true, Loop: true}}
	cfg.Recognizers = 1
	cfg.Sinks.Stdout = false
	setAuditSpool(&cfg, filepath.Join(t.TempDir(), "audit-spool"))
	cfg.Live.FPS = 0
	return cfg
}

// runningNode is an in-process node running until stop.
type runningNode struct {
	n    *Node
	col  *collector
	reg  *prometheus.Registry
	logs *logRecords
	stop func()
}

func startNode(t *testing.T, cfg Config) *runningNode {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	rn := &runningNode{col: &collector{}, reg: prometheus.NewRegistry(), logs: newLogRecords(t)}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := New(ctx, cfg, Options{Registry: rn.reg, Sinks: []decision.Sink{rn.col}, Logger: slog.New(rn.logs)})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	rn.n = n
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	rn.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node run: %v", err)
		}
		if err := n.Close(); err != nil {
			t.Errorf("node close: %v", err)
		}
	})
	t.Cleanup(rn.stop)
	return rn
}

func (rn *runningNode) metric(t *testing.T, name string, labels ...string) float64 {
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	return metricSum(t, rn.reg, name, want)
}

func eventIDs(events []decision.Event) []string {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	return ids
}

// TestDBOutageDecisionsSpooled: a gate node on a real primary; the database
// is stopped mid-run (pg_ctl stop -m fast), or killed with SIGKILL (a
// crash: restart runs crash recovery). Meanwhile the node keeps deciding
// from its local copy of the gallery (the enrolled walker opens, the
// stranger is denied), and every decision goes to the audit spool on disk.
// The outage shows in the metrics (gallery refresh errors, copy age, audit
// retries and backlog) and in WARN/ERROR log lines. When the database is
// back, every decision the node emitted, before, during and after the
// outage, is in the decisions table exactly once.
func TestDBOutageDecisionsSpooled(t *testing.T) {
	scene := newWalkScene(t, 41)
	for _, mode := range []string{"stop", "crash"} {
		t.Run(mode, func(t *testing.T) { testDBOutage(t, scene, mode == "crash") })
	}
}

func testDBOutage(t *testing.T, scene *walkScene, crash bool) {
	ctx := context.Background()
	w := scene.onPrimary(t)
	rn := startNode(t, faultNodeConfig(t, w.primary.URL(), w.clip))
	url := w.primary.URL()

	// Normal operation first: decisions reach the table.
	waitUntil(t, walkBound, 50*time.Millisecond, "a decision in the decisions table", func() bool {
		rows, err := decisionRows(ctx, url)
		return err == nil && len(rows) >= 1
	})

	down := time.Now()
	if crash {
		if err := w.primary.Kill(); err != nil {
			t.Fatal(err)
		}
	} else if err := w.primary.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("OUTAGE database %s at %s (took %s)", map[bool]string{true: "killed (SIGKILL)", false: "stopped"}[crash],
		down.Format("15:04:05.000"), time.Since(down).Round(time.Millisecond))
	var during []decision.Event
	waitUntil(t, 2*walkBound, 50*time.Millisecond, fmt.Sprintf("%d decisions with the database down, one an open", outageDecisions), func() bool {
		during = decidedAfter(rn.col.all(), down)
		opens := 0
		for _, e := range during {
			if e.Decision == decision.Open {
				opens++
			}
		}
		return len(during) >= outageDecisions && opens > 0
	})
	for _, e := range during {
		t.Logf("OUTAGE decision %s %s/%s person=%s distance=%s", e.ID, e.Decision, e.Reason, personOf(e), fmtPtr(e.Distance))
		switch {
		case e.Decision == decision.Open && !ofPerson(e, w.enrolled):
			t.Errorf("open for %s during the outage; only %s is enrolled", personOf(e), w.enrolled)
		case e.Reason == decision.NoUsableCapture:
			// A walk the tracker cut short (under load): no search.
		case e.Decision == decision.Deny && e.Reason != decision.UnknownFace:
			t.Errorf("deny %s during an outage within the staleness bound: want decisions from the local copy", e.Reason)
		}
	}
	// What the outage looks like from outside, while it lasts.
	age := rn.metric(t, "loopgate_gallery_copy_age_seconds")
	refreshErrors := rn.metric(t, "loopgate_gallery_refresh_total", "result", "error")
	retries := rn.metric(t, "loopgate_sink_retries_total", "sink", "audit")
	failedDB := rn.metric(t, "loopgate_sink_failed_total", "sink", "audit", "reason", "database")
	backlog := rn.metric(t, "loopgate_sink_queue_length", "sink", "audit")
	spoolBytes := rn.metric(t, "loopgate_sink_spool_bytes", "sink", "audit")
	fallback := rn.metric(t, "loopgate_sink_spool_fallback_length", "sink", "audit")
	outage := time.Since(down)
	t.Logf("OUTAGE after %s: decisions=%d copy_age_s=%.1f refresh_errors=%v audit_retries=%v audit_failed_database=%v audit_backlog=%v spool_bytes=%v spool_fallback=%v",
		outage.Round(time.Millisecond), len(during), age, refreshErrors, retries, failedDB, backlog, spoolBytes, fallback)
	if refreshErrors == 0 {
		t.Error("loopgate_gallery_refresh_total{result=error} did not count the outage")
	}
	if age < outage.Seconds()-1 {
		t.Errorf("loopgate_gallery_copy_age_seconds %.1f during an outage of %s", age, outage)
	}
	if retries == 0 || failedDB == 0 {
		t.Errorf("audit retries %v, failed{database} %v: the outage does not show", retries, failedDB)
	}
	// One of them may be on its way to the database, not in the backlog.
	if backlog < float64(len(during)-1) || spoolBytes == 0 {
		t.Errorf("audit backlog %v (want >= %d of the %d decisions made meanwhile), spool bytes %v", backlog, len(during)-1, len(during), spoolBytes)
	}
	if fallback != 0 {
		t.Errorf("%v decisions held in memory only (spool fallback) with a working spool", fallback)
	}
	var warns []keptRecord
	for _, r := range rn.logs.between(down, time.Now()) {
		if r.Level >= slog.LevelWarn {
			warns = append(warns, r)
		}
	}
	t.Logf("OUTAGE log lines:%s", summarise(rn.logs.between(down, time.Now())))
	if len(warns) == 0 {
		t.Error("the outage left no WARN or ERROR log line")
	}

	up := time.Now()
	if err := w.primary.Start(); err != nil {
		t.Fatalf("%v\n%s", err, w.primary.Log())
	}
	started := time.Now()
	// Everything emitted so far reaches the table, the copy is fresh
	// again, and the node decides on.
	emitted := rn.col.all()
	var drained, fresh, next time.Time
	waitUntil(t, time.Minute, 20*time.Millisecond, "the backlog written, the copy fresh and a decision after that", func() bool {
		now := time.Now()
		if fresh.IsZero() && rn.metric(t, "loopgate_gallery_copy_age_seconds") < 1 {
			fresh = now
		}
		if drained.IsZero() {
			if rows, err := decisionRows(ctx, url); err == nil && len(rows) >= len(emitted) {
				drained = now
				for _, e := range emitted {
					if rows[e.ID] == 0 {
						drained = time.Time{}
					}
				}
			}
		}
		if !fresh.IsZero() && next.IsZero() {
			if later := decidedAfter(rn.col.all(), fresh); len(later) > 0 {
				next = later[0].DecidedAt
			}
		}
		return !drained.IsZero() && !fresh.IsZero() && !next.IsZero()
	})
	t.Logf("RECOVERY database start took %s; start → backlog of %d written %s; start → copy fresh %s",
		started.Sub(up).Round(time.Millisecond), len(emitted), drained.Sub(started).Round(time.Millisecond), fresh.Sub(started).Round(time.Millisecond))
	t.Logf("RECOVERY log lines:%s", summarise(rn.logs.between(up, time.Now())))

	rn.stop()
	all := rn.col.all()
	rows, err := decisionRows(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	missing, dup, extra := exactlyOnce(t, eventIDs(all), rows)
	if len(extra) > 0 {
		t.Errorf("rows in the decisions table the node never emitted: %v", extra)
	}
	if q := rn.metric(t, "loopgate_sink_queue_length", "sink", "audit"); q != 0 {
		t.Errorf("audit backlog %v after close", q)
	}
	if d := rn.metric(t, "loopgate_sink_dropped_total", "sink", "audit"); d != 0 {
		t.Errorf("audit dropped %v decisions", d)
	}
	t.Logf("RESULT outage=%s decisions_total=%d during_outage=%d rows=%d missing=%d duplicated=%d refresh_errors=%v audit_retries=%v delivered=%v",
		up.Sub(down).Round(time.Millisecond), len(all), len(during), len(rows), missing, dup,
		rn.metric(t, "loopgate_gallery_refresh_total", "result", "error"), rn.metric(t, "loopgate_sink_retries_total", "sink", "audit"),
		rn.metric(t, "loopgate_sink_delivered_total", "sink", "audit"))
}

// TestStaleGalleryFailsSecure: with gallery.max_staleness 3 s and the
// database stopped, the node decides from its copy until the copy is 3 s
// older than its last sync, then denies everyone with gallery_stale; when
// the database is back the copy is fresh again within a refresh and the
// enrolled walker opens again. Every decision is in the decisions table
// exactly once afterwards.
func TestStaleGalleryFailsSecure(t *testing.T) {
	ctx := context.Background()
	const bound = 3 * time.Second
	p, g := primaryWithGallery(t)
	walkers := vettedWalkers(t, 1, 0, 43)
	clipCfg := synth.DefaultConfig()
	clipCfg.Seed = 43
	clipCfg.GapSeconds = 0.5
	clip, _ := faultClip(t, clipCfg, walkers)
	id := walkerExternalID(walkers[0])
	for _, e := range enrolmentsOf(t, walkers, []string{testGate}) {
		if _, err := g.Enrol(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	cfg := faultNodeConfig(t, p.URL(), clip)
	cfg.Gallery.MaxStaleness = bound
	rn := startNode(t, cfg)
	copyOf := rn.n.GalleryCopy()

	waitUntil(t, walkBound, 50*time.Millisecond, "an open before the outage", func() bool {
		for _, e := range rn.col.all() {
			if e.Decision == decision.Open {
				return true
			}
		}
		return false
	})
	down := time.Now()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, 10*time.Millisecond, "a failed refresh", func() bool { return copyOf.Status().LastError != "" })
	lastSync := copyOf.FreshAsOf()
	staleAt := lastSync.Add(bound)
	t.Logf("STALE database stopped at %s; copy last synced %s; bound runs out at %s",
		down.Format("15:04:05.000"), lastSync.Format("15:04:05.000"), staleAt.Format("15:04:05.000"))

	var firstStale decision.Event
	waitUntil(t, walkBound, 20*time.Millisecond, "a gallery_stale deny", func() bool {
		for _, e := range decidedAfter(rn.col.all(), down) {
			if e.Reason == decision.GalleryStale {
				firstStale = e
				return true
			}
		}
		return false
	})
	if age := rn.metric(t, "loopgate_gallery_copy_age_seconds"); age <= bound.Seconds() {
		t.Errorf("copy age %.1f s with a stale copy (bound %s)", age, bound)
	}
	st := copyOf.Status()
	if !st.Stale {
		t.Errorf("copy status not stale: %+v", st)
	}
	t.Logf("STALE first gallery_stale deny at %s (bound + %s): %s", firstStale.DecidedAt.Format("15:04:05.000"),
		firstStale.DecidedAt.Sub(staleAt).Round(time.Millisecond), firstStale.Detail)
	// The ERROR line comes with the first failed refresh after the bound:
	// within the refresh backoff (at most 2 s) of it.
	var staleLog keptRecord
	if !poll(5*time.Second, 20*time.Millisecond, func() bool {
		for _, r := range rn.logs.between(down, time.Now()) {
			if r.Level >= slog.LevelError && strings.Contains(r.Msg, "gallery_stale") {
				staleLog = r
				return true
			}
		}
		return false
	}) {
		t.Errorf("no ERROR log line says the node denies everyone (gallery_stale), %s after the bound", time.Since(staleAt).Round(time.Millisecond))
	} else {
		t.Logf("STALE the ERROR line came %s after the bound, %s after the first gallery_stale deny",
			staleLog.At.Sub(staleAt).Round(time.Millisecond), staleLog.At.Sub(firstStale.DecidedAt).Round(time.Millisecond))
	}
	t.Logf("STALE log lines:%s", summarise(rn.logs.between(down, time.Now())))

	up := time.Now()
	if err := p.Start(); err != nil {
		t.Fatalf("%v\n%s", err, p.Log())
	}
	started := time.Now()
	fresh := waitUntil(t, 30*time.Second, 10*time.Millisecond, "the copy fresh again", func() bool { return !copyOf.Status().Stale })
	var reopened decision.Event
	waitUntil(t, walkBound, 20*time.Millisecond, "an open after the database returned", func() bool {
		for _, e := range decidedAfter(rn.col.all(), fresh) {
			if e.Decision == decision.Open {
				reopened = e
				return true
			}
		}
		return false
	})
	rn.stop()

	// Every decision against the rule: from the copy (open) until the
	// bound, gallery_stale after it until the copy was fresh, open after.
	// A walk the tracker cut short (no_usable_capture, under load) had no
	// search: it is only checked not to open.
	const slack = 100 * time.Millisecond
	var before, inOutage, stale, after, unsearched int
	for _, e := range rn.col.all() {
		got := fmt.Sprintf("%s/%s/%s", e.Decision, e.Reason, personOf(e))
		at := e.DecidedAt
		if e.Reason == decision.NoUsableCapture {
			unsearched++
			continue
		}
		switch {
		case at.Before(staleAt.Add(-slack)) || at.After(fresh.Add(slack)):
			if got != "open/matched/"+id {
				t.Errorf("decision at %s (copy usable): %s, want an open for %s", at.Format("15:04:05.000"), got, id)
			}
			if at.Before(staleAt) {
				before++
				if at.After(down) {
					inOutage++
				}
			} else {
				after++
			}
		case at.After(staleAt.Add(slack)) && at.Before(fresh.Add(-slack)):
			stale++
			if e.Decision != decision.Deny || e.Reason != decision.GalleryStale {
				t.Errorf("decision at %s with the copy %s past its bound: %s, want deny/gallery_stale",
					at.Format("15:04:05.000"), at.Sub(staleAt).Round(time.Millisecond), got)
			}
		}
	}
	if unsearched > 0 {
		t.Logf("%d decisions without a search (no_usable_capture), not judged", unsearched)
	}
	rows, err := decisionRows(ctx, p.URL())
	if err != nil {
		t.Fatal(err)
	}
	all := rn.col.all()
	missing, dup, _ := exactlyOnce(t, eventIDs(all), rows)
	t.Logf("RESULT max_staleness=%s opens_before_bound=%d (with the database down %d) gallery_stale_denies=%d opens_after=%d; database start %s, start → copy fresh %s, start → first open %s; decisions=%d rows=%d missing=%d duplicated=%d",
		bound, before, inOutage, stale, after, started.Sub(up).Round(time.Millisecond), fresh.Sub(started).Round(time.Millisecond),
		reopened.DecidedAt.Sub(started).Round(time.Millisecond), len(all), len(rows), missing, dup)
	if stale == 0 {
		t.Error("no decision was judged past the bound")
	}
}

// gateBinary builds `loopgate` once for the test.
func gateBinary(t *testing.T) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goCmd); err != nil {
			testenv.Unavailable(t, "the go command (to build loopgate) is not on PATH: %v", err)
		}
	}
	bin := filepath.Join(t.TempDir(), "loopgate")
	start := time.Now()
	cmd := exec.Command(goCmd, "build", "-o", bin, "./cmd/loopgate")
	cmd.Dir = testenv.Root(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/loopgate: %v\n%s", err, out)
	}
	t.Logf("built loopgate in %s", time.Since(start).Round(time.Millisecond))
	return bin
}

// gateProcess is one `loopgate serve` process.
type gateProcess struct {
	cmd    *exec.Cmd
	stderr string
	exited chan struct{} // closed once the process has ended
	err    error         // its exit status, once exited is closed
}

// wait reports whether the process ended within timeout, and its status.
func (gp *gateProcess) wait(timeout time.Duration) (exited bool, status error) {
	select {
	case <-gp.exited:
		return true, gp.err
	case <-time.After(timeout):
		return false, nil
	}
}

// serveConfig writes the gate node's configuration: the clip looping, a
// JSON-lines file sink, the audit sink spooled to local disk, and a gallery
// snapshot (so a restart during an outage can decide).
func serveConfig(t *testing.T, dir, dbURL, clip string) string {
	t.Helper()
	yaml := fmt.Sprintf(`gate: %s
database:
  url: %q
gallery:
  snapshot: %q
models:
  dir: %q
recognizers: 1
cameras:
  - name: lane-a
    uri: %q
    lane: a
    fast: true
    loop: true
sinks:
  stdout: false
  file: %q
  audit: true
  audit_spool:
    dir: %q
live:
  fps: 0
`, testGate, dbURL, filepath.Join(dir, "gallery.snapshot"), modelDir(t), clip,
		filepath.Join(dir, "decisions.jsonl"), filepath.Join(dir, "audit-spool"))
	path := filepath.Join(dir, "gate.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func startGate(t *testing.T, bin, config, logName string) *gateProcess {
	t.Helper()
	gp := &gateProcess{stderr: filepath.Join(filepath.Dir(config), logName), exited: make(chan struct{})}
	logf, err := os.Create(gp.stderr)
	if err != nil {
		t.Fatal(err)
	}
	gp.cmd = exec.Command(bin, "serve", "--config", config)
	gp.cmd.Stdout, gp.cmd.Stderr = logf, logf
	// The file decides: no override from the test's environment.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "LOOPGATE_DATABASE_URL" && k != "LOOPGATE_DATABASE_READ_URL" &&
			k != "LOOPGATE_HTTP_ADDR" && k != "LOOPGATE_FUSION_THRESHOLD" {
			gp.cmd.Env = append(gp.cmd.Env, kv)
		}
	}
	if err := gp.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		gp.err = gp.cmd.Wait()
		logf.Close()
		close(gp.exited)
	}()
	t.Cleanup(func() {
		if exited, _ := gp.wait(0); !exited {
			_ = gp.cmd.Process.Kill()
			<-gp.exited
		}
	})
	return gp
}

func (gp *gateProcess) log() string {
	b, _ := os.ReadFile(gp.stderr)
	return string(b)
}

// readJSONL parses the file sink's decisions. While the writer runs, an
// unterminated last line is not a line yet; once it has stopped (final),
// every byte must be whole lines of JSON.
func readJSONL(t *testing.T, path string, final bool) []decision.Event {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		if final {
			t.Errorf("decisions file: %v", err)
		}
		return nil
	}
	if i := bytes.LastIndexByte(b, '\n'); i+1 < len(b) {
		if final {
			t.Errorf("%s ends with a torn line: %q", path, b[i+1:])
		}
		b = b[:i+1]
	}
	var out []decision.Event
	for n, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var e decision.Event
		if err := json.Unmarshal(line, &e); err != nil {
			t.Errorf("%s line %d: %v: %s", path, n+1, err, line)
			continue
		}
		out = append(out, e)
	}
	return out
}

var previousRunRE = regexp.MustCompile(`decisions from a previous run to deliver.* count=(\d+)`)

// TestSIGKILLGateProcessLosesNoDecision builds the loopgate binary and runs
// `loopgate serve` with a JSON-lines file sink and the audit sink spooled to
// local disk, kills it with SIGKILL mid-run and starts it again. Every
// decision in the file (the node's own record of what it decided, both
// runs) is then in the decisions table exactly once.
//   - db-down: the database is stopped before the kill, so the decisions
//     made meanwhile exist only in the spool when the process dies; the
//     restart, with the database up, writes them.
//   - db-down-restart-in-outage: the same, but the process is restarted
//     while the database is still down: it decides from its gallery
//     snapshot (the enrolled walker opens), spools, and writes both runs'
//     decisions once the database is back.
//   - db-up-write-blocked: the database is up, but a transaction holds the
//     decisions table locked, so an audit INSERT is in flight (blocked) when
//     the process dies; the lock is released after the kill, the orphaned
//     INSERT commits, and the restart delivers that decision again: the
//     table keeps it once.
func TestSIGKILLGateProcessLosesNoDecision(t *testing.T) {
	bin := gateBinary(t)
	scene := newWalkScene(t, 45)
	for _, mode := range []string{"db-down", "db-down-restart-in-outage", "db-up-write-blocked"} {
		t.Run(mode, func(t *testing.T) { testSIGKILL(t, bin, scene, mode) })
	}
}

func testSIGKILL(t *testing.T, bin string, scene *walkScene, mode string) {
	ctx := context.Background()
	w := scene.onPrimary(t)
	url := w.primary.URL()
	dir := t.TempDir()
	jsonl := filepath.Join(dir, "decisions.jsonl")
	spoolDir := filepath.Join(dir, "audit-spool")
	config := serveConfig(t, dir, url, w.clip)
	blocked := mode == "db-up-write-blocked"

	run1 := startGate(t, bin, config, "run1.log")
	waitUntil(t, 2*walkBound, 50*time.Millisecond, "two decisions in the file and the table", func() bool {
		events := readJSONL(t, jsonl, false)
		if len(events) < 2 {
			return false
		}
		rows, err := decisionRows(ctx, url)
		return err == nil && rows[events[0].ID] == 1 && rows[events[1].ID] == 1
	})

	var lockTx pgx.Tx
	fault := time.Now()
	if blocked {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if lockTx, err = conn.Begin(ctx); err != nil {
			t.Fatal(err)
		}
		// EXCLUSIVE blocks INSERTs and lets the test read the table.
		if _, err := lockTx.Exec(ctx, `LOCK TABLE decisions IN EXCLUSIVE MODE`); err != nil {
			t.Fatal(err)
		}
	} else if err := w.primary.Stop(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 2*walkBound, 50*time.Millisecond, "three decisions in the file after the fault", func() bool {
		return len(decidedAfter(readJSONL(t, jsonl, false), fault)) >= 3
	})
	if blocked {
		// Kill while the node's INSERT waits on the lock (between retries
		// it may be sleeping: the write times out after 5 s).
		var waiting int
		waitUntil(t, 20*time.Second, 5*time.Millisecond, "an audit INSERT waiting on the lock", func() bool {
			err := w.primaryQuery(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO decisions%'`, &waiting)
			return err == nil && waiting > 0
		})
		t.Logf("KILL audit INSERTs blocked on the lock at the kill: %d", waiting)
	}
	if err := run1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if done, err := run1.wait(30 * time.Second); !done || err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("run 1 after SIGKILL: exited %v: %v", done, err)
	}
	beforeKill := readJSONL(t, jsonl, false)
	segs, _ := filepath.Glob(filepath.Join(spoolDir, "seg-*"))
	t.Logf("KILL %s at %s: %d decisions in the file, %d made after the fault; spool segments %d",
		mode, killed.Format("15:04:05.000"), len(beforeKill), len(decidedAfter(beforeKill, fault)), len(segs))

	// notInTable counts the killed run's decisions the table lacks before
	// the restart: they exist on the spool's disk only.
	notInTable := -1
	countMissing := func() {
		rows, err := decisionRows(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		notInTable = 0
		for _, e := range beforeKill {
			if rows[e.ID] == 0 {
				notInTable++
			}
		}
		t.Logf("KILL decisions in the file but not in the table before the restart (on disk in the spool only): %d", notInTable)
		if notInTable == 0 {
			t.Error("every decision was already in the table: the kill tested nothing")
		}
	}
	var restartedInOutage time.Time
	var run2 *gateProcess
	switch mode {
	case "db-down":
		if err := w.primary.Start(); err != nil {
			t.Fatalf("%v\n%s", err, w.primary.Log())
		}
		countMissing()
	case "db-up-write-blocked":
		// The killed process's INSERT, still queued on the lock, commits
		// now although nobody will read its answer.
		if err := lockTx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		countMissing()
	case "db-down-restart-in-outage":
		// The database is still down: the node starts from its snapshot
		// and decides (an open for the enrolled walker), spooling.
		restartedInOutage = time.Now()
		run2 = startGate(t, bin, config, "run2.log")
		var during []decision.Event
		var firstOpen time.Time
		waitUntil(t, 2*walkBound, 50*time.Millisecond, "an open by the restarted node with the database down", func() bool {
			if done, err := run2.wait(0); done {
				t.Fatalf("run 2 ended: %v\n%s", err, run2.log())
			}
			during = decidedAfter(readJSONL(t, jsonl, false), restartedInOutage)
			for _, e := range during {
				if e.Decision == decision.Open && ofPerson(e, w.enrolled) {
					firstOpen = e.DecidedAt
					return true
				}
			}
			return false
		})
		for _, e := range during {
			if e.Reason == decision.GalleryStale {
				t.Errorf("restarted node denied gallery_stale within the staleness bound: %s", e.Detail)
			}
		}
		if !strings.Contains(run2.log(), "gallery copy loaded from the snapshot file") {
			t.Errorf("run 2 does not say it started from the snapshot:\n%s", run2.log())
		}
		t.Logf("RESTART in the outage: first open from the snapshot %s after the restart; %d decisions before the database returned",
			firstOpen.Sub(restartedInOutage).Round(time.Millisecond), len(during))
		if err := w.primary.Start(); err != nil {
			t.Fatalf("%v\n%s", err, w.primary.Log())
		}
		notInTable = len(decidedAfter(beforeKill, fault)) // never written: the database was down
	}

	// Restart (unless already restarted) with the database up; once the
	// table has every decision in the file, stop it the ordinary way.
	restarted := time.Now()
	if run2 == nil {
		run2 = startGate(t, bin, config, "run2.log")
	}
	var deliveredAt time.Time
	var want []decision.Event
	delivered := poll(30*time.Second, 50*time.Millisecond, func() bool {
		if done, err := run2.wait(0); done {
			t.Fatalf("run 2 ended: %v\n%s", err, run2.log())
		}
		rows, err := decisionRows(ctx, url)
		if err != nil {
			return false
		}
		want = readJSONL(t, jsonl, false)
		for _, e := range want {
			if rows[e.ID] == 0 {
				return false
			}
		}
		deliveredAt = time.Now()
		return true
	})
	if delivered {
		t.Logf("RESTART all %d decisions in the file were in the table %s after the database was up with the process running",
			len(want), deliveredAt.Sub(restarted).Round(time.Millisecond))
	} else {
		t.Errorf("30 s after the restart the decisions in the file are still not all in the table")
	}
	if err := run2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	switch done, err := run2.wait(time.Minute); {
	case !done:
		t.Fatalf("run 2 did not stop on SIGTERM\n%s", run2.log())
	case err != nil:
		t.Fatalf("run 2 after SIGTERM: %v\n%s", err, run2.log())
	}
	spooled := -1
	if m := previousRunRE.FindStringSubmatch(run2.log()); m != nil {
		fmt.Sscan(m[1], &spooled)
	}
	all := readJSONL(t, jsonl, true)
	rows, err := decisionRows(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	missing, dup, extra := exactlyOnce(t, eventIDs(all), rows)
	t.Logf("RESULT %s decisions_in_file=%d (run1 %d, run2 %d) rows=%d missing=%d duplicated=%d rows_not_in_file=%d not_in_table_at_kill=%d spool_at_restart=%d redelivered_already_recorded=%d",
		mode, len(all), len(beforeKill), len(all)-len(beforeKill), len(rows), missing, dup, len(extra), notInTable, spooled, spooled-notInTable)
	switch {
	case spooled < 0:
		t.Logf("run 2's log does not say how many decisions it found in the spool")
	case spooled < notInTable:
		t.Errorf("restart found %d decisions in the spool, %d were missing from the table", spooled, notInTable)
	}
	t.Logf("RUN1 log lines at WARN and above, and about the spool or snapshot:%s", processLogSummary(run1.log()))
	t.Logf("RUN2 log lines at WARN and above, and about the spool or snapshot:%s", processLogSummary(run2.log()))
	if t.Failed() {
		t.Logf("run 1 log:\n%s\nrun 2 log:\n%s", run1.log(), run2.log())
	}
}

var logLineRE = regexp.MustCompile(`level=(\w+) msg=("(?:[^"\\]|\\.)*"|\S+)`)

// processLogSummary counts a process's slog text lines by level and message:
// those at WARN and above, and those about the spool or the snapshot.
func processLogSummary(log string) string {
	var recs []keptRecord
	for _, line := range strings.Split(log, "\n") {
		m := logLineRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		msg := strings.Trim(m[2], `"`)
		level := slog.LevelInfo
		_ = level.UnmarshalText([]byte(m[1]))
		if level >= slog.LevelWarn || strings.Contains(msg, "spool") || strings.Contains(msg, "snapshot") {
			if !strings.Contains(msg, "model variant") {
				recs = append(recs, keptRecord{Level: level, Msg: msg})
			}
		}
	}
	return summarise(recs)
}

// primaryQuery runs one query on the primary and scans one row.
func (w *outageWorld) primaryQuery(ctx context.Context, sql string, dst ...any) error {
	conn, err := pgx.Connect(ctx, w.primary.URL())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.QueryRow(ctx, sql).Scan(dst...)
}
