package localgallery

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgvector/pgvector-go"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/gallery"
)

// seedPeople bulk-loads n random people with perPerson templates each,
// registered for gateA (COPY: the triggers fire once per statement).
func seedPeople(b *testing.B, g *gallery.Gallery, n, perPerson int, r *rand.Rand) {
	b.Helper()
	ctx := context.Background()
	pool := g.Pool()
	rows := make([][]any, n)
	for i := range rows {
		rows[i] = []any{"seed-" + strconv.Itoa(i), "Seed " + strconv.Itoa(i)}
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"people"}, []string{"external_id", "name"}, pgx.CopyFromRows(rows)); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO enrolments (person_id, source) SELECT id, 'bench' FROM people WHERE external_id LIKE 'seed-%'`); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO person_gates (person_id, gate) SELECT id, $1 FROM people WHERE external_id LIKE 'seed-%'`, gateA); err != nil {
		b.Fatal(err)
	}
	type ref struct{ person, enrolment int64 }
	q, err := pool.Query(ctx, `SELECT p.id, e.id FROM people p JOIN enrolments e ON e.person_id = p.id WHERE p.external_id LIKE 'seed-%'`)
	if err != nil {
		b.Fatal(err)
	}
	refs, err := pgx.CollectRows(q, func(r pgx.CollectableRow) (ref, error) {
		var x ref
		return x, r.Scan(&x.person, &x.enrolment)
	})
	if err != nil {
		b.Fatal(err)
	}
	var tpl [][]any
	for _, x := range refs {
		for j := range perPerson {
			e := randomEmbedding(r)
			sha := make([]byte, 32)
			copy(sha, fmt.Sprint(x.person, j))
			tpl = append(tpl, []any{x.person, x.enrolment, pgvector.NewVector(e[:]), testModel, sha, []int32{0, 0, 1, 1}, 250, 250})
		}
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"face_templates"},
		[]string{"person_id", "enrolment_id", "embedding", "model", "photo_sha256", "face_box", "image_width", "image_height"},
		pgx.CopyFromRows(tpl)); err != nil {
		b.Fatal(err)
	}
}

// go test -run - -bench . -benchtime 20x ./engine/localgallery/
func BenchmarkFullLoad(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("people=%d/templates=%d", n, 2*n), func(b *testing.B) {
			g, url := openGallery(b)
			seedPeople(b, g, n, 2, rand.New(rand.NewPCG(1, uint64(n))))
			c := openCopy(b, Config{ReadURL: url, Scope: testScope, RefreshInterval: time.Hour, MaxStaleness: 2 * time.Hour})
			c.stop()
			c.wg.Wait()
			ctx := context.Background()
			for b.Loop() {
				c.syncMu.Lock()
				err := c.fullLoad(ctx, time.Now())
				c.syncMu.Unlock()
				if err != nil {
					b.Fatal(err)
				}
			}
			if st := c.Status(); st.People != n || st.Templates != 2*n {
				b.Fatalf("loaded %+v", st)
			}
		})
	}
}

// BenchmarkRefreshOneChange: one revocation committed, then one refresh
// that applies it (the poll plus reloading one person).
func BenchmarkRefreshOneChange(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("people=%d", n), func(b *testing.B) {
			g, url := openGallery(b)
			seedPeople(b, g, n, 2, rand.New(rand.NewPCG(2, uint64(n))))
			c := openCopy(b, Config{ReadURL: url, Scope: testScope, RefreshInterval: time.Hour, MaxStaleness: 2 * time.Hour})
			c.stop()
			c.wg.Wait()
			ctx := context.Background()
			i := 0
			for b.Loop() {
				b.StopTimer()
				if _, err := g.Pool().Exec(ctx, `UPDATE people SET name = name || '.' WHERE external_id = $1`, "seed-"+strconv.Itoa(i%n)); err != nil {
					b.Fatal(err)
				}
				i++
				b.StartTimer()
				if err := c.Refresh(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkNearestPeople: the pipeline's search (k=2, the gate's scope)
// from the copy and from SQL (exact pgvector scan) on the same data.
func BenchmarkNearestPeople(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		g, url := openGallery(b)
		r := rand.New(rand.NewPCG(3, uint64(n)))
		seedPeople(b, g, n, 2, r)
		c := openCopy(b, Config{ReadURL: url, Scope: testScope, RefreshInterval: time.Hour, MaxStaleness: 2 * time.Hour})
		probes := make([]engine.Embedding, 64)
		for i := range probes {
			probes[i] = randomEmbedding(r)
		}
		ctx := context.Background()
		for _, s := range []struct {
			name string
			fn   func(engine.Embedding) ([]engine.PersonMatch, error)
		}{
			{"copy", func(e engine.Embedding) ([]engine.PersonMatch, error) {
				return c.NearestPeople(ctx, e, testModel, testScope, 2)
			}},
			{"sql", func(e engine.Embedding) ([]engine.PersonMatch, error) {
				return g.NearestPeople(ctx, e, testModel, testScope, 2)
			}},
		} {
			b.Run(fmt.Sprintf("%s/people=%d/templates=%d", s.name, n, 2*n), func(b *testing.B) {
				i := 0
				for b.Loop() {
					m, err := s.fn(probes[i%len(probes)])
					if err != nil || len(m) != 2 {
						b.Fatal(m, err)
					}
					i++
				}
			})
		}
	}
}

// BenchmarkSnapshot writes (fsync included) and reads back the snapshot
// file of a 10,000-person, 20,000-template copy.
func BenchmarkSnapshot(b *testing.B) {
	r := rand.New(rand.NewPCG(4, 4))
	people := make([]*person, 10000)
	for i := range people {
		e1, e2 := randomEmbedding(r), randomEmbedding(r)
		people[i] = &person{id: int64(i + 1), externalID: "seed-" + strconv.Itoa(i), name: "Seed", gates: []string{gateA},
			reg: engine.Registration{Status: engine.StatusActive}, emb: append(e1[:], e2[:]...)}
	}
	s := newState(people, 1, 1)
	path := b.TempDir() + "/gallery.snapshot"
	b.Run("write", func(b *testing.B) {
		for b.Loop() {
			if _, err := writeSnapshot(path, s, testScope, testModel, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("read", func(b *testing.B) {
		for b.Loop() {
			f, err := readSnapshot(path)
			if err != nil || len(f.state().people) != len(people) {
				b.Fatal(err)
			}
		}
	})
}
