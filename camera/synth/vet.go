package synth

import (
	"errors"
	"fmt"
	"os"

	"github.com/loopgate/loopgate/engine"
)

// ErrRejected marks a candidate walker that Vetter refused.
var ErrRejected = errors.New("synth: walker rejected")

// Vetter checks candidate walkers with the real detector and embedder, so a
// clip's ground truth is not undermined by its source photos: LFW holds
// photos with a second face in them (enrolment refuses those, and a second
// face in a walk photo would put part of a stranger into the clip), and a
// few same-person pairs the model cannot match. It is used by
// PickWalkersWith; the generator itself runs no recognition.
type Vetter struct {
	Decoder  engine.Decoder
	Embedder engine.Embedder
	// Threshold an enrolled walker's walk photo must be within of their
	// enrol photo; zero means engine.DefaultMatchThreshold.
	Threshold float64
	// MinFace is the smallest detector box side in the enrol photo; zero
	// means 80 px, what enrolment accepts.
	MinFace int
}

// Check returns nil for a usable walker, an error wrapping ErrRejected
// that says why not, or another error when a photo cannot be read.
func (v Vetter) Check(w Walker) error {
	walk, err := v.face(w.WalkPhoto)
	if err != nil {
		return fmt.Errorf("%s walk photo: %w", w.Name, err)
	}
	if w.EnrolPhoto == "" {
		return nil
	}
	enrol, err := v.face(w.EnrolPhoto)
	if err != nil {
		return fmt.Errorf("%s enrol photo: %w", w.Name, err)
	}
	minFace := v.MinFace
	if minFace == 0 {
		minFace = 80
	}
	if b := enrol.Box; min(b.Dx(), b.Dy()) < minFace {
		return fmt.Errorf("%w: %s enrol photo: face %dx%d px is under %d px", ErrRejected, w.Name, b.Dx(), b.Dy(), minFace)
	}
	threshold := v.Threshold
	if threshold == 0 {
		threshold = engine.DefaultMatchThreshold
	}
	if d := engine.Distance(enrol.Embedding, walk.Embedding); d > threshold {
		return fmt.Errorf("%w: %s: enrol and walk photos are %.3f apart, over %.2f", ErrRejected, w.Name, d, threshold)
	}
	return nil
}

func (v Vetter) face(path string) (engine.Face, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return engine.Face{}, fmt.Errorf("synth: %w", err)
	}
	img, err := v.Decoder.Decode(data)
	if err != nil {
		return engine.Face{}, fmt.Errorf("%w: %v", ErrRejected, err)
	}
	faces, err := v.Embedder.Faces(img.JPEG)
	if err != nil {
		return engine.Face{}, fmt.Errorf("synth: %s: %w", path, err)
	}
	if len(faces) != 1 {
		return engine.Face{}, fmt.Errorf("%w: %d faces in %s, want exactly 1", ErrRejected, len(faces), path)
	}
	return faces[0], nil
}
