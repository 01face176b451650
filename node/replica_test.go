package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/loopgate/loopgate/camera/synth"
	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/decision"
)

// feedBound is the most a change committed on the primary may take to reach
// a replica or a node's copy before the test calls the feed broken. The
// measured figures are logged; this only catches a feed that does not work.
const feedBound = 5 * time.Second

// walkBound is the most the test waits for a looping walker to be decided
// after a change reached the node: the walker has to come round again.
const walkBound = 45 * time.Second

// revocationReps is how many revocations (each after a reinstatement) the
// copy-level delays are measured over.
const revocationReps = 10

// registration states of the person under test, as the test changes them.
const (
	stateAbsent  = "absent" // not enrolled
	stateActive  = "active"
	stateRevoked = "revoked"
)

// change is one commit on the primary and when each reader saw it.
type change struct {
	state    string
	commit   time.Time            // the primary acknowledged the commit
	took     time.Duration        // the statement's round trip (commit is at most this early)
	replica  time.Time            // the replica returned the new state
	copySeen map[string]time.Time // node → its local copy returned the new state
}

// replicaNode is one gate node of the test.
type replicaNode struct {
	name string
	n    *Node
	col  *collector
	reg  *prometheus.Registry
}

// TestReplicaFeedTwoNodes: one primary, one streaming replica made with
// pg_basebackup, two gate nodes (gates bridge1-north and bridge1-south,
// zone bridge1), each with its own looping SYNTHETIC clip of the same LFW
// walker, reading the gallery from the replica and writing decisions to the
// primary. The walker is enrolled on the primary during the run, revoked,
// then reinstated and revoked revocationReps more times. Measured for every
// change: commit → the replica returns it, commit → each node's local copy
// returns it; for the enrolment and the first revocation also commit → the
// first open / registration_revoked deny of each node. Every decision of
// both nodes is checked against the state its copy held when it decided
// (no open after a node knew of a revocation), and is in the primary's
// decisions table exactly once.
func TestReplicaFeedTwoNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	primary, g := primaryWithGallery(t)
	replica := primary.NewReplica(t, "replica")

	const zone = "bridge1"
	walkers := vettedWalkers(t, 3, 0, 21)
	person := walkers[0]
	pid := walkerExternalID(person)
	enrolments := enrolmentsOf(t, walkers, []string{zone})
	// Two other people are registered from the start: the person under test
	// is searched among others, as at a real gate.
	for _, w := range walkers[1:] {
		if _, err := g.Enrol(ctx, enrolments[walkerExternalID(w)]); err != nil {
			t.Fatal(err)
		}
	}

	// The copies poll the replica every gallery.refresh_interval (NOTIFY
	// does not reach a standby): the default unless
	// LOOPGATE_TEST_GALLERY_REFRESH names another, to measure the knob.
	refresh := Defaults().Gallery.RefreshInterval
	if v := os.Getenv("LOOPGATE_TEST_GALLERY_REFRESH"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("LOOPGATE_TEST_GALLERY_REFRESH: %v", err)
		}
		refresh = d
	}

	var nodes []*replicaNode
	for i, gate := range []string{"bridge1-north", "bridge1-south"} {
		clipCfg := synth.DefaultConfig()
		clipCfg.Seed = int64(31 + i)
		clipCfg.GapSeconds = 0.5
		clip, _ := faultClip(t, clipCfg, []synth.Walker{person})
		cfg := Defaults()
		cfg.Gate = gate
		cfg.Zones = []string{zone}
		cfg.Database.URL = primary.URL()
		cfg.Database.ReadURL = replica.URL()
		cfg.Gallery.RefreshInterval = refresh
		cfg.Models.Dir = modelDir(t)
		cfg.Cameras = []CameraConfig{{Name: "lane-a", URI: clip, Lane: "a", Fast: true, Loop: true}}
		cfg.Recognizers = 1
		cfg.Sinks.Stdout = false
		cfg.Live.FPS = 0
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		rn := &replicaNode{name: gate, col: &collector{}, reg: prometheus.NewRegistry()}
		n, err := New(ctx, cfg, Options{Registry: rn.reg, Sinks: []decision.Sink{rn.col}, Logger: newLogger(t, gate)})
		if err != nil {
			t.Fatal(err)
		}
		rn.n = n
		nodes = append(nodes, rn)
	}
	runCtx, stop := context.WithCancel(ctx)
	var running sync.WaitGroup
	for _, rn := range nodes {
		running.Add(1)
		go func() {
			defer running.Done()
			if err := rn.n.Run(runCtx); err != nil {
				t.Errorf("%s: %v", rn.name, err)
			}
		}()
	}
	stopNodes := sync.OnceFunc(func() {
		stop()
		running.Wait()
		for _, rn := range nodes {
			rn.n.Close()
		}
	})
	t.Cleanup(stopNodes)

	// The walker is a stranger to both nodes before the enrolment.
	for _, rn := range nodes {
		waitUntil(t, walkBound, 20*time.Millisecond, rn.name+"'s first decision", func() bool { return len(rn.col.all()) > 0 })
	}

	repl, err := pgx.Connect(ctx, replica.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer repl.Close(ctx)
	replicaState := func() string {
		var s string
		err := repl.QueryRow(ctx, `SELECT p.status FROM people p JOIN person_gates g ON g.person_id = p.id
			WHERE p.external_id = $1 AND g.gate = $2`, pid, zone).Scan(&s)
		if errors.Is(err, pgx.ErrNoRows) {
			return stateAbsent
		}
		if err != nil {
			t.Errorf("read the replica: %v", err)
			return ""
		}
		return s
	}
	copyState := func(rn *replicaNode) string {
		m, err := rn.n.GalleryCopy().RegisteredInScope(ctx, pid, rn.n.cfg.Scope())
		switch {
		case errors.Is(err, engine.ErrUnknownPerson):
			return stateAbsent
		case err != nil:
			return "error: " + err.Error()
		}
		return m.Registration.Status
	}

	// apply commits one change on the primary and measures when the replica
	// and each node's copy return the new state.
	var changes []*change
	apply := func(state string, commit func() error) *change {
		t.Helper()
		c := &change{state: state, copySeen: map[string]time.Time{}}
		var wg sync.WaitGroup
		var mu sync.Mutex
		begin := make(chan struct{})
		watch := func(seen func(time.Time), read func() string) {
			defer wg.Done()
			<-begin
			deadline := time.Now().Add(feedBound)
			for time.Now().Before(deadline) {
				if read() == state {
					now := time.Now()
					mu.Lock()
					seen(now)
					mu.Unlock()
					return
				}
				time.Sleep(time.Millisecond)
			}
		}
		wg.Add(1 + len(nodes))
		go watch(func(at time.Time) { c.replica = at }, replicaState)
		for _, rn := range nodes {
			go watch(func(at time.Time) { c.copySeen[rn.name] = at }, func() string { return copyState(rn) })
		}
		start := time.Now()
		if err := commit(); err != nil {
			t.Fatalf("%s on the primary: %v", state, err)
		}
		c.commit = time.Now()
		c.took = c.commit.Sub(start)
		close(begin)
		wg.Wait()
		if c.replica.IsZero() {
			t.Fatalf("change %d (%s) did not reach the replica within %s\nreplica log:\n%s", len(changes)+1, state, feedBound, replica.Log())
		}
		for _, rn := range nodes {
			if c.copySeen[rn.name].IsZero() {
				t.Fatalf("change %d (%s) did not reach %s's gallery copy within %s (copy: %q, status %+v)", len(changes)+1, state,
					rn.name, feedBound, copyState(rn), rn.n.GalleryCopy().Status())
			}
		}
		changes = append(changes, c)
		lag, lagErr := primary.ReplayLag(ctx)
		t.Logf("CHANGE n=%d state=%s commit_rtt_ms=%s replica_ms=%s %s replay_lag_bytes=%d (%v)", len(changes), state, ms(c.took),
			ms(c.replica.Sub(c.commit)), nodeDelays(nodes, c), lag, lagErr)
		return c
	}
	// firstDecision waits for each node's first decision after c reached its
	// copy (the walker has to come round) and returns commit → decision.
	firstDecision := func(c *change, outcome decision.Outcome, reason decision.Reason) map[string]time.Duration {
		t.Helper()
		out := map[string]time.Duration{}
		for _, rn := range nodes {
			var got decision.Event
			waitUntil(t, walkBound, 20*time.Millisecond, fmt.Sprintf("%s: a %s/%s decision after the %s", rn.name, outcome, reason, c.state), func() bool {
				for _, e := range decidedAfter(rn.col.all(), c.copySeen[rn.name]) {
					if e.Decision == outcome && e.Reason == reason {
						got = e
						return true
					}
				}
				return false
			})
			out[rn.name] = got.DecidedAt.Sub(c.commit)
			t.Logf("DECISION node=%s after=%s outcome=%s/%s person=%s commit_to_decision_ms=%s copy_to_decision_ms=%s",
				rn.name, c.state, got.Decision, got.Reason, personOf(got), ms(out[rn.name]), ms(got.DecidedAt.Sub(c.copySeen[rn.name])))
		}
		return out
	}

	enrolled := apply(stateActive, func() error { _, err := g.Enrol(ctx, enrolments[pid]); return err })
	enrolToOpen := firstDecision(enrolled, decision.Open, decision.Matched)
	revoked := apply(stateRevoked, func() error { return g.Revoke(ctx, pid, "badge reported lost") })
	revokeToDeny := firstDecision(revoked, decision.Deny, decision.Revoked)
	for range revocationReps - 1 {
		apply(stateActive, func() error { return g.Reinstate(ctx, pid) })
		apply(stateRevoked, func() error { return g.Revoke(ctx, pid, "badge reported lost") })
	}
	// One more walk after the last revocation, so the check below sees
	// decisions under the final state too.
	last := changes[len(changes)-1]
	for _, rn := range nodes {
		waitUntil(t, walkBound, 20*time.Millisecond, rn.name+": a decision after the last revocation", func() bool {
			return len(decidedAfter(rn.col.all(), last.copySeen[rn.name].Add(settle))) > 0
		})
	}
	stopNodes()

	// Every decision against the state its node's copy held.
	checked, captureFailures := 0, 0
	for _, rn := range nodes {
		events := rn.col.all()
		for _, e := range events {
			state, settled := stateAt(changes, rn.name, e.DecidedAt)
			if !settled {
				t.Logf("decision %s at %s: the copy was changing; not judged (%s/%s)", rn.name, e.DecidedAt.Format("15:04:05.000"), e.Decision, e.Reason)
				continue
			}
			if e.Reason == decision.NoUsableCapture {
				// The track never had 3 quality frames (a fragment of a
				// walk, under load): the gallery was not asked.
				captureFailures++
				t.Logf("decision %s at %s: %s/%s frames=%d/%d: no search, not judged", rn.name,
					e.DecidedAt.Format("15:04:05.000"), e.Decision, e.Reason, e.FramesUsed, e.FramesSeen)
				continue
			}
			checked++
			want := map[string]string{
				stateAbsent:  "deny/unknown_face/-",
				stateActive:  "open/matched/" + pid,
				stateRevoked: "deny/registration_revoked/" + pid,
			}[state]
			if got := fmt.Sprintf("%s/%s/%s", e.Decision, e.Reason, personOf(e)); got != want {
				t.Errorf("%s decided %s at %s while its copy had the person %s: want %s", rn.name, got,
					e.DecidedAt.Format("15:04:05.000"), state, want)
			}
		}
		t.Logf("%s: %d decisions", rn.name, len(events))
	}
	t.Logf("JUDGED %d decisions against their node's copy; %d without a search (no_usable_capture)", checked, captureFailures)
	if checked == 0 {
		t.Fatal("no decision fell in a settled state")
	}

	// Both nodes wrote their decisions to the primary, each exactly once.
	var ids []string
	for _, rn := range nodes {
		for _, e := range rn.col.all() {
			ids = append(ids, e.ID)
		}
	}
	var rows map[string]int
	waitUntil(t, 30*time.Second, 100*time.Millisecond, "every decision in the primary's decisions table", func() bool {
		rows, err = decisionRows(ctx, primary.URL())
		return err == nil && len(rows) >= len(ids)
	})
	missing, dup, extra := exactlyOnce(t, ids, rows)
	t.Logf("AUDIT decisions=%d rows=%d missing=%d duplicated=%d not_emitted=%d", len(ids), len(rows), missing, dup, len(extra))

	// Figures: every revocation and reinstatement, per node.
	var replicaLag, revokeCopy, activateCopy []time.Duration
	for _, c := range changes {
		replicaLag = append(replicaLag, c.replica.Sub(c.commit))
		for _, rn := range nodes {
			d := c.copySeen[rn.name].Sub(c.commit)
			if c.state == stateRevoked {
				revokeCopy = append(revokeCopy, d)
			} else {
				activateCopy = append(activateCopy, d)
			}
		}
	}
	t.Logf("SUMMARY gallery.refresh_interval=%s", refresh)
	t.Logf("SUMMARY changes=%d commit_to_replica_ms p50=%s max=%s", len(changes), ms(quantile(replicaLag, .5)), ms(quantile(replicaLag, 1)))
	t.Logf("SUMMARY revocations=%d x %d nodes commit_to_copy_ms p50=%s max=%s", len(revokeCopy)/len(nodes), len(nodes),
		ms(quantile(revokeCopy, .5)), ms(quantile(revokeCopy, 1)))
	t.Logf("SUMMARY enrolment+reinstatements=%d x %d nodes commit_to_copy_ms p50=%s max=%s", len(activateCopy)/len(nodes), len(nodes),
		ms(quantile(activateCopy, .5)), ms(quantile(activateCopy, 1)))
	for _, rn := range nodes {
		t.Logf("SUMMARY node=%s enrol_to_open_ms=%s revoke_to_deny_ms=%s gallery_refresh_total=%v changes_applied=%v",
			rn.name, ms(enrolToOpen[rn.name]), ms(revokeToDeny[rn.name]),
			refreshCounts(t, rn.reg), metricSum(t, rn.reg, "loopgate_gallery_changes_applied_total", nil))
	}
}

// settle is how long after a node's copy returned a new state a decision is
// judged by it: the copy changed at most then, and a search that started
// just before may finish just after.
const settle = 50 * time.Millisecond

// stateAt is the person's state in node's copy at time at, and whether it
// was settled (not between a commit and the copy returning it).
func stateAt(changes []*change, node string, at time.Time) (string, bool) {
	state := stateAbsent
	for _, c := range changes {
		if at.Before(c.commit) {
			return state, true
		}
		if at.Before(c.copySeen[node].Add(settle)) {
			return "", false
		}
		state = c.state
	}
	return state, true
}

func nodeDelays(nodes []*replicaNode, c *change) string {
	var parts []string
	for _, rn := range nodes {
		parts = append(parts, fmt.Sprintf("copy_ms[%s]=%s", rn.name, ms(c.copySeen[rn.name].Sub(c.commit))))
	}
	return strings.Join(parts, " ")
}

func refreshCounts(t *testing.T, reg prometheus.Gatherer) string {
	var parts []string
	for _, r := range []string{"full", "changes", "unchanged", "error"} {
		parts = append(parts, fmt.Sprintf("%s:%v", r, metricSum(t, reg, "loopgate_gallery_refresh_total", map[string]string{"result": r})))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}
