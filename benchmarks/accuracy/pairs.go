package accuracy

import (
	"math"
	"slices"

	"github.com/loopgate/loopgate/engine"
)

// Labelled is one usable face with its identity.
type Labelled struct {
	Person string
	Emb    engine.Embedding
}

// HistBin is the bin width of the all-pairs histograms: fine enough that
// the FMR 1e-4 threshold on LFW moves by less than a bin between runs.
const HistBin = 1e-4

// AllPairs holds the distance distributions of every pair of faces.
type AllPairs struct {
	// Genuine and Impostor count same-person and cross-person pairs.
	Genuine, Impostor *Histogram
	// GenuineByPerson keeps each person's same-person distances, sorted,
	// for a person-balanced FNMR (a few people own most genuine pairs).
	GenuineByPerson map[string][]float64
}

// CompareAll computes the distance of every pair of faces with
// engine.Distance. faces must be grouped by person (all of one person's
// faces adjacent) for the genuine lists; any order works for the counts.
func CompareAll(faces []Labelled) AllPairs {
	ap := AllPairs{Genuine: NewHistogram(HistBin, 2), Impostor: NewHistogram(HistBin, 2), GenuineByPerson: map[string][]float64{}}
	for i := range faces {
		for j := i + 1; j < len(faces); j++ {
			d := engine.Distance(faces[i].Emb, faces[j].Emb)
			if faces[i].Person == faces[j].Person {
				ap.Genuine.Add(d)
				ap.GenuineByPerson[faces[i].Person] = append(ap.GenuineByPerson[faces[i].Person], d)
			} else {
				ap.Impostor.Add(d)
			}
		}
	}
	for _, ds := range ap.GenuineByPerson {
		slices.Sort(ds)
	}
	return ap
}

// FNMRPersonBalanced is the mean over people of each person's fraction of
// same-person pairs at distance >= t.
func (ap AllPairs) FNMRPersonBalanced(t float64) float64 {
	if len(ap.GenuineByPerson) == 0 {
		return math.NaN()
	}
	var sum float64
	for _, ds := range ap.GenuineByPerson {
		below, _ := slices.BinarySearch(ds, t)
		sum += float64(len(ds)-below) / float64(len(ds))
	}
	return sum / float64(len(ap.GenuineByPerson))
}

// HistDET turns the two histograms into DET points at every bin edge where
// either rate changes.
func HistDET(gen, imp *Histogram) []DETPoint {
	var out []DETPoint
	var g, i int64
	for k := range imp.Counts {
		g += gen.Counts[k]
		i += imp.Counts[k]
		if gen.Counts[k] == 0 && imp.Counts[k] == 0 {
			continue
		}
		t := float64(k+1) * imp.Width
		out = append(out, DETPoint{Threshold: t, FMR: float64(i) / float64(imp.N), FNMR: 1 - float64(g)/float64(gen.N)})
	}
	return out
}
