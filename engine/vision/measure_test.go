package vision

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"math"
	"testing"

	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/internal/testenv"
)

func mustMeasure(t *testing.T, frame gocv.Mat, box image.Rectangle) PixelMeasures {
	t.Helper()
	m, err := MeasureFace(frame, box)
	if err != nil {
		t.Fatalf("MeasureFace(%v): %v", box, err)
	}
	return m
}

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

func TestMeasureFaceRefusesUnusableInput(t *testing.T) {
	frame := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(100, 100, 100, 0), 200, 300, gocv.MatTypeCV8UC3)
	defer frame.Close()
	for _, box := range []image.Rectangle{
		{},                           // empty
		image.Rect(50, 50, 50, 120),  // zero width
		image.Rect(40, 40, 47, 140),  // 7 px wide
		image.Rect(400, 10, 500, 90), // right of the frame
		image.Rect(-90, -90, -10, -10),
		image.Rect(295, 10, 340, 90), // 5 px left after clipping
	} {
		if _, err := MeasureFace(frame, box); !errors.Is(err, ErrBadFaceBox) {
			t.Errorf("box %v: err = %v, want ErrBadFaceBox", box, err)
		}
	}
	empty := gocv.NewMat()
	defer empty.Close()
	if _, err := MeasureFace(empty, image.Rect(0, 0, 50, 50)); !errors.Is(err, ErrBadFrame) {
		t.Errorf("empty frame: err = %v, want ErrBadFrame", err)
	}
	float := gocv.NewMatWithSize(100, 100, gocv.MatTypeCV32FC3)
	defer float.Close()
	if _, err := MeasureFace(float, image.Rect(0, 0, 50, 50)); !errors.Is(err, ErrBadFrame) {
		t.Errorf("float frame: err = %v, want ErrBadFrame", err)
	}
}

func TestMeasureFaceUniformAndEdge(t *testing.T) {
	flat := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(90, 90, 90, 0), 200, 200, gocv.MatTypeCV8UC3)
	defer flat.Close()
	m := mustMeasure(t, flat, image.Rect(20, 20, 180, 180))
	if !near(m.Brightness, 90, 0.01) || m.Contrast > 0.01 || m.SharpnessVar > 0.01 {
		t.Errorf("uniform gray 90: %+v, want brightness 90, contrast 0, sharpness 0", m)
	}

	// Left half black, right half white: mean 127.5, std 127.5, and the
	// step is the only detail.
	edge := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(0, 0, 0, 0), 224, 224, gocv.MatTypeCV8UC3)
	defer edge.Close()
	gocv.Rectangle(&edge, image.Rect(112, 0, 224, 224), color.RGBA{255, 255, 255, 0}, -1)
	m = mustMeasure(t, edge, image.Rect(0, 0, 224, 224))
	if !near(m.Brightness, 127.5, 1) || !near(m.Contrast, 127.5, 1) {
		t.Errorf("half black/half white: %+v, want brightness and contrast 127.5", m)
	}
	if m.SharpnessVar < 100 {
		t.Errorf("half black/half white: sharpness %.1f, want a hard edge to score high", m.SharpnessVar)
	}
}

// realFace returns an LFW deep-funneled photo and a box around its face
// (deep-funneled faces are centred; the box is YuNet's for this photo).
func realFace(t *testing.T) (gocv.Mat, image.Rectangle) {
	t.Helper()
	mat, err := gocv.IMDecode(testenv.SharedFile(t, "datasets/lfw/images/Serena_Williams/Serena_Williams_0001.jpg"), gocv.IMReadColor)
	if err != nil || mat.Empty() {
		t.Fatalf("decode: %v", err)
	}
	return mat, image.Rect(75, 62, 173, 202)
}

func TestMeasureFaceRealFace(t *testing.T) {
	frame, box := realFace(t)
	defer frame.Close()
	before := bytes.Clone(frame.ToBytes())
	clean := mustMeasure(t, frame, box)
	if !bytes.Equal(before, frame.ToBytes()) {
		t.Fatal("MeasureFace modified the frame")
	}
	t.Logf("clean: %+v", clean)

	// Grey and BGRA frames measure like the BGR one.
	for _, code := range []gocv.ColorConversionCode{gocv.ColorBGRToGray, gocv.ColorBGRToBGRA} {
		other := gocv.NewMat()
		gocv.CvtColor(frame, &other, code)
		m := mustMeasure(t, other, box)
		other.Close()
		if !near(m.Brightness, clean.Brightness, 0.5) || !near(m.Contrast, clean.Contrast, 0.5) || !near(m.SharpnessVar, clean.SharpnessVar, clean.SharpnessVar*0.02) {
			t.Errorf("conversion %v: %+v, BGR gave %+v", code, m, clean)
		}
	}

	// A box reaching outside the frame measures its visible part.
	wide := image.Rect(box.Min.X, box.Min.Y, 400, box.Max.Y)
	visible := image.Rect(box.Min.X, box.Min.Y, frame.Cols(), box.Max.Y)
	if a, b := mustMeasure(t, frame, wide), mustMeasure(t, frame, visible); a != b {
		t.Errorf("box %v measured %+v, its visible part %v measured %+v", wide, a, visible, b)
	}

	blurred := gocv.NewMat()
	defer blurred.Close()
	gocv.GaussianBlur(frame, &blurred, image.Point{}, 2, 2, gocv.BorderDefault)
	b := mustMeasure(t, blurred, box)
	if b.SharpnessVar > clean.SharpnessVar/4 {
		t.Errorf("blur σ=2: sharpness %.1f, clean %.1f: want at least 4x lower", b.SharpnessVar, clean.SharpnessVar)
	}
	if !near(b.Brightness, clean.Brightness, 2) {
		t.Errorf("blur moved brightness from %.1f to %.1f", clean.Brightness, b.Brightness)
	}

	dark := gocv.NewMat()
	defer dark.Close()
	frame.ConvertToWithParams(&dark, gocv.MatTypeCV8UC3, 0.5, 0)
	d := mustMeasure(t, dark, box)
	// Halving every level halves the mean and the spread and quarters the
	// Laplacian's variance (up to rounding to 8 bits).
	if !near(d.Brightness, clean.Brightness/2, 1.5) || !near(d.Contrast, clean.Contrast/2, 1.5) ||
		!near(d.SharpnessVar, clean.SharpnessVar/4, clean.SharpnessVar*0.05) {
		t.Errorf("darkened ×0.5: %+v, clean %+v", d, clean)
	}
}

// TestMeasureFaceComparesAcrossSizes: the same face at two sizes, both
// larger than the patch, measures alike, while the same face shrunk to a
// few pixels (detail gone) measures soft. That is what the fixed patch buys.
func TestMeasureFaceComparesAcrossSizes(t *testing.T) {
	frame, err := gocv.IMDecode(testenv.SharedFile(t, "media/obama-1080p.jpg"), gocv.IMReadColor)
	if err != nil || frame.Empty() {
		t.Fatalf("decode: %v", err)
	}
	defer frame.Close()
	box := image.Rect(864, 84, 1128, 416) // YuNet's box for this photo
	full := mustMeasure(t, frame, box)
	scaled := func(s float64) PixelMeasures {
		small := gocv.NewMat()
		defer small.Close()
		gocv.Resize(frame, &small, image.Point{}, s, s, gocv.InterpolationArea)
		r := func(v int) int { return int(math.Round(float64(v) * s)) }
		return mustMeasure(t, small, image.Rect(r(box.Min.X), r(box.Min.Y), r(box.Max.X), r(box.Max.Y)))
	}
	half, tiny := scaled(0.5), scaled(0.15)
	t.Logf("full %+v, half %+v, 0.15 %+v", full, half, tiny)
	if !near(half.Brightness, full.Brightness, 1) || !near(half.Contrast, full.Contrast, 1) {
		t.Errorf("half size changed brightness/contrast: %+v vs %+v", half, full)
	}
	if half.SharpnessVar < full.SharpnessVar/2 {
		t.Errorf("half size (box still over 112 px): sharpness %.0f vs %.0f at full size", half.SharpnessVar, full.SharpnessVar)
	}
	if tiny.SharpnessVar > full.SharpnessVar/4 {
		t.Errorf("face shrunk to a 40 px box: sharpness %.0f, full size %.0f: want the lost detail to show", tiny.SharpnessVar, full.SharpnessVar)
	}
}
