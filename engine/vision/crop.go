package vision

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"

	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/engine"
)

// Crop defaults. go-face re-detects the face in the crop with dlib's HOG
// detector, whose 80x80 window needs the face at about 80 px or more and
// some context around it. A 140 px face with 0.6 of the box added on each
// side makes a crop of about 310x390 px from a YuNet box: HOG found every
// test face in it down to 30 px originals, and it stays under 640x480, where
// dlib's CNN fallback is affordable when HOG misses. Measured (go-face CPU
// time per crop, BenchmarkEmbedCropSize): face 100 px 23.9 ms, 120 px
// 25.9 ms, 140 px 28.6 ms, 160 px 30.5 ms; the worst distance to the
// original's embedding over six LFW faces at 60-250 px was 0.119 at 120 px
// and 0.099 at 140 px.
const (
	DefaultCropMargin  = 0.6
	DefaultTargetFace  = 140
	DefaultCropQuality = JPEGQuality
)

// maxBoxAspect bounds a box's height to width ratio (and its inverse);
// detector boxes around faces stay within about 1:1.5.
const maxBoxAspect = 4

// Errors from CropFace.
var (
	ErrEmptyBox        = errors.New("face box is empty")
	ErrBoxShape        = errors.New("face box is not face-shaped")
	ErrBoxOutsideFrame = errors.New("face box lies outside the frame")
	ErrFrameFormat     = errors.New("frame is not an 8-bit 3-channel BGR image")
)

// EdgeMode says what fills the part of a crop that would lie outside the
// frame. Measured with six LFW faces (120 px boxes) in a 1280x720 frame:
// with the box against a corner, replicate kept the embedding nearest the
// original's in 9 of 12 cases (mean distance 0.090; clip 0.106, black
// 0.105); with the face partly outside the frame, go-face lost 3 of 18 faces
// after replicate, 2 after black, 8 after clip.
type EdgeMode int

const (
	// EdgeReplicate pads with the frame's edge pixels so that the face stays
	// centred and the crop keeps its full size (the default).
	EdgeReplicate EdgeMode = iota
	// EdgeClip keeps only the pixels inside the frame; the face is then
	// off-centre in a smaller crop.
	EdgeClip
	// EdgeBlack pads with black.
	EdgeBlack
)

// CropOptions tunes CropFace. The zero value means the defaults.
type CropOptions struct {
	// Margin is the fraction of the box's width (height) added on the left and
	// right (top and bottom): 0.6 makes a crop 2.2 times the box.
	Margin float64
	// TargetFace is the box width, in crop pixels, after scaling.
	TargetFace int
	// JPEGQuality of the encoded crop.
	JPEGQuality int
	// Edge chooses how a box near the frame's edge is handled.
	Edge EdgeMode
}

func (o CropOptions) withDefaults() CropOptions {
	if o.Margin <= 0 {
		o.Margin = DefaultCropMargin
	}
	if o.TargetFace <= 0 {
		o.TargetFace = DefaultTargetFace
	}
	if o.JPEGQuality <= 0 || o.JPEGQuality > 100 {
		o.JPEGQuality = DefaultCropQuality
	}
	return o
}

// Crop is one face cut from a frame, scaled and encoded for go-face.
type Crop struct {
	// JPEG is the 3-channel crop go-face reads.
	JPEG []byte
	// Rect is the part of the frame the crop shows, in frame pixels, clipped
	// to the frame.
	Rect image.Rectangle
	// Scale is crop pixels per frame pixel.
	Scale float64
	// Size is the crop's size in pixels, padding included.
	Size image.Point
	// Pad is the padding, in crop pixels, left of and above Rect's pixels.
	Pad image.Point
	// Target is the detector's box in crop pixels: where the face should be.
	Target image.Rectangle
}

// CropFace cuts the box plus a margin out of a full-resolution BGR frame,
// scales it so the box is opts.TargetFace pixels wide (cubic interpolation
// when enlarging, area when shrinking) and encodes it as JPEG. The frame is
// not modified and may be closed as soon as CropFace returns.
func CropFace(frame gocv.Mat, box image.Rectangle, opts CropOptions) (Crop, error) {
	opts = opts.withDefaults()
	box = box.Canon()
	if box.Empty() {
		return Crop{}, fmt.Errorf("vision: crop %v: %w", box, ErrEmptyBox)
	}
	// The scale follows the box's width: a sliver would make a huge crop.
	if box.Dy() > maxBoxAspect*box.Dx() || box.Dx() > maxBoxAspect*box.Dy() {
		return Crop{}, fmt.Errorf("vision: crop %v: %w", box, ErrBoxShape)
	}
	if frame.Empty() || frame.Type() != gocv.MatTypeCV8UC3 {
		return Crop{}, fmt.Errorf("vision: crop: %w", ErrFrameFormat)
	}
	bounds := image.Rect(0, 0, frame.Cols(), frame.Rows())
	mx := int(math.Round(opts.Margin * float64(box.Dx())))
	my := int(math.Round(opts.Margin * float64(box.Dy())))
	want := image.Rect(box.Min.X-mx, box.Min.Y-my, box.Max.X+mx, box.Max.Y+my)
	inside := want.Intersect(bounds)
	if inside.Empty() || !box.Overlaps(bounds) {
		return Crop{}, fmt.Errorf("vision: crop %v from a %dx%d frame: %w", box, bounds.Dx(), bounds.Dy(), ErrBoxOutsideFrame)
	}
	scale := float64(opts.TargetFace) / float64(box.Dx())
	// Round the crop's edges, not its size, so neighbouring rectangles agree
	// and the mapping back to the frame stays within half a crop pixel.
	at := func(v, origin int) int { return int(math.Round(float64(v-origin) * scale)) }
	c := Crop{Rect: inside, Scale: scale}
	dst := image.Rect(at(inside.Min.X, want.Min.X), at(inside.Min.Y, want.Min.Y), at(inside.Max.X, want.Min.X), at(inside.Max.Y, want.Min.Y))
	full := image.Rect(0, 0, at(want.Max.X, want.Min.X), at(want.Max.Y, want.Min.Y))
	if dst.Empty() {
		return Crop{}, fmt.Errorf("vision: crop %v at scale %.3f: %w", box, scale, ErrEmptyBox)
	}

	region := frame.Region(inside)
	defer region.Close()
	scaled := gocv.NewMat()
	defer scaled.Close()
	interp := gocv.InterpolationArea
	if scale > 1 {
		interp = gocv.InterpolationCubic
	}
	gocv.Resize(region, &scaled, dst.Size(), 0, 0, interp)

	out := scaled
	origin := want.Min
	if opts.Edge == EdgeClip {
		origin = inside.Min
		c.Pad = image.Point{}
	} else if dst != full {
		border := gocv.BorderReplicate
		if opts.Edge == EdgeBlack {
			border = gocv.BorderConstant
		}
		padded := gocv.NewMat()
		defer padded.Close()
		gocv.CopyMakeBorder(scaled, &padded, dst.Min.Y, full.Max.Y-dst.Max.Y, dst.Min.X, full.Max.X-dst.Max.X, border, color.RGBA{})
		out = padded
		c.Pad = dst.Min
	}
	c.Size = image.Pt(out.Cols(), out.Rows())
	c.Target = image.Rect(at(box.Min.X, origin.X), at(box.Min.Y, origin.Y), at(box.Max.X, origin.X), at(box.Max.Y, origin.Y))

	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, out, []int{gocv.IMWriteJpegQuality, opts.JPEGQuality})
	if err != nil {
		return Crop{}, fmt.Errorf("vision: encode crop: %w", err)
	}
	defer buf.Close()
	c.JPEG = bytes.Clone(buf.GetBytes())
	return c, nil
}

// PointToFrame maps a point in crop pixels to frame pixels.
func (c Crop) PointToFrame(p image.Point) image.Point {
	x := float64(c.Rect.Min.X) + float64(p.X-c.Pad.X)/c.Scale
	y := float64(c.Rect.Min.Y) + float64(p.Y-c.Pad.Y)/c.Scale
	return image.Pt(int(math.Round(x)), int(math.Round(y)))
}

// RectToFrame maps a rectangle in crop pixels to frame pixels.
func (c Crop) RectToFrame(r image.Rectangle) image.Rectangle {
	return image.Rectangle{Min: c.PointToFrame(r.Min), Max: c.PointToFrame(r.Max)}
}

// FaceToFrame maps a face found in the crop (box and landmarks) to frame
// pixels; the embedding is unchanged.
func (c Crop) FaceToFrame(f engine.Face) engine.Face {
	out := engine.Face{Box: c.RectToFrame(f.Box), Embedding: f.Embedding}
	if f.Landmarks != nil {
		out.Landmarks = make([]image.Point, len(f.Landmarks))
		for i, p := range f.Landmarks {
			out.Landmarks[i] = c.PointToFrame(p)
		}
	}
	return out
}

// PickTarget chooses, among the faces go-face found in the crop, the one the
// crop was made for: the face whose centre is nearest the detector box's
// centre, provided that centre lies inside the detector box (otherwise it is
// a neighbour caught in the margin). It returns that face in frame pixels,
// or engine.ErrNoFace.
func (c Crop) PickTarget(faces []engine.Face) (engine.Face, error) {
	want := c.Target.Min.Add(c.Target.Max)
	best, bestD := -1, math.MaxInt
	for i, f := range faces {
		// Doubled coordinates keep the centres exact in integers.
		centre := f.Box.Min.Add(f.Box.Max)
		if !centre.In(image.Rectangle{Min: c.Target.Min.Mul(2), Max: c.Target.Max.Mul(2)}) {
			continue
		}
		d := centre.Sub(want)
		if dd := d.X*d.X + d.Y*d.Y; dd < bestD {
			best, bestD = i, dd
		}
	}
	if best < 0 {
		return engine.Face{}, fmt.Errorf("vision: %d faces in the crop, none at the target %v: %w", len(faces), c.Target, engine.ErrNoFace)
	}
	return c.FaceToFrame(faces[best]), nil
}
