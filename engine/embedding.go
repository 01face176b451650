package engine

import (
	"fmt"
	"image"
	"math"
)

// EmbeddingDim is the length of dlib's face descriptor.
const EmbeddingDim = 128

// DefaultMatchThreshold is the largest Euclidean (L2, not squared) distance
// between two dlib ResNet embeddings that counts as the same person in a
// single comparison (identify, the enrolment duplicate check, 1:1 claims).
//
// Derivation (benchmarks/results/lfw.md and identify.md, `loopgate bench
// lfw|identify`): over all 87.3M cross-person pairs of LFW deep-funneled
// embedded by these weights, 1 in 10,000 pairs falls within 0.4751 (FMR
// 1e-4, FNMR 22.8%); 0.47 is that point rounded down. dlib's published
// operating point, 0.6, maximises *verification accuracy* (98.80% here,
// View 2 10-fold) but is far too loose for a gate: with 100 people
// enrolled, 35.6% of single-photo LFW strangers match someone at 0.6, and
// 94.15% with 1,680 enrolled. At 0.47 the figures are 0.64% and 5.5%, at
// the cost of missing 28.3% of enrolled people on one photo: the
// walk-through pipeline recovers them by fusing frames (engine/fuse).
//
// go-face's ClassifyThreshold compares its tolerance against the *squared*
// distance; loopgate never does: pgvector's <-> operator and Distance below
// are both plain Euclidean distance.
const DefaultMatchThreshold = 0.47

// Embedding is a 128-d face descriptor from dlib's ResNet.
type Embedding [EmbeddingDim]float32

// Distance returns the Euclidean distance between two embeddings.
func Distance(a, b Embedding) float64 {
	var sum float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		sum += d * d
	}
	return math.Sqrt(sum)
}

// Valid reports whether every component is finite and the vector is not all
// zero: a guard before anything is stored or searched.
func (e Embedding) Valid() error {
	var norm float64
	for i, v := range e {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("embedding component %d is %v", i, v)
		}
		norm += float64(v) * float64(v)
	}
	if norm == 0 {
		return fmt.Errorf("embedding is all zero")
	}
	return nil
}

// Face is one face found in an image.
type Face struct {
	// Box is the detector's rectangle in image pixels.
	Box image.Rectangle
	// Landmarks are the shape predictor's points (5 or 68).
	Landmarks []image.Point
	Embedding Embedding
}

// Embedder finds faces in a normalised image and embeds each one.
type Embedder interface {
	Faces(jpeg []byte) ([]Face, error)
}
