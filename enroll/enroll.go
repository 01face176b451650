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
	"image"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/engine/quality"
)

// DefaultMinFaceSize is the smallest side of the recogniser's face box, in
// the photo's own pixels, accepted for enrolment. dlib aligns faces to
// 150x150 chips; a much smaller face is upsampled and makes a weak template.
const DefaultMinFaceSize = 80

// Store is where templates go (engine/gallery in production).
type Store interface {
	Enrol(ctx context.Context, e gallery.Enrolment) (gallery.EnrolResult, error)
}

// Service enrols people.
type Service struct {
	// Stills decodes each photo and finds, measures and embeds its faces
	// with the walk-through pipeline's detector and crops (engine/still), so
	// a template is made the way a gate later sees the person.
	Stills engine.StillAnalyzer
	Store  Store
	// Model tags the embedder's weights on every stored template.
	Model string
	// MinFaceSize defaults to DefaultMinFaceSize.
	MinFaceSize int
	// Quality is the profile every photo must pass; nil means
	// quality.Enrolment.
	Quality *quality.Thresholds

	// Deprecated: Decoder and Embedder are the path used before Stills
	// (go-face's own detector on a copy downscaled to 1024 px). They are
	// used only when Stills is nil: that path finds no face in a large
	// group photo and makes no quality report.
	Decoder  engine.Decoder
	Embedder engine.Embedder
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
	Name string
	Err  error // nil when the photo is usable
	// Face is the enrolled face, in the photo's pixels at full resolution.
	Face          engine.Face
	Width, Height int
	// Faces is how many faces the detector found.
	Faces int
	// Box is the detector's box of the face the report describes (the
	// largest), in the photo's pixels; empty when no face was found.
	Box image.Rectangle
	// Quality is the photo's quality report against the service's profile
	// (with several faces, for the largest). It is empty on the deprecated
	// Decoder/Embedder path.
	Quality quality.Report
	Elapsed time.Duration
}

// Result is the outcome of an enrolment.
type Result struct {
	Photos []PhotoResult
	Stored gallery.EnrolResult
}

// ErrInvalidRequest wraps problems with the request itself (ID, name, no photos).
var ErrInvalidRequest = errors.New("invalid enrolment request")

// ErrQuality is wrapped by the error of a photo that fails the quality
// profile; the error is a *QualityError naming every failed check.
var ErrQuality = errors.New("photo fails the enrolment quality checks")

// QualityError is a photo's failed quality report. errors.Is matches it to
// ErrQuality, and to engine.ErrFaceTooSmall when the face-size check failed.
type QualityError struct {
	Report quality.Report
}

func (e *QualityError) Error() string {
	parts := make([]string, len(e.Report.Failures))
	for i, f := range e.Report.Failures {
		parts[i] = fmt.Sprintf("%s %s, limit %s: %s", f.Check, number(f.Value), number(f.Limit), strings.TrimSuffix(f.Message, "."))
	}
	return fmt.Sprintf("%v (profile %s): %s", ErrQuality, e.Report.Profile, strings.Join(parts, "; "))
}

// Is makes errors.Is(err, engine.ErrFaceTooSmall) hold for a face that is
// too small by the profile, as it does for one below MinFaceSize.
func (e *QualityError) Is(target error) bool {
	return target == ErrQuality || (target == engine.ErrFaceTooSmall && e.Report.Failed(quality.CheckFaceTooSmall))
}

// number prints a measure without a spurious ".0" on whole numbers.
func number(v float64) string {
	if v == math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// photoErrors are several reasons one photo is rejected, all matched by
// errors.Is and printed on one line.
type photoErrors []error

func (e photoErrors) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (e photoErrors) Unwrap() []error { return e }

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
		pr := s.checkPhoto(ctx, p)
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

// checkPhoto runs one photo through decode, detection, embedding and the
// quality checks without storing anything. Every reason to reject the
// photo is reported, not just the first.
func (s *Service) checkPhoto(ctx context.Context, p Photo) PhotoResult {
	if s.Stills == nil {
		return s.checkPhotoDeprecated(p)
	}
	start := time.Now()
	pr := PhotoResult{Name: p.Name}
	// One face is the only usable outcome: do not embed a group photo.
	st, err := s.Stills.AnalyzeStill(ctx, p.Data, engine.StillOptions{MaxEmbed: 1})
	pr.Elapsed = time.Since(start)
	if err != nil {
		pr.Err = err
		return pr
	}
	pr.Width, pr.Height, pr.Faces = st.Width, st.Height, len(st.Faces)
	profile := quality.Enrolment
	if s.Quality != nil {
		profile = *s.Quality
	}
	var errs photoErrors
	if len(st.Faces) == 0 {
		pr.Quality = quality.Assess(quality.Measures{}, profile)
		errs = append(errs, fmt.Errorf("%w in the %dx%d image: use a frontal, well-lit photo", engine.ErrNoFace, st.Width, st.Height))
	} else {
		face := largestFace(st.Faces)
		pr.Box = face.DetectorBox
		pr.Quality = quality.Assess(face.Measures, profile)
		switch {
		case len(st.Faces) > 1:
			errs = append(errs, fmt.Errorf("%w: %d faces in the image; enrolment photos must show one person", engine.ErrMultipleFaces, len(st.Faces)))
		case !face.Embedded:
			cause := face.Err
			if cause == nil {
				cause = errors.New("not embedded")
			}
			errs = append(errs, fmt.Errorf("face detected at %v but the recogniser could not use it: %w", face.DetectorBox, cause))
		default:
			pr.Face = face.Face
			if err := s.checkSize(pr.Face.Box); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if !pr.Quality.Accepted {
		errs = append(errs, &QualityError{Report: pr.Quality})
	}
	switch len(errs) {
	case 0:
	case 1:
		pr.Err = errs[0]
	default:
		pr.Err = errs
	}
	return pr
}

// largestFace is the face whose detector box is largest: the one the
// report describes (in a rejected group photo, the most prominent face).
func largestFace(faces []engine.StillFace) engine.StillFace {
	best := faces[0]
	for _, f := range faces[1:] {
		if b, c := f.DetectorBox.Size(), best.DetectorBox.Size(); b.X*b.Y > c.X*c.Y {
			best = f
		}
	}
	return best
}

// checkSize applies MinFaceSize to the recogniser's face box.
func (s *Service) checkSize(b image.Rectangle) error {
	side := s.MinFaceSize
	if side == 0 {
		side = DefaultMinFaceSize
	}
	if b.Dx() < side || b.Dy() < side {
		return fmt.Errorf("%w: face is %dx%d pixels, at least %dx%d needed: move closer or use a larger photo",
			engine.ErrFaceTooSmall, b.Dx(), b.Dy(), side, side)
	}
	return nil
}

// checkPhotoDeprecated is the path of the deprecated Decoder and Embedder
// fields: go-face's detector on the normalised, downscaled image.
func (s *Service) checkPhotoDeprecated(p Photo) PhotoResult {
	start := time.Now()
	pr := PhotoResult{Name: p.Name}
	if s.Decoder == nil || s.Embedder == nil {
		pr.Err = errors.New("enroll: the service has no Stills analyzer")
		return pr
	}
	img, err := s.Decoder.Decode(p.Data)
	if err != nil {
		pr.Err = err
		pr.Elapsed = time.Since(start)
		return pr
	}
	pr.Width, pr.Height = img.Width, img.Height
	faces, err := s.Embedder.Faces(img.JPEG)
	pr.Elapsed = time.Since(start)
	pr.Faces = len(faces)
	switch {
	case err != nil:
		pr.Err = err
	case len(faces) == 0:
		pr.Err = fmt.Errorf("%w in the %dx%d image: use a frontal, well-lit photo", engine.ErrNoFace, img.Width, img.Height)
	case len(faces) > 1:
		pr.Err = fmt.Errorf("%w: %d faces in the image; enrolment photos must show one person", engine.ErrMultipleFaces, len(faces))
	default:
		pr.Face = faces[0]
		pr.Err = s.checkSize(pr.Face.Box)
	}
	return pr
}
