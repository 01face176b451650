package gallery

import (
	"context"
	"crypto/sha256"
	"errors"
	"image"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/internal/testenv"
)

func openTest(t *testing.T) (*Gallery, string) {
	t.Helper()
	url := testenv.DatabaseURL(t)
	g, _, err := Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g, url
}

func randomEmbedding(r *rand.Rand) engine.Embedding {
	var e engine.Embedding
	for i := range e {
		e[i] = float32(r.NormFloat64() * 0.1)
	}
	return e
}

func template(e engine.Embedding, photo string) Template {
	return Template{Embedding: e, Model: "test-model", PhotoSHA256: sha256.Sum256([]byte(photo)),
		Box: image.Rect(10, 20, 110, 120), ImageWidth: 250, ImageHeight: 250}
}

func TestMigrateIsIdempotent(t *testing.T) {
	url := testenv.DatabaseURL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	all, _ := Migrations()
	first, err := Migrate(ctx, conn)
	if err != nil || len(first) != len(all) {
		t.Fatalf("first run applied %d of %d: %v", len(first), len(all), err)
	}
	second, err := Migrate(ctx, conn)
	if err != nil || len(second) != 0 {
		t.Fatalf("second run applied %d: %v", len(second), err)
	}
	var typ string
	if err := conn.QueryRow(ctx, `SELECT format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = 'face_templates'::regclass AND attname = 'embedding'`).Scan(&typ); err != nil || typ != "vector(128)" {
		t.Fatalf("embedding column type %q, %v", typ, err)
	}
}

func TestNearestMatchesEuclideanDistance(t *testing.T) {
	g, _ := openTest(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	var stored []engine.Embedding
	for i := range 20 {
		e := randomEmbedding(r)
		stored = append(stored, e)
		id := string(rune('a'+i)) + "-person"
		if _, err := g.Enrol(ctx, Enrolment{ExternalID: id, Name: "Person " + id, Source: "test", Templates: []Template{template(e, id)}}); err != nil {
			t.Fatal(err)
		}
	}
	// A template from other weights must never be compared.
	if _, err := g.Enrol(ctx, Enrolment{ExternalID: "other", Name: "Other", Source: "test",
		Templates: []Template{{Embedding: stored[3], Model: "other-model", PhotoSHA256: sha256.Sum256([]byte("o")), ImageWidth: 1, ImageHeight: 1}}}); err != nil {
		t.Fatal(err)
	}
	probe := stored[3]
	probe[0] += 0.01
	got, err := g.Nearest(ctx, probe, "test-model", 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("%d candidates, want 5", len(got))
	}
	if got[0].ExternalID != "d-person" {
		t.Fatalf("nearest is %s, want d-person", got[0].ExternalID)
	}
	for i, c := range got {
		if c.ExternalID == "other" {
			t.Fatal("template of another model returned")
		}
		if i > 0 && c.Distance < got[i-1].Distance {
			t.Fatal("candidates not nearest first")
		}
	}
	if want := engine.Distance(probe, stored[3]); math.Abs(got[0].Distance-want) > 1e-5 {
		t.Fatalf("pgvector distance %.6f, Go Euclidean %.6f", got[0].Distance, want)
	}
}

func TestEnrolRules(t *testing.T) {
	g, _ := openTest(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	e := Enrolment{ExternalID: "A123", Name: "Ada", Source: "test", Templates: []Template{template(randomEmbedding(r), "p1")}}
	res, err := g.Enrol(ctx, e)
	if err != nil || !res.CreatedPerson || res.Added != 1 {
		t.Fatalf("first enrolment: %+v %v", res, err)
	}
	// The same photo again adds nothing and is not an error.
	res, err = g.Enrol(ctx, e)
	if err != nil || res.Added != 0 || res.AlreadyEnrolled != 1 || res.EnrolmentID != 0 {
		t.Fatalf("repeat: %+v %v", res, err)
	}
	// The same ID under another name is refused.
	e2 := e
	e2.Name = "Bob"
	e2.Templates = []Template{template(randomEmbedding(r), "p2")}
	if _, err := g.Enrol(ctx, e2); !errors.Is(err, ErrIDConflict) {
		t.Fatalf("conflicting name: got %v, want ErrIDConflict", err)
	}
	// A NaN embedding never reaches the database.
	bad := template(randomEmbedding(r), "p3")
	bad.Embedding[7] = float32(math.NaN())
	if _, err := g.Enrol(ctx, Enrolment{ExternalID: "B1", Name: "B", Source: "test", Templates: []Template{bad}}); err == nil {
		t.Fatal("NaN embedding accepted")
	}
	// A failure on the second template rolls back the whole enrolment.
	tooWide := template(randomEmbedding(r), "p5")
	tooWide.ImageWidth = 1 << 40 // does not fit int4
	_, err = g.Enrol(ctx, Enrolment{ExternalID: "C1", Name: "C", Source: "test",
		Templates: []Template{template(randomEmbedding(r), "p4"), tooWide}})
	if err == nil {
		t.Fatal("out-of-range width accepted")
	}
	s, err := g.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.People != 1 || s.Templates != 1 {
		t.Fatalf("after rejected enrolments: %+v, want 1 person, 1 template", s)
	}
}
