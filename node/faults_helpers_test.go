package node

// Shared by the replication and fault tests (replica_test.go,
// faults_db_test.go): throwaway PostgreSQL clusters, SYNTHETIC clips whose
// walkers are enrolled when the test chooses, the decisions table, metrics
// and log records.

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/loopgate/loopgate/camera/synth"
	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/decision"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/engine/vision"
	"github.com/loopgate/loopgate/enroll"
	"github.com/loopgate/loopgate/internal/pgcluster"
	"github.com/loopgate/loopgate/internal/testenv"
)

// faultClip writes a SYNTHETIC clip of walkers, in this order, and returns
// its path and ground truth. It enrols nobody.
func faultClip(t *testing.T, cfg synth.Config, walkers []synth.Walker) (string, synth.Manifest) {
	t.Helper()
	clip := filepath.Join(t.TempDir(), fmt.Sprintf("walk-synthetic-seed%d.avi", cfg.Seed))
	man, err := synth.Write(context.Background(), clip, cfg, walkers)
	if err != nil {
		t.Fatal(err)
	}
	return clip, man
}

// keptEnrolments is an enroll.Store that keeps what it is given instead of
// writing it, so a test can commit an enrolment at the moment it measures
// from.
type keptEnrolments struct{ got []gallery.Enrolment }

func (k *keptEnrolments) Enrol(_ context.Context, e gallery.Enrolment) (gallery.EnrolResult, error) {
	k.got = append(k.got, e)
	return gallery.EnrolResult{Added: len(e.Templates)}, nil
}

// enrolmentsOf makes each enrolled walker's enrolment for gates from its
// enrol photo, through the enrolment service (real decoding and go-face
// embedding, as walkfixture does), keyed by external ID. Nothing is stored.
func enrolmentsOf(t *testing.T, walkers []synth.Walker, gates []string) map[string]gallery.Enrolment {
	t.Helper()
	rec, err := facerec.New(facerec.Config{ModelDir: testenv.ModelDir(t), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	kept := &keptEnrolments{}
	svc := &enroll.Service{Decoder: vision.NewDecoder(engine.ImageLimits{}), Embedder: rec, Store: kept, Model: rec.ModelTag()}
	out := map[string]gallery.Enrolment{}
	for _, w := range walkers {
		if !w.Enrolled {
			continue
		}
		data, err := os.ReadFile(w.EnrolPhoto)
		if err != nil {
			t.Fatal(err)
		}
		id := walkerExternalID(w)
		if _, err := svc.Enrol(context.Background(), enroll.Request{ExternalID: id, Name: strings.ReplaceAll(w.Name, "_", " "),
			Source: "test", Gates: gates, Photos: []enroll.Photo{{Name: w.EnrolPhoto, Data: data}}}); err != nil {
			t.Fatalf("enrol %s: %v", w.Name, err)
		}
		out[id] = kept.got[len(kept.got)-1]
	}
	return out
}

// walkerExternalID is the external ID a walker is enrolled under (as
// walkfixture.WalkerID names it in the ground truth).
func walkerExternalID(w synth.Walker) string { return "lfw-" + w.Name }

// primaryWithGallery starts a throwaway primary cluster and migrates it.
func primaryWithGallery(t *testing.T) (*pgcluster.Cluster, *gallery.Gallery) {
	t.Helper()
	p := pgcluster.NewPrimary(t, "primary")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g, _, err := gallery.Open(ctx, p.URL())
	if err != nil {
		t.Fatalf("migrate the primary: %v\n%s", err, p.Log())
	}
	t.Cleanup(g.Close)
	return p, g
}

// decisionRows counts the decisions table's rows per event_id (one
// connection, so it fails fast while the database is down).
func decisionRows(ctx context.Context, url string) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT event_id, count(*) FROM decisions GROUP BY event_id`)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		out[id] = n
	}
	return out, rows.Err()
}

// exactlyOnce checks that every id is in rows exactly once and reports the
// rows that are not among ids (they are not errors: a sink after the audit
// sink may not have seen them before a crash).
func exactlyOnce(t *testing.T, ids []string, rows map[string]int) (missing, duplicated int, extra []string) {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		if want[id] {
			t.Errorf("event_id %s emitted twice", id)
		}
		want[id] = true
		switch n := rows[id]; {
		case n == 0:
			missing++
			t.Errorf("decision %s is not in the decisions table: LOST", id)
		case n > 1:
			duplicated++
			t.Errorf("decision %s is in the decisions table %d times", id, n)
		}
	}
	for id := range rows {
		if !want[id] {
			extra = append(extra, id)
		}
	}
	sort.Strings(extra)
	return missing, duplicated, extra
}

// metricSum adds up the samples of the metric family name whose labels
// include every pair of want (counters, gauges, untyped).
func metricSum(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for k, v := range want {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Untyped != nil:
				sum += m.GetUntyped().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// waitUntil polls cond every step until it holds (returns when it did) or
// timeout passes (fatal, naming what was awaited).
func waitUntil(t *testing.T, timeout, step time.Duration, what string, cond func() bool) time.Time {
	t.Helper()
	if !poll(timeout, step, cond) {
		t.Fatalf("waited %s for %s", timeout, what)
	}
	return time.Now()
}

// poll calls cond every step until it holds (true) or timeout passes.
func poll(timeout, step time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(step)
	}
}

// logRecords is a slog handler that passes records at Info and above to the
// test log and keeps them (but the per-decision lines) for assertions.
type logRecords struct {
	t     *testing.T
	attrs []slog.Attr
	mu    *sync.Mutex
	kept  *[]keptRecord
	ended *atomic.Bool // the test is over: t.Log would panic
}

type keptRecord struct {
	At    time.Time
	Level slog.Level
	Msg   string
	Attrs string
}

func newLogRecords(t *testing.T) *logRecords {
	h := &logRecords{t: t, mu: &sync.Mutex{}, kept: &[]keptRecord{}, ended: &atomic.Bool{}}
	t.Cleanup(func() { h.ended.Store(true) })
	return h
}

func (h *logRecords) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	if !h.ended.Load() {
		h.t.Logf("%s %s %s%s", r.Time.Format("15:04:05.000"), r.Level, r.Message, b.String())
	}
	if r.Message != "decision" {
		h.mu.Lock()
		*h.kept = append(*h.kept, keptRecord{At: r.Time, Level: r.Level, Msg: r.Message, Attrs: b.String()})
		h.mu.Unlock()
	}
	return nil
}

func (h *logRecords) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(slices.Clone(h.attrs), as...)
	return &c
}

func (h *logRecords) WithGroup(string) slog.Handler { return h }

// between returns the kept records logged in [from, to).
func (h *logRecords) between(from, to time.Time) []keptRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []keptRecord
	for _, r := range *h.kept {
		if !r.At.Before(from) && r.At.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// summarise counts records by level and message, for the test log.
func summarise(rs []keptRecord) string {
	n := map[string]int{}
	for _, r := range rs {
		n[r.Level.String()+" "+strings.TrimSpace(r.Msg)]++
	}
	keys := make([]string, 0, len(n))
	for k := range n {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %dx %s", n[k], k)
	}
	return b.String()
}

// decidedAfter returns the events decided at or after from.
func decidedAfter(events []decision.Event, from time.Time) []decision.Event {
	var out []decision.Event
	for _, e := range events {
		if !e.DecidedAt.Before(from) {
			out = append(out, e)
		}
	}
	return out
}

// ofPerson reports whether e names the person with this external ID.
func ofPerson(e decision.Event, externalID string) bool {
	return e.Person != nil && e.Person.ExternalID == externalID
}

// quantile is the q-quantile (nearest rank) of ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(q * float64(len(s))))
	return s[min(max(rank-1, 0), len(s)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

// newLogger logs to the test at Info and above, each line naming the node.
func newLogger(t *testing.T, node string) *slog.Logger {
	return slog.New(newLogRecords(t)).With("node", node)
}

func modelDir(t *testing.T) string { return testenv.ModelDir(t) }

// setAuditSpool gives the audit sink a spool directory.
func setAuditSpool(cfg *Config, dir string) { cfg.Sinks.AuditSpool.Dir = dir }
