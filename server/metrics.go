package server

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the gate node's HTTP-side metrics. Build them once and give
// the same value to NewBroadcaster and Deps. A nil *Metrics records nothing.
type Metrics struct {
	Requests      *prometheus.CounterVec
	LoginAttempts *prometheus.CounterVec
	Subscribers   prometheus.Gauge
	SlowDropped   prometheus.Counter
	Broadcast     prometheus.Counter
	FramesServed  prometheus.Counter
	Claims        *prometheus.CounterVec
}

// NewMetrics builds the metrics and registers them on reg (when non-nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		LoginAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "http", Name: "login_attempts_total",
			Help: "Browser logins by result (ok, bad_token, csrf, rate_limited).",
		}, []string{"result"}),
		Subscribers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "loopgate", Subsystem: "events", Name: "subscribers",
			Help: "Open server-sent-event streams of decisions.",
		}),
		SlowDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "events", Name: "slow_subscribers_dropped_total",
			Help: "Decision streams closed because the client did not keep up.",
		}),
		Broadcast: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "events", Name: "broadcast_total",
			Help: "Decisions handed to the live stream.",
		}),
		FramesServed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "live", Name: "frames_served_total",
			Help: "Annotated camera frames sent to live pages.",
		}),
		Claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "claims", Name: "requests_total",
			Help: "Lane claims by result code.",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.LoginAttempts, m.Subscribers, m.SlowDropped, m.Broadcast, m.FramesServed, m.Claims)
	}
	return m
}

func (m *Metrics) request(route string, code int) {
	if m != nil {
		m.Requests.WithLabelValues(route, statusLabel(code)).Inc()
	}
}

func (m *Metrics) login(result string) {
	if m != nil {
		m.LoginAttempts.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) subscribers(delta float64) {
	if m != nil {
		m.Subscribers.Add(delta)
	}
}

func (m *Metrics) slowDropped() {
	if m != nil {
		m.SlowDropped.Inc()
	}
}

func (m *Metrics) broadcast() {
	if m != nil {
		m.Broadcast.Inc()
	}
}

func (m *Metrics) frameServed() {
	if m != nil {
		m.FramesServed.Inc()
	}
}

func (m *Metrics) claim(result string) {
	if m != nil {
		m.Claims.WithLabelValues(result).Inc()
	}
}

func statusLabel(code int) string {
	const digits = "0123456789"
	if code < 100 || code > 999 {
		return "other"
	}
	return string([]byte{digits[code/100], digits[code/10%10], digits[code%10]})
}
