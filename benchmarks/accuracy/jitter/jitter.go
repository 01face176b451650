// Package jitter is a benchmark-only recogniser that embeds each face as
// the mean of dlib's randomly jittered copies (go-face's "jittering"),
// to measure whether jittered enrolment templates identify better.
//
// engine/facerec does not expose jittering, so this package calls go-face
// directly with the same detector choice as facerec (HOG, then the CNN when
// HOG finds nothing on an image of at most facerec.DefaultCNNMaxPixels). It
// verifies the model directory first, exactly as facerec does. If jittering
// earns its place, the option belongs in facerec.Config, and this package
// should go.
package jitter

import (
	"bytes"
	"errors"
	"fmt"
	stdjpeg "image/jpeg"

	face "github.com/Kagami/go-face"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/models"
)

// dlib's face-chip geometry, go-face's defaults (150x150, padding 0.25): the
// only setting changed here is the number of jittered copies.
const (
	chipSize    = 150
	chipPadding = 0.25
)

// Recognizer embeds faces with jittering.
type Recognizer struct {
	rec    *face.Recognizer
	copies int
}

var _ engine.Embedder = (*Recognizer)(nil)

// New loads the verified models with copies jittered copies per face.
func New(modelDir string, copies int) (*Recognizer, error) {
	if copies < 1 {
		return nil, fmt.Errorf("jitter: copies must be at least 1, got %d", copies)
	}
	if _, err := models.Verify(modelDir); err != nil {
		return nil, fmt.Errorf("jitter: model directory %s: %w", modelDir, err)
	}
	rec, err := face.NewRecognizerWithConfig(modelDir, chipSize, chipPadding, copies)
	if err != nil {
		return nil, fmt.Errorf("jitter: load models from %s: %w", modelDir, err)
	}
	return &Recognizer{rec: rec, copies: copies}, nil
}

// Faces detects faces as facerec.DetectorHOGThenCNN does and embeds each as
// the mean embedding of its jittered copies.
func (r *Recognizer) Faces(jpeg []byte) ([]engine.Face, error) {
	found, err := r.rec.Recognize(jpeg)
	if err == nil && len(found) == 0 {
		if cfg, cerr := stdjpeg.DecodeConfig(bytes.NewReader(jpeg)); cerr == nil && cfg.Width*cfg.Height <= facerec.DefaultCNNMaxPixels {
			found, err = r.rec.RecognizeCNN(jpeg)
		}
	}
	if err != nil {
		var loadErr face.ImageLoadError
		if errors.As(err, &loadErr) {
			return nil, fmt.Errorf("%w: %v", engine.ErrUndecodable, err)
		}
		return nil, fmt.Errorf("jitter: %w", err)
	}
	out := make([]engine.Face, len(found))
	for i, f := range found {
		out[i] = engine.Face{Box: f.Rectangle, Landmarks: f.Shapes, Embedding: engine.Embedding(f.Descriptor)}
	}
	return out, nil
}

// Close frees the dlib models.
func (r *Recognizer) Close() error {
	if r.rec != nil {
		r.rec.Close()
		r.rec = nil
	}
	return nil
}
