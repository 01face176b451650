package localgallery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/engine/pipeline"
	"github.com/loopgate/loopgate/internal/testenv"
)

// The pipeline searches a Copy in place of the SQL gallery.
var _ pipeline.Searcher = (*Copy)(nil)

// inCopy returns the copy's view of a person in scope, or nil.
func inCopy(t *testing.T, c *Copy, id string) *engine.PersonMatch {
	t.Helper()
	m, err := c.RegisteredInScope(context.Background(), id, testScope)
	if errors.Is(err, engine.ErrUnknownPerson) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return &m
}

func refresh(t *testing.T, c *Copy) {
	t.Helper()
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// quietCopy opens a copy whose background loop practically never runs, so
// the test decides when it refreshes.
func quietCopy(t *testing.T, url string, reg prometheus.Registerer) *Copy {
	return openCopy(t, Config{ReadURL: url, Scope: testScope, RefreshInterval: time.Hour, MaxStaleness: 2 * time.Hour,
		Metrics: NewMetrics(reg)})
}

func TestIncrementalRefresh(t *testing.T) {
	g, url := openGallery(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	alice, bob, carol := randomEmbedding(r), randomEmbedding(r), randomEmbedding(r)
	enrol(t, g, "alice", []string{gateA}, testModel, alice)
	enrol(t, g, "bob", []string{gateB}, testModel, bob)
	reg := prometheus.NewRegistry()
	c := quietCopy(t, url, reg)
	// The LISTEN connection kicks a refresh whenever something commits;
	// stop the loop so every refresh below is the test's own.
	c.stop()
	c.wg.Wait()
	probes := []engine.Embedding{alice, bob, carol, randomEmbedding(r)}
	ids := []string{"alice", "bob", "carol"}
	check := func(step string) {
		t.Helper()
		refresh(t, c)
		t.Run(step, func(t *testing.T) { compareWithSQL(t, c, g, probes, ids) })
	}
	if inCopy(t, c, "bob") != nil {
		t.Fatal("bob is registered for another gate but is in the copy")
	}

	// An enrolment.
	enrol(t, g, "carol", []string{zoneZ}, testModel, carol)
	check("enrolment")
	if inCopy(t, c, "carol") == nil {
		t.Fatal("carol's enrolment not picked up")
	}
	before := testutil.ToFloat64(c.m.ChangesApplied)

	// A revocation.
	if err := g.Revoke(ctx, "alice", "badge reported lost"); err != nil {
		t.Fatal(err)
	}
	check("revocation")
	if m := inCopy(t, c, "alice"); m == nil || !errors.Is(m.Registration.Inactive(time.Now()), engine.ErrRevoked) {
		t.Fatalf("alice's revocation not picked up: %+v", m)
	}
	if got := testutil.ToFloat64(c.m.ChangesApplied) - before; got != 1 {
		t.Fatalf("a revocation reloaded %v people, want 1", got)
	}

	// Gate changes: bob moves into the scope, carol out of it.
	if err := g.SetGates(ctx, "bob", []string{gateA}); err != nil {
		t.Fatal(err)
	}
	if err := g.SetGates(ctx, "carol", []string{gateB}); err != nil {
		t.Fatal(err)
	}
	check("gates")
	if inCopy(t, c, "bob") == nil || inCopy(t, c, "carol") != nil {
		t.Fatal("gate changes not picked up")
	}

	// A validity change.
	past := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
	if err := g.SetValidity(ctx, "bob", nil, &past); err != nil {
		t.Fatal(err)
	}
	check("validity")
	if m := inCopy(t, c, "bob"); m == nil || m.Registration.ValidUntil == nil || !m.Registration.ValidUntil.Equal(past) {
		t.Fatalf("bob's window not picked up: %+v", m)
	}

	// Another template for bob, then a deleted person.
	enrol(t, g, "bob", nil, testModel, carol)
	check("template added")
	if m, err := c.PersonDistance(ctx, carol, testModel, "bob"); err != nil || m.Distance > 1e-6 {
		t.Fatalf("bob's new template not picked up: %+v %v", m, err)
	}
	if _, err := g.Pool().Exec(ctx, `DELETE FROM people WHERE external_id = 'alice'`); err != nil {
		t.Fatal(err)
	}
	check("deletion")
	if inCopy(t, c, "alice") != nil {
		t.Fatal("alice was deleted but is still in the copy")
	}

	// Nothing new: a refresh changes nothing and reloads nobody.
	applied := testutil.ToFloat64(c.m.ChangesApplied)
	refresh(t, c)
	if testutil.ToFloat64(c.m.ChangesApplied) != applied {
		t.Fatal("a refresh without changes reloaded people")
	}
	if n := testutil.ToFloat64(c.m.Refreshes.WithLabelValues(RefreshUnchanged)); n < 1 {
		t.Fatalf("refresh_total{result=unchanged} = %v", n)
	}
	if n := testutil.ToFloat64(c.m.Refreshes.WithLabelValues(RefreshFull)); n != 1 {
		t.Fatalf("refresh_total{result=full} = %v, want only the first load", n)
	}
	if n := testutil.ToFloat64(c.m.People); n != 1 {
		t.Fatalf("copy_people = %v, want 1 (bob)", n)
	}

	// A TRUNCATE cannot be followed person by person: everything reloads.
	if _, err := g.Pool().Exec(ctx, `TRUNCATE person_gates`); err != nil {
		t.Fatal(err)
	}
	check("truncate")
	if st := c.Status(); st.People != 0 {
		t.Fatalf("after TRUNCATE person_gates the copy holds %d people", st.People)
	}
}

// TestLateCommitOfLowerSeq: a transaction that wrote its feed row first
// (lower seq) but commits after a later one must not be missed.
func TestLateCommitOfLowerSeq(t *testing.T) {
	g, url := openGallery(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(5, 6))
	enrol(t, g, "early", []string{gateA}, testModel, randomEmbedding(r))
	enrol(t, g, "late", []string{gateA}, testModel, randomEmbedding(r))
	c := quietCopy(t, url, nil)
	c.stop()
	c.wg.Wait()

	slow, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close(ctx)
	tx, err := slow.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var slowSeq int64
	if _, err := tx.Exec(ctx, `UPDATE people SET status = 'revoked', revoked_at = now(), revoked_reason = 'stolen badge' WHERE external_id = 'early'`); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, `SELECT max(seq) FROM gallery_changes`).Scan(&slowSeq); err != nil {
		t.Fatal(err)
	}
	// A later transaction takes a higher seq and commits first.
	if err := g.Revoke(ctx, "late", "left the company"); err != nil {
		t.Fatal(err)
	}
	var fastSeq int64
	if err := g.Pool().QueryRow(ctx, `SELECT max(seq) FROM gallery_changes`).Scan(&fastSeq); err != nil {
		t.Fatal(err)
	}
	if fastSeq <= slowSeq {
		t.Fatalf("test setup: the late commit's seq %d is not above the early one's %d", fastSeq, slowSeq)
	}
	refresh(t, c)
	if m := inCopy(t, c, "late"); m.Registration.Status != engine.StatusRevoked {
		t.Fatal("committed revocation not picked up")
	}
	if m := inCopy(t, c, "early"); m.Registration.Status != engine.StatusActive {
		t.Fatal("uncommitted revocation visible")
	}
	if st := c.Status(); st.MaxSeq < fastSeq {
		t.Fatalf("copy applied up to seq %d, want %d", st.MaxSeq, fastSeq)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	refresh(t, c)
	if m := inCopy(t, c, "early"); m.Registration.Status != engine.StatusRevoked {
		t.Fatalf("revocation with the lower seq %d, committed after seq %d was read, was missed", slowSeq, fastSeq)
	}
	// Rows already applied are not applied again.
	applied := len(c.seen)
	refresh(t, c)
	if len(c.seen) > applied {
		t.Fatalf("seen grew from %d to %d without changes", applied, len(c.seen))
	}
}

// TestBackgroundRefreshLatency measures how long a revocation takes to
// reach the copy through LISTEN/NOTIFY and the poll (logged, not asserted:
// speed belongs in benchmarks).
func TestBackgroundRefreshLatency(t *testing.T) {
	g, url := openGallery(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 8))
	for _, id := range []string{"p0", "p1", "p2", "p3", "p4"} {
		enrol(t, g, id, []string{gateA}, testModel, randomEmbedding(r))
	}
	for _, poll := range []struct {
		name     string
		interval time.Duration
	}{{"notify", time.Hour}, {"poll-250ms", DefaultRefreshInterval}} {
		t.Run(poll.name, func(t *testing.T) {
			c := openCopy(t, Config{ReadURL: url, Scope: testScope, RefreshInterval: poll.interval, MaxStaleness: 2 * time.Hour})
			if poll.interval == time.Hour {
				// Let the LISTEN connection come up.
				waitFor(t, func() bool { return len(c.kick) == 0 && listening(t, g, url) })
			} else {
				c.stop() // no LISTEN: the poll alone
				c.wg.Wait()
				ctx, stop := context.WithCancel(context.Background())
				t.Cleanup(stop)
				c.wg.Add(1)
				go func() { defer c.wg.Done(); c.refreshLoop(ctx) }()
			}
			var took []time.Duration
			for _, id := range []string{"p0", "p1", "p2", "p3", "p4"} {
				status := engine.StatusRevoked
				if inCopy(t, c, id).Registration.Status == engine.StatusRevoked {
					status = engine.StatusActive
				}
				start := time.Now()
				var err error
				if status == engine.StatusRevoked {
					err = g.Revoke(ctx, id, "test")
				} else {
					err = g.Reinstate(ctx, id)
				}
				if err != nil {
					t.Fatal(err)
				}
				waitFor(t, func() bool { return inCopy(t, c, id).Registration.Status == status })
				took = append(took, time.Since(start))
			}
			t.Logf("%s: commit → copy updated: %v", poll.name, took)
		})
	}
}

// listening reports whether some session listens on the channel.
func listening(t *testing.T, g *gallery.Gallery, _ string) bool {
	var n int
	if err := g.Pool().QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN `+Channel+`'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 20 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestOutageKeepsCopyThenGoesStale: with the database unreachable the copy
// answers as before while it ages; beyond MaxStaleness every search is
// ErrStale; when the database is back a refresh reloads everything,
// including what changed meanwhile.
func TestOutageKeepsCopyThenGoesStale(t *testing.T) {
	g, url := openGallery(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(9, 10))
	alice, bob := randomEmbedding(r), randomEmbedding(r)
	enrol(t, g, "alice", []string{gateA}, testModel, alice)
	enrol(t, g, "bob", []string{gateA}, testModel, bob)
	px, purl := testenv.NewDBProxy(t, url)
	reg := prometheus.NewRegistry()
	const bound = 1500 * time.Millisecond
	c := openCopy(t, Config{ReadURL: purl, Scope: testScope, RefreshInterval: 50 * time.Millisecond, MaxStaleness: bound,
		QueryTimeout: 500 * time.Millisecond, Metrics: NewMetrics(reg)})
	c.stop() // the test refreshes
	c.wg.Wait()
	want, err := c.NearestPeople(ctx, alice, testModel, testScope, 2)
	if err != nil || len(want) != 2 || want[0].ExternalID != "alice" {
		t.Fatalf("before the outage: %+v %v", want, err)
	}
	fresh := c.FreshAsOf()

	px.Cut()
	// Revoked during the outage: the node cannot know.
	if err := g.Revoke(ctx, "alice", "revoked during the outage"); err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(ctx); err == nil {
		t.Fatal("refresh succeeded with the database unreachable")
	}
	if n := testutil.ToFloat64(c.m.Refreshes.WithLabelValues(RefreshError)); n != 1 {
		t.Fatalf("refresh_total{result=error} = %v", n)
	}
	got, err := c.NearestPeople(ctx, alice, testModel, testScope, 2)
	if err != nil {
		t.Fatalf("within the bound the copy must answer: %v", err)
	}
	sameMatches(t, "during the outage", got, want)
	if !c.FreshAsOf().Equal(fresh) || c.Status().LastError == "" {
		t.Fatalf("a failed refresh moved freshness or kept no error: %+v", c.Status())
	}
	age1 := c.Status().Age
	ageGauge := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "loopgate_gallery_copy_age_seconds" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no copy_age_seconds metric")
		return 0
	}
	g1 := ageGauge()

	time.Sleep(bound + 100*time.Millisecond)
	_ = c.Refresh(ctx)
	if age2 := c.Status().Age; age2 <= age1 || ageGauge() <= g1 || ageGauge() < bound.Seconds() {
		t.Fatalf("age did not grow during the outage: %s then %s, gauge %v then %v", age1, age2, g1, ageGauge())
	}
	_, err = c.NearestPeople(ctx, alice, testModel, testScope, 2)
	var se *StaleError
	if !errors.Is(err, ErrStale) || !errors.As(err, &se) || se.Age <= bound || !se.FreshAsOf.Equal(fresh) {
		t.Fatalf("beyond the bound: %v", err)
	}
	if _, err := c.PersonDistance(ctx, bob, testModel, "bob"); !errors.Is(err, ErrStale) {
		t.Fatalf("1:1 beyond the bound: %v", err)
	}
	if _, err := c.RegisteredInScope(ctx, "bob", testScope); !errors.Is(err, ErrStale) {
		t.Fatalf("claim lookup beyond the bound: %v", err)
	}
	if !c.Status().Stale {
		t.Fatal("status not stale")
	}

	px.Restore()
	refresh(t, c)
	if n := testutil.ToFloat64(c.m.Refreshes.WithLabelValues(RefreshFull)); n != 2 {
		t.Fatalf("refresh after the outage was not a full load: full = %v", n)
	}
	if m := inCopy(t, c, "alice"); m.Registration.Status != engine.StatusRevoked {
		t.Fatal("revocation made during the outage not picked up")
	}
	if c.Status().Stale {
		t.Fatal("still stale after the database came back")
	}
}

// TestStartWithoutDatabase: no database and no snapshot at start means no
// copy, and every search says so; it loads once the database answers.
func TestStartWithoutDatabase(t *testing.T) {
	g, url := openGallery(t)
	r := rand.New(rand.NewPCG(1, 1))
	alice := randomEmbedding(r)
	enrol(t, g, "alice", []string{gateA}, testModel, alice)
	px, purl := testenv.NewDBProxy(t, url)
	px.Cut()
	c := openCopy(t, Config{ReadURL: purl, Scope: testScope, RefreshInterval: 20 * time.Millisecond, StartTimeout: time.Second})
	_, err := c.NearestPeople(context.Background(), alice, testModel, testScope, 2)
	var se *StaleError
	if !errors.As(err, &se) || !se.FreshAsOf.IsZero() {
		t.Fatalf("no copy: %v", err)
	}
	px.Restore()
	// The background loop (backing off while the database was away) loads it.
	waitFor(t, func() bool { return c.Status().Source == "database" })
	if m, err := c.NearestPeople(context.Background(), alice, testModel, testScope, 1); err != nil || m[0].ExternalID != "alice" {
		t.Fatalf("after the database came back: %+v %v", m, err)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	f := newFixture(t, 100)
	dir := t.TempDir()
	path := filepath.Join(dir, "gallery.snapshot")
	a := openCopy(t, Config{ReadURL: f.url, Scope: testScope, SnapshotPath: path, RefreshInterval: time.Hour, MaxStaleness: 2 * time.Hour})
	// The background saver writes the first snapshot within a second.
	waitFor(t, func() bool { _, err := os.Stat(path); return err == nil })
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot mode %v, want 0600", fi.Mode().Perm())
	}
	// The side file records freshness between snapshots.
	refresh(t, a)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	snap, err := readSnapshot(path)
	if err != nil {
		t.Fatal(err)
	}
	if !snap.FreshAsOf.Equal(a.FreshAsOf()) {
		t.Fatalf("snapshot fresh as of %s, the copy %s", snap.FreshAsOf, a.FreshAsOf())
	}

	// A node started with the database unreachable starts from the file
	// and answers exactly as the copy it was saved from.
	px, purl := testenv.NewDBProxy(t, f.url)
	px.Cut()
	b := openCopy(t, Config{ReadURL: purl, Scope: []string{zoneZ, gateA}, SnapshotPath: path, RefreshInterval: time.Hour,
		MaxStaleness: 2 * time.Hour, StartTimeout: time.Second})
	if st := b.Status(); st.Source != "snapshot" || st.Stale || !st.FreshAsOf.Equal(a.FreshAsOf()) || st.People != a.Status().People {
		t.Fatalf("started from the snapshot: %+v, saved from %+v", st, a.Status())
	}
	ctx := context.Background()
	for i, e := range f.probes {
		want, err := a.NearestPeople(ctx, e, testModel, testScope, 3)
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.NearestPeople(ctx, e, testModel, testScope, 3)
		if err != nil {
			t.Fatal(err)
		}
		for j := range want {
			if got[j].PersonID != want[j].PersonID || got[j].Distance != want[j].Distance || !sameRegistration(got[j].Registration, want[j].Registration) {
				t.Fatalf("probe %d rank %d: from the snapshot %+v, saved %+v", i, j, got[j], want[j])
			}
		}
	}
	b.Close()

	// A snapshot for another scope or model, or a damaged one, is not used.
	for _, cfg := range []Config{{Scope: []string{gateA}}, {Scope: testScope, Model: "other-model"}} {
		cfg.ReadURL, cfg.SnapshotPath, cfg.StartTimeout = purl, path, time.Second
		c := openCopy(t, cfg)
		if st := c.Status(); st.Source != "" || !st.Stale {
			t.Fatalf("snapshot of another scope/model used for %v %q: %+v", cfg.Scope, cfg.Model, st)
		}
		c.Close()
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 0xff
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readSnapshot(path); err == nil {
		t.Fatal("corrupt snapshot accepted")
	}
	c := openCopy(t, Config{ReadURL: purl, Scope: testScope, SnapshotPath: path, StartTimeout: time.Second})
	if st := c.Status(); st.Source != "" || !st.Stale {
		t.Fatalf("corrupt snapshot used: %+v", st)
	}
}

// TestSnapshotFreshnessSideFile: between snapshots (written only after
// changes) the side file carries freshness forward, so a restart during an
// outage gets the time of the last sync, not of the last change.
func TestSnapshotFreshnessSideFile(t *testing.T) {
	g, url := openGallery(t)
	r := rand.New(rand.NewPCG(2, 2))
	enrol(t, g, "alice", []string{gateA}, testModel, randomEmbedding(r))
	path := filepath.Join(t.TempDir(), "gallery.snapshot")
	a := openCopy(t, Config{ReadURL: url, Scope: testScope, SnapshotPath: path, RefreshInterval: 100 * time.Millisecond})
	waitFor(t, func() bool { _, err := os.Stat(path); return err == nil })
	first, err := readSnapshot(path)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := os.Stat(freshnessPath(path)); return err == nil })
	a.Close()
	later, err := readSnapshot(path)
	if err != nil {
		t.Fatal(err)
	}
	if later.ID != first.ID || !later.FreshAsOf.After(first.FreshAsOf) || !later.FreshAsOf.Equal(a.FreshAsOf()) {
		t.Fatalf("side file: first %s, later %s (same file %v), copy %s", first.FreshAsOf, later.FreshAsOf, later.ID == first.ID, a.FreshAsOf())
	}
	// A side file naming another snapshot is ignored.
	if err := writeFreshness(path, first.ID+1, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if s, err := readSnapshot(path); err != nil || !s.FreshAsOf.Equal(first.FreshAsOf) {
		t.Fatalf("foreign side file used: %s %v", s.FreshAsOf, err)
	}
}

// TestChangeFeed: the triggers of migration 0004 write one id-only row per
// person and statement, NOTIFY the newest seq, and old rows can be pruned.
func TestChangeFeed(t *testing.T) {
	g, url := openGallery(t)
	ctx := context.Background()
	listener, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, `LISTEN `+Channel); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(4, 4))
	// One enrolment: a person, three templates, two gates.
	enrol(t, g, "alice", []string{gateA, zoneZ}, testModel, randomEmbedding(r), randomEmbedding(r), randomEmbedding(r))
	var cols []string
	rows, err := g.Pool().Query(ctx, `SELECT column_name FROM information_schema.columns
		WHERE table_name = 'gallery_changes' AND table_schema = current_schema() ORDER BY ordinal_position`)
	if err != nil {
		t.Fatal(err)
	}
	if cols, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(cols); got != "[seq person_id xid changed_at]" {
		t.Fatalf("gallery_changes columns %s: ids and times only", got)
	}
	feed := func() (n, persons, maxSeq int64) {
		t.Helper()
		if err := g.Pool().QueryRow(ctx, `SELECT count(*), count(DISTINCT person_id), coalesce(max(seq), 0) FROM gallery_changes`).Scan(&n, &persons, &maxSeq); err != nil {
			t.Fatal(err)
		}
		return
	}
	// Enrol inserts the person, each template and the gates in statements
	// of their own: one row each.
	if n, persons, _ := feed(); n != 5 || persons != 1 {
		t.Fatalf("one enrolment wrote %d feed rows for %d people, want 5 for 1", n, persons)
	}
	// One statement touching three templates of one person: one row.
	if _, err := g.Pool().Exec(ctx, `UPDATE face_templates SET image_width = image_width`); err != nil {
		t.Fatal(err)
	}
	n, _, maxSeq := feed()
	if n != 6 {
		t.Fatalf("a statement updating 3 templates of one person wrote %d feed rows, want 1", n-5)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var last string
	for last != strconv.FormatInt(maxSeq, 10) {
		note, err := listener.WaitForNotification(wctx)
		if err != nil {
			t.Fatalf("no NOTIFY with seq %d (last %q): %v", maxSeq, last, err)
		}
		last = note.Payload
	}
	// A statement that touches nothing writes nothing.
	if _, err := g.Pool().Exec(ctx, `UPDATE people SET name = 'x' WHERE false`); err != nil {
		t.Fatal(err)
	}
	if n2, _, _ := feed(); n2 != n {
		t.Fatalf("an UPDATE of no rows wrote %d feed rows", n2-n)
	}
	var pruned, left int64
	if err := g.Pool().QueryRow(ctx, `SELECT gallery_changes_prune(interval '0 seconds')`).Scan(&pruned); err != nil {
		t.Fatal(err)
	}
	if err := g.Pool().QueryRow(ctx, `SELECT count(*) FROM gallery_changes`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if pruned != n || left != 0 {
		t.Fatalf("prune removed %d, left %d", pruned, left)
	}
}
