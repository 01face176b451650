package quality

import "github.com/prometheus/client_golang/prometheus"

// Metrics count quality verdicts. A nil *Metrics records nothing.
type Metrics struct {
	// Assessed counts faces assessed, by profile and outcome
	// ("accepted" or "rejected").
	Assessed *prometheus.CounterVec
	// Failures counts failed checks, by profile and check code: a face
	// that fails two checks counts in both.
	Failures *prometheus.CounterVec
}

// NewMetrics builds the metrics and registers them on reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Assessed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate",
			Name:      "quality_assessed_total",
			Help:      "Faces assessed by the quality gate, by profile and outcome.",
		}, []string{"profile", "outcome"}),
		Failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate",
			Name:      "quality_failures_total",
			Help:      "Failed quality checks, by profile and check code.",
		}, []string{"profile", "check"}),
	}
	if reg != nil {
		reg.MustRegister(m.Assessed, m.Failures)
	}
	return m
}

// Observe records one report.
func (m *Metrics) Observe(r Report) {
	if m == nil {
		return
	}
	outcome := "rejected"
	if r.Accepted {
		outcome = "accepted"
	}
	m.Assessed.WithLabelValues(r.Profile, outcome).Inc()
	for _, f := range r.Failures {
		m.Failures.WithLabelValues(r.Profile, f.Check).Inc()
	}
}
