package facerec

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/vision"
	"github.com/loopgate/loopgate/models"
)

// ErrPoolClosed is returned by a Pool after Close.
var ErrPoolClosed = errors.New("facerec: recogniser pool closed")

// PoolConfig configures a Pool.
type PoolConfig struct {
	Config
	// Size is the number of recognisers, each able to run one image at a
	// time; 0 means runtime.NumCPU(). Each holds its own copy of the models:
	// about 95 MB resident with the 68-point shape model.
	Size int
	// Metrics may be nil.
	Metrics *PoolMetrics
}

// PoolMetrics are a Pool's Prometheus metrics. A nil *PoolMetrics records nothing.
type PoolMetrics struct {
	Busy    prometheus.Gauge
	Size    prometheus.Gauge
	Wait    prometheus.Histogram
	Latency prometheus.Histogram
}

// NewPoolMetrics builds the pool's metrics and registers them on reg (when
// reg is not nil).
func NewPoolMetrics(reg prometheus.Registerer) *PoolMetrics {
	m := &PoolMetrics{
		Busy: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "loopgate", Name: "recognizers_busy",
			Help: "go-face recognisers running an image now.",
		}),
		Size: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "loopgate", Name: "recognizers",
			Help: "go-face recognisers in the pool.",
		}),
		Wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "loopgate", Name: "recognizer_wait_seconds",
			Help: "Time an image waited for a free recogniser.",
			// 0.1 ms to ~3 s: anything above a few ms means the pool is saturated.
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 15),
		}),
		Latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "loopgate", Name: "recognizer_seconds",
			Help: "go-face detection, alignment and embedding of one image, wait excluded.",
			// 1 ms to ~4 s, like loopgate_stage_duration_seconds.
			Buckets: prometheus.ExponentialBuckets(0.001, 1.5, 21),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Busy, m.Size, m.Wait, m.Latency)
	}
	return m
}

// Pool runs images on several go-face recognisers in parallel. go-face
// holds one mutex per stage inside each recogniser, so one recogniser runs
// at most one ResNet at a time; a pool of one per core uses every core.
// It is safe for concurrent use.
type Pool struct {
	free    chan *Recognizer
	done    chan struct{}
	size    int
	busy    atomic.Int64
	closed  atomic.Bool
	once    sync.Once
	metrics *PoolMetrics
	models  []models.Installed
	tag     string
}

var _ engine.Embedder = (*Pool)(nil)

// NewPool verifies the models once (~85 ms of hashing) and loads cfg.Size
// recognisers in parallel, so that free cores share the loading: each is
// ~0.75 s of CPU on one core (dlib parsing ~120 MB of model files). On the
// busy build machine two parallel loads took 1.4-2.4 s, two in a row
// 1.6-1.8 s (BenchmarkPoolLoad).
func NewPool(cfg PoolConfig) (*Pool, error) {
	size := cfg.Size
	if size <= 0 {
		size = runtime.NumCPU()
	}
	base, installed, err := prepare(cfg.Config)
	if err != nil {
		return nil, err
	}
	recs := make([]*Recognizer, size)
	errs := make([]error, size)
	var wg sync.WaitGroup
	for i := range recs {
		wg.Go(func() { recs[i], errs[i] = load(base, installed) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, r := range recs {
			if r != nil {
				r.Close()
			}
		}
		return nil, err
	}
	p := &Pool{
		free:    make(chan *Recognizer, size),
		done:    make(chan struct{}),
		size:    size,
		metrics: cfg.Metrics,
		models:  installed,
		tag:     recs[0].ModelTag(),
	}
	for _, r := range recs {
		p.free <- r
	}
	if p.metrics != nil {
		p.metrics.Size.Set(float64(size))
	}
	return p, nil
}

// Size is the number of recognisers.
func (p *Pool) Size() int { return p.size }

// Busy is the number of recognisers running an image now.
func (p *Pool) Busy() int { return int(p.busy.Load()) }

// ModelTag identifies the embedding weights (see Recognizer.ModelTag).
func (p *Pool) ModelTag() string { return p.tag }

// Models reports the verified model files in use.
func (p *Pool) Models() []models.Installed { return p.models }

// Faces implements engine.Embedder: it waits as long as it takes for a free
// recogniser. Use FacesContext to bound the wait.
func (p *Pool) Faces(jpeg []byte) ([]engine.Face, error) {
	return p.FacesContext(context.Background(), jpeg)
}

// FacesContext runs Recognizer.Faces on the next free recogniser. ctx bounds
// only the wait: a dlib call cannot be interrupted once it has started.
func (p *Pool) FacesContext(ctx context.Context, jpeg []byte) ([]engine.Face, error) {
	rec, err := p.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer p.release(rec)
	start := time.Now()
	faces, err := rec.Faces(jpeg)
	if p.metrics != nil {
		p.metrics.Latency.Observe(time.Since(start).Seconds())
	}
	return faces, err
}

// EmbedCrop embeds the face a crop was made for (see vision.Crop.PickTarget)
// and returns it in frame pixels. It returns an error wrapping
// engine.ErrNoFace when go-face finds no face at the crop's target.
func (p *Pool) EmbedCrop(ctx context.Context, c vision.Crop) (engine.Face, error) {
	faces, err := p.FacesContext(ctx, c.JPEG)
	if err != nil {
		return engine.Face{}, err
	}
	return c.PickTarget(faces)
}

func (p *Pool) acquire(ctx context.Context) (*Recognizer, error) {
	if p.closed.Load() {
		return nil, ErrPoolClosed
	}
	// select picks at random among ready cases: a cancelled ctx must win.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("facerec: waiting for a free recogniser: %w", err)
	}
	var start time.Time
	if p.metrics != nil {
		start = time.Now()
	}
	select {
	case rec := <-p.free:
		if p.closed.Load() {
			// Close is draining the pool: hand the recogniser to it.
			p.free <- rec
			return nil, ErrPoolClosed
		}
		p.busy.Add(1)
		if p.metrics != nil {
			p.metrics.Wait.Observe(time.Since(start).Seconds())
			p.metrics.Busy.Inc()
		}
		return rec, nil
	case <-p.done:
		return nil, ErrPoolClosed
	case <-ctx.Done():
		return nil, fmt.Errorf("facerec: waiting for a free recogniser: %w", ctx.Err())
	}
}

func (p *Pool) release(rec *Recognizer) {
	p.busy.Add(-1)
	if p.metrics != nil {
		p.metrics.Busy.Dec()
	}
	p.free <- rec
}

// Close waits for running images to finish, then frees every recogniser.
// Calls waiting for a recogniser return ErrPoolClosed.
func (p *Pool) Close() error {
	p.once.Do(func() {
		p.closed.Store(true)
		close(p.done)
		for range p.size {
			(<-p.free).Close()
		}
		if p.metrics != nil {
			p.metrics.Size.Set(0)
		}
	})
	return nil
}
