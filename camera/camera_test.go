package camera

import (
	"context"
	"errors"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loopgate/loopgate/engine/vision"
)

const (
	clipFrames = 275
	clipFPS    = 29.97
)

func openClip(t *testing.T, opts Options) *Camera {
	t.Helper()
	spec, err := ParseURI("file://" + clipPath(t))
	if err != nil {
		t.Fatal(err)
	}
	cam, err := New(spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	return cam
}

func checksum(t *testing.T, f vision.Frame) uint32 {
	t.Helper()
	return crc32.ChecksumIEEE(f.Mat.ToBytes())
}

// TestFileFastReadsEveryFrame reads the real clip as fast as the consumer
// takes it: fast mode is lossless, so every frame is taken, in order, with
// monotonic Seq and Captured, and a frame
// the consumer holds is never touched by the reader that recycles Mats.
func TestFileFastReadsEveryFrame(t *testing.T) {
	reg := prometheus.NewRegistry()
	cam := openClip(t, Options{Name: "clip", Fast: true, Metrics: NewMetrics(reg)})
	info := cam.Info()
	if info.Width != 640 || info.Height != 360 || math.Abs(info.FPS-clipFPS) > 0.01 || info.Frames != clipFrames {
		t.Fatalf("Info() = %+v, want 640x360 at %.2f fps, %d frames", info, clipFPS, clipFrames)
	}
	r := running(t, cam)

	ctx := context.Background()
	var (
		taken, gaps int64
		last        vision.Frame
		lastSum     uint32
		distinct    = map[uint32]bool{}
	)
	for {
		f, err := cam.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Next after %d frames: %v", taken, err)
		}
		if f.Camera != "clip" || f.Mat.Cols() != 640 || f.Mat.Rows() != 360 || f.Mat.Channels() != 3 {
			t.Fatalf("frame seq %d: camera %q, %dx%dx%d", f.Seq, f.Camera, f.Mat.Cols(), f.Mat.Rows(), f.Mat.Channels())
		}
		if taken == 0 {
			gaps += f.Seq
		} else {
			if f.Seq <= last.Seq {
				t.Fatalf("Seq %d after %d", f.Seq, last.Seq)
			}
			if f.Captured.Before(last.Captured) {
				t.Fatalf("seq %d captured %v before seq %d at %v", f.Seq, f.Captured, last.Seq, last.Captured)
			}
			gaps += f.Seq - last.Seq - 1
			// The previous frame was held while this one was read: its
			// pixels must be exactly as they were handed over.
			if got := checksum(t, last); got != lastSum {
				t.Fatalf("frame seq %d changed while the consumer held it", last.Seq)
			}
			last.Close()
		}
		last, lastSum = f, checksum(t, f)
		distinct[lastSum] = true
		taken++
	}
	last.Close()
	if err := r.wait(); err != nil {
		t.Fatalf("Run = %v, want nil at the end of a non-looping file", err)
	}
	if _, err := cam.Next(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("Next after the end = %v, want io.EOF", err)
	}

	st := cam.Stats()
	t.Logf("read %d, taken %d, dropped %d; camera-owned Mats peaked at %d", st.FramesRead, taken, st.FramesDropped, cam.maxLiveMats.Load())
	if st.FramesRead != clipFrames || taken != clipFrames || st.FramesDropped != 0 || gaps != 0 {
		t.Fatalf("stats %+v with %d taken and %d Seq gaps: want all %d read and taken, none dropped", st, taken, gaps, clipFrames)
	}
	if last.Seq != clipFrames-1 {
		t.Fatalf("last frame has Seq %d, want %d: the final frame must not be dropped", last.Seq, clipFrames-1)
	}
	if len(distinct) < int(taken)/2 {
		t.Fatalf("only %d distinct images among %d frames", len(distinct), taken)
	}
	for name, want := range map[string]float64{
		"loopgate_camera_frames_total":         clipFrames,
		"loopgate_camera_frames_dropped_total": float64(st.FramesDropped),
		"loopgate_camera_up":                   0,
		"loopgate_camera_reconnects_total":     0,
	} {
		if got, ok := metric(t, reg, name, "clip"); !ok || got != want {
			t.Errorf("%s{camera=clip} = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if n := cam.liveMats.Load(); n != 0 {
		t.Errorf("%d camera-owned Mats still open after the end", n)
	}
	if n := cam.maxLiveMats.Load(); n > 2 {
		t.Errorf("camera owned %d Mats at once, want at most 2", n)
	}
}

// TestFileRealtimePacing checks that a paced file releases frames no
// faster than its own frame rate (a lower bound of a sleep, not a speed).
func TestFileRealtimePacing(t *testing.T) {
	cam := openClip(t, Options{Name: "paced"})
	start := time.Now()
	r := running(t, cam)
	first, err := cam.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	last, err := cam.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for last.Seq < 29 {
		f, err := cam.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		last.Close()
		last = f
	}
	elapsed := time.Since(start)
	span := last.Captured.Sub(first.Captured)
	wantSpan := time.Duration(float64(last.Seq-first.Seq) / clipFPS * float64(time.Second))
	t.Logf("30 frames in %v; Captured of seq %d..%d spans %v (file rate: %v)", elapsed, first.Seq, last.Seq, span, wantSpan)
	first.Close()
	last.Close()
	if elapsed < 800*time.Millisecond {
		t.Errorf("30 frames at %.2f fps came in %v, want ≥ 0.8 s", clipFPS, elapsed)
	}
	if span < wantSpan*9/10 {
		t.Errorf("Captured spans %v over seq %d..%d, want ≥ %v", span, first.Seq, last.Seq, wantSpan*9/10)
	}

	// Cancelling stops a paced reader in the middle of its sleep.
	r.cancel()
	if err := r.wait(); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	if _, err := cam.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after cancel = %v, want ErrClosed", err)
	}
	if n := cam.liveMats.Load(); n != 0 {
		t.Errorf("%d camera-owned Mats open after Run returned", n)
	}
}

// TestFileLoop wraps the clip twice: Seq keeps growing past 275 while the
// stream's own PTS starts again.
func TestFileLoop(t *testing.T) {
	cam := openClip(t, Options{Name: "loop", Loop: true, Fast: true})
	r := running(t, cam)
	prev, err := cam.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wraps := 0
	for prev.Seq < 2*clipFrames+10 {
		f, err := cam.Next(context.Background())
		if err != nil {
			t.Fatalf("Next after seq %d: %v", prev.Seq, err)
		}
		if f.Seq <= prev.Seq {
			t.Fatalf("Seq %d after %d", f.Seq, prev.Seq)
		}
		if f.PTS < prev.PTS {
			wraps++
		}
		prev.Close()
		prev = f
	}
	prev.Close()
	st := cam.Stats()
	t.Logf("looped to seq %d: %d wraps seen, %d read, %d dropped", prev.Seq, wraps, st.FramesRead, st.FramesDropped)
	if wraps < 2 {
		t.Errorf("saw the PTS wrap %d times past seq %d, want 2", wraps, prev.Seq)
	}
	if st.FramesRead <= 2*clipFrames || st.Reconnects != 0 || st.OpenErrors != 0 {
		t.Errorf("stats %+v: want > %d read, no reconnects (looping is not a failure)", st, 2*clipFrames)
	}
	r.cancel()
	if err := r.wait(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if n := cam.liveMats.Load(); n != 0 {
		t.Errorf("%d camera-owned Mats open after Run returned", n)
	}
}

// TestSlowConsumerDropsFrames: a consumer spending 100 ms per frame on a
// file played at its own rate (as a camera delivers) sees gaps, every gap
// is counted, and the camera never holds more than its read buffer and the
// mailbox slot.
func TestSlowConsumerDropsFrames(t *testing.T) {
	reg := prometheus.NewRegistry()
	cam := openClip(t, Options{Name: "slow", Metrics: NewMetrics(reg)})
	r := running(t, cam)
	var taken, gaps, lastSeq int64 = 0, 0, -1
	for {
		f, err := cam.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		gaps += f.Seq - lastSeq - 1
		lastSeq = f.Seq
		taken++
		time.Sleep(100 * time.Millisecond) // the "work" on this frame
		f.Close()
	}
	if err := r.wait(); err != nil {
		t.Fatal(err)
	}
	st := cam.Stats()
	dropped, _ := metric(t, reg, "loopgate_camera_frames_dropped_total", "slow")
	t.Logf("slow consumer took %d frames, %d dropped (metric %v); camera-owned Mats peaked at %d",
		taken, st.FramesDropped, dropped, cam.maxLiveMats.Load())
	if st.FramesDropped == 0 || gaps != st.FramesDropped || taken+st.FramesDropped != clipFrames || dropped != float64(st.FramesDropped) {
		t.Fatalf("taken %d, Seq gaps %d, stats %+v, metric %v: want drops, all counted, taken + dropped = %d",
			taken, gaps, st, dropped, clipFrames)
	}
	if n := cam.maxLiveMats.Load(); n > 2 {
		t.Errorf("camera owned %d Mats at once, want at most 2", n)
	}
	if n := cam.liveMats.Load(); n != 0 {
		t.Errorf("%d camera-owned Mats open after the end", n)
	}
}

func TestFileErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.mp4")
	spec, err := ParseURI(missing)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(spec, Options{})
	if !errors.Is(err, ErrOpen) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("New(missing file) = %v, want ErrOpen and fs.ErrNotExist naming the path", err)
	}
	t.Logf("missing file: %v", err)

	text := filepath.Join(dir, "notes.avi")
	if err := os.WriteFile(text, []byte("not a video, just text\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = New(Spec{Kind: KindFile, Path: text}, Options{})
	if !errors.Is(err, ErrOpen) {
		t.Fatalf("New(text file) = %v, want ErrOpen", err)
	}
	t.Logf("not a video: %v", err)

	// A file that disappears between New and Run fails Run, and Next says why.
	link := filepath.Join(dir, "clip.mp4")
	if err := os.Symlink(clipPath(t), link); err != nil {
		t.Fatal(err)
	}
	cam, err := New(Spec{Kind: KindFile, Path: link}, Options{Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	r := running(t, cam)
	if err := r.wait(); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Run on a vanished file = %v, want fs.ErrNotExist", err)
	}
	if _, err := cam.Next(context.Background()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Next after Run failed = %v, want Run's error", err)
	}
	if err := cam.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run = %v, want ErrRunning", err)
	}
}

// TestBadCameraDoesNotStallOthers runs a real V4L2 device that does not
// exist beside the clip, on shared metrics: the clip is read to the end
// while the device is down, and each has its own series.
func TestBadCameraDoesNotStallOthers(t *testing.T) {
	reg := prometheus.NewRegistry()
	met := NewMetrics(reg)
	const missingDevice = 63
	if _, err := os.Stat("/dev/video63"); err == nil {
		t.Fatalf("/dev/video%d exists; the test needs a missing device", missingDevice)
	}
	spec, err := ParseURI("device:63")
	if err != nil {
		t.Fatal(err)
	}
	// An hour of backoff: cancelling must interrupt the wait.
	door, err := New(spec, Options{Name: "door", Metrics: met, Backoff: Backoff{Initial: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	doorRun := running(t, door)
	clip := openClip(t, Options{Name: "clip", Fast: true, Metrics: met})
	clipRun := running(t, clip)

	taken := 0
	for {
		f, err := clip.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		taken++
		f.Close()
	}
	if err := clipRun.wait(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the device's failed open", func() bool { return door.Stats().OpenErrors >= 1 })
	if got, _ := metric(t, reg, "loopgate_camera_frames_total", "clip"); got != clipFrames {
		t.Errorf("frames_total{clip} = %v, want %d", got, clipFrames)
	}
	if got, ok := metric(t, reg, "loopgate_camera_up", "door"); !ok || got != 0 {
		t.Errorf("up{door} = %v (present %v), want 0", got, ok)
	}
	if got, _ := metric(t, reg, "loopgate_camera_open_errors_total", "door"); got < 1 {
		t.Errorf("open_errors_total{door} = %v, want ≥ 1", got)
	}
	if got, _ := metric(t, reg, "loopgate_camera_frames_total", "door"); got != 0 {
		t.Errorf("frames_total{door} = %v, want 0", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := door.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next on a down camera = %v, want to wait until the deadline", err)
	}
	t.Logf("clip: %d taken of %d; door: %+v", taken, clipFrames, door.Stats())

	doorRun.cancel()
	if err := doorRun.wait(); err != nil {
		t.Fatalf("Run of the down camera = %v after cancel", err)
	}
}

// TestClose: Close stops a running camera like cancellation does, and
// after a file ended it releases the last frame nobody took.
func TestClose(t *testing.T) {
	cam := openClip(t, Options{Name: "closed"})
	r := running(t, cam)
	f, err := cam.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	cam.Close()
	if err := r.wait(); err != nil {
		t.Fatalf("Run after Close = %v, want nil", err)
	}
	if _, err := cam.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close = %v, want ErrClosed", err)
	}
	if n := cam.liveMats.Load(); n != 0 {
		t.Errorf("%d camera-owned Mats open after Close", n)
	}

	// Fast mode is lossless: take every frame but the last, so the file
	// ends with its last frame untaken.
	ended := openClip(t, Options{Name: "ended", Fast: true})
	endedRun := running(t, ended)
	for {
		f, err := ended.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if f.Seq >= clipFrames-2 {
			break
		}
	}
	if err := endedRun.wait(); err != nil {
		t.Fatal(err)
	}
	if n := ended.liveMats.Load(); n != 1 {
		t.Fatalf("%d camera-owned Mats after the file ended untaken, want 1 (the last frame, kept for Next)", n)
	}
	ended.Close()
	if n := ended.liveMats.Load(); n != 0 {
		t.Errorf("%d camera-owned Mats open after Close", n)
	}
	if _, err := ended.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close = %v, want ErrClosed", err)
	}
}
