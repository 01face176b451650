package camera

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the camera layer's Prometheus metrics, shared by every camera
// through the camera label. A nil *Metrics records nothing.
type Metrics struct {
	Up            *prometheus.GaugeVec
	Frames        *prometheus.CounterVec
	FramesDropped *prometheus.CounterVec
	ReadErrors    *prometheus.CounterVec
	OpenErrors    *prometheus.CounterVec
	Reconnects    *prometheus.CounterVec
}

// NewMetrics builds the camera metrics and registers them on reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "camera", Name: name, Help: help,
		}, []string{"camera"})
	}
	m := &Metrics{
		Up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "loopgate", Subsystem: "camera", Name: "up",
			Help: "1 while the camera delivers frames, 0 while it is down, reconnecting or stalled.",
		}, []string{"camera"}),
		Frames:        counter("frames_total", "Frames read from the source."),
		FramesDropped: counter("frames_dropped_total", "Frames replaced by a newer one before the consumer took them."),
		ReadErrors:    counter("read_errors_total", "Reads that failed on a live source (each one ends the connection)."),
		OpenErrors:    counter("open_errors_total", "Attempts to open the source that failed."),
		Reconnects:    counter("reconnects_total", "Attempts to open a live source again after it failed."),
	}
	if reg != nil {
		reg.MustRegister(m.Up, m.Frames, m.FramesDropped, m.ReadErrors, m.OpenErrors, m.Reconnects)
	}
	return m
}

// cameraMetrics are one camera's series, resolved once. The zero value
// (from a nil *Metrics) records nothing.
type cameraMetrics struct {
	up                                         prometheus.Gauge
	frames, dropped, readErrs, openErrs, recon prometheus.Counter
}

func (m *Metrics) forCamera(name string) cameraMetrics {
	if m == nil {
		return cameraMetrics{}
	}
	return cameraMetrics{
		up:       m.Up.WithLabelValues(name),
		frames:   m.Frames.WithLabelValues(name),
		dropped:  m.FramesDropped.WithLabelValues(name),
		readErrs: m.ReadErrors.WithLabelValues(name),
		openErrs: m.OpenErrors.WithLabelValues(name),
		recon:    m.Reconnects.WithLabelValues(name),
	}
}

func inc(c prometheus.Counter) {
	if c != nil {
		c.Inc()
	}
}

func (cm cameraMetrics) setUp(up bool) {
	if cm.up == nil {
		return
	}
	if up {
		cm.up.Set(1)
	} else {
		cm.up.Set(0)
	}
}
