package node

// Faults injected for real into a running gate node (issue 8): the camera's
// HTTP MJPEG stream cut and restored, and the gate controller's webhook
// receiver down, then back. Each test runs the whole node (OpenCV, YuNet,
// go-face, PostgreSQL) on a SYNTHETIC walk-through clip; only the failing
// dependency is the test's own (an MJPEG server, a controller), and it
// fails by closing its listener and connections or answering 503.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/camera/synth"
	"github.com/loopgate/loopgate/engine/decision"
	"github.com/loopgate/loopgate/sink"
)

// ---------------------------------------------------------------------------
// Shared helpers: log capture and metric reads.

// ioRecord is one captured log record with its attributes flattened.
type ioRecord struct {
	Time  time.Time
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

// ioLog is a slog.Handler that keeps every record (to assert on what an
// operator would read) and also writes it to the test log until the test
// ends (a camera read blocked in OpenCV may log after Run returned).
type ioLog struct {
	mu    *sync.Mutex
	recs  *[]ioRecord
	ended *atomic.Bool
	t     *testing.T
	attrs []slog.Attr
}

func newIOLog(t *testing.T) (*ioLog, *slog.Logger) {
	l := &ioLog{mu: &sync.Mutex{}, recs: &[]ioRecord{}, ended: &atomic.Bool{}, t: t}
	t.Cleanup(func() { l.ended.Store(true) })
	return l, slog.New(l)
}

func (l *ioLog) Enabled(context.Context, slog.Level) bool { return true }

func (l *ioLog) Handle(_ context.Context, r slog.Record) error {
	rec := ioRecord{Time: r.Time, Level: r.Level, Msg: r.Message, Attrs: map[string]string{}}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %q", r.Time.Format("15:04:05.000"), r.Level, r.Message)
	add := func(a slog.Attr) bool {
		v := a.Value.Resolve().String()
		rec.Attrs[a.Key] = v
		fmt.Fprintf(&b, " %s=%s", a.Key, v)
		return true
	}
	for _, a := range l.attrs {
		add(a)
	}
	r.Attrs(add)
	l.mu.Lock()
	*l.recs = append(*l.recs, rec)
	l.mu.Unlock()
	if !l.ended.Load() {
		l.t.Log(b.String())
	}
	return nil
}

func (l *ioLog) WithAttrs(as []slog.Attr) slog.Handler {
	c := *l
	c.attrs = append(slices.Clone(l.attrs), as...)
	return &c
}

func (l *ioLog) WithGroup(string) slog.Handler { return l }

// find returns the records with message msg (and, when level >= 0, that
// level) in order.
func (l *ioLog) find(msg string) []ioRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []ioRecord
	for _, r := range *l.recs {
		if r.Msg == msg {
			out = append(out, r)
		}
	}
	return out
}

// atLeast returns the records of level lvl or above.
func (l *ioLog) atLeast(lvl slog.Level) []ioRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []ioRecord
	for _, r := range *l.recs {
		if r.Level >= lvl {
			out = append(out, r)
		}
	}
	return out
}

// ioMetric sums the series of family name whose labels include every
// pair in labels, as a Prometheus scrape of the node's registry shows them.
func ioMetric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Errorf("gather: %v", err) // may run off the test goroutine: no Fatal
		return 0
	}
	sum := 0.0
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				ok := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						ok = true
					}
				}
				if !ok {
					continue series
				}
			}
			switch {
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// ioWaitFor polls cond until it holds or the deadline passes. It waits for
// events to happen; it measures nothing.
func ioWaitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ioExpected is the one decision the fixture's ground truth wants for w.
func ioExpected(fx *walkFixture, w synth.WalkerTruth) (decision.Outcome, decision.Reason) {
	switch {
	case !w.Enrolled:
		return decision.Deny, decision.UnknownFace
	case fx.Revoked[walkerID(w)]:
		return decision.Deny, decision.Revoked
	default:
		return decision.Open, decision.Matched
	}
}

// ioMatches reports whether e is w's expected decision.
func ioMatches(fx *walkFixture, w synth.WalkerTruth, e decision.Event) bool {
	outcome, reason := ioExpected(fx, w)
	if e.Decision != outcome || e.Reason != reason {
		return false
	}
	if reason == decision.UnknownFace {
		return true
	}
	return e.Person != nil && e.Person.ExternalID == walkerID(w)
}

// ---------------------------------------------------------------------------
// a. Camera stream cut and restored.

// mjpegCamera plays a clip as a live IP camera does: multipart MJPEG over
// HTTP on a clock of its own (started by the first connection), whoever is
// watching. A client that connects gets the current frame onwards; after
// the clip's last frame it keeps sending that frame (an empty bridge). cut
// closes the listener and every connection; restore listens again on the
// same address.
type mjpegCamera struct {
	t      *testing.T
	frames [][]byte
	fps    float64
	addr   string

	startOnce sync.Once
	start     atomic.Pointer[time.Time]

	mu    sync.Mutex
	srv   *http.Server
	conns []time.Time // when each stream connection was accepted
}

func newMJPEGCamera(t *testing.T, frames [][]byte, fps float64) *mjpegCamera {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &mjpegCamera{t: t, frames: frames, fps: fps, addr: ln.Addr().String()}
	c.serve(ln)
	t.Cleanup(func() { c.cut() })
	return c
}

func (c *mjpegCamera) URL() string { return "http://" + c.addr + "/video.mjpg" }

func (c *mjpegCamera) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(c.stream)}
	c.mu.Lock()
	c.srv = srv
	c.mu.Unlock()
	go srv.Serve(ln)
}

// cut is the fault: the camera vanishes from the network. Connections are
// closed under the reader and new ones are refused.
func (c *mjpegCamera) cut() {
	c.mu.Lock()
	srv := c.srv
	c.srv = nil
	c.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// restore brings the camera back on the same address.
func (c *mjpegCamera) restore() {
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		c.t.Errorf("camera restore: listen %s again: %v", c.addr, err)
		return
	}
	c.serve(ln)
}

// frameAt is the clip frame the camera's clock shows at time t (-1 before
// the first connection).
func (c *mjpegCamera) frameAt(t time.Time) int {
	s := c.start.Load()
	if s == nil {
		return -1
	}
	return int(t.Sub(*s).Seconds() * c.fps)
}

// timeOf is when the camera's clock shows frame i.
func (c *mjpegCamera) timeOf(i int) time.Time {
	return c.start.Load().Add(time.Duration(float64(i) / c.fps * float64(time.Second)))
}

func (c *mjpegCamera) connections() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.conns)
}

func (c *mjpegCamera) stream(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	c.startOnce.Do(func() { c.start.Store(&now) })
	c.mu.Lock()
	c.conns = append(c.conns, now)
	c.mu.Unlock()
	w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=gateframe")
	tick := time.NewTicker(time.Duration(float64(time.Second) / c.fps))
	defer tick.Stop()
	last := -1
	for {
		i := min(c.frameAt(time.Now()), len(c.frames)-1)
		// A camera keeps sending at its rate, so the last frame repeats.
		if i != last || i == len(c.frames)-1 {
			jpg := c.frames[i]
			if _, err := fmt.Fprintf(w, "--gateframe\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(jpg)); err != nil {
				return
			}
			if _, err := w.Write(jpg); err != nil {
				return
			}
			if _, err := w.Write([]byte("\r\n")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			last = i
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}

// clipJPEGs decodes the clip with OpenCV and encodes each frame as the
// JPEG an IP camera would send.
func clipJPEGs(t *testing.T, path string) [][]byte {
	t.Helper()
	vc, err := gocv.VideoCaptureFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer vc.Close()
	m := gocv.NewMat()
	defer m.Close()
	var out [][]byte
	for vc.Read(&m) && !m.Empty() {
		buf, err := gocv.IMEncode(gocv.JPEGFileExt, m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, slices.Clone(buf.GetBytes()))
		buf.Close()
	}
	if len(out) == 0 {
		t.Fatalf("%s: no frame decoded", path)
	}
	return out
}

// TestFaultCameraCutAndRestored serves the synthetic walk clip as a live
// HTTP MJPEG stream, runs a gate node on http://127.0.0.1:PORT/video.mjpg,
// and cuts the stream (listener and connections closed) from just before
// the second walker appears until just after they have left, then restores
// it. It proves:
//   - the node survives: Run returns nil at the end, no error is logged;
//   - the cut shows: read_errors_total and open_errors_total rise, up goes
//     to 0 while the camera is gone and /readyz answers 503; the log says
//     "camera: down" and "camera: reconnecting" with the backoff;
//   - the camera reconnects by itself (reconnects_total, "camera: up" after
//     the restore, up back to 1, /readyz 200);
//   - every walker seen before the cut and every walker after the restore
//     gets exactly their expected decision;
//   - what is lost: the walker who crossed during the cut gets no decision
//     at all. The node cannot see them: a physical-world loss, and the gate
//     stays closed for them (fail-secure), it never opens blind.
func TestFaultCameraCutAndRestored(t *testing.T) {
	clip := synth.DefaultConfig()
	clip.Seed = 17
	// Long gaps: the walker after the cut must not fall inside the
	// reconnect backoff (0.5 s doubling; the node's cameras use the
	// default schedule).
	clip.GapSeconds = 6
	fx := newWalkFixture(t, clip, 3, 1, 1)
	walkers := slices.Clone(fx.Manifest.Walkers)
	sort.Slice(walkers, func(i, j int) bool { return walkers[i].FirstFrame < walkers[j].FirstFrame })
	if len(walkers) != 4 {
		t.Fatalf("%d walkers, want 4", len(walkers))
	}
	lost := walkers[1]
	// The cut starts 5 frames (0.2 s) before the walker is drawn and ends 5
	// frames after they are gone: nothing of them reaches the node.
	cutFrom, cutTo := lost.FirstFrame-5, lost.LastFrame+5

	cam := newMJPEGCamera(t, clipJPEGs(t, fx.Clip), fx.Manifest.FPS)
	t.Logf("clip: %d frames at %.0f fps; walkers %s; cut frames %d-%d (%.1f s) over walker %s (%s)",
		len(cam.frames), cam.fps, ioDescribeWalkers(fx, walkers), cutFrom, cutTo,
		float64(cutTo-cutFrom)/cam.fps, lost.ID, lost.Name)

	cfg := testConfig(t, fx, false)
	cfg.Cameras = []CameraConfig{{Name: "lane-a", URI: cam.URL(), Lane: "a"}}
	cfg.HTTP.Addr = "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs, logger := newIOLog(t)
	col := &collector{}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	n, err := New(ctx, cfg, Options{Sinks: []decision.Sink{col}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	reg := n.Registry()
	readyz := func() int {
		resp, err := http.Get("http://" + n.Addr() + "/readyz")
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	camMetric := func(name string) float64 { return ioMetric(t, reg, "loopgate_camera_"+name, "camera", "lane-a") }

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- n.Run(runCtx) }()

	ioWaitFor(t, "the camera to connect and deliver", time.Minute, func() bool { return camMetric("up") == 1 })
	if got := readyz(); got != http.StatusOK {
		t.Errorf("/readyz = %d before the cut, want 200", got)
	}
	ioWaitFor(t, "the cut's first frame", 2*time.Minute, func() bool { return cam.frameAt(time.Now()) >= cutFrom })
	before := map[string]float64{}
	for _, m := range []string{"read_errors_total", "open_errors_total", "reconnects_total", "frames_total"} {
		before[m] = camMetric(m)
	}
	cutAt := time.Now()
	cam.cut()

	// While the camera is gone: the gauge and /readyz must say so.
	var sawDown, sawNotReady bool
	for cam.frameAt(time.Now()) < cutTo {
		if camMetric("up") == 0 {
			sawDown = true
		}
		if readyz() == http.StatusServiceUnavailable {
			sawNotReady = true
		}
		time.Sleep(50 * time.Millisecond)
	}
	framesInCut := camMetric("frames_total") - before["frames_total"]
	restoreAt := time.Now()
	cam.restore()
	ioWaitFor(t, "the camera to come back up", time.Minute, func() bool { return camMetric("up") == 1 })
	upSeenAt := time.Now()
	if got := readyz(); got != http.StatusOK {
		t.Errorf("/readyz = %d after the restore, want 200", got)
	}

	// Let the clip play out, then stop once every expected decision is in
	// (or the clip has been over for a while).
	want := 0
	for _, w := range walkers {
		if w.ID != lost.ID {
			want++
		}
	}
	clipEnd := cam.timeOf(len(cam.frames))
	for time.Now().Before(clipEnd.Add(20*time.Second)) && (time.Now().Before(clipEnd) || len(col.all()) < want) {
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v after the cut and restore", err)
	}
	n.sinks.Close()

	// The cut in metrics.
	delta := func(m string) float64 { return camMetric(m) - before[m] }
	t.Logf("camera metrics over the cut: read_errors +%.0f, open_errors +%.0f, reconnects +%.0f; frames during the cut %.0f; up seen 0: %v; /readyz 503 seen: %v",
		delta("read_errors_total"), delta("open_errors_total"), delta("reconnects_total"), framesInCut, sawDown, sawNotReady)
	if delta("read_errors_total") < 1 {
		t.Error("loopgate_camera_read_errors_total did not rise when the stream was cut")
	}
	if delta("open_errors_total") < 1 {
		t.Error("loopgate_camera_open_errors_total did not rise while the camera refused connections")
	}
	if delta("reconnects_total") < 2 {
		t.Errorf("loopgate_camera_reconnects_total rose by %.0f, want at least 2 (one refused, one that worked)", delta("reconnects_total"))
	}
	if !sawDown {
		t.Error("loopgate_camera_up never read 0 while the camera was gone")
	}
	if !sawNotReady {
		t.Error("/readyz never answered 503 while the camera was gone")
	}

	// The cut and the recovery in the log.
	downs := ioBetween(logs.find("camera: down"), cutAt, restoreAt)
	retries := ioBetween(logs.find("camera: reconnecting"), cutAt, upSeenAt)
	ups := ioBetween(logs.find("camera: up"), restoreAt, time.Now())
	var schedule []string
	for _, r := range retries {
		schedule = append(schedule, fmt.Sprintf("+%s backoff=%s", r.Time.Sub(cutAt).Round(10*time.Millisecond), r.Attrs["backoff"]))
	}
	t.Logf("log: %d \"camera: down\" during the cut (%v), reconnect attempts %v", len(downs), ioErrors(downs), schedule)
	if len(downs) == 0 {
		t.Error(`no "camera: down" logged during the cut`)
	}
	if len(retries) < 2 {
		t.Errorf("%d \"camera: reconnecting\" records, want at least 2", len(retries))
	}
	if len(ups) == 0 {
		t.Fatal(`no "camera: up" logged after the restore`)
	}
	reconnected := ups[0].Time
	t.Logf("cut at +0; restored at +%s; back up at +%s: %s after the restore (the backoff's next attempt); %d stream connections in all",
		restoreAt.Sub(cutAt).Round(time.Millisecond), reconnected.Sub(cutAt).Round(time.Millisecond),
		reconnected.Sub(restoreAt).Round(time.Millisecond), len(cam.connections()))
	if errs := logs.atLeast(slog.LevelError); len(errs) > 0 {
		t.Errorf("%d error records; the first: %s %v", len(errs), errs[0].Msg, errs[0].Attrs)
	}

	// Decisions: each walker outside the cut exactly once, as the ground
	// truth says; the walker inside the cut not at all.
	events := col.all()
	used := make([]bool, len(events))
	for _, w := range walkers {
		var got []decision.Event
		for i, e := range events {
			f := cam.frameAt(e.FirstSeen)
			if f >= w.FirstFrame-5 && f <= w.LastFrame+25 {
				got = append(got, e)
				used[i] = true
			}
		}
		outcome, reason := ioExpected(fx, w)
		if w.ID == lost.ID {
			t.Logf("walker %s (%s) crossed during the cut: %d decisions (lost: never seen, gate stayed closed)", w.ID, w.Name, len(got))
			if len(got) != 0 {
				t.Errorf("walker %s crossed while the camera was cut, yet got %d decisions: %+v", w.ID, len(got), got)
			}
			continue
		}
		if len(got) != 1 || !ioMatches(fx, w, got[0]) {
			t.Errorf("walker %s (%s): want one %s/%s, got %s", w.ID, w.Name, outcome, reason, ioDescribeEvents(got))
			continue
		}
		e := got[0]
		when := "before the cut"
		if e.FirstSeen.After(restoreAt) {
			when = fmt.Sprintf("after the restore, decided %s after it", e.DecidedAt.Sub(restoreAt).Round(time.Millisecond))
		}
		t.Logf("walker %s (%s): %s/%s person=%s, %s", w.ID, w.Name, e.Decision, e.Reason, personOf(e), when)
	}
	for i, e := range events {
		if !used[i] {
			t.Errorf("decision outside every walker's frames: %s/%s person=%s first seen at frame %d", e.Decision, e.Reason, personOf(e), cam.frameAt(e.FirstSeen))
		}
	}
	resumed := 0
	for _, e := range events {
		if e.FirstSeen.After(restoreAt) {
			resumed++
		}
	}
	if resumed < 2 {
		t.Errorf("%d decisions after the restore, want the 2 walkers who came after it", resumed)
	}
}

func ioBetween(recs []ioRecord, from, to time.Time) []ioRecord {
	var out []ioRecord
	for _, r := range recs {
		if !r.Time.Before(from) && !r.Time.After(to) {
			out = append(out, r)
		}
	}
	return out
}

func ioErrors(recs []ioRecord) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Attrs["error"])
	}
	return out
}

func ioDescribeWalkers(fx *walkFixture, ws []synth.WalkerTruth) string {
	var parts []string
	for _, w := range ws {
		o, r := ioExpected(fx, w)
		parts = append(parts, fmt.Sprintf("%s %s frames %d-%d → %s/%s", w.ID, w.Name, w.FirstFrame, w.LastFrame, o, r))
	}
	return strings.Join(parts, "; ")
}

func ioDescribeEvents(es []decision.Event) string {
	if len(es) == 0 {
		return "none"
	}
	var parts []string
	for _, e := range es {
		parts = append(parts, fmt.Sprintf("%s/%s person=%s", e.Decision, e.Reason, personOf(e)))
	}
	return strings.Join(parts, ", ")
}

// ---------------------------------------------------------------------------
// b. Webhook receiver down, then back.

// gateController is the test's webhook receiver: a gate controller that
// acts on each Idempotency-Key once. While down nothing listens on its
// address (connections are refused); then it answers 503 for a number of
// requests; then it accepts.
type gateController struct {
	t    *testing.T
	addr string

	mu          sync.Mutex
	srv         *http.Server
	unavailable int // 503s still to give
	answered503 int
	accepted    map[string]int // POSTs answered 2xx, by Idempotency-Key
	acceptedAt  map[string]time.Time
	events      map[string]decision.Event
	order       []string
	mismatched  []string // Idempotency-Key != body id
}

// newDownController reserves an address and leaves it closed: the
// controller starts down.
func newDownController(t *testing.T) *gateController {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &gateController{t: t, addr: ln.Addr().String(), accepted: map[string]int{},
		acceptedAt: map[string]time.Time{}, events: map[string]decision.Event{}}
	ln.Close()
	t.Cleanup(func() {
		c.mu.Lock()
		srv := c.srv
		c.mu.Unlock()
		if srv != nil {
			srv.Close()
		}
	})
	return c
}

func (c *gateController) URL() string { return "http://" + c.addr + "/gate/decisions" }

// up starts listening; the first unavailable requests get 503.
func (c *gateController) up(unavailable int) {
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		c.t.Errorf("controller: listen %s: %v", c.addr, err)
		return
	}
	srv := &http.Server{Handler: http.HandlerFunc(c.handle)}
	c.mu.Lock()
	c.srv, c.unavailable = srv, unavailable
	c.mu.Unlock()
	go srv.Serve(ln)
}

func (c *gateController) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unavailable > 0 {
		c.unavailable--
		c.answered503++
		w.Header().Set("Retry-After", "1")
		http.Error(w, "controller starting", http.StatusServiceUnavailable)
		return
	}
	var e decision.Event
	if err := json.Unmarshal(body, &e); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	key := r.Header.Get(sink.IdempotencyHeader)
	if key != e.ID {
		c.mismatched = append(c.mismatched, fmt.Sprintf("key %q body id %q", key, e.ID))
	}
	if c.accepted[key] == 0 {
		c.order = append(c.order, key)
		c.events[key] = e
		c.acceptedAt[key] = time.Now()
	}
	c.accepted[key]++
	w.WriteHeader(http.StatusNoContent)
}

// firstAccepted is when the controller first acted on key (zero: never).
func (c *gateController) firstAccepted(key string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acceptedAt[key]
}

func (c *gateController) snapshot() (accepted map[string]int, order []string, answered503 int, mismatched []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	accepted = map[string]int{}
	for k, v := range c.accepted {
		accepted[k] = v
	}
	return accepted, slices.Clone(c.order), c.answered503, slices.Clone(c.mismatched)
}

// webhookNode starts a node over the clip (every frame, as fast as it
// can) with a webhook to ctl, and returns it running.
func webhookNode(t *testing.T, fx *walkFixture, ctl *gateController) (*Node, *collector, *ioLog, <-chan error) {
	t.Helper()
	cfg := testConfig(t, fx, true)
	cfg.Sinks.Webhook = &WebhookConfig{URL: ctl.URL()}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs, logger := newIOLog(t)
	col := &collector{}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	n, err := New(ctx, cfg, Options{Sinks: []decision.Sink{col}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	return n, col, logs, done
}

// webhookMetric reads one of the webhook sink's series.
func webhookMetric(t *testing.T, n *Node, name string, labels ...string) float64 {
	return ioMetric(t, n.Registry(), "loopgate_sink_"+name, append([]string{"sink", "webhook"}, labels...)...)
}

// TestFaultWebhookDownThenBack: the gate controller is down when the node
// starts (connection refused), then answers 503 with Retry-After twice,
// then accepts. sink/webhook.go promises at-least-once delivery, in order,
// each POST carrying Idempotency-Key = the event id, retried with capped
// backoff for up to 10 attempts per event. The outage here stays inside
// that budget (at most 6 refused attempts and 2 503s for the head event).
// The clip has two lanes, so decisions come in pairs and queue behind the
// one being retried.
// It proves: every decision the node made reaches the controller, in
// decision order, with Idempotency-Key equal to its id, accepted exactly
// once (refused and 503'd attempts were never acted on, so at-least-once
// needs no de-duplication here); nothing is dropped or given up; the
// outage shows in retries_total, failed_total{network,http_5xx},
// queue_length (decisions waiting behind the one in flight) and
// "webhook: delivery failed; retrying" logs.
func TestFaultWebhookDownThenBack(t *testing.T) {
	clip := synth.DefaultConfig()
	clip.Seed = 19
	clip.TwoLanes = true
	fx := newWalkFixture(t, clip, 3, 1, 1)
	ctl := newDownController(t)
	n, col, logs, done := webhookNode(t, fx, ctl)

	// The backlog gauge, sampled for the whole run.
	var maxQueue atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			maxQueue.Store(max(maxQueue.Load(), int64(webhookMetric(t, n, "queue_length"))))
			select {
			case <-stopSampling:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()

	// Down until the head event has been refused at least twice and, if it
	// comes in time, a third decision queues behind it; never past 6
	// refusals, so the head event keeps 4 of its 10 attempts.
	ioWaitFor(t, "the first decision", 3*time.Minute, func() bool { return len(col.all()) > 0 })
	head := col.all()[0]
	ioWaitFor(t, "refused deliveries", time.Minute, func() bool {
		refused := webhookMetric(t, n, "failed_total", "reason", sink.FailNetwork)
		return refused >= 6 || (refused >= 2 && len(col.all()) >= 3)
	})
	refused := webhookMetric(t, n, "failed_total", "reason", sink.FailNetwork)
	decidedWhileDown := len(col.all())
	ctl.up(2)
	upAt := time.Now()
	t.Logf("controller refused connections for %s after the first decision (%.0f refused attempts, %d decisions made); now 503 twice, then accept",
		upAt.Sub(head.DecidedAt).Round(time.Millisecond), refused, decidedWhileDown)

	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	events := col.all()
	ioWaitFor(t, "every decision at the controller", time.Minute, func() bool {
		accepted, _, _, _ := ctl.snapshot()
		return len(accepted) >= len(events)
	})
	close(stopSampling)
	<-sampled
	if err := n.sinks.Close(); err != nil {
		t.Errorf("closing the sinks: %v", err)
	}

	accepted, order, got503, mismatched := ctl.snapshot()
	retries := webhookMetric(t, n, "retries_total")
	headIn := ctl.firstAccepted(head.ID)
	behind := 0 // decisions made while the head event was still undelivered
	var lags []string
	for _, e := range events {
		if e.DecidedAt.Before(headIn) {
			behind++
		}
		lags = append(lags, ctl.firstAccepted(e.ID).Sub(e.DecidedAt).Round(time.Millisecond).String())
	}
	t.Logf("%d decisions, %d of them made before the first was delivered; controller accepted %d distinct ids, answered 503 %d times; first decision delivered %s after it was made, %s after the controller listened again; decided→accepted per decision %v; retries_total %.0f, failed_total network %.0f http_5xx %.0f gave_up %.0f, delivered_total %.0f, dropped_total %.0f, max queue_length %d",
		len(events), behind, len(accepted), got503, headIn.Sub(head.DecidedAt).Round(time.Millisecond), headIn.Sub(upAt).Round(time.Millisecond), lags,
		retries, webhookMetric(t, n, "failed_total", "reason", sink.FailNetwork), webhookMetric(t, n, "failed_total", "reason", sink.FailStatus5xx),
		webhookMetric(t, n, "failed_total", "reason", sink.FailGaveUp), webhookMetric(t, n, "delivered_total"), webhookMetric(t, n, "dropped_total"), maxQueue.Load())
	checkDecisions(t, fx, events, time.Time{}, false)
	if len(mismatched) > 0 {
		t.Errorf("Idempotency-Key differs from the event id: %v", mismatched)
	}
	for _, e := range events {
		if accepted[e.ID] != 1 {
			t.Errorf("decision %s (%s/%s) accepted %d times, want exactly once", e.ID, e.Decision, e.Reason, accepted[e.ID])
		}
	}
	if len(accepted) != len(events) {
		t.Errorf("controller accepted %d ids for %d decisions", len(accepted), len(events))
	}
	// The webhook sends in decision order: the controller's first-seen
	// order is the node's.
	var ids []string
	for _, e := range events {
		ids = append(ids, e.ID)
	}
	if !slices.Equal(order, ids) {
		t.Errorf("controller got %v, node decided %v", order, ids)
	}
	if got503 != 2 {
		t.Errorf("controller answered 503 %d times, want 2", got503)
	}
	if f := webhookMetric(t, n, "failed_total", "reason", sink.FailNetwork); f < 2 {
		t.Errorf("failed_total{reason=network} = %.0f, want at least 2", f)
	}
	if f := webhookMetric(t, n, "failed_total", "reason", sink.FailStatus5xx); f != 2 {
		t.Errorf("failed_total{reason=http_5xx} = %.0f, want 2", f)
	}
	if want := webhookMetric(t, n, "failed_total", "reason", sink.FailNetwork) + 2; retries != want {
		t.Errorf("retries_total = %.0f, want one per failed attempt (%.0f)", retries, want)
	}
	if d := webhookMetric(t, n, "delivered_total"); int(d) != len(events) {
		t.Errorf("delivered_total = %.0f, want %d", d, len(events))
	}
	if d := webhookMetric(t, n, "dropped_total"); d != 0 {
		t.Errorf("dropped_total = %.0f, want 0", d)
	}
	if g := webhookMetric(t, n, "failed_total", "reason", sink.FailGaveUp); g != 0 {
		t.Errorf("failed_total{reason=gave_up} = %.0f, want 0", g)
	}
	// queue_length counts what waits behind the event being retried (not
	// that event itself): with decisions queued behind it, it must show.
	if behind >= 2 && maxQueue.Load() < 1 {
		t.Errorf("%d decisions waited behind the first, but queue_length never rose above 0", behind-1)
	}
	if behind < 2 {
		t.Logf("no decision queued behind the first during the outage: queue_length was not exercised")
	}
	if r := logs.find("webhook: delivery failed; retrying"); len(r) < int(retries) {
		t.Errorf("%d retry log records for %.0f retries", len(r), retries)
	} else {
		t.Logf("log: %d WARN \"webhook: delivery failed; retrying\", first: %v", len(r), r[0].Attrs)
	}
}

// TestFaultWebhookOutageBeyondRetryBudget states what a longer controller
// outage loses. The node's webhook (node config exposes no retry settings)
// tries each event 10 times with backoff 100 ms doubling to 5 s, jittered
// to [d/2, d]: an event is given up after 10.6-21.3 s of failures. Here the
// controller refuses connections until the first decision has been given
// up, then comes back. It proves: that decision never reaches the
// controller (failed_total{reason=gave_up} = 1, "webhook: giving up on
// decision" logged with its event id) but is still in the node's audit
// table; every other decision reaches the controller exactly once.
func TestFaultWebhookOutageBeyondRetryBudget(t *testing.T) {
	clip := synth.DefaultConfig()
	clip.Seed = 23
	fx := newWalkFixture(t, clip, 2, 1, 0)
	ctl := newDownController(t)
	n, col, logs, done := webhookNode(t, fx, ctl)

	ioWaitFor(t, "the first decision", 3*time.Minute, func() bool { return len(col.all()) > 0 })
	first := col.all()[0]
	firstAt := time.Now()
	ioWaitFor(t, "the webhook to give up on the first decision", time.Minute, func() bool {
		return webhookMetric(t, n, "failed_total", "reason", sink.FailGaveUp) >= 1
	})
	gaveUpAfter := time.Since(firstAt)
	ctl.up(0)
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	events := col.all()
	ioWaitFor(t, "the other decisions at the controller", time.Minute, func() bool {
		accepted, _, _, _ := ctl.snapshot()
		return len(accepted) >= len(events)-1
	})
	if err := n.sinks.Close(); err != nil {
		t.Errorf("closing the sinks: %v", err)
	}
	checkDecisions(t, fx, events, time.Time{}, false)
	accepted, _, _, _ := ctl.snapshot()
	t.Logf("first decision %s given up %s after it was made (%.0f refused attempts); controller accepted %d of %d decisions",
		first.ID, gaveUpAfter.Round(time.Millisecond), webhookMetric(t, n, "failed_total", "reason", sink.FailNetwork), len(accepted), len(events))
	if accepted[first.ID] != 0 {
		t.Errorf("given-up decision %s reached the controller", first.ID)
	}
	for _, e := range events[1:] {
		if accepted[e.ID] != 1 {
			t.Errorf("decision %s accepted %d times, want once", e.ID, accepted[e.ID])
		}
	}
	if g := webhookMetric(t, n, "failed_total", "reason", sink.FailGaveUp); g != 1 {
		t.Errorf("failed_total{reason=gave_up} = %.0f, want 1", g)
	}
	gaveUp := logs.find("webhook: giving up on decision")
	if len(gaveUp) != 1 || gaveUp[0].Attrs["event_id"] != first.ID || gaveUp[0].Level != slog.LevelError {
		t.Errorf("want one ERROR \"webhook: giving up on decision\" naming %s, got %+v", first.ID, gaveUp)
	} else {
		t.Logf("log: ERROR %q %v", gaveUp[0].Msg, gaveUp[0].Attrs)
	}
	// The audit sink kept the record the controller never got.
	var stored int
	if err := n.Gallery().Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM decisions WHERE event_id = $1`, first.ID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != 1 {
		t.Errorf("given-up decision %s: %d rows in the audit table, want 1", first.ID, stored)
	}
}
