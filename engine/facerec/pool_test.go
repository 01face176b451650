package facerec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/vision"
	"github.com/loopgate/loopgate/internal/testenv"
)

func newPool(t *testing.T, size int, reg prometheus.Registerer) *Pool {
	t.Helper()
	p, err := NewPool(PoolConfig{Config: Config{ModelDir: testenv.ModelDir(t)}, Size: size, Metrics: NewPoolMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// lfwJPEGs returns normalised JPEGs of a few LFW faces.
func lfwJPEGs(t *testing.T) [][]byte {
	t.Helper()
	dec := vision.NewDecoder(engine.ImageLimits{})
	var out [][]byte
	for _, rel := range []string{
		"Colin_Powell/Colin_Powell_0001.jpg",
		"Tony_Blair/Tony_Blair_0001.jpg",
		"Serena_Williams/Serena_Williams_0001.jpg",
		"Hugo_Chavez/Hugo_Chavez_0001.jpg",
	} {
		data, err := os.ReadFile(filepath.Join(testenv.SharedDir(t), "datasets", "lfw", "images", rel))
		if err != nil {
			t.Fatal(err)
		}
		img, err := dec.Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, img.JPEG)
	}
	return out
}

// TestPoolConcurrentResults embeds the same images from many goroutines at
// once: every result must equal the one a lone recogniser gives, and the
// busy count must rise while they run and go back to 0.
func TestPoolConcurrentResults(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := newPool(t, 2, reg)
	if p.Size() != 2 || p.ModelTag() == "" || p.ModelTag() == "unknown" || len(p.Models()) == 0 {
		t.Fatalf("size %d, tag %q, %d models", p.Size(), p.ModelTag(), len(p.Models()))
	}
	images := lfwJPEGs(t)
	lone := newRecognizer(t)
	want := make([][]engine.Face, len(images))
	for i, img := range images {
		faces, err := lone.Faces(img)
		if err != nil || len(faces) == 0 {
			t.Fatalf("image %d: %d faces, %v", i, len(faces), err)
		}
		want[i] = faces
	}

	const workers, rounds = 6, 3
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		maxBusy  int
		failures []string
	)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			b := p.Busy()
			mu.Lock()
			maxBusy = max(maxBusy, b)
			mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}()
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				i := (w + r) % len(images)
				got, err := p.Faces(images[i])
				if err == nil && len(got) != len(want[i]) {
					err = fmt.Errorf("%d faces, want %d", len(got), len(want[i]))
				}
				for j := range got {
					// Same code on the same input: identical up to float rounding.
					if err == nil && (engine.Distance(got[j].Embedding, want[i][j].Embedding) > 1e-6 || got[j].Box != want[i][j].Box) {
						err = fmt.Errorf("face %d differs: box %v vs %v, distance %g", j, got[j].Box, want[i][j].Box, engine.Distance(got[j].Embedding, want[i][j].Embedding))
					}
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("worker %d image %d: %v", w, i, err))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-sampled
	for _, f := range failures {
		t.Error(f)
	}
	if p.Busy() != 0 {
		t.Errorf("Busy() = %d after all calls returned, want 0", p.Busy())
	}
	if maxBusy < 1 || maxBusy > p.Size() {
		t.Errorf("largest Busy() seen while running: %d, want 1..%d", maxBusy, p.Size())
	}
	t.Logf("%d calls on %d goroutines; largest Busy() seen %d", workers*rounds, workers, maxBusy)
	got := gathered(t, reg)
	if v := got["loopgate_recognizers_busy"].GetGauge().GetValue(); v != 0 {
		t.Errorf("loopgate_recognizers_busy = %v, want 0", v)
	}
	if v := got["loopgate_recognizers"].GetGauge().GetValue(); v != 2 {
		t.Errorf("loopgate_recognizers = %v, want 2", v)
	}
	for _, name := range []string{"loopgate_recognizer_seconds", "loopgate_recognizer_wait_seconds"} {
		if n := got[name].GetHistogram().GetSampleCount(); n != workers*rounds {
			t.Errorf("%s counted %d calls, want %d", name, n, workers*rounds)
		}
	}
}

// gathered returns each registered metric (one series per name here).
func gathered(t *testing.T, reg *prometheus.Registry) map[string]*dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.Metric{}
	for _, f := range families {
		if len(f.GetMetric()) == 1 {
			out[f.GetName()] = f.GetMetric()[0]
		}
	}
	return out
}

// TestPoolWaitHonoursContext takes the only recogniser out of the pool, as a
// long call would, and checks that a waiting call gives up with its context
// and that Close makes waiting calls return.
func TestPoolWaitHonoursContext(t *testing.T) {
	p := newPool(t, 1, nil)
	img := lfwJPEGs(t)[0]
	held, err := p.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p.Busy() != 1 {
		t.Fatalf("Busy() = %d with the recogniser held, want 1", p.Busy())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := p.FacesContext(ctx, img); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	p.release(held)
	// A cancelled context loses even against a free recogniser.
	if _, err := p.FacesContext(cancelled, img); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}

	held, err = p.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error, 1)
	go func() {
		_, err := p.Faces(img)
		waiting <- err
	}()
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	if err := <-waiting; !errors.Is(err, ErrPoolClosed) {
		t.Fatalf("waiting call got %v, want ErrPoolClosed", err)
	}
	select {
	case <-closed:
		t.Fatal("Close returned while a recogniser was still in use")
	case <-time.After(20 * time.Millisecond):
	}
	p.release(held)
	<-closed
	if _, err := p.Faces(img); !errors.Is(err, ErrPoolClosed) {
		t.Fatalf("after Close: got %v, want ErrPoolClosed", err)
	}
	if p.Busy() != 0 {
		t.Fatalf("Busy() = %d after Close, want 0", p.Busy())
	}
}

func TestPoolRefusesBadConfig(t *testing.T) {
	if _, err := NewPool(PoolConfig{Config: Config{ModelDir: testenv.ModelDir(t), Detector: "sift"}}); err == nil {
		t.Fatal("unknown detector accepted")
	}
	if _, err := NewPool(PoolConfig{Config: Config{ModelDir: t.TempDir()}, Size: 2}); err == nil {
		t.Fatal("empty model directory accepted")
	}
}
