// Package facerec wraps go-face (dlib): face detection, landmark alignment
// and the 128-d ResNet embedding. It is the only package that imports
// go-face, so the cgo surface stays behind engine.Embedder.
package facerec

import (
	"bytes"
	"errors"
	"fmt"
	stdjpeg "image/jpeg"
	"log/slog"

	face "github.com/Kagami/go-face"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/models"
)

// Detector chooses dlib's face detector.
type Detector string

const (
	// DetectorHOG is dlib's frontal HOG detector: fast, misses small or turned faces.
	DetectorHOG Detector = "hog"
	// DetectorCNN is dlib's MMOD CNN detector: slower, finds more faces.
	DetectorCNN Detector = "cnn"
	// DetectorHOGThenCNN runs the CNN only when HOG finds no face.
	DetectorHOGThenCNN Detector = "hog+cnn"
)

// Config configures a Recognizer.
type Config struct {
	// ModelDir holds the files listed in models.Manifest.
	ModelDir string
	// Detector defaults to DetectorHOGThenCNN.
	Detector Detector
	// CNNMaxPixels bounds the image size on which the CNN detector runs
	// (default DefaultCNNMaxPixels): dlib's MMOD CNN took 6.1 s on a
	// 1024x683 photo on one core here, so larger images stay HOG-only.
	CNNMaxPixels int
	// Logger receives model warnings; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultCNNMaxPixels admits VGA-sized images (and LFW's 250x250) to the CNN.
const DefaultCNNMaxPixels = 640 * 480

// Recognizer finds faces and computes their embeddings. It is safe for
// concurrent use; go-face serialises each stage internally.
type Recognizer struct {
	rec          *face.Recognizer
	detector     Detector
	cnnMaxPixels int
	models       []models.Installed
}

var _ engine.Embedder = (*Recognizer)(nil)

// New verifies the model directory against the manifest and loads the
// models. It refuses to load a file whose checksum is not accepted.
func New(cfg Config) (*Recognizer, error) {
	cfg, installed, err := prepare(cfg)
	if err != nil {
		return nil, err
	}
	return load(cfg, installed)
}

// prepare checks cfg, fills in its defaults and verifies the model files
// once, so that a Pool hashes ~120 MB of models once, not once per recogniser.
func prepare(cfg Config) (Config, []models.Installed, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch cfg.Detector {
	case "":
		cfg.Detector = DetectorHOGThenCNN
	case DetectorHOG, DetectorCNN, DetectorHOGThenCNN:
	default:
		return cfg, nil, fmt.Errorf("facerec: unknown detector %q (want hog, cnn or hog+cnn)", cfg.Detector)
	}
	if cfg.CNNMaxPixels == 0 {
		cfg.CNNMaxPixels = DefaultCNNMaxPixels
	}
	installed, err := models.Verify(cfg.ModelDir)
	if err != nil {
		return cfg, nil, fmt.Errorf("facerec: model directory %s: %w", cfg.ModelDir, err)
	}
	for _, in := range installed {
		if in.Variant.Warning != "" {
			cfg.Logger.Warn("model variant", "file", in.Model.Name, "variant", in.Variant.Label, "warning", in.Variant.Warning)
		}
	}
	return cfg, installed, nil
}

// load reads the verified models into a new dlib recogniser.
func load(cfg Config, installed []models.Installed) (*Recognizer, error) {
	rec, err := face.NewRecognizer(cfg.ModelDir)
	if err != nil {
		return nil, fmt.Errorf("facerec: load models from %s: %w", cfg.ModelDir, err)
	}
	return &Recognizer{rec: rec, detector: cfg.Detector, cnnMaxPixels: cfg.CNNMaxPixels, models: installed}, nil
}

// Models reports the verified model files in use.
func (r *Recognizer) Models() []models.Installed { return r.models }

// ModelTag identifies the embedding model's content, stored with every
// template so that templates from different weights are never compared.
func (r *Recognizer) ModelTag() string {
	for _, in := range r.models {
		if in.Model.Name == "dlib_face_recognition_resnet_model_v1.dat" {
			return "dlib-resnet-v1:" + in.SHA256[:12]
		}
	}
	return "unknown"
}

// Faces detects every face in a 3-channel JPEG (see engine.Image) and
// returns each with its landmarks and embedding, ordered by position.
func (r *Recognizer) Faces(jpeg []byte) ([]engine.Face, error) {
	var (
		found []face.Face
		err   error
	)
	switch r.detector {
	case DetectorCNN:
		found, err = r.rec.RecognizeCNN(jpeg)
	default:
		found, err = r.rec.Recognize(jpeg)
		if err == nil && len(found) == 0 && r.detector == DetectorHOGThenCNN && r.cnnAffordable(jpeg) {
			found, err = r.rec.RecognizeCNN(jpeg)
		}
	}
	if err != nil {
		var loadErr face.ImageLoadError
		if errors.As(err, &loadErr) {
			return nil, fmt.Errorf("%w: %v", engine.ErrUndecodable, err)
		}
		return nil, fmt.Errorf("facerec: %w", err)
	}
	out := make([]engine.Face, len(found))
	for i, f := range found {
		out[i] = engine.Face{Box: f.Rectangle, Landmarks: f.Shapes, Embedding: engine.Embedding(f.Descriptor)}
	}
	return out, nil
}

// cnnAffordable reads the JPEG header (no pixels) to keep the CNN fallback
// off images where it would take seconds.
func (r *Recognizer) cnnAffordable(jpeg []byte) bool {
	cfg, err := stdjpeg.DecodeConfig(bytes.NewReader(jpeg))
	return err == nil && cfg.Width*cfg.Height <= r.cnnMaxPixels
}

// Close frees the dlib models.
func (r *Recognizer) Close() error {
	if r.rec != nil {
		r.rec.Close()
		r.rec = nil
	}
	return nil
}
