package accuracy

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"gocv.io/x/gocv"
	"gonum.org/v1/plot/plotter"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/detect"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/engine/still"
	"github.com/loopgate/loopgate/engine/vision"
	"github.com/loopgate/loopgate/internal/runtimetune"
)

// ErrNoFaceInPhoto is returned when the detector finds no face in a
// benchmark photo, so the later stages have nothing to measure.
var ErrNoFaceInPhoto = errors.New("accuracy: no face detected in benchmark photo")

// PipelineOptions configures `bench pipeline`.
type PipelineOptions struct {
	ModelDir string
	// DatabaseURL is where a throw-away bench_pipeline_<hex> schema is made.
	DatabaseURL string
	// Photos are the resolutions measured, smallest first; one face each.
	Photos []PipelinePhoto
	// Iterations per stage and photo.
	Iterations int
	// ThroughputFor is how long each embeddings/s measurement runs.
	ThroughputFor time.Duration
	// ThroughputPhoto is the photo (by Label) whose face the throughput
	// and BLAS measurements embed.
	ThroughputPhoto string
	// GalleryPeople are the synthetic people enrolled for the search stage.
	GalleryPeople int
	// EmbedChild re-runs the embed measurement in a child process of the
	// same binary (`bench pipeline --embed-only`): the command and its
	// arguments. Empty skips the BLAS comparison.
	EmbedChild []string
	// ATLASDir is put on the child's LD_LIBRARY_PATH.
	ATLASDir string
}

// PipelinePhoto is one benchmark photo.
type PipelinePhoto struct {
	Label string // "720p"
	Path  string
}

// DefaultPipelineOptions measures the Obama photos of the shared media.
func DefaultPipelineOptions(sharedDir, modelDir string) PipelineOptions {
	var photos []PipelinePhoto
	for _, r := range []string{"240p", "480p", "720p", "1080p"} {
		photos = append(photos, PipelinePhoto{Label: r, Path: filepath.Join(sharedDir, "media", "obama-"+r+".jpg")})
	}
	return PipelineOptions{
		ModelDir: modelDir, Photos: photos, Iterations: 30, ThroughputFor: 5 * time.Second,
		ThroughputPhoto: "720p", GalleryPeople: 100, ATLASDir: "/usr/lib/x86_64-linux-gnu/atlas",
	}
}

// StageTiming is the latency of one stage over the iterations.
type StageTiming struct {
	N        int
	P50, P99 time.Duration
}

// summariseStage is the p50 and p99 of the latencies.
func summariseStage(lat []time.Duration) StageTiming {
	return StageTiming{N: len(lat), P50: LatencyQuantile(lat, 0.5), P99: LatencyQuantile(lat, 0.99)}
}

// Pipeline stages, in order.
const (
	StageDecode = "decode"
	StageDetect = "detect"
	StageEmbed  = "align+embed"
	StageSearch = "search"
)

var pipelineStages = []string{StageDecode, StageDetect, StageEmbed, StageSearch}

// PipelineResolution is the stage timings on one photo.
type PipelineResolution struct {
	Label         string
	Width, Height int
	FaceBox       image.Rectangle
	Stages        map[string]StageTiming
}

// EmbedMeasure is the embed measurement that is repeated under another
// BLAS; the child process prints it as one JSON line.
type EmbedMeasure struct {
	BLAS        string       `json:"blas"`
	BLASLibrary string       `json:"blas_library"`
	BLASThreads int          `json:"blas_threads"`
	Embed       StageTiming  `json:"embed"`
	Throughput  []Throughput `json:"throughput"`
}

// Throughput is embeddings per second from goroutines sharing a pool.
type Throughput struct {
	PoolSize   int           `json:"pool_size"`
	Goroutines int           `json:"goroutines"`
	Embeddings int           `json:"embeddings"`
	Elapsed    time.Duration `json:"elapsed"`
}

// PerSecond is the measured rate.
func (t Throughput) PerSecond() float64 {
	if t.Elapsed <= 0 {
		return 0
	}
	return float64(t.Embeddings) / t.Elapsed.Seconds()
}

// PipelineReport is what `bench pipeline` measured.
type PipelineReport struct {
	Machine     Machine
	Options     PipelineOptions
	ModelTag    string
	Resolutions []PipelineResolution
	// Process is the embed measurement in this process; ATLAS in the child
	// with ATLASDir on LD_LIBRARY_PATH (nil when not run, see ATLASNote).
	Process   EmbedMeasure
	ATLAS     *EmbedMeasure
	ATLASNote string
	// BenchmarkPipeline is true when benchmarks/pipeline_bench_test.go exists.
	BenchmarkPipeline bool
}

// RunPipeline measures decode, detect, align+embed and search per photo,
// embeddings/s with one and two recognisers, and repeats the embed
// measurement under ATLAS; it writes pipeline.md and pipeline.png.
func RunPipeline(ctx context.Context, env *Env, opt PipelineOptions) (*PipelineReport, error) {
	log := env.logger()
	if opt.Iterations < 1 || len(opt.Photos) == 0 {
		return nil, fmt.Errorf("accuracy: pipeline wants photos and iterations >= 1")
	}
	if opt.DatabaseURL == "" {
		return nil, fmt.Errorf("accuracy: pipeline needs a database (LOOPGATE_TEST_DATABASE_URL)")
	}
	rep := &PipelineReport{Machine: DescribeMachine(), Options: opt}
	if _, err := os.Stat(filepath.Join("benchmarks", "pipeline_bench_test.go")); err == nil {
		rep.BenchmarkPipeline = true
	}

	dec := vision.NewDecoder(engine.DefaultImageLimits)
	det, err := detect.NewYuNet(filepath.Join(opt.ModelDir, detect.ModelName), detect.Config{})
	if err != nil {
		return nil, fmt.Errorf("accuracy: detector: %w", err)
	}
	defer det.Close()
	emb, err := newEmbedPool(opt.ModelDir, 1)
	if err != nil {
		return nil, err
	}
	defer emb.Close()
	rep.ModelTag = emb.ModelTag()

	schemaURL, drop, err := benchSchema(ctx, opt.DatabaseURL, "pipeline")
	if err != nil {
		return nil, err
	}
	defer drop()
	g, _, err := gallery.Open(ctx, schemaURL)
	if err != nil {
		return nil, fmt.Errorf("accuracy: open bench gallery: %w", err)
	}
	defer g.Close()
	if err := enrolSynthetic(ctx, g, opt.GalleryPeople, rep.ModelTag, env.Seed); err != nil {
		return nil, err
	}

	var bar *progressbar.ProgressBar
	if env.Progress != nil {
		bar = progressbar.NewOptions(len(opt.Photos)*len(pipelineStages)*opt.Iterations,
			progressbar.OptionSetWriter(env.Progress),
			progressbar.OptionSetDescription("pipeline stages"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(500*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(env.Progress) }),
		)
	}
	step := func() {
		if bar != nil {
			_ = bar.Add(1)
		}
	}
	for _, ph := range opt.Photos {
		res, err := measurePhoto(ctx, opt, dec, det, emb, g, rep.ModelTag, ph, step)
		if err != nil {
			return nil, fmt.Errorf("accuracy: pipeline %s: %w", ph.Label, err)
		}
		rep.Resolutions = append(rep.Resolutions, res)
		log.Info("pipeline photo done", "photo", ph.Label, "embed_p50", res.Stages[StageEmbed].P50.Round(time.Millisecond))
	}

	rep.Process, err = MeasureEmbed(ctx, opt)
	if err != nil {
		return nil, err
	}
	rep.ATLAS, rep.ATLASNote = runATLASChild(ctx, env, opt)
	if err := writePipelineReport(env, rep); err != nil {
		return rep, err
	}
	return rep, nil
}

func newEmbedPool(modelDir string, size int) (*facerec.Pool, error) {
	p, err := facerec.NewPool(facerec.PoolConfig{Config: facerec.Config{ModelDir: modelDir, Detector: facerec.DetectorHOG}, Size: size})
	if err != nil {
		return nil, fmt.Errorf("accuracy: recogniser pool: %w", err)
	}
	return p, nil
}

// measurePhoto times each stage opt.Iterations times on one photo.
func measurePhoto(ctx context.Context, opt PipelineOptions, dec *vision.Decoder, det *detect.YuNet, emb engine.Embedder,
	g *gallery.Gallery, model string, ph PipelinePhoto, step func()) (PipelineResolution, error) {
	res := PipelineResolution{Label: ph.Label, Stages: map[string]StageTiming{}}
	data, err := os.ReadFile(ph.Path)
	if err != nil {
		return res, err
	}
	lat, err := timeStage(opt.Iterations, step, func() error {
		m, _, err := dec.DecodeMat(data)
		if err == nil {
			m.Close()
		}
		return err
	})
	if err != nil {
		return res, err
	}
	res.Stages[StageDecode] = summariseStage(lat)

	mat, _, err := dec.DecodeMat(data)
	if err != nil {
		return res, err
	}
	defer mat.Close()
	res.Width, res.Height = mat.Cols(), mat.Rows()
	var dets []detect.Detection
	lat, err = timeStage(opt.Iterations, step, func() (err error) {
		dets, err = det.Detect(mat)
		return err
	})
	if err != nil {
		return res, err
	}
	res.Stages[StageDetect] = summariseStage(lat)
	if len(dets) == 0 {
		return res, ErrNoFaceInPhoto
	}
	best := dets[0]
	for _, d := range dets[1:] {
		if d.Score > best.Score {
			best = d
		}
	}
	res.FaceBox = best.Box

	var face engine.Face
	lat, err = timeStage(opt.Iterations, step, func() (err error) {
		face, err = still.EmbedFace(ctx, emb, mat, best.Box, vision.CropOptions{})
		return err
	})
	if err != nil {
		return res, err
	}
	res.Stages[StageEmbed] = summariseStage(lat)

	lat, err = timeStage(opt.Iterations, step, func() error {
		_, err := g.NearestPeople(ctx, face.Embedding, model, []string{"bench"}, 2)
		return err
	})
	if err != nil {
		return res, err
	}
	res.Stages[StageSearch] = summariseStage(lat)
	return res, nil
}

// timeStage runs f once untimed (first-call costs: DNN set-up, connection
// and plan caches), then n timed times, calling step after each timed run.
func timeStage(n int, step func(), f func() error) ([]time.Duration, error) {
	if err := f(); err != nil {
		return nil, err
	}
	lat := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if err := f(); err != nil {
			return lat, err
		}
		lat = append(lat, time.Since(t0))
		if step != nil {
			step()
		}
	}
	return lat, nil
}

// MeasureEmbed times EmbedFace on the throughput photo's face and measures
// embeddings/s with pools of one and two recognisers (two goroutines each),
// reporting the BLAS this process runs. The child process of the BLAS
// comparison runs only this.
func MeasureEmbed(ctx context.Context, opt PipelineOptions) (EmbedMeasure, error) {
	tune := runtimetune.Current()
	out := EmbedMeasure{BLAS: tune.BLAS, BLASLibrary: tune.BLASLibrary, BLASThreads: tune.BLASThreads}
	var path string
	for _, p := range opt.Photos {
		if p.Label == opt.ThroughputPhoto {
			path = p.Path
		}
	}
	if path == "" {
		return out, fmt.Errorf("accuracy: throughput photo %q not among the photos", opt.ThroughputPhoto)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return out, err
	}
	mat, _, err := vision.NewDecoder(engine.DefaultImageLimits).DecodeMat(data)
	if err != nil {
		return out, err
	}
	defer mat.Close()
	det, err := detect.NewYuNet(filepath.Join(opt.ModelDir, detect.ModelName), detect.Config{})
	if err != nil {
		return out, fmt.Errorf("accuracy: detector: %w", err)
	}
	dets, err := det.Detect(mat)
	det.Close()
	if err != nil {
		return out, err
	}
	if len(dets) == 0 {
		return out, ErrNoFaceInPhoto
	}
	box := dets[0].Box

	for _, size := range []int{1, 2} {
		pool, err := newEmbedPool(opt.ModelDir, size)
		if err != nil {
			return out, err
		}
		if size == 1 {
			lat, err := timeStage(opt.Iterations, nil, func() error {
				_, err := still.EmbedFace(ctx, pool, mat, box, vision.CropOptions{})
				return err
			})
			if err != nil {
				pool.Close()
				return out, err
			}
			out.Embed = summariseStage(lat)
		}
		tp, err := throughput(ctx, pool, mat, box, 2, opt.ThroughputFor)
		pool.Close()
		if err != nil {
			return out, err
		}
		tp.PoolSize = size
		out.Throughput = append(out.Throughput, tp)
	}
	return out, nil
}

// throughput runs goroutines calling EmbedFace until d has passed.
func throughput(ctx context.Context, emb engine.Embedder, mat gocv.Mat, box image.Rectangle, goroutines int, d time.Duration) (Throughput, error) {
	var (
		done     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	start := time.Now()
	deadline := start.Add(d)
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if _, err := still.EmbedFace(ctx, emb, mat, box, vision.CropOptions{}); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return Throughput{}, firstErr
	}
	return Throughput{Goroutines: goroutines, Embeddings: int(done.Load()), Elapsed: time.Since(start)}, ctx.Err()
}

// runATLASChild repeats MeasureEmbed in a child with ATLAS on the library
// path; the note says why there is no result, or what the child mapped.
func runATLASChild(ctx context.Context, env *Env, opt PipelineOptions) (*EmbedMeasure, string) {
	if len(opt.EmbedChild) == 0 {
		return nil, "not run (no child command given)"
	}
	if st, err := os.Stat(opt.ATLASDir); err != nil || !st.IsDir() {
		return nil, fmt.Sprintf("not run: %s is missing (Debian's libatlas3-base is not installed)", opt.ATLASDir)
	}
	env.logger().Info("embed measurement under ATLAS", "dir", opt.ATLASDir)
	cmd := exec.CommandContext(ctx, opt.EmbedChild[0], opt.EmbedChild[1:]...)
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+opt.ATLASDir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Sprintf("child failed: %v: %s", err, lastLine(stderr.String()))
	}
	m, err := parseEmbedLine(out)
	if err != nil {
		return nil, fmt.Sprintf("child output unreadable: %v", err)
	}
	if m.BLAS != runtimetune.BLASATLAS || !strings.Contains(m.BLASLibrary, "atlas") {
		return &m, fmt.Sprintf("ATLAS was NOT mapped in the child (it ran %s from %s): the row below is not an ATLAS figure", m.BLAS, m.BLASLibrary)
	}
	return &m, fmt.Sprintf("child verified ATLAS mapped: cblas_sgemm from %s", m.BLASLibrary)
}

// parseEmbedLine reads the last JSON line of the child's stdout.
func parseEmbedLine(out []byte) (EmbedMeasure, error) {
	var m EmbedMeasure
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "{") {
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				return m, fmt.Errorf("accuracy: embed line: %w", err)
			}
			return m, nil
		}
	}
	return m, fmt.Errorf("accuracy: no JSON line in child output")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// enrolSynthetic enrols people with one synthetic template each, gates
// ["bench"]; the search cost depends on gallery size, not on who is in it.
func enrolSynthetic(ctx context.Context, g *gallery.Gallery, people int, model string, seed uint64) error {
	params, err := CalibrateSynthetic(DefaultReference())
	if err != nil {
		return err
	}
	gen := NewSynthetic(params, seed)
	for i := range people {
		var sha [32]byte
		binary.BigEndian.PutUint64(sha[:], uint64(i+1))
		_, err := g.Enrol(ctx, gallery.Enrolment{
			ExternalID: fmt.Sprintf("bench-%04d", i), Name: fmt.Sprintf("Bench Person %d", i),
			Source: "bench pipeline", Gates: []string{"bench"},
			Templates: []gallery.Template{{Embedding: gen.Sample(gen.Person()), Model: model, PhotoSHA256: sha}},
		})
		if err != nil {
			return fmt.Errorf("accuracy: enrol synthetic person %d: %w", i, err)
		}
	}
	return nil
}

// msCell formats a stage timing as "p50 / p99" milliseconds.
func msCell(t StageTiming) string {
	if t.N == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%s / %s", ms(t.P50), ms(t.P99))
}

func embedRows(label string, m EmbedMeasure) []string {
	row := []string{label, m.BLAS, "`" + m.BLASLibrary + "`", msCell(m.Embed)}
	for _, size := range []int{1, 2} {
		cell := "n/a"
		for _, t := range m.Throughput {
			if t.PoolSize == size {
				cell = fmt.Sprintf("%.2f (%d in %.1f s)", t.PerSecond(), t.Embeddings, t.Elapsed.Seconds())
			}
		}
		row = append(row, cell)
	}
	return row
}

func writePipelineReport(env *Env, r *PipelineReport) error {
	var b strings.Builder
	b.WriteString("# Pipeline stages: decode → detect → align+embed → search\n\n")
	b.WriteString("Generated by `loopgate bench pipeline`. Each stage runs on a real photo with one face, ")
	fmt.Fprintf(&b, "one untimed warm-up run and then %d timed iterations per stage and photo; cells are **p50 / p99 in milliseconds**.\n\n", r.Options.Iterations)
	b.WriteString(r.Machine.Markdown())
	fmt.Fprintf(&b, "- Model: %s; go-face detector hog on the crop\n", r.ModelTag)
	b.WriteString("\n## Stages\n\n")
	b.WriteString("- decode: `vision.Decoder.DecodeMat` (header check, Go decode, OpenCV decode to a full-resolution BGR Mat)\n")
	b.WriteString("- detect: YuNet (`detect.NewYuNet`, default config) on the full frame\n")
	b.WriteString("- align+embed: `still.EmbedFace`: crop from full resolution, JPEG, go-face (HOG on the crop, 68-point alignment, ResNet embedding); pool of one recogniser\n")
	fmt.Fprintf(&b, "- search: `gallery.NearestPeople(…, [\"bench\"], 2)` over %d synthetic people (one template each, gate `bench`) in a throw-away `bench_pipeline_<hex>` schema, dropped at the end\n\n", r.Options.GalleryPeople)
	var rows [][]string
	for _, res := range r.Resolutions {
		var total time.Duration
		row := []string{res.Label, fmt.Sprintf("%d×%d", res.Width, res.Height), fmt.Sprintf("%d×%d", res.FaceBox.Dx(), res.FaceBox.Dy())}
		for _, s := range pipelineStages {
			row = append(row, msCell(res.Stages[s]))
			total += res.Stages[s].P50
		}
		row = append(row, ms(total))
		rows = append(rows, row)
	}
	b.WriteString(table([]string{"photo", "size", "face box", StageDecode, StageDetect, StageEmbed, StageSearch, "sum of p50s"}, rows))
	b.WriteString("\n![stage p50 per resolution](pipeline.png)\n\n")

	b.WriteString("## Embeddings per second and BLAS\n\n")
	fmt.Fprintf(&b, "EmbedFace on the %s face: latency with a pool of one recogniser (%d iterations, p50 / p99 ms), then two goroutines calling EmbedFace for %s on a pool of one and a pool of two recognisers.\n\n",
		r.Options.ThroughputPhoto, r.Options.Iterations, r.Options.ThroughputFor)
	erows := [][]string{embedRows("this process", r.Process)}
	if r.ATLAS != nil {
		erows = append(erows, embedRows("child, LD_LIBRARY_PATH="+r.Options.ATLASDir, *r.ATLAS))
	}
	b.WriteString(table([]string{"process", "BLAS", "library", "embed p50 / p99", "embeddings/s, pool 1", "embeddings/s, pool 2"}, erows))
	fmt.Fprintf(&b, "\nATLAS run: %s.\n", r.ATLASNote)
	fmt.Fprintf(&b, "\nThe machine has %d cores shared with other jobs: a pool of two can only gain what a second idle core gives.\n", r.Machine.Cores)

	b.WriteString("\n## Capture → decision\n\n")
	if r.BenchmarkPipeline {
		b.WriteString("The whole camera path on the synthetic clips is `BenchmarkPipeline`; run it with\n`go test -run '^$' -bench Pipeline -benchtime 1x ./benchmarks/` (its figures are not copied here).\n")
	} else {
		b.WriteString("No capture→decision benchmark was found (benchmarks/pipeline_bench_test.go).\n")
	}
	if err := writeReport(env.OutDir, "pipeline.md", b.String()); err != nil {
		return err
	}
	return pipelineChart(r).Save(env.OutDir, "pipeline.png")
}

// pipelineChart is stage p50 against frame height, one line per stage.
func pipelineChart(r *PipelineReport) Chart {
	c := Chart{Title: "Pipeline stage p50 per resolution", X: "frame height (px)", Y: "p50 latency (ms, log)", LogY: true, LegendLeft: true,
		// Headroom above for the legend, room below for the sub-millisecond search.
		YMin: 0.1, YMax: 300}
	for _, s := range pipelineStages {
		xy := make(plotter.XYs, 0, len(r.Resolutions))
		for _, res := range r.Resolutions {
			xy = append(xy, plotter.XY{X: float64(res.Height), Y: float64(res.Stages[s].P50) / 1e6})
		}
		c.Series = append(c.Series, Series{Name: s, XY: xy})
	}
	return c
}
