package accuracy

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/internal/testenv"
)

func TestQuantileInterpolates(t *testing.T) {
	xs := []float64{1, 2, 3, 4}
	for _, c := range []struct{ q, want float64 }{
		{0, 1}, {1, 4}, {0.5, 2.5}, {0.99, 3.97}, {1.0 / 3, 2}, {-1, 1}, {2, 4},
	} {
		if got := Quantile(xs, c.q); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("Quantile(%v, %v) = %v, want %v", xs, c.q, got, c.want)
		}
	}
	if got := Quantile(nil, 0.5); !math.IsNaN(got) {
		t.Errorf("Quantile(empty) = %v, want NaN", got)
	}
	if got := Quantile([]float64{7}, 0.99); got != 7 {
		t.Errorf("Quantile of one value = %v, want 7", got)
	}
	// LatencyQuantile sorts a copy: the caller's order is kept.
	ds := []time.Duration{4 * time.Millisecond, time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond}
	if got := LatencyQuantile(ds, 0.5); got != 2500*time.Microsecond {
		t.Errorf("LatencyQuantile p50 = %v, want 2.5ms", got)
	}
	if ds[0] != 4*time.Millisecond {
		t.Error("LatencyQuantile reordered its input")
	}
	if got := LatencyQuantile(nil, 0.99); got != 0 {
		t.Errorf("LatencyQuantile(empty) = %v, want 0", got)
	}
}

func TestRecall(t *testing.T) {
	exact := [][]int64{{1, 2, 3}, {4, 5, 6}, {7, 8, 9}, {}}
	got := [][]int64{{1, 3, 2}, {5, 4, 6}, {7, 10, 11}, {42}}
	if r := RecallAt1(got, exact); math.Abs(r-2.0/3) > 1e-12 {
		t.Errorf("recall@1 = %v, want 2/3 (query without an exact answer skipped)", r)
	}
	// Top-3 sets: 3/3, 3/3, 1/3.
	if r := RecallAtK(got, exact, 3); math.Abs(r-7.0/9) > 1e-12 {
		t.Errorf("recall@3 = %v, want 7/9", r)
	}
	// A method that answered fewer queries counts the rest as misses.
	if r := RecallAt1(got[:1], exact); math.Abs(r-1.0/3) > 1e-12 {
		t.Errorf("recall@1 with missing answers = %v, want 1/3", r)
	}
	if r := RecallAt1(nil, nil); !math.IsNaN(r) {
		t.Errorf("recall@1 of nothing = %v, want NaN", r)
	}
}

func TestBruteForceTopKMatchesSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	gal := make([]engine.Embedding, 500)
	for i := range gal {
		for j := range gal[i] {
			gal[i][j] = float32(rng.NormFloat64())
		}
	}
	for range 20 {
		var q engine.Embedding
		for j := range q {
			q[j] = float32(rng.NormFloat64())
		}
		ids := make([]int64, len(gal))
		for i := range ids {
			ids[i] = int64(i + 1)
		}
		sort.Slice(ids, func(a, b int) bool {
			return engine.Distance(gal[ids[a]-1], q) < engine.Distance(gal[ids[b]-1], q)
		})
		if got := BruteForceTopK(gal, q, 10); !slices.Equal(got, ids[:10]) {
			t.Fatalf("top-10 = %v, want %v", got, ids[:10])
		}
		for _, workers := range []int{1, 3} {
			if got := ParallelScanTopK(FlattenGallery(gal), q, 10, workers); !slices.Equal(got, ids[:10]) {
				t.Fatalf("parallel scan (%d workers) top-10 = %v, want %v", workers, got, ids[:10])
			}
		}
	}
	if got := BruteForceTopK(gal[:3], gal[0], 10); len(got) != 3 || got[0] != 1 {
		t.Errorf("top-10 of 3 = %v, want 3 ids starting with 1", got)
	}
}

// The generator must reproduce the reference it was calibrated on: that is
// what makes the synthetic vectors stand in for face embeddings.
func TestSyntheticMatchesReference(t *testing.T) {
	for _, ref := range []EmbeddingReference{
		DefaultReference(),
		// The LFW cache's figures (benchmarks/results/search.md): norm ≈ 1.42.
		{Norm: DistanceStats{Mean: 1.4235, SD: 0.0697}, Genuine: DistanceStats{Mean: 0.4285}, Impostor: DistanceStats{Mean: 0.8183}},
	} {
		p, err := CalibrateSynthetic(ref)
		if err != nil {
			t.Fatal(err)
		}
		gen := NewSynthetic(p, 7)
		gal := gen.GenerateGallery(6000)
		got := MeasureSynthetic(gal, 50000, 7)
		check := func(what string, got, want, tol float64) {
			t.Helper()
			if math.Abs(got-want) > tol {
				t.Errorf("norm %.2f: %s = %.4f, want %.4f ± %.3f", ref.Norm.Mean, what, got, want, tol)
			}
		}
		check("norm mean", got.Norm.Mean, ref.Norm.Mean, 0.01)
		check("norm sd", got.Norm.SD, ref.Norm.SD, 0.01)
		check("same-person distance mean", got.Genuine.Mean, ref.Genuine.Mean, 0.03)
		check("cross-person distance mean", got.Impostor.Mean, ref.Impostor.Mean, 0.03)
		check("templates per person", got.TemplatesPerMean, 3, 0.15)
		// Face-like separation: nearly all same-person pairs are closer than
		// nearly all cross-person pairs, but the tails meet.
		if got.Genuine.P95 >= got.Impostor.P5 {
			t.Errorf("same-person p95 %.3f not below cross-person p5 %.3f", got.Genuine.P95, got.Impostor.P5)
		}
		if got.Genuine.Max < got.Impostor.Min {
			t.Errorf("same-person and cross-person distances never overlap (max %.3f < min %.3f): too easy to be face-like", got.Genuine.Max, got.Impostor.Min)
		}
		// Mated probes find their person; non-mated ones are far.
		qs := gen.Queries(gal, len(gal.Templates), 200)
		found := 0
		for _, q := range qs {
			top := BruteForceTopK(gal.Templates, q.Embedding, 1)
			if q.Mated && gal.Owner[top[0]-1] == q.Person {
				found++
			}
			if !q.Mated && engine.Distance(gal.Templates[top[0]-1], q.Embedding) < 0.2*ref.Norm.Mean {
				t.Errorf("non-mated probe within %.3f of a template", engine.Distance(gal.Templates[top[0]-1], q.Embedding))
			}
		}
		if found < 95 {
			t.Errorf("mated probes whose nearest template is their person: %d/100, want ≥ 95", found)
		}
	}
}

func TestSyntheticIsDeterministic(t *testing.T) {
	p, err := CalibrateSynthetic(DefaultReference())
	if err != nil {
		t.Fatal(err)
	}
	a, b := NewSynthetic(p, 11).GenerateGallery(50), NewSynthetic(p, 11).GenerateGallery(50)
	if !slices.Equal(a.Templates, b.Templates) || !slices.Equal(a.Owner, b.Owner) {
		t.Error("same seed gave different galleries")
	}
	c := NewSynthetic(p, 12).GenerateGallery(50)
	if slices.Equal(a.Templates[:1], c.Templates[:1]) {
		t.Error("different seeds gave the same first template")
	}
}

func TestCalibrateRejectsImpossibleReference(t *testing.T) {
	for _, ref := range []EmbeddingReference{
		{Norm: DistanceStats{Mean: 1}, Genuine: DistanceStats{Mean: 0.9}, Impostor: DistanceStats{Mean: 0.5}},
		{Norm: DistanceStats{Mean: 1}, Genuine: DistanceStats{Mean: 0.4}, Impostor: DistanceStats{Mean: 1.5}},
		{Norm: DistanceStats{Mean: 0}, Genuine: DistanceStats{Mean: 0.4}, Impostor: DistanceStats{Mean: 0.9}},
	} {
		if _, err := CalibrateSynthetic(ref); err == nil {
			t.Errorf("CalibrateSynthetic(%+v) accepted an impossible reference", ref)
		}
	}
}

func TestMeasureReferenceGroupsByPerson(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "embeddings", "m.hog+cnn.jsonl")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	enc := json.NewEncoder(f)
	// Two people, two images each, at distance 0.5 within and 3 across;
	// one image without a face is ignored.
	emb := func(x, y float32) engine.Embedding { var e engine.Embedding; e[0], e[1] = x, y; return e }
	for _, r := range []struct {
		key  string
		e    engine.Embedding
		face bool
	}{
		{"datasets/lfw/images/A/A_0001.jpg", emb(1, 0), true},
		{"datasets/lfw/images/A/A_0002.jpg", emb(1, 0.5), true},
		{"datasets/lfw/images/B/B_0001.jpg", emb(-2, 0), true},
		{"datasets/lfw/images/B/B_0002.jpg", emb(-2, 0.5), true},
		{"datasets/lfw/images/B/B_0003.jpg", emb(9, 9), false},
	} {
		rec := CacheRecord{Key: r.key, Width: 250, Height: 250}
		if r.face {
			rec.Faces = []CachedFace{{Box: [4]int{50, 50, 200, 200}, Embedding: r.e}}
		}
		if err := enc.Encode(rec); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	if got := FindReferenceCache(dir); got != path {
		t.Fatalf("FindReferenceCache = %q, want %q", got, path)
	}
	ref, err := MeasureReference(path, 100, 1)
	if err != nil {
		t.Fatal(err)
	}
	if ref.People != 2 || ref.Images != 4 || ref.Genuine.N != 2 {
		t.Fatalf("people %d images %d genuine pairs %d, want 2, 4, 2", ref.People, ref.Images, ref.Genuine.N)
	}
	if ref.Genuine.Mean != 0.5 {
		t.Errorf("genuine mean %v, want 0.5", ref.Genuine.Mean)
	}
	if ref.Impostor.Min < 3 || ref.Impostor.Max > math.Hypot(3, 0.5)+1e-6 {
		t.Errorf("impostor range [%v, %v], want within [3, %.4f]", ref.Impostor.Min, ref.Impostor.Max, math.Hypot(3, 0.5))
	}
}

// A small end-to-end run on the real database: the exact PostgreSQL
// methods must agree with the in-process exact answer.
func TestRunSearchSmall(t *testing.T) {
	base := testenv.DatabaseURL(t)
	out := t.TempDir()
	env := &Env{CacheDir: t.TempDir(), OutDir: out, Seed: 5, Quick: true}
	opt := DefaultSearchOptions(true)
	opt.DatabaseURL, opt.Sizes, opt.Queries, opt.EfSearch = base, []int{400, 200}, 12, []int{10, 400}
	rep, err := RunSearch(context.Background(), env, opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Sizes) != 2 || rep.Sizes[0].Templates != 200 || rep.Sizes[1].Templates != 400 {
		t.Fatalf("sizes %+v, want 200 then 400", rep.Sizes)
	}
	for _, s := range rep.Sizes {
		if len(s.Methods) != 6 {
			t.Fatalf("%d methods at %d, want 6", len(s.Methods), s.Templates)
		}
		for _, m := range s.Methods[:4] {
			if m.Queries != 12 || m.Recall1 != 1 {
				t.Errorf("%d templates, %s: %d queries, recall@1 %v; an exact method must find the exact answer", s.Templates, m.Method, m.Queries, m.Recall1)
			}
			if m.PersonRecall1 != 1 || (m.Method != methodGateNP && m.DecisionAgree != 1) {
				t.Errorf("%d templates, %s: person recall %v, decision agreement %v; want 1", s.Templates, m.Method, m.PersonRecall1, m.DecisionAgree)
			}
		}
		if s.TableBytes <= 0 || s.IndexBytes <= 0 || s.TotalBytes < s.TableBytes+s.IndexBytes {
			t.Errorf("sizes: table %d index %d total %d", s.TableBytes, s.IndexBytes, s.TotalBytes)
		}
		if s.People <= 0 || s.People > s.Templates {
			t.Errorf("%d people for %d templates", s.People, s.Templates)
		}
	}
	if rep.PgvectorVersion == "" {
		t.Error("pgvector version not recorded")
	}
	for _, name := range []string{"search-quick.md", "search-latency-p50-quick.png", "search-latency-p99-quick.png", "search-recall-quick.png"} {
		if st, err := os.Stat(filepath.Join(out, name)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", name, err)
		}
	}
}

// The covariance model fitted on a population must regenerate that
// population's distances and norms, and see its effective dimension.
func TestCovarianceModelReproducesPopulation(t *testing.T) {
	// A population with a known low-dimensional structure: isotropic
	// generator output projected so only the first 16 coordinates vary
	// between people.
	p, err := CalibrateSynthetic(DefaultReference())
	if err != nil {
		t.Fatal(err)
	}
	src := NewSynthetic(p, 21).GenerateGallery(8000)
	byPerson := map[int][]engine.Embedding{}
	for i, e := range src.Templates {
		for j := 16; j < len(e); j++ {
			e[j] *= 0.1
		}
		byPerson[src.Owner[i]] = append(byPerson[src.Owner[i]], e)
	}
	people := make([][]engine.Embedding, 0, len(byPerson))
	for i := range len(byPerson) {
		people = append(people, byPerson[i])
	}
	flat := SyntheticGallery{}
	for i, ps := range people {
		for _, e := range ps {
			flat.Templates = append(flat.Templates, e)
			flat.Owner = append(flat.Owner, i)
		}
	}
	want := MeasureSynthetic(flat, 50000, 1)
	model, err := FitCovariance(people, want.Genuine.MeanSq, want.Impostor.MeanSq, defaultSpreadSD)
	if err != nil {
		t.Fatal(err)
	}
	if model.BetweenEffDim > 40 {
		t.Errorf("between-person effective dimension %.1f, want well below 128 for a population varying in ~16 directions", model.BetweenEffDim)
	}
	ref := want
	ref.Model = model
	q, err := CalibrateSynthetic(ref)
	if err != nil {
		t.Fatal(err)
	}
	got := MeasureSynthetic(NewSynthetic(q, 22).GenerateGallery(8000), 50000, 2)
	for _, c := range []struct {
		what      string
		got, want float64
	}{
		{"norm mean", got.Norm.Mean, want.Norm.Mean},
		{"same-person distance mean", got.Genuine.Mean, want.Genuine.Mean},
		{"cross-person distance mean", got.Impostor.Mean, want.Impostor.Mean},
	} {
		if math.Abs(c.got-c.want) > 0.03*c.want {
			t.Errorf("%s: regenerated %.4f, population %.4f", c.what, c.got, c.want)
		}
	}
	if _, err := FitCovariance(people[:1], 1, 2, 0); err == nil {
		t.Error("FitCovariance accepted a single person")
	}
}
