// Package enroll turns an officer's photos of one person into stored face
// templates. Each photo must hold exactly one usable face; a photo that does
// not is rejected with a specific reason, and by default nothing is stored
// until every photo of the request is good.
package enroll

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/gallery"
)

// DefaultMinFaceSize is the smallest detector box side, in pixels, accepted
// for enrolment. dlib aligns faces to 150x150 chips; a much smaller face is
// upsampled and makes a weak template.
const DefaultMinFaceSize = 80

// Store is where templates go (engine/gallery in production).
type Store interface {
	Enrol(ctx context.Context, e gallery.Enrolment) (gallery.EnrolResult, error)
}

// Service enrols people.
type Service struct {
	Decoder  engine.Decoder
	Embedder engine.Embedder
	Store    Store
	// Model tags the embedder's weights on every stored template.
	Model string
	// MinFaceSize defaults to DefaultMinFaceSize.
	MinFaceSize int
}

// Photo is one submitted image.
type Photo struct {
	Name string // for messages: a file name or upload field
	Data []byte
}

// Request is one enrolment.
type Request struct {
	ExternalID string
	Name       string
	Source     string // "cli", "api", ...
	Operator   string
	// Gates are the gates or zones the person may use.
	Gates  []string
	Photos []Photo
	// StoreGood stores the good photos even when others are rejected.
	StoreGood bool
}

// PhotoResult is the outcome for one photo.
type PhotoResult struct {
	Name          string
	Err           error // nil when the photo is usable
	Face          engine.Face
	Width, Height int
	Elapsed       time.Duration
}

// Result is the outcome of an enrolment.
type Result struct {
	Photos []PhotoResult
	Stored gallery.EnrolResult
}

// ErrInvalidRequest wraps problems with the request itself (ID, name, no photos).
var ErrInvalidRequest = errors.New("invalid enrolment request")

// RejectedError says some photos were unusable and nothing was stored.
type RejectedError struct {
	Photos []PhotoResult
}

func (e *RejectedError) Error() string {
	var bad []string
	for _, p := range e.Photos {
		if p.Err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", p.Name, p.Err))
		}
	}
	return fmt.Sprintf("enrolment rejected, nothing stored: %d of %d photos unusable (%s)",
		len(bad), len(e.Photos), strings.Join(bad, "; "))
}

var externalIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate checks the request's identity fields.
func (r *Request) Validate() error {
	r.Name = strings.TrimSpace(r.Name)
	r.ExternalID = strings.TrimSpace(r.ExternalID)
	if !externalIDPattern.MatchString(r.ExternalID) {
		return fmt.Errorf("%w: id %q must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalidRequest, r.ExternalID)
	}
	if r.Name == "" || utf8.RuneCountInString(r.Name) > 200 || !utf8.ValidString(r.Name) {
		return fmt.Errorf("%w: name must be 1-200 characters of valid UTF-8", ErrInvalidRequest)
	}
	if len(r.Photos) == 0 {
		return fmt.Errorf("%w: no photos", ErrInvalidRequest)
	}
	return nil
}

// Enrol checks every photo, then stores the templates in one transaction.
func (s *Service) Enrol(ctx context.Context, req Request) (Result, error) {
	if err := req.Validate(); err != nil {
		return Result{}, err
	}
	res := Result{Photos: make([]PhotoResult, len(req.Photos))}
	var templates []gallery.Template
	for i, p := range req.Photos {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		pr := s.checkPhoto(p)
		res.Photos[i] = pr
		if pr.Err != nil {
			continue
		}
		templates = append(templates, gallery.Template{
			Embedding:   pr.Face.Embedding,
			Model:       s.Model,
			PhotoSHA256: sha256.Sum256(p.Data),
			Box:         pr.Face.Box,
			ImageWidth:  pr.Width,
			ImageHeight: pr.Height,
		})
	}
	if len(templates) < len(req.Photos) && (!req.StoreGood || len(templates) == 0) {
		return res, &RejectedError{Photos: res.Photos}
	}
	stored, err := s.Store.Enrol(ctx, gallery.Enrolment{
		ExternalID: req.ExternalID,
		Name:       req.Name,
		Source:     req.Source,
		Operator:   req.Operator,
		Gates:      req.Gates,
		Templates:  templates,
	})
	res.Stored = stored
	return res, err
}

// checkPhoto runs one photo through decode, detection and the quality
// checks without storing anything.
func (s *Service) checkPhoto(p Photo) PhotoResult {
	start := time.Now()
	pr := PhotoResult{Name: p.Name}
	img, err := s.Decoder.Decode(p.Data)
	if err != nil {
		pr.Err = err
		pr.Elapsed = time.Since(start)
		return pr
	}
	pr.Width, pr.Height = img.Width, img.Height
	faces, err := s.Embedder.Faces(img.JPEG)
	pr.Elapsed = time.Since(start)
	switch {
	case err != nil:
		pr.Err = err
	case len(faces) == 0:
		pr.Err = fmt.Errorf("%w in the %dx%d image: use a frontal, well-lit photo", engine.ErrNoFace, img.Width, img.Height)
	case len(faces) > 1:
		pr.Err = fmt.Errorf("%w: %d faces in the image; enrolment photos must show one person", engine.ErrMultipleFaces, len(faces))
	default:
		pr.Face = faces[0]
		min := s.MinFaceSize
		if min == 0 {
			min = DefaultMinFaceSize
		}
		if b := pr.Face.Box; b.Dx() < min || b.Dy() < min {
			pr.Err = fmt.Errorf("%w: face is %dx%d pixels, at least %dx%d needed: move closer or use a larger photo",
				engine.ErrFaceTooSmall, b.Dx(), b.Dy(), min, min)
		}
	}
	return pr
}
