package claims

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/loopgate/loopgate/engine"
)

func TestClaims(t *testing.T) {
	lookup := func(_ context.Context, id string) (engine.PersonMatch, error) {
		if id == "E1" || id == "E2" {
			return engine.PersonMatch{ExternalID: id}, nil
		}
		return engine.PersonMatch{}, engine.ErrUnknownPerson
	}
	now := time.Unix(1000, 0)
	r := New([]string{"a", "b"}, lookup, 10*time.Second, 30*time.Second)
	r.now = func() time.Time { return now }
	ctx := context.Background()
	if _, err := r.Add(ctx, "c", "E1", 0); !errors.Is(err, ErrUnknownLane) {
		t.Fatalf("unknown lane: %v", err)
	}
	if _, err := r.Add(ctx, "a", "nobody", 0); !errors.Is(err, engine.ErrUnknownPerson) {
		t.Fatalf("unknown person: %v", err)
	}
	c1, err := r.Add(ctx, "a", "E1", time.Hour)
	if err != nil || c1.Expires != now.Add(30*time.Second) {
		t.Fatalf("ttl not capped: %+v %v", c1, err)
	}
	now = now.Add(time.Second)
	c2, _ := r.Add(ctx, "a", "E2", 0)
	if _, ok := r.Take("b"); ok {
		t.Fatal("claim taken at the wrong lane")
	}
	// Oldest first.
	if got, ok := r.Take("a"); !ok || got.ID != c1.ID {
		t.Fatalf("take: %+v %v", got, ok)
	}
	// c2 expires untaken: Take skips it, Expired reports it once.
	now = c2.Expires
	if _, ok := r.Take("a"); ok {
		t.Fatal("expired claim taken")
	}
	if exp := r.Expired(); len(exp) != 1 || exp[0].ID != c2.ID {
		t.Fatalf("expired %+v", exp)
	}
	if exp := r.Expired(); len(exp) != 0 || r.Pending() != 0 {
		t.Fatalf("expired twice: %+v pending %d", exp, r.Pending())
	}
}
