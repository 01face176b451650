package pgcluster_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/loopgate/loopgate/internal/pgcluster"
)

func TestPrimaryStreamsToReplicaAndSurvivesKill(t *testing.T) {
	ctx := context.Background()
	p := pgcluster.NewPrimary(t, "primary")
	r := p.NewReplica(t, "replica")
	pc, err := pgx.Connect(ctx, p.URL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Exec(ctx, `CREATE TABLE t (v int); INSERT INTO t VALUES (42)`); err != nil {
		t.Fatal(err)
	}
	pc.Close(ctx)

	rc, err := pgx.Connect(ctx, r.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close(ctx)
	deadline := time.Now().Add(10 * time.Second)
	var v int
	for {
		err := rc.QueryRow(ctx, `SELECT v FROM t`).Scan(&v)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("row never reached the replica: %v\n%s", err, r.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v != 42 {
		t.Fatalf("replica read %d", v)
	}
	// The replica is read-only.
	_, err = rc.Exec(ctx, `INSERT INTO t VALUES (1)`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "25006" {
		t.Fatalf("write on the replica: %v", err)
	}
	if lag, err := p.ReplayLag(ctx); err != nil || lag < 0 {
		t.Fatalf("lag %d %v", lag, err)
	}

	// A crash and a restart keep committed data.
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, p.URL()); err == nil {
		t.Fatal("connected to a killed server")
	}
	if err := p.Start(); err != nil {
		t.Fatalf("%v\n%s", err, p.Log())
	}
	pc, err = pgx.Connect(ctx, p.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	if err := pc.QueryRow(ctx, `SELECT v FROM t`).Scan(&v); err != nil || v != 42 {
		t.Fatalf("after crash recovery: %d %v", v, err)
	}
}
