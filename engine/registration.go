package engine

import (
	"fmt"
	"time"
)

// Registration statuses.
const (
	StatusActive  = "active"
	StatusRevoked = "revoked"
)

// Registration is the lifecycle of one enrolled person: only an active
// registration inside its validity window may ever produce an open.
type Registration struct {
	Status        string
	RevokedAt     *time.Time
	RevokedReason string
	// ValidFrom and ValidUntil bound the window; nil is open-ended.
	ValidFrom, ValidUntil *time.Time
}

// Inactive says why a registration may not open a gate at t: ErrRevoked or
// ErrOutsideWindow (wrapped with detail), or nil when it may.
func (r Registration) Inactive(t time.Time) error {
	switch {
	case r.Status != StatusActive:
		return fmt.Errorf("%w: %s (%s)", ErrRevoked, r.Status, r.RevokedReason)
	case r.ValidFrom != nil && t.Before(*r.ValidFrom):
		return fmt.Errorf("%w: valid from %s", ErrOutsideWindow, r.ValidFrom.UTC().Format(time.RFC3339))
	case r.ValidUntil != nil && !t.Before(*r.ValidUntil):
		return fmt.Errorf("%w: expired %s", ErrOutsideWindow, r.ValidUntil.UTC().Format(time.RFC3339))
	}
	return nil
}

// PersonMatch is the nearest template of one person to a probe: the unit a
// gate decides on (several templates of one person count once).
type PersonMatch struct {
	PersonID     int64
	ExternalID   string
	Name         string
	Distance     float64 // Euclidean, to the person's nearest template
	Registration Registration
}
