package detect

import (
	"fmt"
	"image"
	"math"
	"sort"
)

// YuNet 2022mar predicts one row per anchor ("prior"). The anchor layout and
// the decoding below follow OpenCV 4.6's FaceDetectorYN
// (modules/objdetect/src/face_detect.cpp, generatePriors and postProcess):
// get either wrong and nothing fails, the boxes just land in the wrong place.
var (
	priorSteps    = [4]int{8, 16, 32, 64}
	priorMinSizes = [4][]float32{{10, 16, 24}, {32, 48}, {64, 96}, {128, 192, 256}}
)

const (
	// OpenCV's variance {0.1, 0.2}: 0.1 scales the centre, the width and the
	// landmark offsets, 0.2 only the height. The asymmetry is OpenCV's and the
	// model was exported against it.
	varianceCentre = 0.1
	varianceHeight = 0.2

	locWidth  = 14 // box (4) + five landmarks (10)
	confWidth = 2  // background, face
)

// prior is one square anchor, in pixels of the network input.
type prior struct {
	cx, cy, size float32
}

// featureMaps returns the width and height of YuNet's four detection heads
// for an input of w×h pixels: the stem halves rounding up, then every
// max-pool halves rounding down (as the network itself does).
func featureMaps(w, h int) [4][2]int {
	var maps [4][2]int
	fw, fh := (w+1)/2/2, (h+1)/2/2 // stride 4
	for i := range maps {
		fw, fh = fw/2, fh/2
		maps[i] = [2]int{fw, fh}
	}
	return maps
}

// generatePriors lists the anchors in the network's output order: head by
// head, row by row, column by column, then each of the head's sizes.
func generatePriors(w, h int) []prior {
	maps := featureMaps(w, h)
	n := 0
	for i, m := range maps {
		n += m[0] * m[1] * len(priorMinSizes[i])
	}
	priors := make([]prior, 0, n)
	for i, m := range maps {
		step := float32(priorSteps[i])
		for row := 0; row < m[1]; row++ {
			for col := 0; col < m[0]; col++ {
				for _, size := range priorMinSizes[i] {
					priors = append(priors, prior{
						cx:   (float32(col) + 0.5) * step,
						cy:   (float32(row) + 0.5) * step,
						size: size,
					})
				}
			}
		}
	}
	return priors
}

// candidate is one decoded face in network-input pixels.
type candidate struct {
	x1, y1, x2, y2 float32
	score          float32
	// landmarks are x, y pairs in YuNet's order (see RightEye…LeftMouth).
	landmarks [10]float32
}

// decode turns the network's outputs into the candidates scoring at least
// threshold. loc has 14 values per prior, conf 2 and iou 1.
func decode(priors []prior, loc, conf, iou []float32, threshold float32) ([]candidate, error) {
	n := len(priors)
	if len(loc) != n*locWidth || len(conf) != n*confWidth || len(iou) != n {
		return nil, fmt.Errorf("%w: %d priors, but loc has %d values (want %d), conf %d (want %d), iou %d (want %d)",
			ErrModelOutput, n, len(loc), n*locWidth, len(conf), n*confWidth, len(iou), n)
	}
	var out []candidate
	for i, p := range priors {
		// OpenCV clamps the IoU head to [0,1]; the class score comes out of a
		// softmax, clamped here too so that a NaN can never pass the threshold.
		score := float32(math.Sqrt(float64(clamp01(conf[i*confWidth+1]) * clamp01(iou[i]))))
		if !(score >= threshold) {
			continue
		}
		l := loc[i*locWidth : (i+1)*locWidth]
		cx := p.cx + l[0]*varianceCentre*p.size
		cy := p.cy + l[1]*varianceCentre*p.size
		w := p.size * float32(math.Exp(float64(l[2]*varianceCentre)))
		h := p.size * float32(math.Exp(float64(l[3]*varianceHeight)))
		c := candidate{x1: cx - w/2, y1: cy - h/2, x2: cx + w/2, y2: cy + h/2, score: score}
		for k := 0; k < 5; k++ {
			c.landmarks[2*k] = p.cx + l[4+2*k]*varianceCentre*p.size
			c.landmarks[2*k+1] = p.cy + l[5+2*k]*varianceCentre*p.size
		}
		if !c.finite() {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

func clamp01(v float32) float32 {
	switch {
	case v > 1:
		return 1
	case v >= 0:
		return v
	default: // negative or NaN
		return 0
	}
}

// finite rejects boxes an absurd regression output would produce (exp
// overflow, NaN): they could not be mapped to pixels.
func (c candidate) finite() bool {
	const limit = 1e7 // also false for NaN and ±Inf
	for _, v := range [4]float32{c.x1, c.y1, c.x2, c.y2} {
		if !(math.Abs(float64(v)) <= limit) {
			return false
		}
	}
	for _, v := range c.landmarks {
		if !(math.Abs(float64(v)) <= limit) {
			return false
		}
	}
	return c.x2 > c.x1 && c.y2 > c.y1
}

func (c candidate) area() float32 { return (c.x2 - c.x1) * (c.y2 - c.y1) }

func iouOf(a, b candidate) float32 {
	ix := min(a.x2, b.x2) - max(a.x1, b.x1)
	iy := min(a.y2, b.y2) - max(a.y1, b.y1)
	if ix <= 0 || iy <= 0 {
		return 0
	}
	inter := ix * iy
	return inter / (a.area() + b.area() - inter)
}

// nms keeps, greedily by score, every candidate whose IoU with all kept ones
// is at most iouThreshold. Like OpenCV's NMSBoxes, only the topK best
// candidates take part, which bounds the quadratic work on a noisy frame.
// The result is sorted by score, highest first.
func nms(cands []candidate, iouThreshold float32, topK int) []candidate {
	sorted := make([]candidate, len(cands))
	copy(sorted, cands)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].score > sorted[j].score })
	if topK > 0 && len(sorted) > topK {
		sorted = sorted[:topK]
	}
	var kept []candidate
	for _, c := range sorted {
		keep := true
		for _, k := range kept {
			if iouOf(c, k) > iouThreshold {
				keep = false
				break
			}
		}
		if keep {
			kept = append(kept, c)
		}
	}
	return kept
}

// toFrame maps a candidate from network-input pixels to a frame of the given
// bounds, scaling by (sx, sy), and clips box and landmarks to the frame. It
// reports false for a box that lies wholly outside the frame.
func toFrame(c candidate, sx, sy float64, frame image.Rectangle) (Detection, bool) {
	px := func(v float32, s float64) int { return int(math.Round(float64(v) * s)) }
	box := image.Rect(px(c.x1, sx), px(c.y1, sy), px(c.x2, sx), px(c.y2, sy)).Intersect(frame)
	if box.Empty() {
		return Detection{}, false
	}
	d := Detection{Box: box, Score: c.score}
	for k := range d.Landmarks {
		d.Landmarks[k] = image.Pt(
			clampInt(px(c.landmarks[2*k], sx), frame.Min.X, frame.Max.X-1),
			clampInt(px(c.landmarks[2*k+1], sy), frame.Min.Y, frame.Max.Y-1),
		)
	}
	return d, true
}

func clampInt(v, lo, hi int) int { return max(lo, min(v, hi)) }
