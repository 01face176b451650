// Package track follows faces across the frames of one camera so that each
// traveller gets one track id, and so one decision. Plain Go: it sees boxes
// and times, never pixels.
//
// Association is greedy by intersection-over-union, with a fallback on
// centre distance for fast-growing faces close to the camera. A walker's
// face grows by a few per cent per frame, so consecutive boxes overlap
// heavily even when the engine skips frames; no motion model is needed.
package track

import (
	"errors"
	"fmt"
	"image"
	"math"
	"sort"
	"time"
)

// Config tunes association.
type Config struct {
	// MinIoU to continue a track with a detection (default 0.2).
	MinIoU float64
	// MaxCentreShift is the largest centre move, as a fraction of the
	// track's box width, that still continues a track when IoU is too low
	// (default 0.6).
	MaxCentreShift float64
	// MaxGap ends a track that has not been seen for this long (default
	// 600 ms: a walker is not hidden longer than that, and a new person
	// appears after a larger gap).
	MaxGap time.Duration
	// MaxAge ends a track this long after it was first seen (default 8 s:
	// a face is usable for about 3 s, so this only stops a stationary face
	// from holding a track forever).
	MaxAge time.Duration
}

// DefaultConfig are the values above.
var DefaultConfig = Config{MinIoU: 0.2, MaxCentreShift: 0.6, MaxGap: 600 * time.Millisecond, MaxAge: 8 * time.Second}

// Validate checks the values and names the bad one.
func (c Config) Validate() error {
	switch {
	case c.MinIoU <= 0 || c.MinIoU >= 1:
		return fmt.Errorf("track.min_iou %v: want (0, 1)", c.MinIoU)
	case c.MaxCentreShift <= 0 || c.MaxCentreShift > 5:
		return fmt.Errorf("track.max_centre_shift %v: want (0, 5]", c.MaxCentreShift)
	case c.MaxGap <= 0:
		return errors.New("track.max_gap must be positive")
	case c.MaxAge <= c.MaxGap:
		return fmt.Errorf("track.max_age %s must exceed max_gap %s", c.MaxAge, c.MaxGap)
	}
	return nil
}

// Track is one face followed over time.
type Track struct {
	ID        int64
	Box       image.Rectangle // latest
	FirstSeen time.Time
	LastSeen  time.Time
	Hits      int // detections associated
}

// Ended says why a track ended.
type Ended struct {
	Track
	// Reason is "lost" (not seen for MaxGap), "aged" (MaxAge) or "flushed".
	Reason string
}

// Tracker associates detections with tracks for one camera. It is not safe
// for concurrent use: one tracker per camera goroutine.
type Tracker struct {
	cfg    Config
	nextID int64
	live   []*Track
}

// New returns a tracker whose ids start at firstID (make them unique per
// node, e.g. from the start time, so ids from a restart do not collide).
func New(cfg Config, firstID int64) (*Tracker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Tracker{cfg: cfg, nextID: firstID}, nil
}

// Update associates the boxes seen at time now with live tracks, starting
// new tracks for the rest. It returns the track id of each box (same order)
// and the tracks that ended. Boxes should be sorted by detector score,
// best first.
func (t *Tracker) Update(now time.Time, boxes []image.Rectangle) (ids []int64, ended []Ended) {
	ended = t.expire(now)
	ids = make([]int64, len(boxes))
	type pair struct {
		track, box int
		score      float64
	}
	var pairs []pair
	for ti, tr := range t.live {
		for bi, b := range boxes {
			if s, ok := t.affinity(tr.Box, b); ok {
				pairs = append(pairs, pair{ti, bi, s})
			}
		}
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].score > pairs[j].score })
	usedTrack := make([]bool, len(t.live))
	usedBox := make([]bool, len(boxes))
	for _, p := range pairs {
		if usedTrack[p.track] || usedBox[p.box] {
			continue
		}
		usedTrack[p.track], usedBox[p.box] = true, true
		tr := t.live[p.track]
		tr.Box, tr.LastSeen = boxes[p.box], now
		tr.Hits++
		ids[p.box] = tr.ID
	}
	for bi, b := range boxes {
		if usedBox[bi] {
			continue
		}
		t.nextID++
		tr := &Track{ID: t.nextID, Box: b, FirstSeen: now, LastSeen: now, Hits: 1}
		t.live = append(t.live, tr)
		ids[bi] = tr.ID
	}
	return ids, ended
}

// Flush ends every live track (the stream ended).
func (t *Tracker) Flush() []Ended {
	out := make([]Ended, 0, len(t.live))
	for _, tr := range t.live {
		out = append(out, Ended{Track: *tr, Reason: "flushed"})
	}
	t.live = nil
	return out
}

// Live returns a copy of the live tracks.
func (t *Tracker) Live() []Track {
	out := make([]Track, len(t.live))
	for i, tr := range t.live {
		out[i] = *tr
	}
	return out
}

func (t *Tracker) expire(now time.Time) []Ended {
	var ended []Ended
	keep := t.live[:0]
	for _, tr := range t.live {
		switch {
		case now.Sub(tr.LastSeen) > t.cfg.MaxGap:
			ended = append(ended, Ended{Track: *tr, Reason: "lost"})
		case now.Sub(tr.FirstSeen) > t.cfg.MaxAge:
			ended = append(ended, Ended{Track: *tr, Reason: "aged"})
		default:
			keep = append(keep, tr)
		}
	}
	t.live = keep
	return ended
}

// affinity scores how well box b continues a track last seen at a: IoU when
// it is high enough, else a lower score from centre distance.
func (t *Tracker) affinity(a, b image.Rectangle) (float64, bool) {
	if iou := IoU(a, b); iou >= t.cfg.MinIoU {
		return 1 + iou, true
	}
	w := float64(max(a.Dx(), 1))
	ac, bc := centre(a), centre(b)
	shift := math.Hypot(ac[0]-bc[0], ac[1]-bc[1]) / w
	sizeRatio := float64(max(b.Dx(), 1)) / w
	if shift <= t.cfg.MaxCentreShift && sizeRatio > 0.5 && sizeRatio < 2 {
		return 1 - shift/t.cfg.MaxCentreShift, true
	}
	return 0, false
}

func centre(r image.Rectangle) [2]float64 {
	return [2]float64{float64(r.Min.X+r.Max.X) / 2, float64(r.Min.Y+r.Max.Y) / 2}
}

// IoU is the intersection over union of two rectangles.
func IoU(a, b image.Rectangle) float64 {
	in := a.Intersect(b)
	if in.Empty() {
		return 0
	}
	ia := float64(in.Dx() * in.Dy())
	ua := float64(a.Dx()*a.Dy()+b.Dx()*b.Dy()) - ia
	if ua <= 0 {
		return 0
	}
	return ia / ua
}
