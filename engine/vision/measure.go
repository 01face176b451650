package vision

import (
	"errors"
	"fmt"
	"image"

	"gocv.io/x/gocv"
)

// MeasureSide is the side of the square grayscale patch every face is
// resampled to before it is measured.
//
// Why a fixed size: the variance of the Laplacian is a per-pixel statistic.
// The same face, equally in focus, gives a much lower value when it covers
// 400 px (each pixel step crosses little detail) than when it covers 60 px,
// so a threshold on the raw crop would really be a threshold on distance to
// the camera. Resampled to one size, the value measures detail per face
// width, which is what the embedding sees (go-face aligns every face to a
// 150x150 chip), and a small face that was upscaled shows up as soft, which
// it is. 112 is the usual face-recognition input side; it also bounds the
// cost: a 1000 px face costs the same as a 50 px one.
const MeasureSide = 112

// MinMeasureBoxSide is the smallest clipped box side MeasureFace accepts: below
// 8 px there is no face left to measure, only interpolation.
const MinMeasureBoxSide = 8

// ErrBadFaceBox means the face box cannot be measured in this frame: empty,
// degenerate, or (after clipping to the frame) smaller than MinMeasureBoxSide.
var ErrBadFaceBox = errors.New("vision: face box cannot be measured")

// ErrBadFrame means the frame is empty or not an 8-bit 1-, 3- or 4-channel image.
var ErrBadFrame = errors.New("vision: frame cannot be measured")

// PixelMeasures are the image-quality figures of one face, all computed on
// the MeasureSide x MeasureSide grayscale patch, so they compare across face
// sizes. quality.Measures carries the same three fields.
type PixelMeasures struct {
	// SharpnessVar is the variance of the 3x3 Laplacian (CV_64F, no scaling):
	// low means blurred, defocused or upscaled from very few pixels.
	SharpnessVar float64
	// Brightness is the mean gray level, 0–255.
	Brightness float64
	// Contrast is the standard deviation of the gray levels.
	Contrast float64
}

// MeasureFace measures the face in box (full-resolution frame pixels; the
// part outside the frame is ignored). frame is BGR as gocv decodes it
// (BGRA and grayscale are accepted too). It does not modify frame.
func MeasureFace(frame gocv.Mat, box image.Rectangle) (PixelMeasures, error) {
	if frame.Empty() {
		return PixelMeasures{}, fmt.Errorf("%w: empty", ErrBadFrame)
	}
	var toGray gocv.ColorConversionCode
	isGray := false
	switch frame.Type() {
	case gocv.MatTypeCV8UC1:
		isGray = true
	case gocv.MatTypeCV8UC3:
		toGray = gocv.ColorBGRToGray
	case gocv.MatTypeCV8UC4:
		toGray = gocv.ColorBGRAToGray
	default:
		return PixelMeasures{}, fmt.Errorf("%w: Mat type %v, want 8-bit with 1, 3 or 4 channels", ErrBadFrame, frame.Type())
	}
	clipped := box.Canon().Intersect(image.Rect(0, 0, frame.Cols(), frame.Rows()))
	if clipped.Dx() < MinMeasureBoxSide || clipped.Dy() < MinMeasureBoxSide {
		return PixelMeasures{}, fmt.Errorf("%w: box %v clipped to %v in a %dx%d frame (need at least %d px per side)",
			ErrBadFaceBox, box, clipped, frame.Cols(), frame.Rows(), MinMeasureBoxSide)
	}

	region := frame.Region(clipped) // a view, no copy
	defer region.Close()
	gray := region
	if !isGray {
		gray = gocv.NewMat()
		defer gray.Close()
		gocv.CvtColor(region, &gray, toGray)
	}

	// Area averaging when shrinking (no aliasing that would fake detail),
	// bilinear when enlarging (nearest-neighbour blocks would fake edges).
	interp := gocv.InterpolationLinear
	if clipped.Dx() > MeasureSide || clipped.Dy() > MeasureSide {
		interp = gocv.InterpolationArea
	}
	patch := gocv.NewMat()
	defer patch.Close()
	gocv.Resize(gray, &patch, image.Pt(MeasureSide, MeasureSide), 0, 0, interp)

	lap := gocv.NewMat()
	defer lap.Close()
	gocv.Laplacian(patch, &lap, gocv.MatTypeCV64F, 1, 1, 0, gocv.BorderDefault)

	_, lapStd := meanStdDev(lap)
	mean, std := meanStdDev(patch)
	return PixelMeasures{SharpnessVar: lapStd * lapStd, Brightness: mean, Contrast: std}, nil
}

// meanStdDev returns the mean and standard deviation of a one-channel Mat.
func meanStdDev(m gocv.Mat) (mean, std float64) {
	meanMat, stdMat := gocv.NewMat(), gocv.NewMat()
	defer meanMat.Close()
	defer stdMat.Close()
	gocv.MeanStdDev(m, &meanMat, &stdMat)
	return meanMat.GetDoubleAt(0, 0), stdMat.GetDoubleAt(0, 0)
}
