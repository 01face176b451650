package pipeline

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loopgate/loopgate/engine/decision"
)

// Stage label values of loopgate_pipeline_stage_seconds.
const (
	StageDecode            = "decode"
	StageDetect            = "detect"
	StageQuality           = "quality"
	StageEmbed             = "embed"
	StageSearch            = "search"
	StageFrame             = "frame" // whole frame: detect to last decision
	StageCaptureToDecision = "capture_to_decision"
)

// Metrics are the walk-through pipeline's Prometheus metrics, labelled by
// camera. A nil *Metrics records nothing.
type Metrics struct {
	Stage                  *prometheus.HistogramVec
	FirstQualityToDecision *prometheus.HistogramVec
	Frames                 *prometheus.CounterVec
	Faces                  *prometheus.CounterVec
	SkippedFaces           *prometheus.CounterVec
	Decisions              *prometheus.CounterVec
	ActiveTracks           *prometheus.GaugeVec
	DiscardedTracks        *prometheus.CounterVec
	Errors                 *prometheus.CounterVec
}

// NewMetrics builds the metrics and registers them on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	// 1 ms to ~6.5 s: per-frame stages sit at 1-60 ms, decisions within ~3 s.
	buckets := prometheus.ExponentialBuckets(0.001, 1.4, 27)
	m := &Metrics{
		Stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "loopgate", Subsystem: "pipeline", Name: "stage_seconds",
			Help:    "Time per stage: decode, detect, quality and embed per face or frame, search per query, frame per processed frame, capture_to_decision per decision.",
			Buckets: buckets,
		}, []string{"camera", "stage"}),
		FirstQualityToDecision: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "loopgate", Subsystem: "pipeline", Name: "first_quality_to_decision_seconds",
			Help:    "From the capture of a track's first frame that passed the quality gate to its decision.",
			Buckets: buckets,
		}, []string{"camera"}),
		Frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "pipeline", Name: "frames_processed_total",
			Help: "Frames the pipeline processed (dropped frames are counted by the camera).",
		}, []string{"camera"}),
		Faces: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "pipeline", Name: "faces_total",
			Help: "Faces detected in processed frames.",
		}, []string{"camera"}),
		SkippedFaces: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "pipeline", Name: "skipped_faces_total",
			Help: "Faces not embedded, by reason (a quality check code, no_face_in_crop, or decided: the track already has its decision).",
		}, []string{"camera", "reason"}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate", Name: "decisions_total",
			Help: "Clearance decisions by outcome and reason.",
		}, []string{"camera", "decision", "reason"}),
		ActiveTracks: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "loopgate", Subsystem: "pipeline", Name: "active_tracks",
			Help: "Faces being followed now.",
		}, []string{"camera"}),
		DiscardedTracks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "pipeline", Name: "discarded_tracks_total",
			Help: "Tracks too short to be a traveller (fewer detections than min_track_hits): no decision.",
		}, []string{"camera"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "pipeline", Name: "errors_total",
			Help: "Stage failures (detect, embed, search) by stage.",
		}, []string{"camera", "stage"}),
	}
	if reg != nil {
		reg.MustRegister(m.Stage, m.FirstQualityToDecision, m.Frames, m.Faces, m.SkippedFaces, m.Decisions,
			m.ActiveTracks, m.DiscardedTracks, m.Errors)
	}
	return m
}

func (m *Metrics) stage(camera, stage string, d time.Duration) {
	if m != nil {
		m.Stage.WithLabelValues(camera, stage).Observe(d.Seconds())
	}
}

func (m *Metrics) frame(camera string) {
	if m != nil {
		m.Frames.WithLabelValues(camera).Inc()
	}
}

func (m *Metrics) faces(camera string, n int) {
	if m != nil {
		m.Faces.WithLabelValues(camera).Add(float64(n))
	}
}

func (m *Metrics) skipped(camera, reason string) {
	if m != nil {
		m.SkippedFaces.WithLabelValues(camera, reason).Inc()
	}
}

func (m *Metrics) failed(camera, stage string) {
	if m != nil {
		m.Errors.WithLabelValues(camera, stage).Inc()
	}
}

func (m *Metrics) discarded(camera string) {
	if m != nil {
		m.DiscardedTracks.WithLabelValues(camera).Inc()
	}
}

func (m *Metrics) decided(camera, outcome, reason string, firstQualityToDecision time.Duration) {
	if m == nil {
		return
	}
	m.Decisions.WithLabelValues(camera, outcome, reason).Inc()
	if firstQualityToDecision > 0 {
		m.FirstQualityToDecision.WithLabelValues(camera).Observe(firstQualityToDecision.Seconds())
	}
}

func (m *Metrics) activeTracks(camera string, n int) {
	if m != nil {
		m.ActiveTracks.WithLabelValues(camera).Set(float64(n))
	}
}

// initCamera creates a camera's decision and error series at zero, so
// rate() and increase() see their first event (a counter that appears at 1
// hides it) and alerts on a single event work.
func (m *Metrics) initCamera(camera string) {
	if m == nil {
		return
	}
	m.Decisions.WithLabelValues(camera, string(decision.Open), string(decision.Matched))
	for _, r := range []decision.Reason{decision.UnknownFace, decision.Ambiguous, decision.Revoked, decision.Expired,
		decision.NoUsableCapture, decision.ClaimMismatch, decision.ClaimExpired, decision.GalleryStale} {
		m.Decisions.WithLabelValues(camera, string(decision.Deny), string(r))
	}
	for _, stage := range []string{StageDetect, StageEmbed, StageSearch} {
		m.Errors.WithLabelValues(camera, stage)
	}
	m.Frames.WithLabelValues(camera)
	m.DiscardedTracks.WithLabelValues(camera)
}
