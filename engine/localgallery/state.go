package localgallery

import (
	"math"
	"slices"
	"time"

	"github.com/loopgate/loopgate/engine"
)

// person is one registration as the copy holds it. A person is immutable
// once in a state: a change replaces the whole person.
type person struct {
	id         int64
	externalID string
	name       string
	reg        engine.Registration
	// gates are the person's gates within the copy's scope, sorted.
	gates []string
	// emb holds the person's templates of the copy's model, EmbeddingDim
	// float32 each, in template id order.
	emb []float32
}

func (p *person) templates() int { return len(p.emb) / engine.EmbeddingDim }

// inScope reports whether p may use a gate of scope (nil scope: the whole
// copy).
func (p *person) inScope(scope map[string]bool) bool {
	if scope == nil {
		return true
	}
	for _, g := range p.gates {
		if scope[g] {
			return true
		}
	}
	return false
}

// match is the person at distance d, with a registration the caller may
// keep (its times are copies).
func (p *person) match(d float64) engine.PersonMatch {
	return engine.PersonMatch{PersonID: p.id, ExternalID: p.externalID, Name: p.name, Distance: d,
		Registration: engine.Registration{Status: p.reg.Status, RevokedAt: copyTime(p.reg.RevokedAt),
			RevokedReason: p.reg.RevokedReason, ValidFrom: copyTime(p.reg.ValidFrom), ValidUntil: copyTime(p.reg.ValidUntil)}}
}

func copyTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := *t
	return &c
}

// state is one immutable version of the copy; searches read it without
// locks while a refresh builds the next one.
type state struct {
	people     []*person // sorted by id
	byExternal map[string]*person
	templates  int
	maxSeq     int64  // newest feed row applied
	gen        uint64 // bumped on every change of content
}

func newState(people []*person, maxSeq int64, gen uint64) *state {
	slices.SortFunc(people, func(a, b *person) int { return cmpInt64(a.id, b.id) })
	s := &state{people: people, byExternal: make(map[string]*person, len(people)), maxSeq: maxSeq, gen: gen}
	for _, p := range people {
		s.byExternal[p.externalID] = p
		s.templates += p.templates()
	}
	return s
}

// with returns a new state where the people whose ids are in changed are
// replaced by those in fresh (a changed id absent from fresh was deleted or
// left the scope).
func (s *state) with(changed map[int64]bool, fresh []*person, maxSeq int64) *state {
	people := make([]*person, 0, len(s.people)+len(fresh))
	for _, p := range s.people {
		if !changed[p.id] {
			people = append(people, p)
		}
	}
	people = append(people, fresh...)
	return newState(people, max(maxSeq, s.maxSeq), s.gen+1)
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// scored is a candidate in the top-k.
type scored struct {
	p *person
	d float64
}

// nearest returns the k people nearest to e (by their nearest template)
// among those in scope, nearest first; ties go to the lower id, which the
// scan order gives.
func (s *state) nearest(e *engine.Embedding, scope map[string]bool, k int) []scored {
	top := make([]scored, 0, k+1)
	worst := math.Inf(1)
	for _, p := range s.people {
		if len(p.emb) == 0 || !p.inScope(scope) {
			continue
		}
		d := nearestTemplate(p.emb, e)
		if len(top) == k && d >= worst {
			continue
		}
		i := len(top)
		for i > 0 && top[i-1].d > d {
			i--
		}
		top = slices.Insert(top, i, scored{p, d})
		if len(top) > k {
			top = top[:k]
		}
		worst = top[len(top)-1].d
	}
	return top
}

// nearestTemplate is the Euclidean distance from e to the nearest of a
// person's templates. Like pgvector's <-> it sums squares in float32 and
// takes the square root in float64.
func nearestTemplate(emb []float32, e *engine.Embedding) float64 {
	best := float32(math.MaxFloat32)
	for off := 0; off+engine.EmbeddingDim <= len(emb); off += engine.EmbeddingDim {
		if d := squaredDistance((*[engine.EmbeddingDim]float32)(emb[off:off+engine.EmbeddingDim]), e); d < best {
			best = d
		}
	}
	return math.Sqrt(float64(best))
}

func squaredDistance(a *[engine.EmbeddingDim]float32, b *engine.Embedding) float32 {
	// Four accumulators let the CPU overlap the additions.
	var s0, s1, s2, s3 float32
	for i := 0; i < engine.EmbeddingDim; i += 4 {
		d0, d1, d2, d3 := a[i]-b[i], a[i+1]-b[i+1], a[i+2]-b[i+2], a[i+3]-b[i+3]
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	return (s0 + s1) + (s2 + s3)
}
