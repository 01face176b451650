package detect

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"os"
	"sync"

	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/models"
)

// ModelName is YuNet's file name in the model directory (models.Manifest).
const ModelName = "face_detection_yunet_2022mar.onnx"

// Sentinel errors; the wrapping error says what exactly was wrong.
var (
	ErrInvalidConfig    = errors.New("invalid detector configuration")
	ErrEmptyFrame       = errors.New("empty frame")
	ErrUnsupportedFrame = errors.New("unsupported frame type")
	ErrModelOutput      = errors.New("unexpected model output")
	ErrClosed           = errors.New("detector closed")
)

// Defaults for Config's zero fields.
const (
	DefaultInputWidth     = 640
	DefaultScoreThreshold = 0.75
	DefaultNMSThreshold   = 0.3
	// DefaultTopK bounds the candidates entering NMS (a 10-face group photo
	// gives 29 above 0.75), so a pathological frame cannot make NMS's
	// quadratic work explode.
	DefaultTopK = 1000
)

// minInputSide is the smallest network input side: below 63 px one of
// YuNet's max-pools has an empty output and OpenCV throws, which through
// cgo aborts the process. Smaller frames are padded up to it.
const minInputSide = 64

// maxInputAspect bounds the input's height to this many times InputWidth,
// so that a degenerate, very tall frame cannot make a huge network input.
const maxInputAspect = 2

// Config tunes a YuNet detector. Zero fields take the defaults above.
type Config struct {
	// InputWidth is the widest the network input may be: wider frames are
	// downscaled (keeping their aspect), narrower ones run at full size.
	// Faces smaller than about 10 px in the network input are missed, so a
	// face needs about 10*frameWidth/InputWidth pixels in the frame.
	InputWidth int
	// ScoreThreshold is the lowest score, sqrt(class × IoU), that is a face.
	ScoreThreshold float32
	// NMSThreshold is the IoU above which the lower-scoring of two
	// overlapping boxes is dropped.
	NMSThreshold float32
	// TopK is the most candidates that take part in NMS.
	TopK int
}

// DefaultConfig is the configuration a zero Config stands for.
func DefaultConfig() Config {
	return Config{
		InputWidth:     DefaultInputWidth,
		ScoreThreshold: DefaultScoreThreshold,
		NMSThreshold:   DefaultNMSThreshold,
		TopK:           DefaultTopK,
	}
}

// withDefaults fills zero fields and validates the result.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if c.InputWidth == 0 {
		c.InputWidth = d.InputWidth
	}
	if c.ScoreThreshold == 0 {
		c.ScoreThreshold = d.ScoreThreshold
	}
	if c.NMSThreshold == 0 {
		c.NMSThreshold = d.NMSThreshold
	}
	if c.TopK == 0 {
		c.TopK = d.TopK
	}
	return c, c.Validate()
}

// Validate reports a field outside its range. Zero fields are invalid here:
// NewYuNet replaces them with defaults before validating.
func (c Config) Validate() error {
	var errs []error
	if c.InputWidth < minInputSide || c.InputWidth > 4096 {
		errs = append(errs, fmt.Errorf("InputWidth %d, want %d to 4096", c.InputWidth, minInputSide))
	}
	if !(c.ScoreThreshold > 0 && c.ScoreThreshold <= 1) {
		errs = append(errs, fmt.Errorf("ScoreThreshold %v, want above 0, at most 1", c.ScoreThreshold))
	}
	if !(c.NMSThreshold > 0 && c.NMSThreshold <= 1) {
		errs = append(errs, fmt.Errorf("NMSThreshold %v, want above 0, at most 1", c.NMSThreshold))
	}
	if c.TopK < 1 || c.TopK > 100_000 {
		errs = append(errs, fmt.Errorf("TopK %d, want 1 to 100000", c.TopK))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// YuNet is the YuNet face detector on OpenCV's dnn module.
//
// An OpenCV Net is not safe for concurrent use, so one YuNet serves one
// goroutine (one per camera): create as many as there are goroutines.
// Concurrent calls are serialised by a mutex, so sharing one is slow but
// never unsafe.
type YuNet struct {
	mu     sync.Mutex
	net    gocv.Net
	closed bool
	cfg    Config
	// priors are cached for the last input size: a camera's frames keep it.
	priors     []prior
	priorsSize image.Point
}

// NewYuNet loads the YuNet model at modelPath. The file must be the
// manifest's YuNet (its sha256 is checked before OpenCV parses a byte:
// OpenCV aborts the process on a malformed model rather than failing).
func NewYuNet(modelPath string, cfg Config) (*YuNet, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	onnx, err := os.ReadFile(modelPath)
	if err != nil {
		return nil, fmt.Errorf("detect: read model: %w", err)
	}
	if err := verifyModel(modelPath, onnx); err != nil {
		return nil, err
	}
	net, err := gocv.ReadNetFromONNXBytes(onnx)
	if err != nil {
		return nil, fmt.Errorf("detect: load %s: %w", modelPath, err)
	}
	if net.Empty() {
		net.Close()
		return nil, fmt.Errorf("detect: load %s: OpenCV returned an empty network", modelPath)
	}
	return &YuNet{net: net, cfg: cfg}, nil
}

// verifyModel accepts only a YuNet variant listed in models.Manifest.
func verifyModel(path string, onnx []byte) error {
	m, ok := models.Lookup(ModelName)
	if !ok {
		return fmt.Errorf("detect: %s is not in models.Manifest", ModelName)
	}
	sum := sha256.Sum256(onnx)
	digest := hex.EncodeToString(sum[:])
	var wanted []string
	for _, v := range m.Variants {
		if v.SHA256 == digest {
			return nil
		}
		wanted = append(wanted, v.Label+" "+v.SHA256)
	}
	return fmt.Errorf("detect: %w", &models.MismatchError{Path: path, Got: digest, Wanted: wanted})
}

// Config returns the configuration in use, defaults filled in.
func (y *YuNet) Config() Config { return y.cfg }

// Detect finds the faces in a BGR (or grey, or BGRA) 8-bit frame and
// returns them in frame pixels, highest score first. A frame too small to
// hold a face gives no faces; an empty or non-8-bit frame gives an error.
func (y *YuNet) Detect(frame gocv.Mat) ([]Detection, error) {
	if frame.Ptr() == nil || frame.Empty() {
		return nil, ErrEmptyFrame
	}
	bgr, release, err := toBGR(frame)
	if err != nil {
		return nil, err
	}
	defer release()

	y.mu.Lock()
	defer y.mu.Unlock()
	if y.closed {
		return nil, ErrClosed
	}

	fw, fh := bgr.Cols(), bgr.Rows()
	in := inputSize(fw, fh, y.cfg.InputWidth)
	input := bgr
	if in.X != fw || in.Y != fh {
		resized := gocv.NewMat()
		defer resized.Close()
		// Area averaging keeps small faces that nearest or bilinear sampling
		// would alias away.
		gocv.Resize(bgr, &resized, in, 0, 0, gocv.InterpolationArea)
		input = resized
	}
	padded := image.Pt(max(in.X, minInputSide), max(in.Y, minInputSide))
	if padded != in {
		// Black on the right and bottom: coordinates need no shift.
		grown := gocv.NewMat()
		defer grown.Close()
		gocv.CopyMakeBorder(input, &grown, 0, padded.Y-in.Y, 0, padded.X-in.X, gocv.BorderConstant, color.RGBA{})
		input = grown
	}

	cands, err := y.forward(input, padded)
	if err != nil {
		return nil, err
	}
	kept := nms(cands, y.cfg.NMSThreshold, y.cfg.TopK)
	sx, sy := float64(fw)/float64(in.X), float64(fh)/float64(in.Y)
	bounds := image.Rect(0, 0, fw, fh)
	out := make([]Detection, 0, len(kept))
	for _, c := range kept {
		if d, ok := toFrame(c, sx, sy, bounds); ok {
			out = append(out, d)
		}
	}
	return out, nil
}

// forward runs the network on a size.X×size.Y BGR image and decodes it.
func (y *YuNet) forward(input gocv.Mat, size image.Point) ([]candidate, error) {
	// YuNet takes BGR pixel values as they are: no scaling, no mean.
	blob := gocv.BlobFromImage(input, 1, size, gocv.NewScalar(0, 0, 0, 0), false, false)
	defer blob.Close()
	y.net.SetInput(blob, "")
	outs := y.net.ForwardLayers([]string{"loc", "conf", "iou"})
	defer func() {
		for i := range outs {
			outs[i].Close()
		}
	}()
	if len(outs) != 3 {
		return nil, fmt.Errorf("%w: %d output blobs, want loc, conf and iou", ErrModelOutput, len(outs))
	}
	if y.priorsSize != size {
		y.priors, y.priorsSize = generatePriors(size.X, size.Y), size
	}
	var data [3][]float32
	for i, width := range []int{locWidth, confWidth, 1} {
		o := &outs[i]
		if dims := o.Size(); o.Type() != gocv.MatTypeCV32F || len(dims) != 2 || dims[0] != len(y.priors) || dims[1] != width {
			return nil, fmt.Errorf("%w: output %d is %v of type %v, want [%d %d] float32 for a %dx%d input",
				ErrModelOutput, i, o.Size(), o.Type(), len(y.priors), width, size.X, size.Y)
		}
		d, err := o.DataPtrFloat32()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrModelOutput, err)
		}
		data[i] = d
	}
	// decode copies what it keeps, so the blobs may be freed afterwards.
	return decode(y.priors, data[0], data[1], data[2], y.cfg.ScoreThreshold)
}

// inputSize scales a frame down so its width is at most maxWidth (and its
// height at most maxInputAspect times that), keeping the aspect ratio.
func inputSize(w, h, maxWidth int) image.Point {
	scale := math.Min(1, math.Min(float64(maxWidth)/float64(w), float64(maxInputAspect*maxWidth)/float64(h)))
	if scale == 1 {
		return image.Pt(w, h)
	}
	return image.Pt(max(1, int(math.Round(float64(w)*scale))), max(1, int(math.Round(float64(h)*scale))))
}

// toBGR returns the frame as 3-channel 8-bit BGR, converting grey or BGRA,
// and a function that frees any conversion. Every check happens here, in Go:
// an OpenCV exception on a bad Mat would abort the process.
func toBGR(frame gocv.Mat) (gocv.Mat, func(), error) {
	if len(frame.Size()) != 2 {
		return gocv.Mat{}, nil, fmt.Errorf("%w: %d-dimensional Mat, want an image", ErrUnsupportedFrame, len(frame.Size()))
	}
	var code gocv.ColorConversionCode
	switch frame.Type() {
	case gocv.MatTypeCV8UC3:
		return frame, func() {}, nil
	case gocv.MatTypeCV8UC1:
		code = gocv.ColorGrayToBGR
	case gocv.MatTypeCV8UC4:
		code = gocv.ColorBGRAToBGR
	default:
		return gocv.Mat{}, nil, fmt.Errorf("%w: Mat type %v, want 8-bit with 1, 3 or 4 channels", ErrUnsupportedFrame, frame.Type())
	}
	bgr := gocv.NewMat()
	gocv.CvtColor(frame, &bgr, code)
	return bgr, func() { bgr.Close() }, nil
}

// Close frees the network. Detect after Close returns ErrClosed.
func (y *YuNet) Close() error {
	y.mu.Lock()
	defer y.mu.Unlock()
	if y.closed {
		return nil
	}
	y.closed = true
	return y.net.Close()
}
