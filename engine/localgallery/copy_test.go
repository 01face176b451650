package localgallery

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/gallery"
)

// comparison fixture: real LFW faces and random embeddings, registered for
// gates in and out of the copy's scope, some revoked or outside their
// window, some with templates of another model only.
type fixture struct {
	g      *gallery.Gallery
	url    string
	probes []engine.Embedding
	ids    []string // every external id enrolled
}

const (
	gateA = "north-1"
	zoneZ = "bridge1"
	gateB = "south-9" // outside the copy's scope
)

var testScope = []string{gateA, zoneZ}

func newFixture(t *testing.T, randomPeople int) *fixture {
	t.Helper()
	g, url := openGallery(t)
	ctx := context.Background()
	f := &fixture{g: g, url: url}
	r := rand.New(rand.NewPCG(11, 12))
	gatesFor := func(i int) []string {
		switch i % 5 {
		case 0:
			return []string{gateA}
		case 1:
			return []string{zoneZ}
		case 2:
			return []string{gateA, gateB}
		case 3:
			return []string{gateB} // never in the copy
		default:
			return []string{zoneZ, gateA}
		}
	}
	// Real faces: two photos enrolled, the third is a probe.
	for i, p := range realPeople(t, 24, 3) {
		id := fmt.Sprintf("lfw-%02d", i)
		enrol(t, g, id, gatesFor(i), testModel, p.Embs[0], p.Embs[1])
		f.ids = append(f.ids, id)
		f.probes = append(f.probes, p.Embs[2], p.Embs[0])
	}
	// Random people with one to three templates.
	for i := range randomPeople {
		id := fmt.Sprintf("rnd-%04d", i)
		var es []engine.Embedding
		for range 1 + i%3 {
			es = append(es, randomEmbedding(r))
		}
		enrol(t, g, id, gatesFor(i), testModel, es...)
		f.ids = append(f.ids, id)
		if i%7 == 0 {
			f.probes = append(f.probes, es[0])
		}
	}
	for range 20 {
		f.probes = append(f.probes, randomEmbedding(r))
	}
	// Another model's templates: never compared. One person has only those.
	enrol(t, g, "lfw-00", []string{gateA}, "other-model", randomEmbedding(r))
	enrol(t, g, "other-only", []string{gateA}, "other-model", f.probes[0])
	f.ids = append(f.ids, "other-only")
	// Lifecycle: revoked, expired, not yet valid, window around now.
	past, future := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	for i, id := range f.ids[:20] {
		var err error
		switch i % 4 {
		case 0:
			err = g.Revoke(ctx, id, "badge reported lost")
		case 1:
			err = g.SetValidity(ctx, id, nil, &past)
		case 2:
			err = g.SetValidity(ctx, id, &future, nil)
		case 3:
			err = g.SetValidity(ctx, id, &past, &future)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func sameRegistration(a, b engine.Registration) bool {
	eq := func(x, y *time.Time) bool { return (x == nil) == (y == nil) && (x == nil || x.Equal(*y)) }
	return a.Status == b.Status && a.RevokedReason == b.RevokedReason && eq(a.RevokedAt, b.RevokedAt) &&
		eq(a.ValidFrom, b.ValidFrom) && eq(a.ValidUntil, b.ValidUntil)
}

// sameMatches fails unless the copy's answer is the SQL one: same people in
// the same order, distances within 1e-5, same registrations.
func sameMatches(t *testing.T, what string, got, want []engine.PersonMatch) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: copy returned %d people, SQL %d", what, len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.PersonID != w.PersonID || g.ExternalID != w.ExternalID || g.Name != w.Name {
			t.Fatalf("%s: rank %d is %s (%.7f) in the copy, %s (%.7f) in SQL", what, i, g.ExternalID, g.Distance, w.ExternalID, w.Distance)
		}
		if math.Abs(g.Distance-w.Distance) > 1e-5 {
			t.Fatalf("%s: %s at %.7f in the copy, %.7f in SQL", what, g.ExternalID, g.Distance, w.Distance)
		}
		if !sameRegistration(g.Registration, w.Registration) {
			t.Fatalf("%s: %s registration %+v in the copy, %+v in SQL", what, g.ExternalID, g.Registration, w.Registration)
		}
	}
}

// compareWithSQL checks every search of the copy against engine/gallery on
// the same database.
func compareWithSQL(t *testing.T, c *Copy, g *gallery.Gallery, probes []engine.Embedding, ids []string) {
	t.Helper()
	ctx := context.Background()
	scopes := [][]string{testScope, {gateA}, {zoneZ}, {zoneZ, gateA, zoneZ}}
	for pi, e := range probes {
		for _, scope := range scopes {
			for _, k := range []int{1, 2, 5} {
				want, err := g.NearestPeople(ctx, e, testModel, scope, k)
				if err != nil {
					t.Fatal(err)
				}
				got, err := c.NearestPeople(ctx, e, testModel, scope, k)
				if err != nil {
					t.Fatal(err)
				}
				sameMatches(t, fmt.Sprintf("probe %d scope %v k %d", pi, scope, k), got, want)
			}
		}
	}
	inScope := map[string]bool{}
	for _, id := range ids {
		for _, scope := range scopes {
			want, werr := g.RegisteredInScope(ctx, id, scope)
			got, gerr := c.RegisteredInScope(ctx, id, scope)
			if (werr == nil) != (gerr == nil) || (werr != nil && !errors.Is(gerr, engine.ErrUnknownPerson)) {
				t.Fatalf("RegisteredInScope(%s, %v): copy %v, SQL %v", id, scope, gerr, werr)
			}
			if werr == nil {
				inScope[id] = true
				if got.PersonID != want.PersonID || !sameRegistration(got.Registration, want.Registration) {
					t.Fatalf("RegisteredInScope(%s, %v): copy %+v, SQL %+v", id, scope, got, want)
				}
			}
		}
	}
	for _, id := range ids {
		e := probes[len(id)%len(probes)]
		want, werr := g.PersonDistance(ctx, e, testModel, id)
		got, gerr := c.PersonDistance(ctx, e, testModel, id)
		if !inScope[id] {
			// The copy holds its scope only (package doc).
			if !errors.Is(gerr, engine.ErrUnknownPerson) {
				t.Fatalf("PersonDistance(%s) out of scope: %v", id, gerr)
			}
			continue
		}
		if (werr == nil) != (gerr == nil) || (werr != nil && !errors.Is(gerr, engine.ErrUnknownPerson)) {
			t.Fatalf("PersonDistance(%s): copy %v, SQL %v", id, gerr, werr)
		}
		if werr == nil {
			sameMatches(t, "PersonDistance "+id, []engine.PersonMatch{got}, []engine.PersonMatch{want})
		}
	}
}

func TestCopyAnswersLikeSQL(t *testing.T) {
	f := newFixture(t, 400)
	c := openCopy(t, Config{ReadURL: f.url, Scope: testScope})
	st := c.Status()
	if st.Source != "database" || st.Stale || st.People == 0 {
		t.Fatalf("status after open: %+v", st)
	}
	// In scope: gatesFor cases 0, 1, 2 and 4 of 424 people, plus other-only.
	var inScope int
	for _, id := range f.ids {
		if _, err := f.g.RegisteredInScope(context.Background(), id, testScope); err == nil {
			inScope++
		}
	}
	if st.People != inScope {
		t.Fatalf("copy holds %d people, %d are registered for %v", st.People, inScope, testScope)
	}
	t.Logf("copy: %d people, %d templates; %d probes", st.People, st.Templates, len(f.probes))
	compareWithSQL(t, c, f.g, f.probes, f.ids)

	ctx := context.Background()
	e := f.probes[0]
	if _, err := c.NearestPeople(ctx, e, "other-model", testScope, 2); !errors.Is(err, ErrNotInCopy) {
		t.Fatalf("other model: %v", err)
	}
	if _, err := c.NearestPeople(ctx, e, testModel, []string{gateA, gateB}, 2); !errors.Is(err, ErrNotInCopy) {
		t.Fatalf("gate outside the copy: %v", err)
	}
	if _, err := c.NearestPeople(ctx, e, testModel, nil, 2); err == nil {
		t.Fatal("empty scope accepted")
	}
	nan := e
	nan[3] = float32(math.NaN())
	if _, err := c.NearestPeople(ctx, nan, testModel, testScope, 2); err == nil {
		t.Fatal("NaN probe accepted")
	}
	if got, err := c.NearestPeople(ctx, e, testModel, testScope, 0); err != nil || len(got) != 0 {
		t.Fatalf("k=0: %v %v", got, err)
	}
}
