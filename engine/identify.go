package engine

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Candidate is an enrolled template near a probe.
type Candidate struct {
	PersonID   int64
	ExternalID string
	Name       string
	TemplateID int64
	Distance   float64 // Euclidean
}

// Searcher finds the enrolled templates nearest to an embedding, among
// those made by the same embedding model.
type Searcher interface {
	Nearest(ctx context.Context, e Embedding, model string, k int) ([]Candidate, error)
}

// Timings are the per-stage latencies of one identification.
type Timings struct {
	Decode, DetectEmbed, Search time.Duration
}

// Total is the sum of the stages.
func (t Timings) Total() time.Duration { return t.Decode + t.DetectEmbed + t.Search }

// Identification is the outcome for one face in a probe image.
type Identification struct {
	Face Face
	// Best is the nearest enrolled person, nil when the gallery is empty.
	Best *Candidate
	// Matched is true when Best is within the threshold.
	Matched bool
}

// Identifier runs the whole probe path: decode → detect+embed → search → decide.
type Identifier struct {
	Decoder  Decoder
	Embedder Embedder
	Searcher Searcher
	// Model tags the embedder's weights; only templates with the same tag match.
	Model string
	// Threshold on Euclidean distance; zero means DefaultMatchThreshold.
	Threshold float64
	// Metrics may be nil.
	Metrics *Metrics
}

// searchDepth is how many nearest templates are fetched: several templates
// may belong to one person, and the best per person is what is reported.
const searchDepth = 5

// IdentifyImage identifies every face in an encoded image.
func (id *Identifier) IdentifyImage(ctx context.Context, data []byte) ([]Identification, Timings, error) {
	var t Timings
	start := time.Now()
	img, err := id.Decoder.Decode(data)
	t.Decode = time.Since(start)
	id.Metrics.observe(StageDecode, t.Decode)
	if err != nil {
		return nil, t, err
	}
	start = time.Now()
	faces, err := id.Embedder.Faces(img.JPEG)
	t.DetectEmbed = time.Since(start)
	id.Metrics.observe(StageDetectEmbed, t.DetectEmbed)
	if err != nil {
		return nil, t, err
	}
	if len(faces) == 0 {
		return nil, t, fmt.Errorf("%w in %dx%d image", ErrNoFace, img.Width, img.Height)
	}
	out := make([]Identification, 0, len(faces))
	start = time.Now()
	for _, f := range faces {
		r, err := id.Match(ctx, f)
		if err != nil {
			return nil, t, err
		}
		out = append(out, r)
	}
	t.Search = time.Since(start)
	id.Metrics.observe(StageSearch, t.Search)
	return out, t, nil
}

// Match searches the gallery for one face and applies the threshold.
func (id *Identifier) Match(ctx context.Context, f Face) (Identification, error) {
	if id.Model == "" {
		return Identification{}, errors.New("engine: identifier has no model tag")
	}
	cands, err := id.Searcher.Nearest(ctx, f.Embedding, id.Model, searchDepth)
	if err != nil {
		return Identification{}, err
	}
	r := Identification{Face: f}
	if len(cands) > 0 {
		best := cands[0] // nearest first
		r.Best = &best
		r.Matched = best.Distance <= id.threshold()
	}
	id.Metrics.decision(r.Matched)
	return r, nil
}

func (id *Identifier) threshold() float64 {
	if id.Threshold > 0 {
		return id.Threshold
	}
	return DefaultMatchThreshold
}
