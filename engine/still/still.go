// Package still runs still photos (enrolment photos, identify probes)
// through the walk-through pipeline's face path: decode at full resolution,
// YuNet on the whole image, then for each face a crop of the full-resolution
// pixels for go-face. Stills and camera frames are thereby detected, cropped
// and embedded the same way, and a group photo is handled like a crowded
// frame.
//
// It is its own package because it joins three cgo components that must
// not depend on one another: engine/vision (OpenCV decode, crop, measures),
// engine/detect (YuNet) and go-face (behind engine.Embedder). vision cannot
// import facerec (facerec imports vision), and facerec is kept to go-face.
package still

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"image"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/detect"
	"github.com/loopgate/loopgate/engine/quality"
	"github.com/loopgate/loopgate/engine/vision"
)

// Detector finds faces in a full-resolution BGR image (detect.YuNet).
type Detector interface {
	Detect(frame gocv.Mat) ([]detect.Detection, error)
}

// Config configures an Analyzer built by New.
type Config struct {
	// ModelDir holds detect.ModelName.
	ModelDir string
	// Detect tunes YuNet; the zero value is the pipeline's default.
	Detect detect.Config
	// Limits bound the photos admitted (zero value: engine.DefaultImageLimits).
	Limits engine.ImageLimits
	// Crop tunes the face crops; the zero value is the pipeline's default.
	Crop vision.CropOptions
	// Concurrency is how many faces of one photo are embedded at once
	// (0 means 1). More helps only when the embedder is a facerec.Pool with
	// that many recognisers: one go-face Recognizer runs one image at a time.
	Concurrency int
}

// Analyzer implements engine.StillAnalyzer. It is safe for concurrent use:
// YuNet serialises its own calls with a mutex, and the embedder
// (facerec.Recognizer or facerec.Pool) is safe for concurrent use.
type Analyzer struct {
	decoder     *vision.Decoder
	detector    Detector
	embedder    engine.Embedder
	crop        vision.CropOptions
	concurrency int
	// closeDetector is set when New loaded the detector and so owns it.
	closeDetector func() error
}

var _ engine.StillAnalyzer = (*Analyzer)(nil)

// New loads YuNet from cfg.ModelDir (its sha256 is checked against the
// model manifest) and returns an Analyzer that embeds with emb. Close it to
// free the detector; emb stays the caller's.
func New(cfg Config, emb engine.Embedder) (*Analyzer, error) {
	if emb == nil {
		return nil, errors.New("still: no embedder")
	}
	det, err := detect.NewYuNet(filepath.Join(cfg.ModelDir, detect.ModelName), cfg.Detect)
	if err != nil {
		return nil, fmt.Errorf("still: %w", err)
	}
	a := NewWith(vision.NewDecoder(cfg.Limits), det, emb, cfg.Crop, cfg.Concurrency)
	a.closeDetector = det.Close
	return a, nil
}

// NewWith assembles an Analyzer from components the caller owns (tests,
// or a caller that shares one detector).
func NewWith(dec *vision.Decoder, det Detector, emb engine.Embedder, crop vision.CropOptions, concurrency int) *Analyzer {
	return &Analyzer{decoder: dec, detector: det, embedder: emb, crop: crop, concurrency: max(concurrency, 1)}
}

// Close frees the detector when New loaded it.
func (a *Analyzer) Close() error {
	if a.closeDetector == nil {
		return nil
	}
	err := a.closeDetector()
	a.closeDetector = nil
	return err
}

// AnalyzeStill decodes data at full resolution (rejecting it with the
// engine's sentinel errors when it is not an admissible image), detects
// every face, measures each for the quality checks and, unless
// opts.MaxEmbed says otherwise, crops and embeds each. A face go-face cannot
// embed is reported in its StillFace.Err, not as the call's error. A photo
// without faces is not an error: Faces is empty.
func (a *Analyzer) AnalyzeStill(ctx context.Context, data []byte, opts engine.StillOptions) (engine.Still, error) {
	var res engine.Still
	if err := ctx.Err(); err != nil {
		return res, err
	}
	start := time.Now()
	mat, format, err := a.decoder.DecodeMat(data)
	res.Decode = time.Since(start)
	if err != nil {
		return res, err
	}
	defer mat.Close()
	res.Format, res.Width, res.Height = format, mat.Cols(), mat.Rows()

	start = time.Now()
	dets, err := a.detector.Detect(mat)
	res.Detect = time.Since(start)
	if err != nil {
		return res, fmt.Errorf("still: detect faces in the %dx%d image: %w", res.Width, res.Height, err)
	}
	slices.SortFunc(dets, func(p, q detect.Detection) int {
		return cmp.Or(cmp.Compare(p.Box.Min.X, q.Box.Min.X), cmp.Compare(p.Box.Min.Y, q.Box.Min.Y))
	})
	res.Faces = make([]engine.StillFace, len(dets))
	for i, d := range dets {
		res.Faces[i] = engine.StillFace{
			DetectorBox:       d.Box,
			DetectorScore:     d.Score,
			DetectorLandmarks: d.Landmarks,
			Measures:          Measure(mat, d, len(dets)),
		}
	}
	if opts.MaxEmbed > 0 && len(dets) > opts.MaxEmbed {
		return res, nil
	}

	start = time.Now()
	sem := make(chan struct{}, a.concurrency)
	var wg sync.WaitGroup
	for i := range res.Faces {
		f := &res.Faces[i]
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if err := ctx.Err(); err != nil {
			// Faces not yet started keep Err nil and Embedded false.
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			f.Face, f.Err = EmbedFace(ctx, a.embedder, mat, f.DetectorBox, a.crop)
			f.Embedded = f.Err == nil
		})
	}
	wg.Wait()
	res.Embed = time.Since(start)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

// contextEmbedder is an embedder whose wait for a free recogniser a context
// can bound (facerec.Pool).
type contextEmbedder interface {
	FacesContext(ctx context.Context, jpeg []byte) ([]engine.Face, error)
}

// EmbedFace is the per-face step shared by stills and the camera pipeline:
// crop box (full-resolution frame pixels) with a margin out of frame, run
// go-face on the crop and return the face it finds at the box, in frame
// pixels. The error wraps engine.ErrNoFace when go-face finds no face there.
// frame is only read, so several faces of one frame may be embedded at once.
func EmbedFace(ctx context.Context, emb engine.Embedder, frame gocv.Mat, box image.Rectangle, opts vision.CropOptions) (engine.Face, error) {
	crop, err := vision.CropFace(frame, box, opts)
	if err != nil {
		return engine.Face{}, err
	}
	var faces []engine.Face
	if ce, ok := emb.(contextEmbedder); ok {
		faces, err = ce.FacesContext(ctx, crop.JPEG)
	} else {
		faces, err = emb.Faces(crop.JPEG)
	}
	if err != nil {
		return engine.Face{}, err
	}
	return crop.PickTarget(faces)
}

// Measure fills the quality measures of detection d in frame, faces being
// the number of faces in the frame: the geometry from the detector's
// landmarks, the pixel figures from vision.MeasureFace. A box that cannot be
// measured (degenerate, off the frame) counts as too small to use, as in
// the camera pipeline.
func Measure(frame gocv.Mat, d detect.Detection, faces int) quality.Measures {
	m := quality.FromLandmarks(faces, d.Landmarks, float64(d.Score))
	pm, err := vision.MeasureFace(frame, d.Box)
	if err != nil {
		m.InterEyePx = 0
		return m
	}
	m.SharpnessVar, m.Brightness, m.Contrast = pm.SharpnessVar, pm.Brightness, pm.Contrast
	return m
}
