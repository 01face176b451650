// Package camera is loopgate's frame source layer. Each Camera reads one
// source (video file, V4L2 device, RTSP or HTTP MJPEG stream) through GoCV
// in its own goroutine and hands the newest frame to the engine through a
// one-slot mailbox: frames the engine is too slow for are dropped, never
// queued, so latency and memory stay flat. Live sources that fail are
// reopened with capped exponential backoff; one bad camera never stalls
// another.
package camera

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/engine/vision"
)

// Defaults for the zero Options.
const (
	DefaultBackoffInitial = 500 * time.Millisecond
	DefaultBackoffMax     = 30 * time.Second
	// DefaultStallTimeout: a live source that delivers no frame for this
	// long is reported down while its read is still blocked (OpenCV's
	// FFmpeg backend gives up on a silent stream only after 30 s).
	DefaultStallTimeout = 5 * time.Second
	// fallbackFPS paces a file whose container reports no usable rate.
	fallbackFPS = 25
	// paceLagReset: a paced reader this far behind its schedule starts a
	// new one rather than bursting to catch up.
	paceLagReset = 500 * time.Millisecond
	// defaultStopGrace bounds how long Run waits, once cancelled, for a
	// read blocked inside OpenCV before returning without it.
	defaultStopGrace = 2 * time.Second
)

// Info describes a source as OpenCV reports it after opening.
type Info struct {
	Width, Height int
	FPS           float64
	Frames        int // frame count of a file; 0 when unknown (live sources)
}

// Backoff is the reconnect schedule of a live source: Initial, doubling
// after each attempt that yields no frame, capped at Max. It starts over at
// Initial once a connection delivers a frame.
type Backoff struct {
	Initial time.Duration // default DefaultBackoffInitial
	Max     time.Duration // default DefaultBackoffMax
	// Jitter in [0,1] shortens each delay by up to that fraction at random,
	// so cameras on one recorder do not reconnect in lockstep. 0: none.
	Jitter float64
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial == 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max == 0 {
		b.Max = max(DefaultBackoffMax, b.Initial)
	}
	return b
}

// Delay is the wait before the next attempt after failures consecutive
// attempts without a frame (0 after a connection that worked).
func (b Backoff) Delay(failures int) time.Duration {
	b = b.withDefaults()
	d := b.Initial
	for i := 0; i < failures && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	if b.Jitter > 0 {
		d -= time.Duration(rand.Float64() * b.Jitter * float64(d))
	}
	return d
}

// Options configure a Camera. The zero value reads a file once at its own
// frame rate and reconnects live sources with the default backoff.
type Options struct {
	// Name labels the camera in metrics, logs and vision.Frame.Camera.
	// Default: the source URI with any password redacted.
	Name string
	// Loop starts a file again at its end (demos, soak runs). Files only.
	// Seq keeps counting across the wrap; PTS, the stream's own, restarts.
	Loop bool
	// Fast reads a file as fast as the engine takes its frames instead of at
	// its own frame rate (benchmarks, tests): the reader waits for the
	// engine, so no frame is dropped and throughput is the engine's own.
	// Files only: live sources pace themselves.
	Fast bool
	// Backoff is the reconnect schedule of live sources.
	Backoff Backoff
	// StallTimeout: a live source silent this long is reported down.
	// 0: DefaultStallTimeout; negative: never.
	StallTimeout time.Duration
	// Metrics may be shared by all cameras; nil records nothing.
	Metrics *Metrics
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Stats are a camera's counters since New, the same figures as its metrics.
type Stats struct {
	Up                                                            bool
	FramesRead, FramesDropped, ReadErrors, OpenErrors, Reconnects int64
}

// Camera reads one source. Run it in its own goroutine; the engine calls
// Next. Close releases a frame left behind.
type Camera struct {
	spec      Spec
	opts      Options
	name      string
	open      opener
	log       *slog.Logger
	met       cameraMetrics
	box       *mailbox
	started   atomic.Bool
	stopGrace time.Duration
	stopMu    sync.Mutex
	stop      context.CancelFunc // cancels Run, for Close
	closed    bool
	epoch     time.Time // monotonic base for lastFrame

	infoMu sync.Mutex
	info   Info

	seq       int64 // written only by the reading goroutine
	up        atomic.Bool
	lastFrame atomic.Int64 // time.Since(epoch) of the newest frame read

	framesRead, framesDropped, readErrors, openErrors, reconnects atomic.Int64
	// liveMats counts Mats the camera owns (its read buffer and the one in
	// the mailbox); maxLiveMats is its high-water mark.
	liveMats, maxLiveMats atomic.Int64
}

// New checks spec and opts and returns a camera ready to Run. A file is
// opened once here so that a missing or unreadable file is reported now
// (errors.Is ErrOpen, and fs.ErrNotExist when it is missing); a live source
// is not contacted until Run.
func New(spec Spec, opts Options) (*Camera, error) { return newCamera(spec, opts, openCV) }

func newCamera(spec Spec, opts Options, open opener) (*Camera, error) {
	switch spec.Kind {
	case KindFile, KindDevice, KindStream:
	case "":
		return nil, fmt.Errorf("%w: empty Spec (build it with ParseURI)", ErrBadURI)
	default:
		return nil, fmt.Errorf("%w: unknown source kind %q", ErrBadURI, spec.Kind)
	}
	if spec.Live() && (opts.Loop || opts.Fast) {
		return nil, fmt.Errorf("%w: %s: Loop and Fast apply to video files only", ErrOptions, spec)
	}
	b := opts.Backoff
	if b.Initial < 0 || b.Max < 0 || !(b.Jitter >= 0 && b.Jitter <= 1) {
		return nil, fmt.Errorf("%w: backoff %+v: delays must be ≥ 0 and jitter in [0,1]", ErrOptions, b)
	}
	if opts.Backoff = b.withDefaults(); opts.Backoff.Max < opts.Backoff.Initial {
		return nil, fmt.Errorf("%w: backoff max %v below initial %v", ErrOptions, opts.Backoff.Max, opts.Backoff.Initial)
	}
	if opts.StallTimeout == 0 {
		opts.StallTimeout = DefaultStallTimeout
	}
	name := opts.Name
	if name == "" {
		name = spec.String()
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	c := &Camera{
		spec:      spec,
		opts:      opts,
		name:      name,
		open:      open,
		log:       logger.With("camera", name, "source", spec.String()),
		met:       opts.Metrics.forCamera(name),
		box:       newMailbox(),
		stopGrace: defaultStopGrace,
		epoch:     time.Now(),
	}
	if spec.Kind == KindFile {
		cp, err := open(spec)
		if err != nil {
			return nil, err
		}
		c.info = readInfo(cp, false)
		cp.Close()
	}
	return c, nil
}

// Name is the camera's label.
func (c *Camera) Name() string { return c.name }

// Spec is the source the camera reads.
func (c *Camera) Spec() Spec { return c.spec }

// Info is the geometry and rate of the source as last opened (zero for a
// live source not yet connected).
func (c *Camera) Info() Info {
	c.infoMu.Lock()
	defer c.infoMu.Unlock()
	return c.info
}

// Stats returns the camera's counters.
func (c *Camera) Stats() Stats {
	return Stats{
		Up:            c.up.Load(),
		FramesRead:    c.framesRead.Load(),
		FramesDropped: c.framesDropped.Load(),
		ReadErrors:    c.readErrors.Load(),
		OpenErrors:    c.openErrors.Load(),
		Reconnects:    c.reconnects.Load(),
	}
}

// Next returns the newest frame not yet taken, waiting for one. Older
// frames the caller was too slow for have been dropped (see Stats). The
// caller owns the frame and must Close it. After a non-looping file's last
// frame Next returns io.EOF; after Close or cancellation of Run, ErrClosed;
// if Run failed, its error. Safe for concurrent callers.
func (c *Camera) Next(ctx context.Context) (vision.Frame, error) {
	f, err := c.box.take(ctx)
	if err == nil {
		c.liveMats.Add(-1) // now the caller's
	}
	return f, err
}

// Close stops the camera as cancelling Run's context does: Run returns nil,
// Next returns ErrClosed, and a frame not yet taken (such as a file's last
// one) is released. Call it when done with the camera. Idempotent.
func (c *Camera) Close() error {
	c.stopMu.Lock()
	c.closed = true
	if c.stop != nil {
		c.stop()
	}
	c.stopMu.Unlock()
	c.release()
	return nil
}

// release finishes the mailbox with ErrClosed and frees a frame left in it.
func (c *Camera) release() {
	if left, ok := c.box.finish(ErrClosed, false); ok {
		c.closeMat(left.Mat)
	}
}

// Run starts the camera's reading goroutine and blocks (call it in a
// goroutine of its own) until ctx is cancelled, Close is called or a
// non-looping file ends (then it returns nil), or a file cannot be read
// (then it returns the error, which Next returns too). Live sources are
// retried for as long as ctx lasts; Run never fails for them. Once
// stopped, Run returns within a frame period, or after a 2 s grace if a
// network read is blocked in OpenCV; that read's capture and Mats are
// closed when it returns. Run may be called once.
func (c *Camera) Run(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return ErrRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.stopMu.Lock()
	if c.closed {
		c.stopMu.Unlock()
		return nil
	}
	c.stop = cancel
	c.stopMu.Unlock()
	c.met.setUp(false)
	c.log.Info("camera: starting", "kind", c.spec.Kind, "loop", c.opts.Loop, "fast", c.opts.Fast)

	done := make(chan error, 1)
	go func() { done <- c.loop(ctx) }()
	if c.spec.Live() && c.opts.StallTimeout > 0 {
		go c.watchStall(ctx)
	}
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		c.release() // wake consumers now
		select {
		case err = <-done:
		case <-time.After(c.stopGrace):
			c.log.Warn("camera: stopped while a read is blocked in OpenCV; its capture closes when the read returns", "grace", c.stopGrace)
		}
	}
	c.setUp(false, nil)
	switch {
	case ctx.Err() != nil || err == nil:
		c.release()
		c.log.Info("camera: stopped", "frames", c.framesRead.Load(), "dropped", c.framesDropped.Load())
		return nil
	case errors.Is(err, errEndOfFile):
		c.box.finish(io.EOF, true) // the last frame is still handed out
		c.log.Info("camera: file ended", "frames", c.framesRead.Load(), "dropped", c.framesDropped.Load())
		return nil
	default:
		if left, ok := c.box.finish(err, false); ok {
			c.closeMat(left.Mat)
		}
		c.log.Error("camera: failed", "error", err)
		return err
	}
}

var (
	// errEndOfFile ends the reading loop of a non-looping file.
	errEndOfFile = errors.New("camera: end of file")
	// errStopped: the mailbox was closed under the reader.
	errStopped = errors.New("camera: stopped")
	// errReadFailed: a live source's read returned no frame.
	errReadFailed = errors.New("camera: read failed (stream ended, timed out or device lost)")
)

// loop opens the source again and again: a file when it loops, a live
// source after every failure, with backoff. It returns nil once stopped.
func (c *Camera) loop(ctx context.Context) error {
	r := &reader{c: c}
	defer r.release()
	failures := 0 // consecutive live attempts without a frame
	for attempt := 0; ; attempt++ {
		if attempt > 0 && c.spec.Live() {
			c.reconnects.Add(1)
			inc(c.met.recon)
		}
		n, err := c.session(ctx, r)
		if ctx.Err() != nil || errors.Is(err, errStopped) {
			return nil
		}
		if !c.spec.Live() {
			switch {
			case err != nil:
				return err
			case n == 0:
				return fmt.Errorf("%w %s: no frame could be read", ErrOpen, c.spec)
			case !c.opts.Loop:
				return errEndOfFile
			}
			c.log.Debug("camera: file ended, starting again", "seq", c.seq)
			continue
		}
		if n > 0 {
			failures = 0
		}
		c.setUp(false, err)
		delay := c.opts.Backoff.Delay(failures)
		failures++
		c.log.Warn("camera: reconnecting", "backoff", delay, "failures", failures, "error", err)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
	}
}

// session opens the source once and reads it until it ends, fails or is
// stopped. It returns the frames read and, for a live source, why it ended.
func (c *Camera) session(ctx context.Context, r *reader) (int, error) {
	cp, err := c.open(c.spec)
	if err != nil {
		if c.spec.Live() {
			c.openErrors.Add(1)
			inc(c.met.openErrs)
		}
		return 0, err
	}
	defer cp.Close()
	info := readInfo(cp, c.spec.Live())
	c.infoMu.Lock()
	c.info = info
	c.infoMu.Unlock()
	paced := c.spec.Kind == KindFile && !c.opts.Fast
	if paced {
		r.pace.setRate(info.FPS, c.log)
	}
	n := 0
	for ctx.Err() == nil {
		m := r.buffer()
		readStart := time.Now()
		if !cp.Read(&m) || m.Empty() {
			r.keep(m)
			if !c.spec.Live() {
				return n, nil // end of file: OpenCV does not tell it from a decode error
			}
			c.readErrors.Add(1)
			inc(c.met.readErrs)
			return n, errReadFailed
		}
		captured := time.Now()
		decode := captured.Sub(readStart)
		pts := time.Duration(cp.Get(gocv.VideoCapturePosMsec) * float64(time.Millisecond))
		if paced {
			if captured, err = r.pace.wait(ctx); err != nil {
				r.keep(m)
				return n, nil
			}
		}
		n++
		if c.opts.Fast {
			c.box.waitEmpty(ctx)
			captured = time.Now() // the frame is "captured" when the engine can take it
		}
		if !c.publish(vision.Frame{Camera: c.name, Captured: captured, PTS: pts, Decode: decode, Mat: m}, r) {
			return n, errStopped
		}
	}
	return n, nil
}

// publish numbers f and puts it in the mailbox; a frame it replaces
// becomes the next read buffer. It returns false once the camera is closed.
func (c *Camera) publish(f vision.Frame, r *reader) bool {
	f.Seq = c.seq
	c.seq++
	c.framesRead.Add(1)
	inc(c.met.frames)
	c.lastFrame.Store(int64(time.Since(c.epoch)))
	c.setUp(true, nil)
	old, dropped, ok := c.box.put(f)
	if !ok {
		r.keep(f.Mat)
		return false
	}
	if dropped {
		c.framesDropped.Add(1)
		inc(c.met.dropped)
		r.keep(old.Mat)
	}
	return true
}

// setUp records a transition of the camera's health and logs it.
func (c *Camera) setUp(up bool, reason error) {
	c.met.setUp(up)
	if c.up.Swap(up) == up {
		return
	}
	switch {
	case up:
		info := c.Info()
		c.log.Info("camera: up", "width", info.Width, "height", info.Height, "fps", info.FPS, "seq", c.framesRead.Load()-1)
	case reason != nil:
		c.log.Warn("camera: down", "error", reason)
	}
}

// watchStall reports a live source down when it stops delivering frames
// while its read is still blocked.
func (c *Camera) watchStall(ctx context.Context) {
	t := time.NewTicker(max(c.opts.StallTimeout/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			silent := time.Since(c.epoch) - time.Duration(c.lastFrame.Load())
			if c.up.Load() && silent > c.opts.StallTimeout {
				c.setUp(false, fmt.Errorf("stalled: no frame for %v", silent.Round(time.Millisecond)))
			}
		}
	}
}

func readInfo(cp capture, live bool) Info {
	info := Info{
		Width:  int(cp.Get(gocv.VideoCaptureFrameWidth)),
		Height: int(cp.Get(gocv.VideoCaptureFrameHeight)),
		FPS:    cp.Get(gocv.VideoCaptureFPS),
	}
	if n := cp.Get(gocv.VideoCaptureFrameCount); !live && n > 0 && n < math.MaxInt32 {
		info.Frames = int(n)
	}
	return info
}

func (c *Camera) matCreated() {
	n := c.liveMats.Add(1)
	for {
		high := c.maxLiveMats.Load()
		if n <= high || c.maxLiveMats.CompareAndSwap(high, n) {
			return
		}
	}
}

func (c *Camera) closeMat(m gocv.Mat) {
	m.Close()
	c.liveMats.Add(-1)
}

// reader is the reading goroutine's state that outlives one connection:
// the spare Mat a dropped frame leaves behind (reused as the next read
// buffer, so a slow consumer costs no allocation) and the pacing schedule.
type reader struct {
	c        *Camera
	spare    gocv.Mat
	hasSpare bool
	pace     pacer
}

func (r *reader) buffer() gocv.Mat {
	if r.hasSpare {
		r.hasSpare = false
		return r.spare
	}
	r.c.matCreated()
	return gocv.NewMat()
}

func (r *reader) keep(m gocv.Mat) {
	if r.hasSpare {
		r.c.closeMat(m)
		return
	}
	r.spare, r.hasSpare = m, true
}

func (r *reader) release() {
	if r.hasSpare {
		r.c.closeMat(r.spare)
		r.hasSpare = false
	}
}

// pacer releases a file's frames at the file's own rate, like a camera.
type pacer struct {
	period time.Duration
	next   time.Time
}

func (p *pacer) setRate(fps float64, log *slog.Logger) {
	if !(fps > 0 && fps <= 1000) {
		log.Warn("camera: file reports no usable frame rate; pacing at the fallback", "fps", fps, "fallback", fallbackFPS)
		fps = fallbackFPS
	}
	p.period = time.Duration(float64(time.Second) / fps)
}

// wait sleeps until the next frame's slot and returns the time it came.
func (p *pacer) wait(ctx context.Context) (time.Time, error) {
	now := time.Now()
	if p.next.IsZero() || now.Sub(p.next) > paceLagReset {
		p.next = now
	}
	if d := p.next.Sub(now); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return time.Time{}, ctx.Err()
		}
	}
	p.next = p.next.Add(p.period)
	return time.Now(), nil
}
