package accuracy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/loopgate/loopgate/engine"
)

// Env is what a benchmark run needs from outside: where the data, cache and
// reports live, and how to make recognisers when the cache lacks images.
type Env struct {
	SharedDir string
	CacheDir  string
	OutDir    string
	// ModelTag names the embedding weights (facerec.Recognizer.ModelTag):
	// caches, and so results, never mix weights.
	ModelTag string
	// Detector names the detector setting ("hog+cnn"): part of the cache key.
	Detector string
	Decoder  engine.Decoder
	// Embedders returns the recognisers to run in parallel; jitter 0 is the
	// engine's own recogniser, jitter n > 0 embeds each face as the mean of
	// n jittered copies. It is called only when images are missing.
	Embedders func(jitter int) ([]engine.Embedder, error)
	// Progress receives progress bars (os.Stderr); nil for none.
	Progress io.Writer
	Logger   *slog.Logger
	// Seed drives every random choice (subsets, sampling), so a rerun
	// reproduces the report.
	Seed uint64
	// Quick runs a reduced version for `make bench`.
	Quick bool
}

func (e *Env) logger() *slog.Logger {
	if e.Logger == nil {
		return slog.Default()
	}
	return e.Logger
}

// variant is the cache file's recogniser setting.
func (e *Env) variant(jitter int) string {
	if jitter > 0 {
		return fmt.Sprintf("%s.jitter%d", e.Detector, jitter)
	}
	return e.Detector
}

// Embeddings opens the cache for the recogniser setting and embeds the
// keys it lacks.
func (e *Env) Embeddings(ctx context.Context, keys []string, jitter int, what string) (*Cache, FillStats, error) {
	c, err := OpenCache(CachePath(e.CacheDir, e.ModelTag, e.variant(jitter)))
	if err != nil {
		return nil, FillStats{}, err
	}
	if len(c.Missing(keys)) == 0 {
		return c, FillStats{}, nil
	}
	if e.Embedders == nil {
		return nil, FillStats{}, fmt.Errorf("accuracy: %d %s images not cached and no recogniser given", len(c.Missing(keys)), what)
	}
	embs, err := e.Embedders(jitter)
	if err != nil {
		return nil, FillStats{}, err
	}
	st, err := c.Fill(ctx, keys, FillOptions{
		SharedDir: e.SharedDir, Decoder: e.Decoder, Embedders: embs,
		Progress: e.Progress, Description: what, Logger: e.logger(),
	})
	if err != nil {
		return nil, st, err
	}
	e.logger().Info("embedded", "what", what, "images", st.Embedded, "misses", st.Misses, "errors", st.Errors,
		"elapsed", st.Elapsed.Round(time.Second), "per_image", (st.Elapsed / time.Duration(max(st.Embedded, 1))).Round(time.Millisecond))
	return c, st, nil
}
