// Package vision is loopgate's OpenCV (gocv) side: it decodes untrusted
// image bytes into the normalised form the recogniser reads. It is kept
// small so that the cgo surface stays behind engine.Decoder.
package vision

import (
	"bytes"
	"fmt"
	"image"

	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/engine"
)

// JPEGQuality for the normalised image handed to the recogniser: high enough
// that re-encoding does not move embeddings measurably.
const JPEGQuality = 95

// Decoder decodes still images with OpenCV after checking them in Go.
type Decoder struct {
	Limits engine.ImageLimits
}

// NewDecoder returns a decoder with the given limits (zero value: defaults).
func NewDecoder(lim engine.ImageLimits) *Decoder {
	if lim == (engine.ImageLimits{}) {
		lim = engine.DefaultImageLimits
	}
	return &Decoder{Limits: lim}
}

var _ engine.Decoder = (*Decoder)(nil)

// Decode admits data (see DecodeMat) and returns it as the normalised,
// downscaled 3-channel JPEG that go-face reads.
func (d *Decoder) Decode(data []byte) (engine.Image, error) {
	mat, format, err := d.DecodeMat(data)
	if err != nil {
		return engine.Image{}, err
	}
	defer mat.Close()
	out := mat
	scale := 1.0
	if long := max(mat.Cols(), mat.Rows()); d.Limits.MaxSide > 0 && long > d.Limits.MaxSide {
		scale = float64(d.Limits.MaxSide) / float64(long)
		small := gocv.NewMat()
		defer small.Close()
		gocv.Resize(mat, &small, image.Point{}, scale, scale, gocv.InterpolationArea)
		out = small
	}
	jpeg, err := EncodeJPEG(out)
	if err != nil {
		return engine.Image{}, err
	}
	return engine.Image{JPEG: jpeg, Width: out.Cols(), Height: out.Rows(), Scale: scale, Format: format}, nil
}

// DecodeMat admits data in three steps: header check against the limits
// (no pixels decoded), a full decode by Go's memory-safe decoders so a
// truncated or corrupt stream is refused before any C code sees it, then
// OpenCV's decode, which applies EXIF orientation. It returns the image at
// full resolution as an 8-bit BGR Mat (Limits.MaxSide does not apply: the
// detector downsizes its own copy, and face crops need every pixel) with
// the source format. The caller owns the Mat and must Close it; on error
// there is no Mat to close.
func (d *Decoder) DecodeMat(data []byte) (gocv.Mat, string, error) {
	format, w, h, err := engine.Inspect(data, d.Limits)
	if err != nil {
		return gocv.Mat{}, format, err
	}
	if _, _, err := image.Decode(bytes.NewReader(data)); err != nil {
		return gocv.Mat{}, format, fmt.Errorf("%w: %s data: %v", engine.ErrUndecodable, format, err)
	}
	mat, err := gocv.IMDecode(data, gocv.IMReadColor)
	if err != nil || mat.Empty() {
		if err == nil {
			mat.Close()
		}
		return gocv.Mat{}, format, fmt.Errorf("%w: OpenCV could not decode the %s data", engine.ErrUndecodable, format)
	}
	// EXIF rotation may swap the axes; anything else means a lying header.
	if !(mat.Cols() == w && mat.Rows() == h) && !(mat.Cols() == h && mat.Rows() == w) {
		err := fmt.Errorf("%w: header says %dx%d, decoded %dx%d", engine.ErrUndecodable, w, h, mat.Cols(), mat.Rows())
		mat.Close()
		return gocv.Mat{}, format, err
	}
	if mat.Type() != gocv.MatTypeCV8UC3 {
		// IMReadColor promises 8-bit BGR; a 16-bit PNG would break that
		// promise for every consumer (crop, detector, measures).
		err := fmt.Errorf("%w: OpenCV decoded the %s data as Mat type %v, want 8-bit BGR", engine.ErrUndecodable, format, mat.Type())
		mat.Close()
		return gocv.Mat{}, format, err
	}
	return mat, format, nil
}

// EncodeJPEG encodes a BGR Mat as the baseline JPEG go-face reads.
func EncodeJPEG(mat gocv.Mat) ([]byte, error) {
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, mat, []int{gocv.IMWriteJpegQuality, JPEGQuality})
	if err != nil {
		return nil, fmt.Errorf("vision: encode JPEG: %w", err)
	}
	defer buf.Close()
	return bytes.Clone(buf.GetBytes()), nil
}
