// Package decision defines what the clearance pipeline emits: one Event per
// traveller (track), open or deny, with the reason and the evidence. Sinks
// (JSON lines, webhook, server-sent events, the audit table) consume Events
// through the Sink interface and live outside the matching core.
package decision

import "time"

// Outcome is what the gate is told to do.
type Outcome string

const (
	Open Outcome = "open"
	Deny Outcome = "deny"
)

// Reason says why. Every deny has a reason other than Matched.
type Reason string

const (
	// Matched: an active, in-window registration for this gate matched.
	Matched Reason = "matched"
	// UnknownFace: usable frames were fused, but no registered person matched
	// within the threshold and margin.
	UnknownFace Reason = "unknown_face"
	// Ambiguous: the nearest two people were too close to tell apart.
	Ambiguous Reason = "ambiguous"
	// Revoked: the face matched a registration that has been revoked.
	Revoked Reason = "registration_revoked"
	// Expired: the face matched a registration outside its validity window.
	Expired Reason = "registration_expired"
	// NoUsableCapture: the track ended before enough frames passed the
	// quality gate.
	NoUsableCapture Reason = "no_usable_capture"
	// ClaimMismatch: a 1:1 claim was made at the lane and the face did not
	// verify against the claimed person.
	ClaimMismatch Reason = "claim_mismatch"
	// ClaimExpired: a 1:1 claim was made and no face confirmed it in time.
	ClaimExpired Reason = "claim_expired"
	// GalleryStale: the node could not refresh its copy of the gallery for
	// longer than its staleness bound (database unreachable), so it cannot
	// know of recent revocations and opens for nobody.
	GalleryStale Reason = "gallery_stale"
)

// Person identifies the matched registration. It never carries a template.
type Person struct {
	ID         int64  `json:"id"`
	ExternalID string `json:"external_id"`
	Name       string `json:"name"`
}

// Timings are the summed per-stage times spent on this track, in
// milliseconds, plus the end-to-end figures.
type Timings struct {
	DetectMS  float64 `json:"detect_ms"`
	QualityMS float64 `json:"quality_ms"`
	EmbedMS   float64 `json:"embed_ms"`
	SearchMS  float64 `json:"search_ms"`
	// CaptureToDecisionMS is from the capture time of the frame that
	// triggered the decision to the decision.
	CaptureToDecisionMS float64 `json:"capture_to_decision_ms"`
	// FirstQualityToDecisionMS is from the capture of the first frame that
	// passed the quality gate to the decision.
	FirstQualityToDecisionMS float64 `json:"first_quality_to_decision_ms,omitempty"`
}

// Event is one decision for one traveller. Its JSON form is documented in
// engine/decision/event.schema.json.
type Event struct {
	// ID is unique per event (gate node, camera, track, time), used by sinks
	// to make delivery idempotent.
	ID       string  `json:"id"`
	Decision Outcome `json:"decision"`
	Reason   Reason  `json:"reason"`
	// Detail is a human sentence for operators.
	Detail  string `json:"detail,omitempty"`
	Gate    string `json:"gate"`
	Lane    string `json:"lane,omitempty"`
	Camera  string `json:"camera"`
	TrackID int64  `json:"track_id"`
	// Person is set when a registration matched (open, or deny because it is
	// revoked or expired).
	Person *Person `json:"person,omitempty"`
	// Claim is the external ID claimed at the lane in 1:1 mode.
	Claim string `json:"claim,omitempty"`
	// Distance to the nearest registered person, Margin to the second
	// nearest (absent when there was none), Threshold applied.
	Distance   *float64 `json:"distance,omitempty"`
	Margin     *float64 `json:"margin,omitempty"`
	Threshold  float64  `json:"threshold"`
	FramesUsed int      `json:"frames_used"`
	FramesSeen int      `json:"frames_seen"`
	// SkippedFrames counts this track's faces that failed the quality gate,
	// by reason.
	SkippedFrames map[string]int `json:"skipped_frames,omitempty"`
	FirstSeen     time.Time      `json:"first_seen"`
	FirstQuality  *time.Time     `json:"first_quality,omitempty"`
	DecidedAt     time.Time      `json:"decided_at"`
	Timings       Timings        `json:"timings"`
}

// Sink receives every decision. Send must not block the pipeline: a sink
// that talks to something slow queues (bounded) and reports what it drops.
type Sink interface {
	Name() string
	Send(Event)
	// Close flushes what it can within ctx's deadline and stops.
	Close() error
}
