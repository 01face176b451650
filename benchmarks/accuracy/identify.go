package accuracy

import (
	"math"
	"slices"

	"github.com/loopgate/loopgate/engine"
)

// Gallery is an in-memory set of enrolled templates searched exhaustively
// with engine.Distance (Euclidean, as pgvector's <->). A person may have
// several templates; a person's distance is that of their nearest template.
type Gallery struct {
	people    []string
	templates []engine.Embedding
	owner     []int
}

// Enrol adds a person with their templates. A person with no template (a
// failed enrolment) is counted but can never be found.
func (g *Gallery) Enrol(person string, templates ...engine.Embedding) {
	idx := len(g.people)
	g.people = append(g.people, person)
	for _, t := range templates {
		g.templates = append(g.templates, t)
		g.owner = append(g.owner, idx)
	}
}

// Size counts enrolled people (including failed enrolments).
func (g *Gallery) Size() int { return len(g.people) }

// Has reports whether person is enrolled.
func (g *Gallery) Has(person string) bool { return slices.Contains(g.people, person) }

// Hit is the result of one search: the nearest person, their distance, and
// the distance of the second-nearest person (+Inf with fewer than two).
type Hit struct {
	Person string
	D1, D2 float64
}

// Margin is how much nearer the best person is than the next one.
func (h Hit) Margin() float64 { return h.D2 - h.D1 }

// Search returns the nearest and second-nearest enrolled people.
func (g *Gallery) Search(q engine.Embedding) Hit {
	best := make([]float64, len(g.people))
	for i := range best {
		best[i] = math.Inf(1)
	}
	for i, t := range g.templates {
		if d := engine.Distance(q, t); d < best[g.owner[i]] {
			best[g.owner[i]] = d
		}
	}
	h := Hit{D1: math.Inf(1), D2: math.Inf(1)}
	for i, d := range best {
		switch {
		case d < h.D1:
			h.D2 = h.D1
			h.D1, h.Person = d, g.people[i]
		case d < h.D2:
			h.D2 = d
		}
	}
	if math.IsInf(h.D1, 1) {
		h.Person = ""
	}
	return h
}

// Decision is one identification transaction (a probe image, or a walker's
// frames fused by a rule) reduced to what a threshold sweep needs.
type Decision struct {
	// Score must be at or below the threshold for the gate to open.
	Score float64
	// Person is the identity the gate would open for.
	Person string
	// Margin is the distance gap to the second-nearest person (+Inf when
	// the rule has already applied its own margin).
	Margin float64
	// Truth is the true identity when the subject is enrolled (mated), "" for
	// a non-mated search.
	Truth string
	// Missing marks a transaction with no usable face: it never opens.
	Missing bool
	// Subject names who was searched (the probe's or walker's person), for
	// splitting results by person.
	Subject string
}

// FromHit makes a decision from a single search.
func FromHit(h Hit, truth string) Decision {
	return Decision{Score: h.D1, Person: h.Person, Margin: h.Margin(), Truth: truth, Missing: h.Person == ""}
}

// Opens reports whether the gate opens at threshold t with margin m.
func (d Decision) Opens(t, m float64) bool {
	return !d.Missing && d.Score <= t && d.Margin >= m
}

// FPIR is the false-positive identification rate of non-mated decisions:
// the fraction that open at threshold t and margin m.
func FPIR(nonMated []Decision, t, m float64) float64 {
	k, n := FPIRCount(nonMated, t, m)
	return ratio(k, n)
}

// FPIRCount returns how many non-mated decisions open, and how many there are.
func FPIRCount(nonMated []Decision, t, m float64) (k, n int) {
	for _, d := range nonMated {
		if d.Opens(t, m) {
			k++
		}
	}
	return k, len(nonMated)
}

// FNIR is the false-negative identification rate of mated decisions: the
// fraction that do not open for the right person at t and m (a wrong person
// at rank 1, too far, too small a margin, or no face).
func FNIR(mated []Decision, t, m float64) float64 {
	k, n := FNIRCount(mated, t, m)
	return ratio(k, n)
}

// FNIRCount returns how many mated decisions fail, and how many there are.
func FNIRCount(mated []Decision, t, m float64) (k, n int) {
	for _, d := range mated {
		if !(d.Opens(t, m) && d.Person == d.Truth) {
			k++
		}
	}
	return k, len(mated)
}

// Rank1 is the fraction of mated decisions whose nearest person is right,
// whatever the distance.
func Rank1(mated []Decision) float64 {
	k := 0
	for _, d := range mated {
		if !d.Missing && d.Person == d.Truth {
			k++
		}
	}
	return ratio(k, len(mated))
}

// ThresholdAtFPIR returns the loosest threshold at which at most
// floor(target*N) of the N non-mated decisions open with margin m: just
// below the score of the first one that must stay shut. It is +Inf when
// the target allows every decision to open.
func ThresholdAtFPIR(nonMated []Decision, target, m float64) float64 {
	var scores []float64
	for _, d := range nonMated {
		if !d.Missing && d.Margin >= m {
			scores = append(scores, d.Score)
		}
	}
	slices.Sort(scores)
	allowed := int(math.Floor(target*float64(len(nonMated)) + 1e-9))
	if allowed >= len(scores) {
		return math.Inf(1)
	}
	return math.Nextafter(scores[allowed], math.Inf(-1))
}

// OperatingPoint is FNIR at a threshold chosen for a target FPIR.
type OperatingPoint struct {
	TargetFPIR, Margin float64
	Threshold          float64
	// FalsePositives of NonMated decisions open; Misses of Mated fail.
	FalsePositives, NonMated int
	Misses, Mated            int
}

// FPIR and FNIR of the operating point.
func (o OperatingPoint) FPIR() float64 { return ratio(o.FalsePositives, o.NonMated) }
func (o OperatingPoint) FNIR() float64 { return ratio(o.Misses, o.Mated) }

// AtFPIR chooses the threshold on nonMated for target FPIR with margin m and
// measures FNIR on mated there.
func AtFPIR(mated, nonMated []Decision, target, m float64) OperatingPoint {
	t := ThresholdAtFPIR(nonMated, target, m)
	return At(mated, nonMated, t, m, target)
}

// At measures both error rates at a fixed threshold and margin.
func At(mated, nonMated []Decision, t, m, target float64) OperatingPoint {
	fp, nn := FPIRCount(nonMated, t, m)
	fn, nm := FNIRCount(mated, t, m)
	return OperatingPoint{TargetFPIR: target, Margin: m, Threshold: t,
		FalsePositives: fp, NonMated: nn, Misses: fn, Mated: nm}
}

// DETIdent is the FNIR/FPIR trade-off at every distinct non-mated and
// mated score, for margin m.
func DETIdent(mated, nonMated []Decision, m float64) []DETPoint {
	var ts []float64
	for _, d := range append(slices.Clone(mated), nonMated...) {
		if !d.Missing && d.Margin >= m {
			ts = append(ts, d.Score)
		}
	}
	slices.Sort(ts)
	ts = slices.Compact(ts)
	// Sorted sweeps keep this linear after the sort.
	var nm, mm []float64
	for _, d := range nonMated {
		if !d.Missing && d.Margin >= m {
			nm = append(nm, d.Score)
		}
	}
	for _, d := range mated {
		if !d.Missing && d.Margin >= m && d.Person == d.Truth {
			mm = append(mm, d.Score)
		}
	}
	slices.Sort(nm)
	slices.Sort(mm)
	out := make([]DETPoint, 0, len(ts))
	ni, mi := 0, 0
	for _, t := range ts {
		for ni < len(nm) && nm[ni] <= t {
			ni++
		}
		for mi < len(mm) && mm[mi] <= t {
			mi++
		}
		out = append(out, DETPoint{Threshold: t, FMR: ratio(ni, len(nonMated)), FNMR: ratio(len(mated)-mi, len(mated))})
	}
	return out
}
