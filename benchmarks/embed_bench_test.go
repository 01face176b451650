package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/detect"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/vision"
	"github.com/loopgate/loopgate/internal/runtimetune"
	"github.com/loopgate/loopgate/internal/testenv"
	"github.com/loopgate/loopgate/models"
)

// The benchmarks run the process as production runs it (runtimetune.Apply:
// one OpenBLAS thread, malloc thresholds fixed). To compare, run the test
// binary again with LOOPGATE_MALLOC_TUNE=off, with OPENBLAS_NUM_THREADS=2,
// or with LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/atlas (ATLAS instead of
// the system's libblas.so.3). glibc's malloc thresholds are process-wide
// and move with what ran before, so compare malloc settings one benchmark
// per process (-bench with a single name).
func init() { runtimetune.Apply() }

// embedScene is the 1280x720 obama frame and the face box YuNet finds in it:
// what the pipeline hands the embed stage.
type embedScene struct {
	frame gocv.Mat
	box   image.Rectangle
	yunet *detect.YuNet
}

func newEmbedScene(b *testing.B) *embedScene {
	b.Helper()
	modelPath := filepath.Join(testenv.ModelDir(b), detect.ModelName)
	if _, err := os.Stat(modelPath); err != nil {
		modelPath = filepath.Join(testenv.SharedDir(b), "models", detect.ModelName)
	}
	y, err := detect.NewYuNet(modelPath, detect.Config{})
	if err != nil {
		b.Fatal(err)
	}
	frame, err := gocv.IMDecode(testenv.SharedFile(b, "media/obama-720p.jpg"), gocv.IMReadColor)
	if err != nil || frame.Empty() {
		b.Fatalf("decode obama-720p.jpg: %v", err)
	}
	dets, err := y.Detect(frame)
	if err != nil || len(dets) != 1 {
		b.Fatalf("YuNet on obama-720p.jpg: %d faces, %v", len(dets), err)
	}
	s := &embedScene{frame: frame, box: dets[0].Box, yunet: y}
	b.Cleanup(func() { s.frame.Close(); s.yunet.Close() })
	return s
}

func newEmbedPool(b *testing.B, size int) *facerec.Pool {
	b.Helper()
	pool := loadEmbedPool(b, size)
	b.Cleanup(func() { pool.Close() })
	return pool
}

// loadEmbedPool loads a pool that the caller closes.
func loadEmbedPool(b *testing.B, size int) *facerec.Pool {
	b.Helper()
	start := time.Now()
	pool, err := facerec.NewPool(facerec.PoolConfig{Config: facerec.Config{ModelDir: testenv.ModelDir(b)}, Size: size})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("pool of %d loaded in %v; %s", size, time.Since(start).Round(time.Millisecond), tuningSummary())
	return pool
}

func tuningSummary() string {
	t := runtimetune.Current()
	return fmt.Sprintf("blas=%s threads=%d lib=%s malloc_tuned=%v", t.BLAS, t.BLASThreads, t.BLASLibrary, t.MallocTuned)
}

// BenchmarkCropEmbed is the per-face cost of the embed stage: cutting the
// YuNet box out of the full 1280x720 frame and encoding it (Crop), go-face's
// HOG re-detection, landmarks and ResNet on that crop (Embed), a crop with no
// face in it (EmbedNoFace), and crop+embed (CropEmbed), on one recogniser.
func BenchmarkCropEmbed(b *testing.B) {
	s := newEmbedScene(b)
	pool := newEmbedPool(b, 1)
	crop, err := vision.CropFace(s.frame, s.box, vision.CropOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("YuNet box %v → crop %v of frame %v, scale %.3f, %d bytes", s.box, crop.Size, crop.Rect, crop.Scale, len(crop.JPEG))
	ctx := context.Background()
	b.Run("Crop", func(b *testing.B) {
		defer reportEmbedCPU(b)()
		for b.Loop() {
			if _, err := vision.CropFace(s.frame, s.box, vision.CropOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Embed", func(b *testing.B) {
		defer reportEmbedCPU(b)()
		for b.Loop() {
			if _, err := pool.EmbedCrop(ctx, crop); err != nil {
				b.Fatal(err)
			}
		}
	})
	// A box of the same size on the wall beside the face: HOG finds
	// nothing, so hog+cnn runs dlib's CNN on the crop, which is what a
	// YuNet false positive, or a face HOG cannot see, costs.
	wall := s.box.Sub(image.Pt(s.box.Min.X-40, 0))
	blank, err := vision.CropFace(s.frame, wall, vision.CropOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("EmbedNoFace", func(b *testing.B) {
		defer reportEmbedCPU(b)()
		for b.Loop() {
			if _, err := pool.EmbedCrop(ctx, blank); !errors.Is(err, engine.ErrNoFace) {
				b.Fatalf("got %v, want ErrNoFace", err)
			}
		}
	})
	b.Run("CropEmbed", func(b *testing.B) {
		defer reportEmbedCPU(b)()
		for b.Loop() {
			c, err := vision.CropFace(s.frame, s.box, vision.CropOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := pool.EmbedCrop(ctx, c); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEmbedCropSize is go-face on crops of the 720p face scaled to
// several face widths (margin 0.6): HOG's cost grows with the crop's pixels.
func BenchmarkEmbedCropSize(b *testing.B) {
	s := newEmbedScene(b)
	pool := newEmbedPool(b, 1)
	ctx := context.Background()
	for _, face := range []int{100, 120, 140, 160} {
		crop, err := vision.CropFace(s.frame, s.box, vision.CropOptions{TargetFace: face})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("face=%d/crop=%d", face, crop.Size.X), func(b *testing.B) {
			defer reportEmbedCPU(b)()
			for b.Loop() {
				if _, err := pool.EmbedCrop(ctx, crop); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFrameLatency records every iteration of the per-frame path on
// the 720p frame and reports p50, p90 and max of wall and process CPU time,
// the minor page faults per frame, and logs the histograms (run with -v
// -benchtime 200x, one sub-benchmark per process, e.g.
// -bench 'FrameLatency/Detect$'):
//
//   - Detect: YuNet alone, in a process without dlib's models;
//   - CropEmbed: crop + go-face on the crop;
//   - DetectCropEmbed: YuNet on the frame, then crop + go-face.
//
// glibc handing freed memory back to the kernel shows up as hundreds of page
// faults per frame and a second mode in the histograms; compare with
// LOOPGATE_MALLOC_TUNE=off.
func BenchmarkFrameLatency(b *testing.B) {
	s := newEmbedScene(b)
	ctx := context.Background()
	// Loaded only when a sub-benchmark needs it, so that Detect alone runs
	// in a process without dlib.
	var pool *facerec.Pool
	defer func() {
		if pool != nil {
			pool.Close()
		}
	}()
	for _, c := range []struct {
		name          string
		detect, embed bool
	}{
		{"Detect", true, false},
		{"CropEmbed", false, true},
		{"DetectCropEmbed", true, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			if c.embed && pool == nil {
				pool = loadEmbedPool(b, 1)
			}
			var wall, cpu []time.Duration
			var faults int64
			for b.Loop() {
				start := time.Now()
				cpu0, faults0 := embedProcessUsage()
				box := s.box
				if c.detect {
					dets, err := s.yunet.Detect(s.frame)
					if err != nil || len(dets) != 1 {
						b.Fatalf("%d faces, %v", len(dets), err)
					}
					box = dets[0].Box
				}
				if c.embed {
					crop, err := vision.CropFace(s.frame, box, vision.CropOptions{})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := pool.EmbedCrop(ctx, crop); err != nil {
						b.Fatal(err)
					}
				}
				cpu1, faults1 := embedProcessUsage()
				wall = append(wall, time.Since(start))
				cpu = append(cpu, cpu1-cpu0)
				faults += faults1 - faults0
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(faults)/float64(len(wall)), "faults/op")
			b.Logf("%d frames, %s, %.0f minor page faults per frame", len(wall), tuningSummary(), float64(faults)/float64(len(wall)))
			reportEmbedLatency(b, "wall", wall)
			reportEmbedLatency(b, "cpu", cpu)
		})
	}
}

// BenchmarkPoolThroughput keeps a pool of 1 or 2 recognisers saturated with
// crops of the 720p face from two goroutines per recogniser and reports
// embeddings per second.
func BenchmarkPoolThroughput(b *testing.B) {
	s := newEmbedScene(b)
	crop, err := vision.CropFace(s.frame, s.box, vision.CropOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{1, 2} {
		b.Run(fmt.Sprintf("recognizers=%d", size), func(b *testing.B) {
			pool := newEmbedPool(b, size)
			ctx := context.Background()
			var (
				wg      sync.WaitGroup
				errOnce sync.Once
				firstEr error
			)
			work := make(chan struct{})
			defer reportEmbedCPU(b)()
			start := time.Now()
			for range 2 * size {
				wg.Go(func() {
					for range work {
						if _, err := pool.EmbedCrop(ctx, crop); err != nil {
							errOnce.Do(func() { firstEr = err })
						}
					}
				})
			}
			for b.Loop() {
				work <- struct{}{}
			}
			close(work)
			wg.Wait()
			elapsed := time.Since(start)
			if firstEr != nil {
				b.Fatal(firstEr)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "embeddings/s")
			if pool.Busy() != 0 {
				b.Fatalf("%d recognisers still busy", pool.Busy())
			}
		})
	}
}

// BenchmarkPoolLoad is a pool's start-up: hashing the model files once
// (Verify, included in every NewPool), then loading each recogniser, in
// parallel. With two free cores, recognizers=2 costs about what
// recognizers=1 does in wall time and twice its CPU time.
func BenchmarkPoolLoad(b *testing.B) {
	dir := testenv.ModelDir(b)
	b.Run("Verify", func(b *testing.B) {
		defer reportEmbedCPU(b)()
		for b.Loop() {
			if _, err := models.Verify(dir); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, size := range []int{1, 2} {
		b.Run(fmt.Sprintf("recognizers=%d", size), func(b *testing.B) {
			defer reportEmbedCPU(b)()
			for b.Loop() {
				pool, err := facerec.NewPool(facerec.PoolConfig{Config: facerec.Config{ModelDir: dir}, Size: size})
				if err != nil {
					b.Fatal(err)
				}
				pool.Close()
			}
		})
	}
}

// reportEmbedCPU adds the process's CPU time (user+system, all threads) and
// minor page faults per op: on a machine shared with other work CPU time
// moves far less than wall time, and page faults show memory handed back to
// the kernel and faulted in again.
func reportEmbedCPU(b *testing.B) func() {
	cpu0, faults0 := embedProcessUsage()
	return func() {
		if b.N > 0 {
			cpu1, faults1 := embedProcessUsage()
			b.ReportMetric(float64(cpu1-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(faults1-faults0)/float64(b.N), "faults/op")
		}
	}
}

func embedProcessUsage() (cpu time.Duration, minorFaults int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Minflt
}

func reportEmbedLatency(b *testing.B, name string, took []time.Duration) {
	b.Helper()
	took = slices.Clone(took)
	slices.Sort(took)
	q := func(p float64) time.Duration { return took[min(len(took)-1, int(p*float64(len(took))))] }
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(q(0.5)), name+"-p50-ms")
	b.ReportMetric(ms(q(0.9)), name+"-p90-ms")
	b.ReportMetric(ms(took[len(took)-1]), name+"-max-ms")
	// 2 ms buckets from the fastest run.
	const bucket = 2
	lo := int(ms(took[0])) / bucket * bucket
	counts := map[int]int{}
	for _, d := range took {
		counts[(int(ms(d))-lo)/bucket]++
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s time, %d ms buckets:\n", name, bucket)
	for i := 0; i <= (int(ms(took[len(took)-1]))-lo)/bucket; i++ {
		if counts[i] > 0 {
			fmt.Fprintf(&sb, "  %4d ms %4d %s\n", lo+i*bucket, counts[i], strings.Repeat("#", int(math.Ceil(float64(counts[i])*60/float64(len(took))))))
		}
	}
	b.Log(sb.String())
}
