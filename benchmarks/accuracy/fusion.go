package accuracy

import (
	"fmt"
	"math"
	"slices"

	"github.com/loopgate/loopgate/engine"
)

// Frame is one sighting of a walker: the subject's face, or none when the
// detector missed it.
type Frame struct {
	Face CachedFace
	OK   bool
}

// Walker is one person crossing the gate, seen in several frames. Truth is
// the enrolled identity, "" for a stranger (not enrolled).
type Walker struct {
	Name   string
	Truth  string
	Frames []Frame
}

// Rule fuses a walker's frames into one gate decision. hits holds one
// search per frame (an empty Hit for a missing frame); m is the margin the
// decision will be held to.
type Rule struct {
	Name string
	// Why is a one-line description for the report.
	Why    string
	Decide func(g *Gallery, w Walker, hits []Hit, m float64) Decision
	// MarginAware rules apply the margin inside Decide; the others leave it
	// to Decision.Opens, so one decision serves every margin.
	MarginAware bool
}

// SearchFrames searches every frame of w (an empty Hit for a missing frame).
func SearchFrames(g *Gallery, w Walker) []Hit {
	hits := make([]Hit, len(w.Frames))
	for i, f := range w.Frames {
		if f.OK {
			hits[i] = g.Search(f.Face.Embedding)
		} else {
			hits[i] = Hit{D1: math.Inf(1), D2: math.Inf(1)}
		}
	}
	return hits
}

// SingleFrame decides on the first frame only.
func SingleFrame() Rule {
	return Rule{Name: "single frame", Why: "first frame only",
		Decide: func(_ *Gallery, w Walker, hits []Hit, _ float64) Decision {
			return FromHit(hits[0], w.Truth)
		}}
}

// BestFrame decides on the frame nearest to anyone in the gallery.
func BestFrame() Rule {
	return Rule{Name: "best frame", Why: "the frame with the smallest top-1 distance",
		Decide: func(_ *Gallery, w Walker, hits []Hit, _ float64) Decision {
			return BestDecision(hits, w.Truth)
		}}
}

// BestDecision takes the search with the smallest top-1 distance.
func BestDecision(hits []Hit, truth string) Decision {
	best := Hit{D1: math.Inf(1), D2: math.Inf(1)}
	for _, h := range hits {
		if h.Person != "" && h.D1 < best.D1 {
			best = h
		}
	}
	return FromHit(best, truth)
}

// Vote opens for a person named at rank 1 by at least need frames, each
// within the threshold and with margin m.
func Vote(need int) Rule {
	return Rule{Name: voteName(need), Why: "same person at rank 1 within the threshold (and margin) in enough frames",
		MarginAware: true,
		Decide: func(_ *Gallery, w Walker, hits []Hit, m float64) Decision {
			return VoteDecision(hits, need, m, w.Truth)
		}}
}

func voteName(need int) string {
	return string(rune('0'+need)) + "-of-3 vote"
}

// VoteDecision reduces voting to a score: for each person named by at least
// need frames whose margin is at least m, the need-th smallest of those
// frames' distances; the decision takes the person with the smallest such
// score. At threshold t the gate then opens exactly when need frames agree
// within t. The margin is already applied, so Decision.Margin is +Inf.
func VoteDecision(hits []Hit, need int, m float64, truth string) Decision {
	byPerson := map[string][]float64{}
	for _, h := range hits {
		if h.Person != "" && h.Margin() >= m {
			byPerson[h.Person] = append(byPerson[h.Person], h.D1)
		}
	}
	d := Decision{Score: math.Inf(1), Margin: math.Inf(1), Truth: truth, Missing: true}
	// Sorted names keep ties deterministic.
	names := make([]string, 0, len(byPerson))
	for p := range byPerson {
		names = append(names, p)
	}
	slices.Sort(names)
	for _, p := range names {
		ds := byPerson[p]
		if len(ds) < need {
			continue
		}
		slices.Sort(ds)
		if s := ds[need-1]; s < d.Score {
			d.Score, d.Person, d.Missing = s, p, false
		}
	}
	return d
}

// MeanOfFrames searches once with the mean embedding of the walker's first
// k usable frames (k <= 0: all of them).
func MeanOfFrames(k int) Rule {
	name := "mean of embeddings"
	if k > 0 {
		name = "mean of first " + string(rune('0'+k)) + " frames"
	}
	return Rule{Name: name, Why: "search once with the average embedding",
		Decide: func(g *Gallery, w Walker, _ []Hit, _ float64) Decision {
			var es []engine.Embedding
			for _, f := range w.Frames {
				if k > 0 && len(es) == k {
					break
				}
				if f.OK {
					es = append(es, f.Face.Embedding)
				}
			}
			if len(es) == 0 {
				return Decision{Score: math.Inf(1), Margin: math.Inf(1), Truth: w.Truth, Missing: true}
			}
			return FromHit(g.Search(MeanEmbedding(es, nil)), w.Truth)
		}}
}

// WeightedMean searches once with the embeddings averaged by weight.
func WeightedMean(name, why string, weight func(CachedFace) float64) Rule {
	return Rule{Name: name, Why: why,
		Decide: func(g *Gallery, w Walker, _ []Hit, _ float64) Decision {
			var es []engine.Embedding
			var ws []float64
			for _, f := range w.Frames {
				if f.OK {
					es = append(es, f.Face.Embedding)
					ws = append(ws, weight(f.Face))
				}
			}
			if len(es) == 0 {
				return Decision{Score: math.Inf(1), Margin: math.Inf(1), Truth: w.Truth, Missing: true}
			}
			return FromHit(g.Search(MeanEmbedding(es, ws)), w.Truth)
		}}
}

// MeanEmbedding is the weighted mean of es (weights nil: plain mean; all
// weights zero: plain mean too). dlib embeddings are compared unnormalised,
// so the mean is not rescaled.
func MeanEmbedding(es []engine.Embedding, weights []float64) engine.Embedding {
	if len(es) == 0 {
		return engine.Embedding{}
	}
	var sum [engine.EmbeddingDim]float64
	var total float64
	for i, e := range es {
		w := 1.0
		if weights != nil {
			w = weights[i]
		}
		total += w
		for j, v := range e {
			sum[j] += w * float64(v)
		}
	}
	if total <= 0 {
		return MeanEmbedding(es, nil)
	}
	var out engine.Embedding
	for j := range out {
		out[j] = float32(sum[j] / total)
	}
	return out
}

// SequentialMean follows engine/fuse's rule: once minFrames usable frames
// are in, the mean so far is searched, and searched again after every
// further frame up to maxFrames; the gate opens at the first search within
// the threshold and margin. Every extra search is one more chance for a
// stranger, so its score is the smallest qualifying distance over all the
// searches (the person is the one named there; the engine names the first
// to qualify, which differs only if two searches qualify for different
// people). The margin is applied per search.
func SequentialMean(minFrames, maxFrames int) Rule {
	return Rule{Name: fmt.Sprintf("sequential mean (%d..%d frames)", minFrames, maxFrames),
		Why:         fmt.Sprintf("search the running mean after frame %d, %d, ... %d; open at the first search that qualifies", minFrames, minFrames+1, maxFrames),
		MarginAware: true,
		Decide: func(g *Gallery, w Walker, _ []Hit, m float64) Decision {
			d := Decision{Score: math.Inf(1), Margin: math.Inf(1), Truth: w.Truth, Missing: true}
			var es []engine.Embedding
			for _, f := range w.Frames {
				if !f.OK {
					continue
				}
				es = append(es, f.Face.Embedding)
				if len(es) < minFrames {
					continue
				}
				if len(es) > maxFrames {
					break
				}
				h := g.Search(MeanEmbedding(es, nil))
				if h.Person != "" && h.Margin() >= m && h.D1 < d.Score {
					d.Score, d.Person, d.Missing = h.D1, h.Person, false
				}
			}
			return d
		}}
}
