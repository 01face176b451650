package engine

import "errors"

// Sentinel errors for input that cannot be used. Callers test them with
// errors.Is; the wrapping error says which file and why.
var (
	ErrImageTooLarge     = errors.New("image too large")
	ErrUnsupportedFormat = errors.New("unsupported image format")
	ErrUndecodable       = errors.New("image cannot be decoded")
	ErrNoFace            = errors.New("no face found")
	ErrMultipleFaces     = errors.New("more than one face found")
	ErrFaceTooSmall      = errors.New("face too small")
	ErrRevoked           = errors.New("registration revoked")
	ErrOutsideWindow     = errors.New("registration outside its validity window")
	ErrUnknownPerson     = errors.New("no such registered person")
	// ErrGalleryStale: the node's copy of the gallery is older than its
	// staleness bound (or there is none), so it cannot know of recent
	// revocations and must not open for anyone (engine/localgallery).
	ErrGalleryStale = errors.New("gallery copy too old to decide from")
)
