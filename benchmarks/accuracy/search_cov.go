package accuracy

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/loopgate/loopgate/engine"
)

// CovarianceModel is the two-covariance Gaussian model of face embeddings
// (as in PLDA): x = Mean + u + s·n with a person offset u ~ N(0, Σb) and a
// sample deviation n ~ N(0, Σw), both fitted on LFW. Real embeddings are
// far from isotropic: a few directions carry most of the variance, and
// that structure is what decides how well a graph index such as HNSW
// navigates, so an isotropic generator would misjudge it.
type CovarianceModel struct {
	Mean []float64
	// between and within are square-root factors (BBᵀ = Σb, WWᵀ = Σw)
	// already scaled to the reference's mean squared distances.
	between, within *mat.Dense
	// Participation ratios (Σλ)²/Σλ² of the fitted covariances: the
	// effective number of dimensions (128 for isotropic noise).
	BetweenEffDim, WithinEffDim float64
	// PeopleUsed have at least two images (needed for within-person).
	PeopleUsed int
}

// FitCovariance fits the model on people (each a list of embeddings of one
// person) and scales it so the expected squared same-person distance is
// genuineMeanSq and cross-person impostorMeanSq; spreadSD is the log-normal
// per-person spread the generator multiplies the within part by.
func FitCovariance(people [][]engine.Embedding, genuineMeanSq, impostorMeanSq, spreadSD float64) (*CovarianceModel, error) {
	const d = engine.EmbeddingDim
	m := &CovarianceModel{Mean: make([]float64, d)}
	total := 0
	for _, p := range people {
		for _, e := range p {
			for i := range d {
				m.Mean[i] += float64(e[i])
			}
			total++
		}
	}
	if total == 0 {
		return nil, errors.New("accuracy: no embeddings to fit")
	}
	for i := range m.Mean {
		m.Mean[i] /= float64(total)
	}
	within := mat.NewSymDense(d, nil)
	means := mat.NewSymDense(d, nil)
	var withinDF int
	var invN float64
	dev := make([]float64, d)
	pm := make([]float64, d)
	for _, p := range people {
		if len(p) < 2 {
			continue
		}
		m.PeopleUsed++
		clear(pm)
		for _, e := range p {
			for i := range d {
				pm[i] += float64(e[i])
			}
		}
		for i := range pm {
			pm[i] /= float64(len(p))
		}
		for _, e := range p {
			for i := range d {
				dev[i] = float64(e[i]) - pm[i]
			}
			within.SymRankOne(within, 1, mat.NewVecDense(d, dev))
		}
		withinDF += len(p) - 1
		for i := range d {
			dev[i] = pm[i] - m.Mean[i]
		}
		means.SymRankOne(means, 1, mat.NewVecDense(d, dev))
		invN += 1 / float64(len(p))
	}
	if m.PeopleUsed < 2 || withinDF == 0 {
		return nil, errors.New("accuracy: need at least two people with two images to fit covariances")
	}
	within.ScaleSym(1/float64(withinDF), within)
	// A person mean over n images carries Σw/n of sample noise: remove it.
	between := mat.NewSymDense(d, nil)
	between.ScaleSym(1/float64(m.PeopleUsed-1), means)
	corr := mat.NewSymDense(d, nil)
	corr.ScaleSym(-invN/float64(m.PeopleUsed), within)
	between.AddSym(between, corr)

	bf, btr, bpr, err := sqrtFactor(between)
	if err != nil {
		return nil, err
	}
	wf, wtr, wpr, err := sqrtFactor(within)
	if err != nil {
		return nil, err
	}
	m.BetweenEffDim, m.WithinEffDim = bpr, wpr
	// E d²(same) = 2·E[s²]·a_w²·tr Σw; E d²(cross) adds 2·a_b²·tr Σb.
	es2 := math.Exp(spreadSD * spreadSD)
	aw2 := genuineMeanSq / (2 * es2 * wtr)
	ab2 := (impostorMeanSq - genuineMeanSq) / (2 * btr)
	if !(aw2 > 0) || !(ab2 > 0) {
		return nil, fmt.Errorf("accuracy: cannot scale covariances (genuine %.4f, impostor %.4f mean squared distance)", genuineMeanSq, impostorMeanSq)
	}
	bf.Scale(math.Sqrt(ab2), bf)
	wf.Scale(math.Sqrt(aw2), wf)
	m.between, m.within = bf, wf
	return m, nil
}

// sqrtFactor returns V·diag(√λ) of a symmetric matrix (negative
// eigenvalues, estimation noise, clipped to zero), its trace after
// clipping and the participation ratio.
func sqrtFactor(s *mat.SymDense) (*mat.Dense, float64, float64, error) {
	var eig mat.EigenSym
	if !eig.Factorize(s, true) {
		return nil, 0, 0, errors.New("accuracy: eigen decomposition failed")
	}
	vals := eig.Values(nil)
	var vecs mat.Dense
	eig.VectorsTo(&vecs)
	n := len(vals)
	var tr, sq float64
	root := make([]float64, n)
	for i, v := range vals {
		v = max(v, 0)
		tr += v
		sq += v * v
		root[i] = math.Sqrt(v)
	}
	if tr <= 0 {
		return nil, 0, 0, errors.New("accuracy: covariance has no positive eigenvalue")
	}
	f := mat.NewDense(n, n, nil)
	f.Apply(func(i, j int, v float64) float64 { return v * root[j] }, &vecs)
	return f, tr, tr * tr / sq, nil
}

// draw returns f·z for z ~ N(0, I).
func (s *Synthetic) draw(f *mat.Dense) []float64 {
	n, _ := f.Dims()
	z := make([]float64, n)
	for i := range z {
		z[i] = s.rng.NormFloat64()
	}
	out := make([]float64, n)
	mat.NewVecDense(n, out).MulVec(f, mat.NewVecDense(n, z))
	return out
}
