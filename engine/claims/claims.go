// Package claims is the 1:1 mode: a token reader at a lane (badge, QR, BLE
// gateway) claims an identity, and the next traveller at that lane is
// verified against that one person only. A claim no face confirms within
// its time to live expires with a deny. Plain Go.
package claims

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/loopgate/loopgate/engine"
)

// ErrUnknownLane means no camera of this node watches the lane.
var ErrUnknownLane = errors.New("unknown lane")

// Claim is one claimed identity waiting at a lane.
type Claim struct {
	ID      string
	Lane    string
	Person  engine.PersonMatch // registration as looked up at claim time
	Made    time.Time
	Expires time.Time
}

// Lookup finds a person registered for this node's gate scope.
type Lookup func(ctx context.Context, externalID string) (engine.PersonMatch, error)

// Registry holds pending claims per lane, oldest first.
type Registry struct {
	lookup     Lookup
	lanes      map[string]bool
	defaultTTL time.Duration
	maxTTL     time.Duration
	now        func() time.Time

	mu      sync.Mutex
	pending map[string][]Claim
}

// New returns a registry for the given lanes.
func New(lanes []string, lookup Lookup, defaultTTL, maxTTL time.Duration) *Registry {
	r := &Registry{lookup: lookup, lanes: map[string]bool{}, defaultTTL: defaultTTL, maxTTL: maxTTL,
		now: time.Now, pending: map[string][]Claim{}}
	for _, l := range lanes {
		r.lanes[l] = true
	}
	return r
}

// Add records a claim. ttl 0 means the default; it is capped at the maximum.
// The person must be registered for this gate (engine.ErrUnknownPerson
// otherwise); whether the registration is active is judged at the gate, so
// a revoked badge yields a deny with that reason.
func (r *Registry) Add(ctx context.Context, lane, externalID string, ttl time.Duration) (Claim, error) {
	if !r.lanes[lane] {
		return Claim{}, fmt.Errorf("%w: %q", ErrUnknownLane, lane)
	}
	if ttl <= 0 {
		ttl = r.defaultTTL
	}
	ttl = min(ttl, r.maxTTL)
	p, err := r.lookup(ctx, externalID)
	if err != nil {
		return Claim{}, err
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	now := r.now()
	c := Claim{ID: hex.EncodeToString(id[:]), Lane: lane, Person: p, Made: now, Expires: now.Add(ttl)}
	r.mu.Lock()
	r.pending[lane] = append(r.pending[lane], c)
	r.mu.Unlock()
	return c, nil
}

// Take removes and returns the oldest unexpired claim at a lane, if any:
// the pipeline binds it to the traveller whose first quality frame comes
// next. Expired claims stay queued for Expired to report.
func (r *Registry) Take(lane string) (Claim, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	q := r.pending[lane]
	for i, c := range q {
		if now.Before(c.Expires) {
			r.pending[lane] = append(q[:i:i], q[i+1:]...)
			return c, true
		}
	}
	return Claim{}, false
}

// Expired removes and returns every claim past its expiry.
func (r *Registry) Expired() []Claim {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	var out []Claim
	for lane, q := range r.pending {
		keep := q[:0]
		for _, c := range q {
			if now.Before(c.Expires) {
				keep = append(keep, c)
			} else {
				out = append(out, c)
			}
		}
		r.pending[lane] = keep
	}
	return out
}

// Pending counts claims waiting at all lanes.
func (r *Registry) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, q := range r.pending {
		n += len(q)
	}
	return n
}
