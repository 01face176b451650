package sink

import "github.com/prometheus/client_golang/prometheus"

// Label values of loopgate_sink_dropped_total{reason}.
const (
	// DropQueueFull: the queue was full; the oldest queued event made room.
	DropQueueFull = "queue_full"
	// DropClosed: Send after Close.
	DropClosed = "closed"
	// DropShutdown: still queued when Close's flush deadline passed.
	DropShutdown = "shutdown"
	// DropStale: older than the sink's MaxAge when its turn came.
	DropStale = "stale"
	// DropSpoolDamaged: on disk in the spool, but the disk could no longer
	// read the segment holding it back.
	DropSpoolDamaged = "spool_damaged"
)

// Label values of loopgate_sink_spool_errors_total{reason}.
const (
	// SpoolErrLimit: the spool already held SpoolMaxBytes; the event was
	// kept in memory instead.
	SpoolErrLimit = "limit"
	// SpoolErrDiskFull: the file system is full (ENOSPC, EDQUOT); the event
	// was kept in memory instead.
	SpoolErrDiskFull = "disk_full"
	// SpoolErrIO: any other failed write, fsync or read of the spool.
	SpoolErrIO = "io"
	// SpoolErrCorrupt: a torn or damaged record (the tail of a write cut
	// short by a crash) was skipped.
	SpoolErrCorrupt = "corrupt"
)

// Label values of loopgate_sink_failed_total{reason}. Reasons ending in an
// attempt (network, http_5xx, database) are retried; the others end the
// event's delivery.
const (
	FailNetwork     = "network"        // connection error or timeout; retried
	FailStatus5xx   = "http_5xx"       // receiver error; retried
	FailThrottled   = "http_throttled" // 408 or 429; retried
	FailStatus4xx   = "http_4xx"       // the receiver refused the event; not retried
	FailStatusOther = "http_other"     // 1xx or 3xx (redirects are not followed); not retried
	FailGaveUp      = "gave_up"        // MaxAttempts reached
	FailMarshal     = "marshal"        // the event could not be encoded
	FailWrite       = "write"          // a JSON-lines write or flush failed
	FailDatabase    = "database"       // a transient database error; retried
	FailRejected    = "rejected"       // the database refused the row for good (constraint, data)
	FailPersonGone  = "person_gone"    // person_id no longer exists; stored with person_id NULL
)

// Metrics are the sinks' Prometheus metrics, labelled by sink name. A nil
// *Metrics records nothing.
type Metrics struct {
	Delivered   *prometheus.CounterVec
	Retried     *prometheus.CounterVec
	Dropped     *prometheus.CounterVec
	Failed      *prometheus.CounterVec
	QueueLength *prometheus.GaugeVec
	// Spooled sinks (the audit sink with a SpoolDir) only.
	SpoolErrors   *prometheus.CounterVec
	SpoolBytes    *prometheus.GaugeVec
	SpoolFallback *prometheus.GaugeVec
}

// NewMetrics builds the sink metrics and registers them on reg (when non-nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "sink", Name: "delivered_total",
			Help: "Decision events a sink delivered (written, accepted by the receiver, stored).",
		}, []string{"sink"}),
		Retried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "sink", Name: "retries_total",
			Help: "Delivery attempts repeated after a transient failure.",
		}, []string{"sink"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "sink", Name: "dropped_total",
			Help: "Decision events a sink discarded without delivering them, by reason.",
		}, []string{"sink", "reason"}),
		Failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "sink", Name: "failed_total",
			Help: "Failed delivery attempts or events, by reason.",
		}, []string{"sink", "reason"}),
		QueueLength: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "loopgate", Subsystem: "sink", Name: "queue_length",
			Help: "Events waiting in a sink's queue (the backlog; for a spooled sink, on disk and in memory).",
		}, []string{"sink"}),
		SpoolErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "sink", Name: "spool_errors_total",
			Help: "Spool failures, by reason: limit and disk_full mean an event was kept in memory instead of on disk.",
		}, []string{"sink", "reason"}),
		SpoolBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "loopgate", Subsystem: "sink", Name: "spool_bytes",
			Help: "Bytes in a sink's on-disk spool (segment files).",
		}, []string{"sink"}),
		SpoolFallback: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "loopgate", Subsystem: "sink", Name: "spool_fallback_length",
			Help: "Events a spooled sink holds only in memory because its spool could not take them (lost on a crash).",
		}, []string{"sink"}),
	}
	if reg != nil {
		reg.MustRegister(m.Delivered, m.Retried, m.Dropped, m.Failed, m.QueueLength,
			m.SpoolErrors, m.SpoolBytes, m.SpoolFallback)
	}
	return m
}

func (m *Metrics) delivered(sink string) {
	if m != nil {
		m.Delivered.WithLabelValues(sink).Inc()
	}
}

func (m *Metrics) retried(sink string) {
	if m != nil {
		m.Retried.WithLabelValues(sink).Inc()
	}
}

func (m *Metrics) dropped(sink, reason string, n int) {
	if m != nil && n > 0 {
		m.Dropped.WithLabelValues(sink, reason).Add(float64(n))
	}
}

func (m *Metrics) failed(sink, reason string) {
	if m != nil {
		m.Failed.WithLabelValues(sink, reason).Inc()
	}
}

func (m *Metrics) queueLength(sink string, n int) {
	if m != nil {
		m.QueueLength.WithLabelValues(sink).Set(float64(n))
	}
}

func (m *Metrics) spoolError(sink, reason string) {
	if m != nil {
		m.SpoolErrors.WithLabelValues(sink, reason).Inc()
	}
}

func (m *Metrics) spoolBytes(sink string, n int64) {
	if m != nil {
		m.SpoolBytes.WithLabelValues(sink).Set(float64(n))
	}
}

func (m *Metrics) spoolFallback(sink string, n int) {
	if m != nil {
		m.SpoolFallback.WithLabelValues(sink).Set(float64(n))
	}
}
