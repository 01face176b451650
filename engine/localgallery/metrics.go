package localgallery

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Label values of loopgate_gallery_refresh_total{result}.
const (
	RefreshFull      = "full"      // everything reloaded
	RefreshChanges   = "changes"   // the feed named people; they were reloaded
	RefreshUnchanged = "unchanged" // nothing changed
	RefreshError     = "error"     // the database did not answer; the copy stays as it was
)

// Metrics are the copy's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	People         prometheus.Gauge
	Templates      prometheus.Gauge
	Refreshes      *prometheus.CounterVec
	RefreshSeconds prometheus.Histogram
	ChangesApplied prometheus.Counter
	// age is read at scrape time, so the gauge keeps growing while a
	// refresh hangs on an unreachable database.
	age atomic.Pointer[func() float64]
}

// NewMetrics builds the metrics and registers them on reg (when non-nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		People: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "loopgate", Subsystem: "gallery", Name: "copy_people",
			Help: "People in the node's local copy of the gallery (its gate scope, any status).",
		}),
		Templates: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "loopgate", Subsystem: "gallery", Name: "copy_templates",
			Help: "Face templates of the node's model in the local copy.",
		}),
		Refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "gallery", Name: "refresh_total",
			Help: "Refreshes of the local copy from the database, by result (full, changes, unchanged, error).",
		}, []string{"result"}),
		RefreshSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "loopgate", Subsystem: "gallery", Name: "refresh_seconds",
			Help:    "Time one refresh of the local copy took, failed ones included.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		ChangesApplied: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "loopgate", Subsystem: "gallery", Name: "changes_applied_total",
			Help: "People reloaded into the local copy because the change feed named them.",
		}),
	}
	ageFn := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "loopgate", Subsystem: "gallery", Name: "copy_age_seconds",
		Help: "Seconds since the local copy was last known to match the database (+Inf: never); beyond gallery.max_staleness the node denies everyone.",
	}, func() float64 {
		if f := m.age.Load(); f != nil {
			return (*f)()
		}
		return math.Inf(1)
	})
	if reg != nil {
		reg.MustRegister(m.People, m.Templates, m.Refreshes, m.RefreshSeconds, m.ChangesApplied, ageFn)
	}
	return m
}

func (m *Metrics) bind(c *Copy) {
	if m == nil {
		return
	}
	f := func() float64 {
		fresh := c.FreshAsOf()
		if fresh.IsZero() {
			return math.Inf(1)
		}
		return time.Since(fresh).Seconds()
	}
	m.age.Store(&f)
}

func (m *Metrics) refreshed(result string, took time.Duration) {
	if m == nil {
		return
	}
	m.Refreshes.WithLabelValues(result).Inc()
	m.RefreshSeconds.Observe(took.Seconds())
}

func (m *Metrics) size(s *state) {
	if m == nil || s == nil {
		return
	}
	m.People.Set(float64(len(s.people)))
	m.Templates.Set(float64(s.templates))
}

func (m *Metrics) applied(n int) {
	if m != nil {
		m.ChangesApplied.Add(float64(n))
	}
}
