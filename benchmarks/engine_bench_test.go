package benchmarks

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/pgvector/pgvector-go"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/engine/vision"
	"github.com/loopgate/loopgate/internal/testenv"
)

const lfwProbe = "datasets/lfw/images/Colin_Powell/Colin_Powell_0001.jpg"

func BenchmarkDecode(b *testing.B) {
	dec := vision.NewDecoder(engine.ImageLimits{})
	for _, c := range []struct{ name, path string }{
		{"LFW250", lfwProbe},
		{"1080p", "media/obama-1080p.jpg"},
	} {
		data := testenv.SharedFile(b, c.path)
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := dec.Decode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDetectEmbed is HOG detection + landmarks + ResNet embedding of one
// face, on one core (go-face serialises each stage).
func BenchmarkDetectEmbed(b *testing.B) {
	rec, err := facerec.New(facerec.Config{ModelDir: testenv.ModelDir(b), Detector: facerec.DetectorHOG})
	if err != nil {
		b.Fatal(err)
	}
	defer rec.Close()
	dec := vision.NewDecoder(engine.ImageLimits{})
	for _, c := range []struct{ name, path string }{
		{"LFW250", lfwProbe},
		{"720p", "media/obama-720p.jpg"},
	} {
		img, err := dec.Decode(testenv.SharedFile(b, c.path))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				faces, err := rec.Faces(img.JPEG)
				if err != nil || len(faces) != 1 {
					b.Fatalf("%d faces, %v", len(faces), err)
				}
			}
		})
	}
}

// BenchmarkSearchExact is one parameterised pgvector <-> query with no index.
func BenchmarkSearchExact(b *testing.B) {
	ctx := context.Background()
	g, _, err := gallery.Open(ctx, testenv.DatabaseURL(b))
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	r := rand.New(rand.NewPCG(7, 8))
	have := 0
	for _, n := range []int{1_000, 10_000} {
		fill(b, g, r, have, n)
		have = n
		probe := randomEmbedding(r)
		b.Run(fmt.Sprintf("gallery=%d", n), func(b *testing.B) {
			for b.Loop() {
				c, err := g.Nearest(ctx, probe, "bench", 5)
				if err != nil || len(c) != 5 {
					b.Fatalf("%d candidates, %v", len(c), err)
				}
			}
		})
	}
}

func randomEmbedding(r *rand.Rand) engine.Embedding {
	var e engine.Embedding
	for i := range e {
		e[i] = float32(r.NormFloat64() * 0.09)
	}
	return e
}

// fill grows the gallery from `from` to `to` people with one template each.
func fill(b *testing.B, g *gallery.Gallery, r *rand.Rand, from, to int) {
	b.Helper()
	ctx := context.Background()
	pool := g.Pool()
	if _, err := pool.Exec(ctx, `INSERT INTO people (external_id, name) SELECT 'bench-' || i, 'Bench ' || i FROM generate_series($1::int, $2::int) i`, from, to-1); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO enrolments (person_id, source) SELECT id, 'bench' FROM people WHERE external_id LIKE 'bench-%' AND id NOT IN (SELECT person_id FROM enrolments)`); err != nil {
		b.Fatal(err)
	}
	rows, err := pool.Query(ctx, `SELECT e.person_id, e.id FROM enrolments e WHERE NOT EXISTS (SELECT 1 FROM face_templates t WHERE t.enrolment_id = e.id)`)
	if err != nil {
		b.Fatal(err)
	}
	type pe struct{ Person, Enrolment int64 }
	ids, err := pgx.CollectRows(rows, pgx.RowToStructByPos[pe])
	if err != nil {
		b.Fatal(err)
	}
	src := make([][]any, len(ids))
	for i, id := range ids {
		e := randomEmbedding(r)
		var sum [32]byte
		sum[0], sum[1], sum[2] = byte(id.Person), byte(id.Person>>8), byte(id.Person>>16)
		src[i] = []any{id.Person, id.Enrolment, pgvector.NewVector(e[:]), "bench", sum[:], []int32{0, 0, 100, 100}, 250, 250}
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"face_templates"},
		[]string{"person_id", "enrolment_id", "embedding", "model", "photo_sha256", "face_box", "image_width", "image_height"},
		pgx.CopyFromRows(src)); err != nil {
		b.Fatal(err)
	}
}
