package engine

import (
	"context"
	"image"
	"time"

	"github.com/loopgate/loopgate/engine/quality"
)

// StillAnalyzer finds, measures and embeds every face of an encoded still
// photo (an enrolment photo, an identify probe) the way the walk-through
// pipeline does a camera frame: the face detector on the full-resolution
// image, then a crop of each face from the full-resolution pixels for the
// recogniser. engine/still implements it.
type StillAnalyzer interface {
	AnalyzeStill(ctx context.Context, data []byte, opts StillOptions) (Still, error)
}

// StillOptions tune one AnalyzeStill call.
type StillOptions struct {
	// MaxEmbed: when the detector finds more faces than this, none is
	// embedded (their detections and measures are still reported); 0 means
	// embed every face. Enrolment sets 1: a group photo is rejected anyway,
	// and embedding ten faces would cost ten recogniser runs.
	MaxEmbed int
}

// Still is what AnalyzeStill found in one photo. Every box and point is in
// the photo's own pixels at full resolution, after EXIF orientation.
type Still struct {
	// Format is the source encoding ("jpeg", "png", ...).
	Format        string
	Width, Height int
	// Faces are ordered left to right by their boxes' left edges.
	Faces []StillFace
	// Decode, Detect and Embed are the stage times; Embed covers cropping
	// and embedding every face.
	Decode, Detect, Embed time.Duration
}

// StillFace is one face the detector found in a still.
type StillFace struct {
	// DetectorBox, DetectorScore and DetectorLandmarks are the detector's
	// (YuNet's) view; the landmarks are in detect's order (eyes, nose tip,
	// mouth corners).
	DetectorBox       image.Rectangle
	DetectorScore     float32
	DetectorLandmarks [5]image.Point
	// Measures are the quality figures of this face (Faces is the number of
	// faces in the photo), ready for quality.Assess.
	Measures quality.Measures
	// Embedded is true when Face holds the recogniser's face: its box and
	// landmarks in photo pixels, and the embedding.
	Embedded bool
	Face     Face
	// Err says why an attempted embedding failed; it wraps ErrNoFace when
	// the recogniser found no face at the detector's box. Nil when
	// embedding was not attempted (see StillOptions.MaxEmbed).
	Err error
}
