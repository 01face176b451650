package accuracy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	stdjpeg "image/jpeg"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/loopgate/loopgate/engine"
)

// CachedFace is one detected face of a cached image.
type CachedFace struct {
	// Box is the detector's rectangle in normalised-image pixels
	// (x0, y0, x1, y1).
	Box [4]int `json:"box"`
	// Sharpness is the variance of the 4-neighbour Laplacian of the grey
	// face box: a cheap focus measure used to weight frames.
	Sharpness float64          `json:"sharp"`
	Embedding engine.Embedding `json:"emb"`
}

// BoxSide is the mean side of the detection box in pixels.
func (f CachedFace) BoxSide() float64 {
	return float64((f.Box[2]-f.Box[0])+(f.Box[3]-f.Box[1])) / 2
}

// CacheRecord is the cached outcome for one image: its faces, none (a
// detector miss), or the reason the image could not be used.
type CacheRecord struct {
	Key    string       `json:"key"`
	Width  int          `json:"w"`
	Height int          `json:"h"`
	Faces  []CachedFace `json:"faces,omitempty"`
	Err    string       `json:"err,omitempty"`
}

// Subject returns the face nearest the image centre: LFW centres the
// labelled person, so with several faces that one is the subject. ok is
// false for a detector miss or an unusable image.
func (r CacheRecord) Subject() (CachedFace, bool) {
	if len(r.Faces) == 0 {
		return CachedFace{}, false
	}
	cx, cy := float64(r.Width)/2, float64(r.Height)/2
	best, bestD := 0, math.Inf(1)
	for i, f := range r.Faces {
		fx, fy := float64(f.Box[0]+f.Box[2])/2, float64(f.Box[1]+f.Box[3])/2
		if d := math.Hypot(fx-cx, fy-cy); d < bestD {
			best, bestD = i, d
		}
	}
	return r.Faces[best], true
}

// Cache maps image keys to their embeddings, stored as JSON lines in one
// file per model tag and recogniser setting. Records are appended as they
// are made, so an interrupted run resumes where it stopped.
type Cache struct {
	path string
	mu   sync.RWMutex
	recs map[string]CacheRecord
}

// CachePath is the cache file for a model tag and recogniser variant (for
// example "hog+cnn" or "hog+cnn.jitter10") under dir.
func CachePath(dir, modelTag, variant string) string {
	clean := strings.NewReplacer("/", "_", ":", "_", " ", "_").Replace
	return filepath.Join(dir, "embeddings", clean(modelTag)+"."+clean(variant)+".jsonl")
}

// OpenCache loads the cache file at path, creating its directory. A torn
// last line (from a killed run) is ignored and that image embedded again.
func OpenCache(path string) (*Cache, error) {
	c := &Cache{path: path, recs: map[string]CacheRecord{}}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("accuracy: cache directory: %w", err)
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("accuracy: open cache: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var complete int64 // bytes up to the last whole line
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var rec CacheRecord
			if jerr := json.Unmarshal(line, &rec); jerr != nil {
				return nil, fmt.Errorf("accuracy: cache %s: corrupt record: %w", path, jerr)
			}
			c.recs[rec.Key] = rec
			complete += int64(len(line))
		}
		if err == io.EOF {
			if len(line) > 0 && line[len(line)-1] != '\n' {
				// Cut the torn line so the next append starts on a fresh line.
				if terr := os.Truncate(path, complete); terr != nil {
					return nil, fmt.Errorf("accuracy: cut torn cache record: %w", terr)
				}
			}
			return c, nil
		}
		if err != nil {
			return nil, fmt.Errorf("accuracy: read cache: %w", err)
		}
	}
}

// Path is the cache file.
func (c *Cache) Path() string { return c.path }

// Len counts cached images.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.recs)
}

// Get returns the record for key.
func (c *Cache) Get(key string) (CacheRecord, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	r, ok := c.recs[key]
	return r, ok
}

// Subject returns the subject's face of key's image; ok is false when the
// image is not cached, had no face, or could not be used.
func (c *Cache) Subject(key string) (CachedFace, bool) {
	r, ok := c.Get(key)
	if !ok {
		return CachedFace{}, false
	}
	return r.Subject()
}

// Missing lists the keys not yet cached, in the given order.
func (c *Cache) Missing(keys []string) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []string
	for _, k := range keys {
		if _, ok := c.recs[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

// FillOptions says how to embed missing images.
type FillOptions struct {
	// SharedDir is the root the keys are relative to.
	SharedDir string
	Decoder   engine.Decoder
	// Embedders run in parallel, one worker each (go-face serialises
	// inside one recogniser, so parallelism needs several).
	Embedders []engine.Embedder
	// Progress receives a progress bar (typically os.Stderr); nil for none.
	Progress    io.Writer
	Description string
	Logger      *slog.Logger
}

// FillStats reports what Fill did.
type FillStats struct {
	Embedded, Misses, Errors int
	Elapsed                  time.Duration
}

// Fill embeds every key not yet cached and appends the records to the
// cache file. An image that cannot be decoded is recorded with its error
// (and counted by the benchmarks); a recogniser failure stops the run.
func (c *Cache) Fill(ctx context.Context, keys []string, opt FillOptions) (FillStats, error) {
	start := time.Now()
	todo := c.Missing(keys)
	if len(todo) == 0 {
		return FillStats{}, nil
	}
	if len(opt.Embedders) == 0 || opt.Decoder == nil {
		return FillStats{}, fmt.Errorf("accuracy: %d images to embed but no embedder or decoder", len(todo))
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	f, err := os.OpenFile(c.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return FillStats{}, fmt.Errorf("accuracy: open cache for append: %w", err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)

	var bar *progressbar.ProgressBar
	if opt.Progress != nil {
		bar = progressbar.NewOptions(len(todo),
			progressbar.OptionSetWriter(opt.Progress),
			progressbar.OptionSetDescription(opt.Description),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("img"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(500*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(opt.Progress) }),
		)
	}
	opt.Logger.Info("embedding images", "count", len(todo), "workers", len(opt.Embedders), "cache", c.path)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan string)
	results := make(chan CacheRecord)
	var wg sync.WaitGroup
	for _, emb := range opt.Embedders {
		wg.Go(func() {
			for key := range jobs {
				rec, err := embedOne(opt.SharedDir, key, opt.Decoder, emb)
				if err != nil {
					cancel(err)
					return
				}
				select {
				case results <- rec:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	go func() {
		defer close(jobs)
		for _, k := range todo {
			select {
			case jobs <- k:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()

	var st FillStats
	var writeErr error
	lastFlush := time.Now()
	for rec := range results {
		line, err := json.Marshal(rec)
		if err == nil {
			_, err = w.Write(append(line, '\n'))
		}
		if err != nil && writeErr == nil {
			writeErr = err
			cancel(err)
		}
		c.mu.Lock()
		c.recs[rec.Key] = rec
		c.mu.Unlock()
		st.Embedded++
		switch {
		case rec.Err != "":
			st.Errors++
		case len(rec.Faces) == 0:
			st.Misses++
		}
		if time.Since(lastFlush) > 2*time.Second {
			if err := w.Flush(); err != nil && writeErr == nil {
				writeErr = err
				cancel(err)
			}
			lastFlush = time.Now()
		}
		if bar != nil {
			_ = bar.Add(1)
		}
	}
	if err := w.Flush(); err != nil && writeErr == nil {
		writeErr = err
	}
	st.Elapsed = time.Since(start)
	c.logRun(FillRun{Start: start.UTC(), ElapsedSeconds: st.Elapsed.Seconds(), Embedded: st.Embedded,
		Misses: st.Misses, Errors: st.Errors, Workers: len(opt.Embedders), BLAS: blasInProcess(),
		Complete: context.Cause(ctx) == nil && writeErr == nil})
	if writeErr != nil {
		return st, fmt.Errorf("accuracy: write cache: %w", writeErr)
	}
	if cause := context.Cause(ctx); cause != nil {
		return st, fmt.Errorf("accuracy: embedding stopped after %d of %d images: %w", st.Embedded, len(todo), cause)
	}
	return st, nil
}

// embedOne decodes, detects and embeds one image. Unusable input is a
// record, not an error; the recogniser failing is an error.
func embedOne(sharedDir, key string, dec engine.Decoder, emb engine.Embedder) (CacheRecord, error) {
	rec := CacheRecord{Key: key}
	data, err := os.ReadFile(filepath.Join(sharedDir, key))
	if err != nil {
		return rec, fmt.Errorf("read %s: %w", key, err)
	}
	img, err := dec.Decode(data)
	if err != nil {
		rec.Err = err.Error()
		return rec, nil
	}
	rec.Width, rec.Height = img.Width, img.Height
	faces, err := emb.Faces(img.JPEG)
	if errors.Is(err, engine.ErrUndecodable) {
		rec.Err = err.Error()
		return rec, nil
	}
	if err != nil {
		return rec, fmt.Errorf("embed %s: %w", key, err)
	}
	grey := greyImage(img.JPEG)
	for _, f := range faces {
		rec.Faces = append(rec.Faces, CachedFace{
			Box:       [4]int{f.Box.Min.X, f.Box.Min.Y, f.Box.Max.X, f.Box.Max.Y},
			Sharpness: LaplacianVariance(grey, f.Box),
			Embedding: f.Embedding,
		})
	}
	return rec, nil
}

func greyImage(jpeg []byte) *image.Gray {
	src, err := stdjpeg.Decode(bytes.NewReader(jpeg))
	if err != nil {
		return nil
	}
	b := src.Bounds()
	g := image.NewGray(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			g.Set(x, y, src.At(x, y))
		}
	}
	return g
}

// LaplacianVariance is the variance of the 4-neighbour Laplacian over box
// (clipped one pixel inside the image, where the Laplacian is defined):
// larger means sharper. It returns 0 for an empty box or a nil image.
func LaplacianVariance(g *image.Gray, box image.Rectangle) float64 {
	if g == nil {
		return 0
	}
	r := box.Intersect(g.Bounds().Inset(1))
	if r.Dx() < 1 || r.Dy() < 1 {
		return 0
	}
	var sum, sumSq float64
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			l := float64(g.GrayAt(x-1, y).Y) + float64(g.GrayAt(x+1, y).Y) +
				float64(g.GrayAt(x, y-1).Y) + float64(g.GrayAt(x, y+1).Y) - 4*float64(g.GrayAt(x, y).Y)
			sum += l
			sumSq += l * l
			n++
		}
	}
	mean := sum / float64(n)
	return sumSq/float64(n) - mean*mean
}

// FillRun records one embedding run beside the cache, so a report can say
// when, how fast and with which BLAS its embeddings were made.
type FillRun struct {
	Start          time.Time `json:"start"`
	ElapsedSeconds float64   `json:"elapsed_s"`
	Embedded       int       `json:"embedded"`
	Misses         int       `json:"misses"`
	Errors         int       `json:"errors"`
	Workers        int       `json:"workers"`
	BLAS           string    `json:"blas"`
	Complete       bool      `json:"complete"`
}

func (c *Cache) runsPath() string { return strings.TrimSuffix(c.path, ".jsonl") + ".runs.jsonl" }

func (c *Cache) logRun(r FillRun) {
	line, err := json.Marshal(r)
	if err != nil {
		return
	}
	f, err := os.OpenFile(c.runsPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.Write(append(line, '\n'))
}

// Runs lists the embedding runs that filled this cache (empty when the log
// is missing, for example for a cache made before runs were logged).
func (c *Cache) Runs() []FillRun {
	data, err := os.ReadFile(c.runsPath())
	if err != nil {
		return nil
	}
	var out []FillRun
	for _, line := range bytes.Split(data, []byte("\n")) {
		var r FillRun
		if len(line) > 0 && json.Unmarshal(line, &r) == nil {
			out = append(out, r)
		}
	}
	return out
}
