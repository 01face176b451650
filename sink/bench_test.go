package sink

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
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

// BenchmarkAuditSend is what the pipeline pays per decision for the audit
// sink: "memory" is the in-memory queue push; "spool" encodes, appends and
// fsyncs before returning, on the disk holding os.TempDir (override with
// LOOPGATE_BENCH_SPOOL_DIR to measure the gate node's own disk); "tmpfs"
// does the same in /dev/shm, where fsync costs nothing, which leaves the
// encoding and the write. The database is unreachable, so the writer only
// retries in the background and the spool grows.
func BenchmarkAuditSend(b *testing.B) {
	pool, err := pgxpool.New(context.Background(), "postgres://bench@127.0.0.1:1/bench?connect_timeout=1")
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	diskDir := os.Getenv("LOOPGATE_BENCH_SPOOL_DIR")
	if diskDir == "" {
		diskDir = os.TempDir()
	}
	for _, bc := range []struct{ name, parent string }{{"memory", ""}, {"spool", diskDir}, {"tmpfs", "/dev/shm"}} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := AuditConfig{QueueSize: 1 << 16, MinBackoff: time.Second, MaxBackoff: time.Second,
				FlushTimeout: time.Millisecond, Metrics: newMetrics(b), Logger: slog.New(slog.DiscardHandler)}
			if bc.parent != "" {
				dir, err := os.MkdirTemp(bc.parent, "loopgate-bench-spool-")
				if err != nil {
					b.Skipf("no directory for the spool: %v", err)
				}
				b.Cleanup(func() { os.RemoveAll(dir) })
				cfg.SpoolDir = dir
			}
			a, err := NewAudit(pool, cfg)
			if err != nil {
				b.Fatal(err)
			}
			e := testEvent(0)
			b.ReportAllocs()
			for b.Loop() {
				a.Send(e)
			}
			b.StopTimer()
			_ = a.Close()
			if cfg.SpoolDir != "" {
				b.ReportMetric(counter(cfg.Metrics.SpoolBytes.WithLabelValues("audit"))/float64(b.N), "spool-bytes/op")
				if fellBack := counter(cfg.Metrics.SpoolFallback.WithLabelValues("audit")); fellBack > 0 {
					b.Fatalf("%v events missed the spool", fellBack)
				}
			}
		})
	}
}
