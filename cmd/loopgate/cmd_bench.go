package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/loopgate/loopgate/benchmarks/accuracy"
	"github.com/loopgate/loopgate/benchmarks/accuracy/jitter"
	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/vision"
)

// runBench runs the accuracy benchmarks on embeddings cached under
// .loopgate/cache: `bench lfw` (View 2 verification), `bench identify`
// (1:N, enrolment choices, walk-through fusion, calibration) and
// `bench embed` (fill the caches only); `bench search` measures gallery
// search scaling on synthetic embeddings in PostgreSQL; `bench pipeline`
// times each stage of a still on real photos.
func runBench(ctx context.Context, cfg Config, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: bench lfw|identify|embed|search|pipeline [flags]", errUsage)
	}
	which := args[0]
	if which == "search" {
		return runBenchSearch(ctx, cfg, args[1:])
	}
	if which == "pipeline" {
		return runBenchPipeline(ctx, cfg, args[1:])
	}
	fs := flag.NewFlagSet("bench "+which, flag.ContinueOnError)
	cacheDir := fs.String("cache", ".loopgate/cache", "embedding cache directory")
	outDir := fs.String("out", "benchmarks/results", "directory for the Markdown reports and PNG plots")
	workers := fs.Int("workers", 2, "recognisers run in parallel when images must be embedded")
	quick := fs.Bool("quick", false, "reduced run (identify: galleries up to 500, a subset of probes)")
	seed := fs.Uint64("seed", 1, "seed for every random choice")
	noProgress := fs.Bool("no-progress", false, "no progress bar on stderr")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() != 0 || *workers < 1 {
		return fmt.Errorf("%w: bench %s takes flags only, --workers >= 1", errUsage, which)
	}
	var run func(context.Context, *accuracy.Env, accuracy.Datasets) error
	switch which {
	case "lfw":
		run = accuracy.RunLFW
	case "identify":
		run = accuracy.RunIdentify
	case "embed":
		run = func(ctx context.Context, env *accuracy.Env, d accuracy.Datasets) error {
			_, err := accuracy.EmbedAll(ctx, env, d, true)
			return err
		}
	default:
		return fmt.Errorf("%w: unknown benchmark %q (want lfw, identify, embed, search or pipeline)", errUsage, which)
	}

	start := time.Now()
	d, err := accuracy.LoadDatasets(cfg.SharedDir)
	if err != nil {
		return fmt.Errorf("%w\n(LOOPGATE_SHARED_DIR points at the shared data set)", err)
	}
	// One recogniser names the weights (the cache key); the others are made
	// only if images have to be embedded.
	first, err := facerec.New(facerec.Config{ModelDir: cfg.ModelDir, Detector: cfg.Detector})
	if err != nil {
		return fmt.Errorf("%w\n(`loopgate models fetch` fills the model directory)", err)
	}
	var closers []io.Closer
	closers = append(closers, first)
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	env := &accuracy.Env{
		SharedDir: cfg.SharedDir,
		CacheDir:  *cacheDir,
		OutDir:    *outDir,
		ModelTag:  first.ModelTag(),
		Detector:  string(cfg.Detector),
		Decoder:   vision.NewDecoder(engine.DefaultImageLimits),
		Logger:    slog.Default(),
		Seed:      *seed,
		Quick:     *quick,
		Embedders: func(jitterCopies int) ([]engine.Embedder, error) {
			var embs []engine.Embedder
			if jitterCopies == 0 {
				embs = append(embs, first)
			}
			for len(embs) < *workers {
				var (
					e   engine.Embedder
					c   io.Closer
					err error
				)
				if jitterCopies == 0 {
					r, rerr := facerec.New(facerec.Config{ModelDir: cfg.ModelDir, Detector: cfg.Detector})
					e, c, err = r, r, rerr
				} else {
					if cfg.Detector != facerec.DetectorHOGThenCNN {
						return nil, errors.New("jittered embedding follows the hog+cnn detector only")
					}
					r, rerr := jitter.New(cfg.ModelDir, jitterCopies)
					e, c, err = r, r, rerr
				}
				if err != nil {
					return nil, err
				}
				closers = append(closers, c)
				embs = append(embs, e)
			}
			return embs, nil
		},
	}
	if !*noProgress {
		env.Progress = os.Stderr
	}
	if err := os.MkdirAll(env.OutDir, 0o755); err != nil {
		return err
	}
	if err := run(ctx, env, d); err != nil {
		return err
	}
	abs, _ := filepath.Abs(env.OutDir)
	fmt.Printf("bench %s: done in %s; reports in %s\n", which, time.Since(start).Round(time.Second), abs)
	return nil
}

// runBenchSearch is `bench search`: exact scan vs HNSW vs in-process scan
// over synthetic galleries in a throw-away schema of the test database
// (LOOPGATE_TEST_DATABASE_URL) or, without it, the configured database.
func runBenchSearch(ctx context.Context, cfg Config, args []string) error {
	fs := flag.NewFlagSet("bench search", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "reduced run: galleries up to 100k templates, fewer queries")
	sizesFlag := fs.String("sizes", "", "comma-separated gallery sizes in templates (default 1000,10000,100000,1000000; --quick up to 100000)")
	queries := fs.Int("queries", 0, "queries per method and size (default 400, --quick 200)")
	cacheDir := fs.String("cache", ".loopgate/cache", "embedding cache directory (the LFW cache calibrates the synthetic vectors)")
	outDir := fs.String("out", "benchmarks/results", "directory for the Markdown report and PNG plots")
	seed := fs.Uint64("seed", 1, "seed for every random choice")
	noProgress := fs.Bool("no-progress", false, "no progress bar on stderr")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: bench search takes flags only", errUsage)
	}
	opt := accuracy.DefaultSearchOptions(*quick)
	if *sizesFlag != "" {
		opt.Sizes = nil
		for _, f := range strings.Split(*sizesFlag, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return fmt.Errorf("%w: --sizes wants positive integers, got %q", errUsage, f)
			}
			opt.Sizes = append(opt.Sizes, n)
		}
	}
	if *queries > 0 {
		opt.Queries = *queries
	}
	opt.DatabaseURL = os.Getenv("LOOPGATE_TEST_DATABASE_URL")
	if opt.DatabaseURL == "" {
		opt.DatabaseURL = cfg.DatabaseURL
	}
	env := &accuracy.Env{CacheDir: *cacheDir, OutDir: *outDir, Logger: slog.Default(), Seed: *seed, Quick: *quick}
	if !*noProgress {
		env.Progress = os.Stderr
	}
	start := time.Now()
	if _, err := accuracy.RunSearch(ctx, env, opt); err != nil {
		return err
	}
	abs, _ := filepath.Abs(env.OutDir)
	fmt.Printf("bench search: done in %s; reports in %s\n", time.Since(start).Round(time.Second), abs)
	return nil
}

// runBenchPipeline is `bench pipeline`: decode, detect, align+embed and
// search latency per resolution, embeddings/s, and the embed measurement
// repeated under ATLAS in a child process (the hidden --embed-only flag).
func runBenchPipeline(ctx context.Context, cfg Config, args []string) error {
	fs := flag.NewFlagSet("bench pipeline", flag.ContinueOnError)
	outDir := fs.String("out", "benchmarks/results", "directory for the Markdown report and PNG plot")
	iterations := fs.Int("iterations", 30, "iterations per stage and photo")
	seed := fs.Uint64("seed", 1, "seed for the synthetic gallery")
	noProgress := fs.Bool("no-progress", false, "no progress bar on stderr")
	// Hidden: the child of the BLAS comparison prints one JSON line.
	embedOnly := fs.Bool("embed-only", false, "")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() != 0 || *iterations < 1 {
		return fmt.Errorf("%w: bench pipeline takes flags only, --iterations >= 1", errUsage)
	}
	opt := accuracy.DefaultPipelineOptions(cfg.SharedDir, cfg.ModelDir)
	opt.Iterations = *iterations
	if *embedOnly {
		m, err := accuracy.MeasureEmbed(ctx, opt)
		if err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(m)
	}
	opt.DatabaseURL = os.Getenv("LOOPGATE_TEST_DATABASE_URL")
	if opt.DatabaseURL == "" {
		opt.DatabaseURL = cfg.DatabaseURL
	}
	if exe, err := os.Executable(); err == nil {
		opt.EmbedChild = []string{exe, "bench", "pipeline", "--embed-only", "--iterations", strconv.Itoa(*iterations)}
	}
	env := &accuracy.Env{SharedDir: cfg.SharedDir, OutDir: *outDir, Logger: slog.Default(), Seed: *seed}
	if !*noProgress {
		env.Progress = os.Stderr
	}
	start := time.Now()
	if _, err := accuracy.RunPipeline(ctx, env, opt); err != nil {
		return err
	}
	abs, _ := filepath.Abs(env.OutDir)
	fmt.Printf("bench pipeline: done in %s; reports in %s\n", time.Since(start).Round(time.Second), abs)
	return nil
}
