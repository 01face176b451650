package enroll

import (
	"errors"
	"fmt"
	"strings"
)

// Errors of the registry and accounts. The API maps each to a stable code
// (errors.Is / errors.As); every one means nothing was changed.
var (
	// ErrNotFound: no person (or account, or token) by that id.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the external id (or username, or token name) is taken.
	ErrConflict = errors.New("already exists")
	// ErrAlreadyRevoked and ErrNotRevoked: a revoke or reinstate that does
	// not fit the registration's state.
	ErrAlreadyRevoked = errors.New("registration is already revoked")
	ErrNotRevoked     = errors.New("registration is not revoked")
	// ErrInvalid is wrapped by every *FieldError.
	ErrInvalid = errors.New("invalid field")
	// ErrRejected is wrapped by *RejectedError: a photo failed its checks.
	ErrRejected = errors.New("photo rejected")
	// ErrDuplicateIdentity is wrapped by *DuplicateError.
	ErrDuplicateIdentity = errors.New("identity check failed (the face matches another enrolled person, or not this one)")
	// ErrForbidden: the actor's role does not allow the action.
	ErrForbidden = errors.New("forbidden for this role")
	// ErrBadCredentials: unknown user, wrong password, disabled account,
	// unknown or revoked token — deliberately one error for all of them.
	ErrBadCredentials = errors.New("bad credentials")
)

// FieldError names the field of a request that is wrong and why.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Message) }

// Is makes errors.Is(err, ErrInvalid) hold.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// PhotosError carries the per-photo reports of a refused request; nothing
// was stored. errors.Is(err, ErrRejected) holds when a photo failed a check
// (no face, quality, format ...); errors.Is(err, ErrDuplicateIdentity) when
// a face matches another enrolled person, or does not match the person's
// own templates, and no admin override was given.
type PhotosError struct {
	kind   error
	Photos []PhotoReport
}

func (e *PhotosError) Error() string {
	var parts []string
	for _, p := range e.Photos {
		if p.Accepted {
			continue
		}
		var codes []string
		for _, r := range p.Reasons {
			codes = append(codes, r.Message)
		}
		parts = append(parts, fmt.Sprintf("%s: %s", p.Name, strings.Join(codes, "; ")))
	}
	return fmt.Sprintf("%v, nothing stored: %s", e.kind, strings.Join(parts, " | "))
}

func (e *PhotosError) Is(target error) bool { return target == e.kind }
