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
	// Detect and Embed split DetectEmbed: the detector on the whole image,
	// then cropping and embedding every face.
	Detect, Embed time.Duration
}

// Total is the sum of the stages.
func (t Timings) Total() time.Duration { return t.Decode + t.DetectEmbed + t.Search }

// Identification is the outcome for one face in a probe image.
type Identification struct {
	// Face is the face in the probe's own pixels (full resolution). When
	// Err is set only Face.Box is filled: the detector's box.
	Face Face
	// Best is the nearest enrolled person, nil when the gallery is empty.
	Best *Candidate
	// Matched is true when Best is within the threshold.
	Matched bool
	// Err says why a face the detector found could not be embedded, and so
	// was not searched (it wraps ErrNoFace when the recogniser found no face
	// in the crop: a strongly turned or partly hidden face).
	Err error
}

// Identifier runs the whole probe path: decode → detect → crop+embed each
// face → search → decide.
type Identifier struct {
	// Stills decodes the probe and finds and embeds its faces, with the
	// same detector and crops as the walk-through pipeline (engine/still).
	Stills   StillAnalyzer
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

// IdentifyImage identifies every face in an encoded image, in reading order
// (left to right). It fails with ErrNoFace only when the detector finds no
// face at all; a face that cannot be embedded is reported in its
// Identification's Err.
func (id *Identifier) IdentifyImage(ctx context.Context, data []byte) ([]Identification, Timings, error) {
	st, err := id.Stills.AnalyzeStill(ctx, data, StillOptions{})
	t := Timings{Decode: st.Decode, Detect: st.Detect, Embed: st.Embed, DetectEmbed: st.Detect + st.Embed}
	id.Metrics.observe(StageDecode, t.Decode)
	if err != nil {
		return nil, t, err
	}
	id.Metrics.observe(StageDetectEmbed, t.DetectEmbed)
	if len(st.Faces) == 0 {
		return nil, t, fmt.Errorf("%w in %dx%d image", ErrNoFace, st.Width, st.Height)
	}
	out := make([]Identification, 0, len(st.Faces))
	start := time.Now()
	for _, f := range st.Faces {
		if !f.Embedded {
			err := f.Err
			if err == nil {
				err = errors.New("engine: face was not embedded")
			}
			out = append(out, Identification{Face: Face{Box: f.DetectorBox}, Err: err})
			continue
		}
		r, err := id.Match(ctx, f.Face)
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
