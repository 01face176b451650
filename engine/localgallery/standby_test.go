package localgallery

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/internal/pgcluster"
)

// TestStandbyCopy reads the gallery from a real streaming replica
// (pg_basebackup) of a real primary: changes arrive by the poll alone (a
// standby delivers no NOTIFY); freshness comes from the node's heartbeat
// through the primary; and when the primary goes away the replica keeps
// answering, but the copy still goes stale, because the replica may be
// missing revocations.
func TestStandbyCopy(t *testing.T) {
	ctx := context.Background()
	primary := pgcluster.NewPrimary(t, "primary")
	g, _, err := gallery.Open(ctx, primary.URL())
	if err != nil {
		t.Fatalf("%v\n%s", err, primary.Log())
	}
	t.Cleanup(g.Close)
	r := rand.New(rand.NewPCG(8, 9))
	alice, bob := randomEmbedding(r), randomEmbedding(r)
	enrol(t, g, "alice", []string{gateA}, testModel, alice)
	replica := primary.NewReplica(t, "replica")

	const bound = 3 * time.Second
	c := openCopy(t, Config{ReadURL: replica.URL(), Scope: testScope, RefreshInterval: 50 * time.Millisecond,
		MaxStaleness: bound, Heartbeat: g.Pool(), HeartbeatInterval: 100 * time.Millisecond, NodeID: "standby-test",
		QueryTimeout: time.Second})
	waitFor(t, func() bool { st := c.Status(); return st.Standby && !st.Stale && inCopy(t, c, "alice") != nil })

	for _, step := range []struct {
		name   string
		change func() error
		done   func() bool
	}{
		{"revocation", func() error { return g.Revoke(ctx, "alice", "badge reported lost") },
			func() bool { return inCopy(t, c, "alice").Registration.Status == engine.StatusRevoked }},
		{"enrolment", func() error { enrol(t, g, "bob", []string{zoneZ}, testModel, bob); return nil },
			func() bool { return inCopy(t, c, "bob") != nil }},
	} {
		start := time.Now()
		if err := step.change(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, step.done)
		t.Logf("%s on the primary → copy reading the replica: %s", step.name, time.Since(start).Round(time.Millisecond))
	}
	st := c.Status()
	t.Logf("status: %+v", st)
	if st.Age > bound {
		t.Fatalf("copy on a healthy replica is %s old", st.Age)
	}

	// The primary goes away; the replica keeps answering.
	if err := primary.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return c.Status().Stale })
	if st := c.Status(); st.LastError != "" {
		t.Fatalf("reads from the replica failed (%s): the test wants them to succeed", st.LastError)
	}
	if _, err := c.NearestPeople(ctx, bob, testModel, testScope, 2); !errors.Is(err, ErrStale) {
		t.Fatalf("copy read from a replica cut off from its primary: %v", err)
	}
	t.Logf("stale with the primary down and the replica answering: %+v", c.Status())

	if err := primary.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !c.Status().Stale })
}
