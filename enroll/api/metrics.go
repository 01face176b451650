package api

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loopgate/loopgate/enroll"
)

// Metrics are the enrolment API's. Labels carry routes, status codes and
// reason codes only, never names or ids. A nil *Metrics records nothing.
type Metrics struct {
	Requests        *prometheus.CounterVec
	Duration        *prometheus.HistogramVec
	LoginAttempts   *prometheus.CounterVec
	Photos          *prometheus.CounterVec
	PhotoRejections *prometheus.CounterVec
}

// NewMetrics builds the metrics and registers them on reg (when non-nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "enrol_api", Name: "requests_total",
			Help: "Enrolment API requests by route pattern and status code.",
		}, []string{"route", "code"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "loopgate", Subsystem: "enrol_api", Name: "request_seconds",
			Help:    "Enrolment API request duration by route pattern (photo routes include face analysis).",
			Buckets: []float64{0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30},
		}, []string{"route"}),
		LoginAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "enrol_api", Name: "login_attempts_total",
			Help: "Logins by result (ok, bad_credentials, rate_limited_address, rate_limited_account, invalid).",
		}, []string{"result"}),
		Photos: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "enrol_api", Name: "photos_total",
			Help: "Photos checked, by result (accepted, rejected).",
		}, []string{"result"}),
		PhotoRejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "enrol_api", Name: "photo_rejection_reasons_total",
			Help: "Reasons photos were refused, by reason code.",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.Duration, m.LoginAttempts, m.Photos, m.PhotoRejections)
	}
	return m
}

func (m *Metrics) request(route string, code int, elapsed time.Duration) {
	if m == nil {
		return
	}
	m.Requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.Duration.WithLabelValues(route).Observe(elapsed.Seconds())
}

func (m *Metrics) login(result string) {
	if m != nil {
		m.LoginAttempts.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) photos(reports []enroll.PhotoReport) {
	if m == nil {
		return
	}
	for _, p := range reports {
		if p.Accepted {
			m.Photos.WithLabelValues("accepted").Inc()
			continue
		}
		m.Photos.WithLabelValues("rejected").Inc()
		for _, r := range p.Reasons {
			m.PhotoRejections.WithLabelValues(r.Code).Inc()
		}
	}
}
