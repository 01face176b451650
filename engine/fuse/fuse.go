// Package fuse turns several frames of one traveller into one decision:
// embeddings of frames that passed the quality gate are averaged (weighted
// by quality) and the mean is searched once enough frames are in. Plain Go.
//
// Why this rule: with this model a single photo is a weak 1:N probe (at the
// 0.6 threshold with 1,680 people enrolled, 94.15% of LFW strangers match
// someone). Averaging embeddings of several frames cancels per-frame noise
// (pose, blur, expression) better than voting or keeping the best frame:
// with 100 enrolled, at 1% of strangers opened, the mean of 3 misses 7.9%
// of enrolled walkers against 31.8% for one frame, 14.75% for 2-of-3 voting
// and 14.1% for the best of 3 (benchmarks/results/identify.md, section 5).
// Weighting the mean by face size or sharpness did not beat the plain mean
// on LFW; the pipeline weights by face size only because walk-through
// frames range from 25 to 200 px, which LFW's crops do not.
package fuse

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/decision"
)

// Rule holds the decision parameters. They live in the node's config.
type Rule struct {
	// Threshold is the largest Euclidean distance from the fused embedding
	// to a person's nearest template that opens (1:N, gate-scoped).
	Threshold float64
	// Margin is the smallest gap between the nearest and the second-nearest
	// person: a face between two people is not opened for either.
	Margin float64
	// MinFrames quality frames are fused before the first search: never open
	// on a single lucky frame.
	MinFrames int
	// MaxFrames: with this many quality frames fused and still no match,
	// deny as unknown (and stop spending CPU on the track).
	MaxFrames int
	// ClaimThreshold is the 1:1 threshold against a claimed identity.
	ClaimThreshold float64
}

// Validate names the bad field.
func (r Rule) Validate() error {
	switch {
	case r.Threshold <= 0 || r.Threshold >= 1.2:
		return fmt.Errorf("fusion.threshold %v: want a Euclidean distance in (0, 1.2)", r.Threshold)
	case r.Margin < 0 || r.Margin >= r.Threshold:
		return fmt.Errorf("fusion.margin %v: want [0, threshold)", r.Margin)
	case r.MinFrames < 1:
		return fmt.Errorf("fusion.min_frames %d: want at least 1", r.MinFrames)
	case r.MaxFrames < r.MinFrames:
		return fmt.Errorf("fusion.max_frames %d: want at least min_frames (%d)", r.MaxFrames, r.MinFrames)
	case r.ClaimThreshold <= 0 || r.ClaimThreshold >= 1.2:
		return fmt.Errorf("fusion.claim_threshold %v: want a Euclidean distance in (0, 1.2)", r.ClaimThreshold)
	}
	return nil
}

// Mean is a running weighted mean of embeddings.
type Mean struct {
	sum    [engine.EmbeddingDim]float64
	weight float64
	n      int
}

// Add includes one frame's embedding with weight w > 0.
func (m *Mean) Add(e engine.Embedding, w float64) {
	if !(w > 0) || math.IsInf(w, 0) {
		w = 1
	}
	for i, v := range e {
		m.sum[i] += w * float64(v)
	}
	m.weight += w
	m.n++
}

// N is the number of frames fused.
func (m *Mean) N() int { return m.n }

// Embedding returns the weighted mean.
func (m *Mean) Embedding() engine.Embedding {
	var e engine.Embedding
	if m.weight == 0 {
		return e
	}
	for i := range e {
		e[i] = float32(m.sum[i] / m.weight)
	}
	return e
}

// Verdict is the outcome of judging a track's evidence.
type Verdict struct {
	Decided  bool
	Outcome  decision.Outcome
	Reason   decision.Reason
	Detail   string
	Person   *engine.PersonMatch
	Distance *float64
	Margin   *float64
}

// Identify judges the people nearest to the fused embedding (nearest first,
// one entry per person) after n quality frames. final is true when the
// track has ended: then a verdict is always reached.
func (r Rule) Identify(matches []engine.PersonMatch, n int, now time.Time, final bool) Verdict {
	exhausted := final || n >= r.MaxFrames
	if n < r.MinFrames {
		if !final {
			return Verdict{}
		}
		return Verdict{Decided: true, Outcome: decision.Deny, Reason: decision.NoUsableCapture,
			Detail: fmt.Sprintf("%d of the %d quality frames needed before the track ended", n, r.MinFrames)}
	}
	if len(matches) == 0 {
		if !exhausted {
			return Verdict{}
		}
		return Verdict{Decided: true, Outcome: decision.Deny, Reason: decision.UnknownFace, Detail: "nobody is registered for this gate"}
	}
	best := matches[0]
	v := Verdict{Distance: ptr(best.Distance)}
	if len(matches) > 1 {
		v.Margin = ptr(matches[1].Distance - best.Distance)
	}
	switch {
	case best.Distance > r.Threshold:
		if !exhausted {
			return Verdict{}
		}
		v.Decided, v.Outcome, v.Reason = true, decision.Deny, decision.UnknownFace
		v.Detail = fmt.Sprintf("nearest registered person at %.3f, threshold %.3f", best.Distance, r.Threshold)
	case v.Margin != nil && *v.Margin < r.Margin:
		if !exhausted {
			return Verdict{}
		}
		v.Decided, v.Outcome, v.Reason = true, decision.Deny, decision.Ambiguous
		v.Detail = fmt.Sprintf("two people within %.3f of each other (margin %.3f needed)", *v.Margin, r.Margin)
	default:
		return registrationVerdict(v, best, now)
	}
	return v
}

// Verify judges a 1:1 claim: match is the claimed person at its distance.
func (r Rule) Verify(match engine.PersonMatch, n int, now time.Time, final bool) Verdict {
	if n < r.MinFrames {
		if !final {
			return Verdict{}
		}
		return Verdict{Decided: true, Outcome: decision.Deny, Reason: decision.NoUsableCapture,
			Detail: fmt.Sprintf("%d of the %d quality frames needed before the track ended", n, r.MinFrames)}
	}
	v := Verdict{Distance: ptr(match.Distance)}
	if match.Distance <= r.ClaimThreshold {
		return registrationVerdict(v, match, now)
	}
	if !final && n < r.MaxFrames {
		return Verdict{}
	}
	v.Decided, v.Outcome, v.Reason = true, decision.Deny, decision.ClaimMismatch
	v.Detail = fmt.Sprintf("face is %.3f from the claimed person, claim threshold %.3f", match.Distance, r.ClaimThreshold)
	return v
}

// registrationVerdict opens only for an active registration inside its
// window; a confident match to any other registration is a deny naming why.
func registrationVerdict(v Verdict, m engine.PersonMatch, now time.Time) Verdict {
	v.Decided = true
	v.Person = &m
	err := m.Registration.Inactive(now)
	switch {
	case err == nil:
		v.Outcome, v.Reason = decision.Open, decision.Matched
	case errors.Is(err, engine.ErrRevoked):
		v.Outcome, v.Reason, v.Detail = decision.Deny, decision.Revoked, err.Error()
	default:
		v.Outcome, v.Reason, v.Detail = decision.Deny, decision.Expired, err.Error()
	}
	return v
}

func ptr(f float64) *float64 { return &f }
