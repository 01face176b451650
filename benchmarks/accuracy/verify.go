package accuracy

import (
	"math"
	"slices"
)

// Score is one 1:1 comparison: the distance between two faces and whether
// they show the same person. Missing marks a comparison in which either
// image had no usable face (a detector miss or an unusable file); it has no
// distance and counts as an error at every threshold.
type Score struct {
	Distance float64
	Same     bool
	Missing  bool
}

// Correct reports whether a comparison is decided correctly at threshold t
// (same person when Distance <= t). A missing comparison is never correct.
func (s Score) Correct(t float64) bool {
	return !s.Missing && (s.Distance <= t) == s.Same
}

// Accuracy is the fraction of comparisons decided correctly at t.
func Accuracy(scores []Score, t float64) float64 {
	if len(scores) == 0 {
		return math.NaN()
	}
	n := 0
	for _, s := range scores {
		if s.Correct(t) {
			n++
		}
	}
	return float64(n) / float64(len(scores))
}

// BestThreshold returns the threshold that maximises accuracy on scores and
// that accuracy. Accuracy changes only at the observed distances, so the
// candidates are one per interval between consecutive distinct distances:
// the midpoint of the interval, just below the smallest distance for the
// interval below all, and the largest distance for the one above all. Ties
// go to the lowest (strictest) interval.
func BestThreshold(scores []Score) (threshold, accuracy float64) {
	if len(scores) == 0 {
		return math.NaN(), math.NaN()
	}
	type point struct {
		d    float64
		same bool
	}
	var pts []point
	for _, s := range scores {
		if !s.Missing {
			pts = append(pts, point{s.Distance, s.Same})
		}
	}
	if len(pts) == 0 {
		return math.NaN(), 0
	}
	slices.SortFunc(pts, func(a, b point) int { return cmpFloat(a.d, b.d) })
	// Below every distance nothing matches: the different-person pairs are right.
	correct := 0
	for _, p := range pts {
		if !p.same {
			correct++
		}
	}
	best, bestT := correct, math.Nextafter(pts[0].d, math.Inf(-1))
	for i := 0; i < len(pts); {
		j := i
		for j < len(pts) && pts[j].d == pts[i].d {
			if pts[j].same {
				correct++
			} else {
				correct--
			}
			j++
		}
		if correct > best {
			best = correct
			if j < len(pts) {
				bestT = (pts[i].d + pts[j].d) / 2
			} else {
				bestT = pts[i].d
			}
		}
		i = j
	}
	return bestT, float64(best) / float64(len(scores))
}

// FoldResult is one round of k-fold cross-validation.
type FoldResult struct {
	// Fold is the 0-based fold tested.
	Fold int
	// Threshold chosen on the other folds, and the accuracy it had there.
	Threshold     float64
	TrainAccuracy float64
	// TestAccuracy is the accuracy on this fold at Threshold.
	TestAccuracy float64
	// Pairs and Missing count this fold's comparisons and those without a face.
	Pairs, Missing int
}

// CrossValidate runs the LFW protocol: for each fold, choose the threshold
// on all other folds (BestThreshold) and measure accuracy on that fold.
func CrossValidate(folds [][]Score) []FoldResult {
	out := make([]FoldResult, len(folds))
	for k := range folds {
		var train []Score
		for j, f := range folds {
			if j != k {
				train = append(train, f...)
			}
		}
		t, trainAcc := BestThreshold(train)
		miss := 0
		for _, s := range folds[k] {
			if s.Missing {
				miss++
			}
		}
		out[k] = FoldResult{Fold: k, Threshold: t, TrainAccuracy: trainAcc,
			TestAccuracy: Accuracy(folds[k], t), Pairs: len(folds[k]), Missing: miss}
	}
	return out
}

// MeanStd returns the mean and the sample standard deviation (n-1).
func MeanStd(xs []float64) (mean, std float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	if len(xs) < 2 {
		return mean, 0
	}
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(xs)-1))
}

// DETPoint is the pair of error rates at one threshold.
type DETPoint struct {
	Threshold float64
	// FMR is the fraction of different-person comparisons at or below
	// Threshold (false matches).
	FMR float64
	// FNMR is the fraction of same-person comparisons above Threshold or
	// missing a face (false non-matches, failures to acquire included).
	FNMR float64
}

// DET computes the error rates at every distinct observed distance, in
// increasing threshold order. Missing comparisons stay in the denominators:
// a missing same-person comparison is a false non-match at every threshold,
// a missing different-person one never a false match.
func DET(scores []Score) []DETPoint {
	var gen, imp []float64
	var genN, impN int
	for _, s := range scores {
		if s.Same {
			genN++
			if !s.Missing {
				gen = append(gen, s.Distance)
			}
		} else {
			impN++
			if !s.Missing {
				imp = append(imp, s.Distance)
			}
		}
	}
	slices.Sort(gen)
	slices.Sort(imp)
	all := append(slices.Clone(gen), imp...)
	slices.Sort(all)
	all = slices.Compact(all)
	out := make([]DETPoint, 0, len(all))
	gi, ii := 0, 0
	for _, t := range all {
		for gi < len(gen) && gen[gi] <= t {
			gi++
		}
		for ii < len(imp) && imp[ii] <= t {
			ii++
		}
		out = append(out, DETPoint{Threshold: t, FMR: ratio(ii, impN), FNMR: ratio(genN-gi, genN)})
	}
	return out
}

func ratio(k, n int) float64 {
	if n == 0 {
		return math.NaN()
	}
	return float64(k) / float64(n)
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Histogram counts distances in fixed-width bins from 0, for error rates
// over more comparisons than can be kept (all LFW cross-person pairs).
type Histogram struct {
	Width  float64
	Counts []int64
	N      int64
}

// NewHistogram covers [0, max) in bins of width; larger values go in the
// last bin.
func NewHistogram(width, max float64) *Histogram {
	return &Histogram{Width: width, Counts: make([]int64, int(math.Ceil(max/width)))}
}

// Add counts one distance.
func (h *Histogram) Add(d float64) {
	i := int(d / h.Width)
	if i >= len(h.Counts) {
		i = len(h.Counts) - 1
	}
	if i < 0 {
		i = 0
	}
	h.Counts[i]++
	h.N++
}

// Merge adds o's counts (same binning) to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	h.N += o.N
}

// Below counts the distances in bins entirely below t (t is rounded down
// to a bin edge).
func (h *Histogram) Below(t float64) int64 {
	// The epsilon keeps t on a bin edge (0.3 with width 0.1) from falling
	// one bin short through rounding.
	k := min(int(math.Floor(t/h.Width+1e-9)), len(h.Counts))
	var n int64
	for _, c := range h.Counts[:max(k, 0)] {
		n += c
	}
	return n
}

// RateBelow is Below(t)/N.
func (h *Histogram) RateBelow(t float64) float64 { return float64(h.Below(t)) / float64(h.N) }

// ThresholdAtRate is the largest bin edge t with Below(t) <= rate*N: for
// impostor distances, the loosest threshold (match when distance < t) whose
// false-match rate stays within rate. Resolution is one bin.
func (h *Histogram) ThresholdAtRate(rate float64) float64 {
	allowed := int64(math.Floor(rate*float64(h.N) + 1e-9))
	var cum int64
	for i, c := range h.Counts {
		if cum+c > allowed {
			return float64(i) * h.Width
		}
		cum += c
	}
	return float64(len(h.Counts)) * h.Width
}
