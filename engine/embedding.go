package engine

import (
	"fmt"
	"image"
	"math"
)

// EmbeddingDim is the length of dlib's face descriptor.
const EmbeddingDim = 128

// DefaultMatchThreshold is the largest Euclidean (L2, not squared) distance
// between two dlib ResNet embeddings that counts as the same person. 0.6 is
// dlib's published operating point; on LFW deep-funneled (View 2, 10-fold)
// the model mirror's weights reach 98.75% accuracy at 0.6 and choose
// 0.616–0.629 per fold (shared/models/README.md). This is the one place the
// threshold is defined; everything else takes it from here or from config.
//
// go-face's ClassifyThreshold compares its tolerance against the *squared*
// distance; loopgate never does: pgvector's <-> operator and Distance below
// are both plain Euclidean distance.
const DefaultMatchThreshold = 0.6

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
