package sink

import (
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"log/slog"
	"testing"
)

// BenchmarkJSONLSend is what the pipeline pays per decision for a sink: the
// non-blocking queue push (the write happens on the sink's goroutine). A
// benchmark loop sends faster than any writer drains, so this measures the
// overload path too: "dropped" says how many were evicted.
func BenchmarkJSONLSend(b *testing.B) {
	m := newMetrics(b)
	j := JSONLines(io.Discard, JSONLOptions{QueueSize: 1 << 16, Metrics: m, Logger: slog.New(slog.DiscardHandler)})
	e := testEvent(0)
	b.ReportAllocs()
	for b.Loop() {
		j.Send(e)
	}
	b.StopTimer()
	_ = j.Close()
	b.ReportMetric(counter(m.Dropped.WithLabelValues("jsonl", DropQueueFull)), "dropped")
}

func newMetrics(testing.TB) *Metrics { return NewMetrics(prometheus.NewRegistry()) }
