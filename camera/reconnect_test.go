package camera

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gocv.io/x/gocv"
)

// flakySource stands in for a camera that fails: the first failOpens opens
// fail, then each connection serves framesPerConn copies of a real image
// before its read fails. It is the only fake in these tests, and fakes
// only the failing dependency.
type flakySource struct {
	image         gocv.Mat
	failOpens     int
	framesPerConn int
	// block, when set, makes a read after the first frame wait on it.
	block chan struct{}
	// gauge reads the camera's up gauge and reconnect counter, recorded at
	// each open attempt and before each read that follows a frame.
	gauge func() (up, reconnects float64)

	mu         sync.Mutex
	opens      []time.Time
	upSeen     []float64 // at each open
	reconSeen  []float64 // at each open
	upAfterOne []float64 // at each read after a connection's first frame
	live       int       // captures opened and not closed
	blocked    bool
}

var errRefused = errors.New("connection refused (fake)")

func (s *flakySource) open(Spec) (capture, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opens = append(s.opens, time.Now())
	if s.gauge != nil {
		up, recon := s.gauge()
		s.upSeen = append(s.upSeen, up)
		s.reconSeen = append(s.reconSeen, recon)
	}
	if len(s.opens) <= s.failOpens {
		return nil, fmt.Errorf("%w: attempt %d: %w", ErrOpen, len(s.opens), errRefused)
	}
	s.live++
	return &flakyCapture{src: s, left: s.framesPerConn}, nil
}

func (s *flakySource) snapshot() (opens []time.Time, upSeen []float64, live int, blocked bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.opens...), append([]float64(nil), s.upSeen...), s.live, s.blocked
}

func (s *flakySource) seen() (recon, upAfterOne []float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]float64(nil), s.reconSeen...), append([]float64(nil), s.upAfterOne...)
}

type flakyCapture struct {
	src    *flakySource
	left   int
	served int
	closed bool
}

func (c *flakyCapture) Read(m *gocv.Mat) bool {
	if c.src.block != nil && c.served > 0 {
		c.src.mu.Lock()
		c.src.blocked = true
		c.src.mu.Unlock()
		<-c.src.block
		c.src.mu.Lock()
		c.src.blocked = false
		c.src.mu.Unlock()
		return false
	}
	if c.served > 0 && c.src.gauge != nil {
		up, _ := c.src.gauge()
		c.src.mu.Lock()
		c.src.upAfterOne = append(c.src.upAfterOne, up)
		c.src.mu.Unlock()
	}
	if c.left == 0 {
		return false
	}
	c.left--
	c.served++
	c.src.image.CopyTo(m)
	return true
}

func (c *flakyCapture) Get(p gocv.VideoCaptureProperties) float64 {
	switch p {
	case gocv.VideoCaptureFrameWidth:
		return float64(c.src.image.Cols())
	case gocv.VideoCaptureFrameHeight:
		return float64(c.src.image.Rows())
	case gocv.VideoCaptureFPS:
		return 25
	}
	return 0
}

func (c *flakyCapture) Close() error {
	c.src.mu.Lock()
	defer c.src.mu.Unlock()
	if c.closed {
		return errors.New("closed twice")
	}
	c.closed = true
	c.src.live--
	return nil
}

// TestReconnectBackoff: a stream that refuses 5 connections, then serves 3
// frames per connection. The camera is down (gauge 0) while it fails,
// waits 10, 20, 40, 40, 40 ms (doubling, capped), comes up (gauge 1),
// counts every reconnect, starts again at 10 ms after a connection that
// worked, and numbers frames on across connections.
func TestReconnectBackoff(t *testing.T) {
	reg := prometheus.NewRegistry()
	logs := &logRecorder{}
	src := &flakySource{image: lfwImage(t), failOpens: 5, framesPerConn: 3}
	spec, err := ParseURI("rtsp://user:secret@gate-cam.invalid/stream")
	if err != nil {
		t.Fatal(err)
	}
	backoff := Backoff{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond}
	cam, err := newCamera(spec, Options{
		Name: "lane1", Backoff: backoff, StallTimeout: -1,
		Metrics: NewMetrics(reg), Logger: slog.New(logs),
	}, src.open)
	if err != nil {
		t.Fatal(err)
	}
	src.gauge = func() (float64, float64) {
		up, _ := metric(t, reg, "loopgate_camera_up", "lane1")
		recon, _ := metric(t, reg, "loopgate_camera_reconnects_total", "lane1")
		return up, recon
	}
	r := running(t, cam)

	first, err := cam.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if first.Seq != 0 || first.Mat.Cols() != 250 || first.Camera != "lane1" {
		t.Fatalf("first frame: seq %d, %dx%d from %q", first.Seq, first.Mat.Cols(), first.Mat.Rows(), first.Camera)
	}
	first.Close()

	// Take frames across at least two more connections.
	lastSeq := first.Seq
	for lastSeq < 8 {
		f, err := cam.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if f.Seq <= lastSeq {
			t.Fatalf("Seq %d after %d across reconnects", f.Seq, lastSeq)
		}
		lastSeq = f.Seq
		f.Close()
	}
	r.cancel()
	if err := r.wait(); err != nil {
		t.Fatalf("Run = %v", err)
	}

	opens, upSeen, live, _ := src.snapshot()
	var delays []time.Duration
	for _, v := range logs.attrs("camera: reconnecting", "backoff") {
		delays = append(delays, v.Duration())
	}
	t.Logf("open attempts %d, up gauge at each %v, backoff delays %v", len(opens), upSeen, delays)
	want := []time.Duration{10, 20, 40, 40, 40, 10, 10}
	if len(delays) < len(want) || len(opens) < len(want)+1 {
		t.Fatalf("%d delays logged, %d opens; want at least %d", len(delays), len(opens), len(want))
	}
	for i, w := range want {
		if delays[i] != w*time.Millisecond {
			t.Errorf("delay %d = %v, want %v", i, delays[i], w*time.Millisecond)
		}
		// Each attempt came no sooner than its delay after the previous one.
		if gap := opens[i+1].Sub(opens[i]); gap < delays[i] {
			t.Errorf("open %d came %v after open %d, before its %v delay", i+1, gap, i, delays[i])
		}
	}
	for i := 0; i <= 5; i++ {
		if upSeen[i] != 0 {
			t.Errorf("up gauge %v at open attempt %d while the camera had not delivered a frame", upSeen[i], i)
		}
	}
	if upSeen[6] != 0 {
		t.Errorf("up gauge %v at open attempt 6, after the connection ended; want 0", upSeen[6])
	}
	reconSeen, upAfterOne := src.seen()
	for i, v := range reconSeen {
		if v != float64(i) {
			t.Errorf("reconnects_total = %v at open attempt %d, want %d", v, i, i)
		}
	}
	if len(upAfterOne) == 0 {
		t.Fatal("no read followed a frame")
	}
	for i, v := range upAfterOne {
		if v != 1 {
			t.Errorf("up gauge %v at read %d after a frame was delivered, want 1", v, i)
		}
	}
	st := cam.Stats()
	for name, want := range map[string]int64{
		"loopgate_camera_reconnects_total":  st.Reconnects,
		"loopgate_camera_open_errors_total": 5,
		"loopgate_camera_read_errors_total": st.ReadErrors,
		"loopgate_camera_frames_total":      st.FramesRead,
	} {
		if got, _ := metric(t, reg, name, "lane1"); got != float64(want) {
			t.Errorf("%s = %v, want %d", name, got, want)
		}
	}
	if st.Reconnects != int64(len(opens)-1) || st.ReadErrors < 2 {
		t.Errorf("stats %+v with %d opens: want one reconnect per attempt after the first, a read error per lost connection", st, len(opens))
	}
	if logs.count("camera: down") < 2 || logs.count("camera: up") < 3 {
		t.Errorf("logged %d down and %d up transitions, want ≥ 2 and ≥ 3", logs.count("camera: down"), logs.count("camera: up"))
	}
	if live != 0 || cam.liveMats.Load() != 0 {
		t.Errorf("after Run: %d captures and %d Mats still open", live, cam.liveMats.Load())
	}
	for _, v := range logs.attrs("camera: reconnecting", "error") {
		if s := fmt.Sprint(v.Any()); containsSecret(s) {
			t.Fatalf("log leaks the password: %s", s)
		}
	}
}

func containsSecret(s string) bool {
	for i := 0; i+6 <= len(s); i++ {
		if s[i:i+6] == "secret" {
			return true
		}
	}
	return false
}

// TestStallAndCancelWhileReadBlocked: a stream that goes silent inside a
// read. The watchdog reports it down before OpenCV would give up, and
// cancelling returns Run although the read is still blocked; the capture
// is closed as soon as the read returns.
func TestStallAndCancelWhileReadBlocked(t *testing.T) {
	reg := prometheus.NewRegistry()
	src := &flakySource{image: lfwImage(t), framesPerConn: 100, block: make(chan struct{})}
	spec, err := ParseURI("http://gate-cam.invalid/video.mjpg")
	if err != nil {
		t.Fatal(err)
	}
	cam, err := newCamera(spec, Options{Name: "lane2", StallTimeout: 30 * time.Millisecond, Metrics: NewMetrics(reg)}, src.open)
	if err != nil {
		t.Fatal(err)
	}
	cam.stopGrace = 50 * time.Millisecond
	r := running(t, cam)

	f, err := cam.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	eventually(t, "the read to block", func() bool { _, _, _, blocked := src.snapshot(); return blocked })
	eventually(t, "the stall to be reported", func() bool {
		up, _ := metric(t, reg, "loopgate_camera_up", "lane2")
		return up == 0 && !cam.Stats().Up
	})

	r.cancel()
	if err := r.wait(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if _, _, live, blocked := src.snapshot(); !blocked || live != 1 {
		t.Fatalf("after Run returned: read blocked %v, %d captures open; want the read still blocked in its capture", blocked, live)
	}
	if _, err := cam.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after cancel = %v, want ErrClosed", err)
	}
	close(src.block) // the stalled read finally returns
	eventually(t, "the abandoned capture to close", func() bool {
		_, _, live, _ := src.snapshot()
		return live == 0 && cam.liveMats.Load() == 0
	})
}
