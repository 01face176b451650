package gallery

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/loopgate/loopgate/engine"
)

func TestScopedSearchAndRegistrationLifecycle(t *testing.T) {
	g, _ := openTest(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(5, 6))
	alice1, alice2, bob, carol := randomEmbedding(r), randomEmbedding(r), randomEmbedding(r), randomEmbedding(r)
	enrol := func(id string, gates []string, es ...engine.Embedding) {
		t.Helper()
		e := Enrolment{ExternalID: id, Name: id, Source: "test", Gates: gates}
		for i, emb := range es {
			e.Templates = append(e.Templates, template(emb, id+string(rune('0'+i))))
		}
		if _, err := g.Enrol(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	enrol("alice", []string{"north"}, alice1, alice2)
	enrol("bob", []string{"bridge1"}, bob) // a zone
	enrol("carol", []string{"south"}, carol)

	// Carol is registered for another gate: she is never compared, even
	// with her own face.
	got, err := g.NearestPeople(ctx, carol, "test-model", []string{"north", "bridge1"}, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("scoped search returned %d people, want alice and bob: %+v", len(got), got)
	}
	for _, m := range got {
		if m.ExternalID == "carol" {
			t.Fatal("out-of-scope person searched")
		}
	}
	// One entry per person, at the distance of their nearest template.
	got, _ = g.NearestPeople(ctx, alice2, "test-model", []string{"north", "bridge1"}, 5)
	if got[0].ExternalID != "alice" || got[0].Distance > 1e-5 || got[1].ExternalID != "bob" {
		t.Fatalf("nearest people %+v", got)
	}
	if want := engine.Distance(alice2, bob); math.Abs(got[1].Distance-want) > 1e-5 {
		t.Fatalf("bob at %.6f, want %.6f", got[1].Distance, want)
	}
	if got[0].Registration.Inactive(time.Now()) != nil {
		t.Fatalf("new registration not active: %+v", got[0].Registration)
	}
	if _, err := g.NearestPeople(ctx, alice2, "test-model", nil, 5); err == nil {
		t.Fatal("empty scope accepted")
	}

	// Revoke: still found (the gate must be able to say why it denies),
	// but inactive with the reason.
	if err := g.Revoke(ctx, "alice", "badge reported lost"); err != nil {
		t.Fatal(err)
	}
	got, _ = g.NearestPeople(ctx, alice1, "test-model", []string{"north"}, 1)
	if err := got[0].Registration.Inactive(time.Now()); !errors.Is(err, engine.ErrRevoked) {
		t.Fatalf("revoked registration: %v", err)
	}
	if err := g.Reinstate(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	// Validity window.
	past := time.Now().Add(-time.Hour)
	if err := g.SetValidity(ctx, "alice", nil, &past); err != nil {
		t.Fatal(err)
	}
	m, err := g.PersonDistance(ctx, alice1, "test-model", "alice")
	if err != nil || m.Distance > 1e-5 || !errors.Is(m.Registration.Inactive(time.Now()), engine.ErrOutsideWindow) {
		t.Fatalf("1:1 distance %+v %v", m, err)
	}
	if err := g.SetValidity(ctx, "alice", &past, &past); err == nil {
		t.Fatal("empty window accepted")
	}
	if _, err := g.PersonDistance(ctx, alice1, "test-model", "nobody"); !errors.Is(err, engine.ErrUnknownPerson) {
		t.Fatalf("unknown person: %v", err)
	}
	// Gates replace; claims look people up in scope only.
	if err := g.SetGates(ctx, "carol", []string{"north"}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.RegisteredInScope(ctx, "carol", []string{"north"}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.RegisteredInScope(ctx, "carol", []string{"south"}); !errors.Is(err, engine.ErrUnknownPerson) {
		t.Fatalf("carol left south: %v", err)
	}
	if err := g.SetGates(ctx, "carol", []string{"bad gate"}); err == nil {
		t.Fatal("bad gate name accepted")
	}
	if err := g.Revoke(ctx, "nobody", "x"); !errors.Is(err, engine.ErrUnknownPerson) {
		t.Fatalf("revoke unknown: %v", err)
	}
}
