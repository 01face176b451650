package accuracy

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/loopgate/loopgate/engine"
)

// Search scaling (`bench search`) runs on SYNTHETIC embeddings: LFW has
// 13k faces, far fewer than the galleries measured. The generator is
// calibrated on the real LFW embedding cache so the vectors have the norm
// and the same-person / cross-person distances of dlib embeddings; what
// makes a search fast or slow (dimension, norm, clustering) is therefore
// realistic, while the identities are not.

// DistanceStats summarises a distance or norm distribution.
type DistanceStats struct {
	N                  int
	Mean, SD           float64
	MeanSq             float64 // mean of squares (expected squared distance)
	P5, P50, P95       float64
	Min, Max           float64
	PairsNote          string
	sortedForQuantiles []float64
}

// Summarise computes DistanceStats of xs (xs is sorted in place).
func Summarise(xs []float64) DistanceStats {
	s := DistanceStats{N: len(xs), Mean: math.NaN(), SD: math.NaN(), P5: math.NaN(), P50: math.NaN(), P95: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	if len(xs) == 0 {
		return s
	}
	sort.Float64s(xs)
	var sum, sumSq float64
	for _, x := range xs {
		sum += x
		sumSq += x * x
	}
	s.Mean = sum / float64(len(xs))
	s.MeanSq = sumSq / float64(len(xs))
	var ss float64
	for _, x := range xs {
		ss += (x - s.Mean) * (x - s.Mean)
	}
	if len(xs) > 1 {
		s.SD = math.Sqrt(ss / float64(len(xs)-1))
	} else {
		s.SD = 0
	}
	s.P5, s.P50, s.P95 = Quantile(xs, 0.05), Quantile(xs, 0.5), Quantile(xs, 0.95)
	s.Min, s.Max = xs[0], xs[len(xs)-1]
	return s
}

// Quantile is the q-quantile of sorted xs by linear interpolation between
// order statistics (R type 7, as numpy's default); NaN for no data.
func Quantile(sorted []float64, q float64) float64 {
	n := len(sorted)
	if n == 0 || math.IsNaN(q) {
		return math.NaN()
	}
	q = min(max(q, 0), 1)
	h := q * float64(n-1)
	lo := int(math.Floor(h))
	if lo >= n-1 {
		return sorted[n-1]
	}
	return sorted[lo] + (h-float64(lo))*(sorted[lo+1]-sorted[lo])
}

// LatencyQuantile is Quantile over durations (unsorted; not modified).
func LatencyQuantile(ds []time.Duration, q float64) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	sort.Float64s(xs)
	v := Quantile(xs, q)
	if math.IsNaN(v) {
		return 0
	}
	return time.Duration(math.Round(v))
}

// RecallAt1 is the share of queries whose first result is the exact first
// result. Queries without an exact answer are skipped.
func RecallAt1(got, exact [][]int64) float64 {
	hit, n := 0, 0
	for i := range exact {
		if len(exact[i]) == 0 {
			continue
		}
		n++
		if i < len(got) && len(got[i]) > 0 && got[i][0] == exact[i][0] {
			hit++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return float64(hit) / float64(n)
}

// RecallAtK is the mean share of the exact top k found anywhere in the
// returned top k (the usual ANN recall@k).
func RecallAtK(got, exact [][]int64, k int) float64 {
	var sum float64
	n := 0
	for i := range exact {
		want := exact[i][:min(k, len(exact[i]))]
		if len(want) == 0 {
			continue
		}
		n++
		if i >= len(got) {
			continue
		}
		have := got[i][:min(k, len(got[i]))]
		found := 0
		for _, id := range want {
			if slices.Contains(have, id) {
				found++
			}
		}
		sum += float64(found) / float64(len(want))
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / float64(n)
}

// scored is a candidate template ID at distance d.
type scored[D float32 | float64] struct {
	id int64
	d  D
}

// pushTopK inserts (id, d) into top, kept sorted nearest first and at most
// k long. Callers skip candidates no nearer than top[k-1] before calling.
func pushTopK[D float32 | float64](top []scored[D], k int, id int64, d D) []scored[D] {
	j := len(top)
	top = append(top, scored[D]{})
	for j > 0 && top[j-1].d > d {
		top[j] = top[j-1]
		j--
	}
	top[j] = scored[D]{id, d}
	if len(top) > k {
		top = top[:k]
	}
	return top
}

// BruteForceTopK returns the 1-based indexes (the template IDs the bench
// loads) of the k vectors of gallery nearest to q by engine.Distance,
// nearest first: the exact answer, in process.
func BruteForceTopK(gallery []engine.Embedding, q engine.Embedding, k int) []int64 {
	top := make([]scored[float64], 0, k+1)
	for i := range gallery {
		d := engine.Distance(gallery[i], q)
		if len(top) == k && d >= top[k-1].d {
			continue
		}
		top = pushTopK(top, k, int64(i+1), d)
	}
	out := make([]int64, len(top))
	for i, h := range top {
		out[i] = h.id
	}
	return out
}

// EmbeddingReference is what the generator matches: statistics of real
// dlib embeddings (one subject face per LFW image).
type EmbeddingReference struct {
	// Source is the cache file measured, or a note that defaults were used.
	Source           string
	Images, People   int
	Norm             DistanceStats
	Genuine          DistanceStats // same person, all pairs
	Impostor         DistanceStats // different people, random pairs
	TemplatesPerMean float64
	// Model is the covariance model fitted on the reference (nil for the
	// defaults: the generator is then isotropic).
	Model *CovarianceModel
}

// DefaultReference is used when no LFW cache exists: the figures of
// benchmarks/results/lfw.md rounded (dlib norm ≈ 1, genuine ≈ 0.4,
// impostor ≈ 0.9).
func DefaultReference() EmbeddingReference {
	return EmbeddingReference{
		Source:   "defaults (no LFW embedding cache found)",
		Norm:     DistanceStats{Mean: 1.0, SD: 0.03},
		Genuine:  DistanceStats{Mean: 0.40, SD: 0.08},
		Impostor: DistanceStats{Mean: 0.90, SD: 0.08},
	}
}

// FindReferenceCache returns the plain (not jittered) embedding cache file
// under cacheDir/embeddings, or "" when there is none.
func FindReferenceCache(cacheDir string) string {
	files, _ := filepath.Glob(filepath.Join(cacheDir, "embeddings", "*.jsonl"))
	var best string
	var bestSize int64
	for _, f := range files {
		base := filepath.Base(f)
		if strings.HasSuffix(base, ".runs.jsonl") || strings.Contains(base, ".jitter") {
			continue
		}
		if st, err := os.Stat(f); err == nil && st.Size() > bestSize {
			best, bestSize = f, st.Size()
		}
	}
	return best
}

// MeasureReference reads an LFW embedding cache and measures the norm of
// every subject face, every same-person distance and impostorPairs random
// cross-person distances.
func MeasureReference(path string, impostorPairs int, seed uint64) (EmbeddingReference, error) {
	c, err := OpenCache(path)
	if err != nil {
		return EmbeddingReference{}, err
	}
	byPerson := map[string][]engine.Embedding{}
	c.mu.RLock()
	keys := make([]string, 0, len(c.recs))
	for key := range c.recs {
		keys = append(keys, key)
	}
	sort.Strings(keys) // map order would make the random pairs differ between runs
	for _, key := range keys {
		rec := c.recs[key]
		f, ok := rec.Subject()
		if !ok {
			continue
		}
		// Keys are datasets/lfw/images/<Name>/<Name>_NNNN.jpg.
		person := filepath.Base(filepath.Dir(key))
		byPerson[person] = append(byPerson[person], f.Embedding)
	}
	c.mu.RUnlock()
	if len(byPerson) < 2 {
		return EmbeddingReference{}, fmt.Errorf("accuracy: %s: %w", path, errNoReference)
	}
	names := make([]string, 0, len(byPerson))
	for n := range byPerson {
		names = append(names, n)
	}
	sort.Strings(names)
	ref := EmbeddingReference{Source: path, People: len(names)}
	var norms, gen, imp []float64
	var all []engine.Embedding
	var owner []int
	for pi, n := range names {
		es := byPerson[n]
		for i := range es {
			norms = append(norms, norm(es[i]))
			all = append(all, es[i])
			owner = append(owner, pi)
			for j := i + 1; j < len(es); j++ {
				gen = append(gen, engine.Distance(es[i], es[j]))
			}
		}
	}
	ref.Images = len(all)
	ref.TemplatesPerMean = float64(len(all)) / float64(len(names))
	rng := rand.New(rand.NewPCG(seed, 0x5ea7c4))
	for len(imp) < impostorPairs {
		a, b := rng.IntN(len(all)), rng.IntN(len(all))
		if owner[a] == owner[b] {
			continue
		}
		imp = append(imp, engine.Distance(all[a], all[b]))
	}
	ref.Norm, ref.Genuine, ref.Impostor = Summarise(norms), Summarise(gen), Summarise(imp)
	ref.Genuine.PairsNote = "all same-person pairs"
	ref.Impostor.PairsNote = fmt.Sprintf("%d random cross-person pairs", impostorPairs)
	people := make([][]engine.Embedding, len(names))
	for i, n := range names {
		people[i] = byPerson[n]
	}
	model, err := FitCovariance(people, ref.Genuine.MeanSq, ref.Impostor.MeanSq, defaultSpreadSD)
	if err != nil {
		return EmbeddingReference{}, err
	}
	ref.Model = model
	return ref, nil
}

var errNoReference = errors.New("fewer than two people with a face in the cache")

// SyntheticParams drive the generator. A person's template is
// r·unit(m + u_p + s_p·n): m is a shared mean direction (real embeddings
// fill a cone, not the whole sphere), u_p ~ N(0, τ²I) the person's offset,
// n ~ N(0, σ²I) the sample's noise scaled by a per-person spread s_p, and
// r ~ N(NormMean, NormSD) the norm.
type SyntheticParams struct {
	Dim                int
	NormMean, NormSD   float64
	Tau, Sigma         float64
	SpreadSD           float64 // sd of log s_p: some people vary more than others
	OffsetSD           float64 // sd of log of a per-person scale of u_p: some faces are more typical than others
	TemplatesPerPerson [2]int  // uniform range, inclusive
	GenuineTarget      float64
	ImpostorTarget     float64
	// Model, when set, replaces the isotropic model: x = μ + B z₁ + s·W z₂.
	Model *CovarianceModel
}

const defaultSpreadSD = 0.12

// CalibrateSynthetic solves τ and σ so that the expected same-person and
// cross-person distances equal the reference means. With s² = D(τ²+σ²):
// |m+u+n|² ≈ 1+s², impostor d² ≈ r²·2s²/(1+s²), genuine d² ≈
// r²·2Dσ²/(1+s²).
func CalibrateSynthetic(ref EmbeddingReference) (SyntheticParams, error) {
	const dim = engine.EmbeddingDim
	r := ref.Norm.Mean
	if !(r > 0) || !(ref.Genuine.Mean > 0) || !(ref.Impostor.Mean > ref.Genuine.Mean) {
		return SyntheticParams{}, fmt.Errorf("accuracy: reference not usable for calibration (norm %.3f, genuine %.3f, impostor %.3f)",
			r, ref.Genuine.Mean, ref.Impostor.Mean)
	}
	// Expected distance is slightly below sqrt(E d²); this small-bias
	// approximation is corrected by the generator test, which measures.
	q := math.Pow(ref.Impostor.Mean/r, 2)
	if q >= 2 {
		return SyntheticParams{}, fmt.Errorf("accuracy: impostor distance %.3f too large for norm %.3f", ref.Impostor.Mean, r)
	}
	s2 := q / (2 - q)
	sigma2 := math.Pow(ref.Genuine.Mean/r, 2) * (1 + s2) / (2 * dim)
	tau2 := s2/dim - sigma2
	if tau2 <= 0 {
		return SyntheticParams{}, fmt.Errorf("accuracy: genuine %.3f vs impostor %.3f leaves no room between people", ref.Genuine.Mean, ref.Impostor.Mean)
	}
	normSD := ref.Norm.SD
	if math.IsNaN(normSD) {
		normSD = 0
	}
	return SyntheticParams{
		Dim: dim, NormMean: r, NormSD: normSD, Model: ref.Model,
		Tau: math.Sqrt(tau2), Sigma: math.Sqrt(sigma2), SpreadSD: defaultSpreadSD, OffsetSD: 0.2,
		TemplatesPerPerson: [2]int{1, 5},
		GenuineTarget:      ref.Genuine.Mean, ImpostorTarget: ref.Impostor.Mean,
	}, nil
}

// Synthetic generates people and samples from SyntheticParams,
// deterministically from a seed.
type Synthetic struct {
	p    SyntheticParams
	rng  *rand.Rand
	mean []float64
}

// SyntheticPerson is a generated identity: its centre and spread.
type SyntheticPerson struct {
	centre []float64
	spread float64
}

// NewSynthetic makes a generator.
func NewSynthetic(p SyntheticParams, seed uint64) *Synthetic {
	s := &Synthetic{p: p, rng: rand.New(rand.NewPCG(seed, 0x5ea7c5))}
	s.mean = make([]float64, p.Dim)
	var n float64
	for i := range s.mean {
		s.mean[i] = s.rng.NormFloat64()
		n += s.mean[i] * s.mean[i]
	}
	n = math.Sqrt(n)
	for i := range s.mean {
		s.mean[i] /= n
	}
	return s
}

// Person draws a new identity.
func (s *Synthetic) Person() SyntheticPerson {
	if m := s.p.Model; m != nil {
		c := s.draw(m.between)
		for i := range c {
			c[i] += m.Mean[i]
		}
		return SyntheticPerson{centre: c, spread: s.spread()}
	}
	c := make([]float64, s.p.Dim)
	offset := s.p.Tau
	if s.p.OffsetSD > 0 {
		// Mean-one log-normal, as spread below: widens the cross-person
		// distance distribution as LFW's is wider than one shell.
		offset *= math.Exp(s.p.OffsetSD*s.rng.NormFloat64() - s.p.OffsetSD*s.p.OffsetSD/2)
	}
	for i := range c {
		c[i] = s.mean[i] + offset*s.rng.NormFloat64()
	}
	return SyntheticPerson{centre: c, spread: s.spread()}
}

// spread draws a person's within-person scale: mean-one log-normal so the
// average same-person distance stays calibrated.
func (s *Synthetic) spread() float64 {
	if s.p.SpreadSD <= 0 {
		return 1
	}
	return math.Exp(s.p.SpreadSD*s.rng.NormFloat64() - s.p.SpreadSD*s.p.SpreadSD/2)
}

// Sample draws one template (an enrolment photo or a probe) of a person.
func (s *Synthetic) Sample(p SyntheticPerson) engine.Embedding {
	var e engine.Embedding
	if m := s.p.Model; m != nil {
		n := s.draw(m.within)
		for i := range e {
			e[i] = float32(p.centre[i] + p.spread*n[i])
		}
		return e
	}
	x := make([]float64, s.p.Dim)
	var n float64
	for i := range x {
		x[i] = p.centre[i] + p.spread*s.p.Sigma*s.rng.NormFloat64()
		n += x[i] * x[i]
	}
	r := s.p.NormMean + s.p.NormSD*s.rng.NormFloat64()
	scale := r / math.Sqrt(n)
	for i := range x {
		e[i] = float32(x[i] * scale)
	}
	return e
}

// TemplateCount draws how many templates a person enrols.
func (s *Synthetic) TemplateCount() int {
	lo, hi := s.p.TemplatesPerPerson[0], s.p.TemplatesPerPerson[1]
	if hi <= lo {
		return max(lo, 1)
	}
	return lo + s.rng.IntN(hi-lo+1)
}

// SyntheticGallery is a generated gallery: template i (0-based) has ID i+1
// and belongs to person Owner[i] (0-based; person ID Owner[i]+1). A prefix
// of the first n templates is a smaller gallery of the same population.
type SyntheticGallery struct {
	Templates []engine.Embedding
	Owner     []int
	People    []SyntheticPerson
}

// GenerateGallery makes at least n templates (whole people).
func (s *Synthetic) GenerateGallery(n int) SyntheticGallery {
	g := SyntheticGallery{Templates: make([]engine.Embedding, 0, n+s.p.TemplatesPerPerson[1]), Owner: make([]int, 0, n+s.p.TemplatesPerPerson[1])}
	for len(g.Templates) < n {
		p := s.Person()
		pi := len(g.People)
		g.People = append(g.People, p)
		for range s.TemplateCount() {
			g.Templates = append(g.Templates, s.Sample(p))
			g.Owner = append(g.Owner, pi)
		}
	}
	return g
}

// SearchQuery is one probe: Mated probes are a new sample of Person (an
// enrolled person within the gallery prefix); non-mated ones come from a
// person never enrolled (Person = -1).
type SearchQuery struct {
	Embedding engine.Embedding
	Mated     bool
	Person    int
}

// Queries draws n probes for the gallery prefix of size size, alternating
// mated and non-mated.
func (s *Synthetic) Queries(g SyntheticGallery, size, n int) []SearchQuery {
	size = min(size, len(g.Templates))
	out := make([]SearchQuery, 0, n)
	for i := range n {
		if i%2 == 0 && size > 0 {
			pi := g.Owner[s.rng.IntN(size)]
			out = append(out, SearchQuery{Embedding: s.Sample(g.People[pi]), Mated: true, Person: pi})
			continue
		}
		out = append(out, SearchQuery{Embedding: s.Sample(s.Person()), Person: -1})
	}
	return out
}

// norm is the Euclidean length of an embedding.
func norm(e engine.Embedding) float64 {
	var s float64
	for _, x := range e {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// FlattenGallery copies embeddings into one contiguous float32 slice.
func FlattenGallery(g []engine.Embedding) []float32 {
	out := make([]float32, 0, len(g)*engine.EmbeddingDim)
	for i := range g {
		out = append(out, g[i][:]...)
	}
	return out
}

// ParallelScanTopK is BruteForceTopK over a flat gallery in float32
// squared distances, split over workers goroutines: the same ranking up to
// float32 rounding of near-ties.
func ParallelScanTopK(flat []float32, q engine.Embedding, k, workers int) []int64 {
	const d = engine.EmbeddingDim
	n := len(flat) / d
	workers = max(1, min(workers, n/1024+1))
	parts := make([][]scored[float32], workers)
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for w := range workers {
		lo, hi := w*chunk, min(n, (w+1)*chunk)
		wg.Add(1)
		go func() {
			defer wg.Done()
			top := make([]scored[float32], 0, k+1)
			for i := lo; i < hi; i++ {
				v := flat[i*d : i*d+d : i*d+d]
				var s0, s1, s2, s3 float32
				for j := 0; j < d; j += 4 {
					a, b, c, e := v[j]-q[j], v[j+1]-q[j+1], v[j+2]-q[j+2], v[j+3]-q[j+3]
					s0 += a * a
					s1 += b * b
					s2 += c * c
					s3 += e * e
				}
				dist := (s0 + s1) + (s2 + s3)
				if len(top) == k && dist >= top[k-1].d {
					continue
				}
				top = pushTopK(top, k, int64(i+1), dist)
			}
			parts[w] = top
		}()
	}
	wg.Wait()
	var all []scored[float32]
	for _, p := range parts {
		all = append(all, p...)
	}
	sort.Slice(all, func(a, b int) bool { return all[a].d < all[b].d })
	all = all[:min(k, len(all))]
	out := make([]int64, len(all))
	for i, h := range all {
		out[i] = h.id
	}
	return out
}
