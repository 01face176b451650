package camera

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/internal/testenv"
)

// clipPath is the real 275-frame, 640x360, 29.97 fps stage clip.
func clipPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(testenv.SharedDir(t), "media", "short_hamilton_clip.mp4")
}

// lfwImage reads a real LFW face photo (250x250 BGR).
func lfwImage(t *testing.T) gocv.Mat {
	t.Helper()
	path := filepath.Join(testenv.SharedDir(t), "datasets", "lfw", "images", "Aaron_Eckhart", "Aaron_Eckhart_0001.jpg")
	m := gocv.IMRead(path, gocv.IMReadColor)
	if m.Empty() {
		t.Fatalf("cannot read %s", path)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// run is a camera running in the background for a test.
type run struct {
	t      *testing.T
	cam    *Camera
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// running starts cam.Run. Cleanup cancels it, waits for Run and closes the
// camera.
func running(t *testing.T, cam *Camera) *run {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{t: t, cam: cam, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- cam.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		r.wait()
		cam.Close()
	})
	return r
}

// wait returns Run's result. The bound only turns a Run that ignores its
// context into a failure instead of a hung test; it measures nothing.
func (r *run) wait() error {
	r.once.Do(func() {
		select {
		case r.err = <-r.done:
		case <-time.After(20 * time.Second):
			r.t.Errorf("camera %s: Run did not return", r.cam.Name())
		}
	})
	return r.err
}

// eventually polls cond until it holds, failing after a generous deadline:
// it waits for events, it does not measure speed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metric reads the value of a camera's series from a real registry;
// found is false when the series does not exist.
func metric(t *testing.T, reg *prometheus.Registry, name, camera string) (value float64, found bool) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Error(err) // may run on the camera's goroutine: no Fatal
		return 0, false
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabel(m, "camera", camera) {
				continue
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name && lp.GetValue() == value {
			return true
		}
	}
	return false
}

// logRecorder is a slog.Handler keeping every record, to check what the
// camera reports (transitions, backoff delays).
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// attrs returns attribute key of every record with message msg, in order.
func (l *logRecorder) attrs(msg, key string) []slog.Value {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []slog.Value
	for _, r := range l.recs {
		if r.Message != msg {
			continue
		}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == key {
				out = append(out, a.Value)
				return false
			}
			return true
		})
	}
	return out
}

func (l *logRecorder) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if r.Message == msg {
			n++
		}
	}
	return n
}
