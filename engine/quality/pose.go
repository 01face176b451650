package quality

import (
	"image"
	"math"
)

// Landmark indices, in YuNet's order as engine/detect defines them (a test
// checks they agree). They are repeated here so that this package stays
// plain Go: engine/detect links OpenCV. "Right" and "left" are the person's
// own, so the right eye appears on the image's left.
const (
	RightEye = iota
	LeftEye
	NoseTip
	RightMouth
	LeftMouth
)

// NoseDepthRatio is k in the yaw formula of PoseFromLandmarks: how far the
// nose tip stands in front of the eyes and mouth corners, as a fraction of
// the distance between the eye centres. Fitted on 299 LFW faces, YuNet's
// landmarks against a reference yaw from 14 other landmarks (least squares
// of index = k·tan(yaw)): 0.551; go-face's 68 points reduced to five give
// 0.617. See THRESHOLDS.md, "Yaw calibration".
const NoseDepthRatio = 0.55

// PoseFromLandmarks estimates head yaw and roll, in degrees, from the five
// landmarks (image pixels).
//
// Roll is the angle of the line from the right eye to the left eye against
// the image's horizontal: positive when the person's left eye (on the
// image's right) is lower, i.e. the head is tilted clockwise on screen.
//
// Yaw works in the roll-corrected frame (eye line horizontal, origin at the
// eye midpoint). The face's midline there runs from the eye midpoint to the
// mouth-corner midpoint; the nose tip's horizontal offset from that line, at
// the nose tip's height, divided by the eye distance is the yaw index
//
//	r = (noseX - midlineX(noseY)) / interEye.
//
// Under weak perspective a head turned by θ moves the nose tip, which stands
// d in front of the eyes and mouth corners, by d·sinθ, while the eye distance
// E shrinks to E·cosθ, so r = (d/E)·tanθ and θ = atan(r / NoseDepthRatio).
// Positive yaw: the person has turned toward their own left (the nose tip
// moves toward the image's right).
//
// Approximations: one nose depth for everyone, weak perspective (fine at
// walk-through distances), pitch ignored except that the midline is taken
// at the nose tip's height, and landmarks rounded to whole pixels (at 24 px
// between the eyes one pixel is about 2.4° of roll). Against the reference
// yaw on 299 LFW faces the estimate is off by 2–4° at the median and 6–10°
// at p90 (Pearson 0.94); it is an honest angle to within that, not a
// precise one. LFW holds few faces past 40°, so larger angles are
// untested.
// Degenerate input (eyes less than a pixel apart) returns NaN for both
// angles, which fails both pose checks in Assess.
func PoseFromLandmarks(l [5]image.Point) (yawDeg, rollDeg float64) {
	yawIndex, rollRad, ok := poseIndex(l)
	if !ok {
		return math.NaN(), math.NaN()
	}
	return degrees(math.Atan(yawIndex / NoseDepthRatio)), degrees(rollRad)
}

// YawIndex returns the raw yaw index r of PoseFromLandmarks (nose offset
// over eye distance, no unit) and the roll in radians; ok is false for
// degenerate landmarks. The calibration uses it.
func YawIndex(l [5]image.Point) (index, rollRad float64, ok bool) {
	return poseIndex(l)
}

func poseIndex(l [5]image.Point) (yawIndex, rollRad float64, ok bool) {
	re, le := fpt(l[RightEye]), fpt(l[LeftEye])
	eyeMid := re.add(le).scale(0.5)
	eyeVec := le.sub(re)
	interEye := math.Hypot(eyeVec.x, eyeVec.y)
	if interEye < 1 {
		return 0, 0, false
	}
	rollRad = math.Atan2(eyeVec.y, eyeVec.x)
	// Rotate by -roll about the eye midpoint: eyes land on the x axis.
	cos, sin := eyeVec.x/interEye, eyeVec.y/interEye
	level := func(p vec) vec {
		v := p.sub(eyeMid)
		return vec{v.x*cos + v.y*sin, -v.x*sin + v.y*cos}
	}
	nose := level(fpt(l[NoseTip]))
	mouthMid := level(fpt(l[RightMouth]).add(fpt(l[LeftMouth])).scale(0.5))
	midlineX := mouthMid.x / 2 // degenerate mouth height: halfway
	if mouthMid.y > 1e-6 {
		t := min(max(nose.y/mouthMid.y, 0), 1)
		midlineX = mouthMid.x * t
	}
	return (nose.x - midlineX) / interEye, rollRad, true
}

// InterEyePx is the image distance between the eye centres.
func InterEyePx(l [5]image.Point) float64 {
	d := fpt(l[LeftEye]).sub(fpt(l[RightEye]))
	return math.Hypot(d.x, d.y)
}

type vec struct{ x, y float64 }

func fpt(p image.Point) vec       { return vec{float64(p.X), float64(p.Y)} }
func (a vec) add(b vec) vec       { return vec{a.x + b.x, a.y + b.y} }
func (a vec) sub(b vec) vec       { return vec{a.x - b.x, a.y - b.y} }
func (a vec) scale(s float64) vec { return vec{a.x * s, a.y * s} }
func degrees(rad float64) float64 { return rad * 180 / math.Pi }
