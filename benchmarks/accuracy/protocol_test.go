package accuracy

import (
	"image"
	"image/color"
	"math"
	"strings"
	"testing"

	"github.com/loopgate/loopgate/engine"
)

// near allows for float32 embeddings.
func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

func TestBestThresholdSeparable(t *testing.T) {
	scores := []Score{{0.2, true, false}, {0.4, true, false}, {0.5, false, false}, {0.7, false, false}}
	th, acc := BestThreshold(scores)
	if !near(th, 0.45) || acc != 1 {
		t.Fatalf("got threshold %v accuracy %v, want 0.45 and 1", th, acc)
	}
}

func TestBestThresholdOverlapTakesLowestOptimum(t *testing.T) {
	// Sorted: 0.3 same, 0.5 diff, 0.6 same, 0.8 diff. Accuracy is 3/4 both
	// between 0.3 and 0.5 and between 0.6 and 0.8: the stricter one wins.
	scores := []Score{{0.6, true, false}, {0.8, false, false}, {0.3, true, false}, {0.5, false, false}}
	th, acc := BestThreshold(scores)
	if !near(th, 0.4) || !near(acc, 0.75) {
		t.Fatalf("got threshold %v accuracy %v, want 0.4 and 0.75", th, acc)
	}
	// A pair with a missed face stays in the denominator and is never right.
	th, acc = BestThreshold(append(scores, Score{Same: true, Missing: true}))
	if !near(th, 0.4) || !near(acc, 0.6) {
		t.Fatalf("with a miss: got threshold %v accuracy %v, want 0.4 and 0.6", th, acc)
	}
	if Accuracy([]Score{{Same: false, Missing: true}}, 0.6) != 0 {
		t.Fatal("a missing mismatched pair must count as wrong")
	}
}

func TestCrossValidate(t *testing.T) {
	folds := [][]Score{
		{{0.2, true, false}, {0.9, false, false}},
		{{0.3, true, false}, {0.8, false, false}},
		{{0.7, true, false}, {0.4, false, false}},
	}
	got := CrossValidate(folds)
	want := []struct{ th, train, test float64 }{
		{0.35, 0.75, 1}, // train on folds 2+3: 0.3S 0.4D 0.7S 0.8D
		{0.3, 0.75, 1},  // train on folds 1+3: 0.2S 0.4D 0.7S 0.9D
		{0.55, 1, 0},    // train on folds 1+2: separable, fold 3 inverted
	}
	for i, w := range want {
		g := got[i]
		if !near(g.Threshold, w.th) || !near(g.TrainAccuracy, w.train) || !near(g.TestAccuracy, w.test) {
			t.Errorf("fold %d: got %+v, want threshold %v train %v test %v", i, g, w.th, w.train, w.test)
		}
	}
	mean, std := MeanStd([]float64{got[0].TestAccuracy, got[1].TestAccuracy, got[2].TestAccuracy})
	if !near(mean, 2.0/3) || !near(std, math.Sqrt(1.0/3)) {
		t.Errorf("mean %v std %v, want 2/3 and sqrt(1/3)", mean, std)
	}
}

func TestDET(t *testing.T) {
	scores := []Score{{0.2, true, false}, {0.5, true, false}, {Same: true, Missing: true}, {0.4, false, false}, {0.9, false, false}}
	want := []DETPoint{{0.2, 0, 2.0 / 3}, {0.4, 0.5, 2.0 / 3}, {0.5, 0.5, 1.0 / 3}, {0.9, 1, 1.0 / 3}}
	got := DET(scores)
	if len(got) != len(want) {
		t.Fatalf("got %d points, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if !near(got[i].Threshold, want[i].Threshold) || !near(got[i].FMR, want[i].FMR) || !near(got[i].FNMR, want[i].FNMR) {
			t.Errorf("point %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestHistogramThresholdAtRate(t *testing.T) {
	h := NewHistogram(0.1, 2)
	for _, d := range []float64{0.05, 0.15, 0.25, 0.35} {
		h.Add(d)
	}
	for _, c := range []struct{ rate, want float64 }{{0, 0}, {0.25, 0.1}, {0.5, 0.2}, {1, 2}} {
		if got := h.ThresholdAtRate(c.rate); !near(got, c.want) {
			t.Errorf("rate %v: threshold %v, want %v", c.rate, got, c.want)
		}
	}
	if h.Below(0.3) != 3 || !near(h.RateBelow(0.2), 0.5) {
		t.Errorf("Below(0.3)=%d RateBelow(0.2)=%v, want 3 and 0.5", h.Below(0.3), h.RateBelow(0.2))
	}
	// A distance beyond the range lands in the last bin, so it is counted.
	h.Add(5)
	if h.N != 5 || h.Counts[len(h.Counts)-1] != 1 {
		t.Errorf("overflow not counted: N=%d last=%d", h.N, h.Counts[len(h.Counts)-1])
	}
}

func at(x float32) engine.Embedding {
	var e engine.Embedding
	e[0] = x
	return e
}

func TestGallerySearch(t *testing.T) {
	var g Gallery
	g.Enrol("A", at(0), at(5))
	g.Enrol("B", at(1))
	g.Enrol("C", at(3))
	g.Enrol("failed") // no template: never found
	h := g.Search(at(0.2))
	if h.Person != "A" || !near(h.D1, 0.2) || !near(h.D2, 0.8) || !near(h.Margin(), 0.6) {
		t.Fatalf("got %+v, want A at 0.2, next at 0.8", h)
	}
	// A person's distance is that of their nearest template.
	h = g.Search(at(4.6))
	if h.Person != "A" || !near(h.D1, 0.4) || !near(h.D2, 1.6) {
		t.Fatalf("got %+v, want A at 0.4 (second template), C at 1.6", h)
	}
	var one Gallery
	one.Enrol("A", at(0))
	if h := one.Search(at(1)); !math.IsInf(h.D2, 1) || !math.IsInf(h.Margin(), 1) {
		t.Fatalf("single-person gallery: %+v, want infinite second distance", h)
	}
}

func TestFPIRFNIRAndThreshold(t *testing.T) {
	nonMated := []Decision{
		{Score: 0.3, Person: "X", Margin: 0.2},
		{Score: 0.5, Person: "X", Margin: 1},
		{Score: 0.7, Person: "Y", Margin: 1},
		{Score: 0.9, Person: "Y", Margin: 1},
		{Missing: true, Score: math.Inf(1)},
	}
	// 20% of 5 allows one false positive: just below the second score.
	th := ThresholdAtFPIR(nonMated, 0.2, 0)
	if th >= 0.5 || th < 0.5-1e-12 {
		t.Fatalf("threshold %v, want just below 0.5", th)
	}
	if k, n := FPIRCount(nonMated, th, 0); k != 1 || n != 5 {
		t.Fatalf("FPIR %d/%d, want 1/5", k, n)
	}
	if th := ThresholdAtFPIR(nonMated, 0.1, 0); FPIR(nonMated, th, 0) != 0 || th >= 0.3 {
		t.Fatalf("target 10%%: threshold %v FPIR %v, want below 0.3 and 0", th, FPIR(nonMated, th, 0))
	}
	// With margin 0.5 the 0.3 search never opens, so one more can.
	th = ThresholdAtFPIR(nonMated, 0.2, 0.5)
	if th >= 0.7 || th < 0.7-1e-12 || !near(FPIR(nonMated, th, 0.5), 0.2) {
		t.Fatalf("margin 0.5: threshold %v FPIR %v, want just below 0.7 and 0.2", th, FPIR(nonMated, th, 0.5))
	}
	if !math.IsInf(ThresholdAtFPIR(nonMated, 1, 0), 1) {
		t.Fatal("target 100% should allow any threshold")
	}

	mated := []Decision{
		{Score: 0.2, Person: "A", Truth: "A", Margin: 1},
		{Score: 0.4, Person: "B", Truth: "A", Margin: 1}, // wrong person at rank 1
		{Score: 0.6, Person: "A", Truth: "A", Margin: 1}, // too far at 0.5
		{Missing: true, Score: math.Inf(1), Truth: "A"},
	}
	if k, n := FNIRCount(mated, 0.5, 0); k != 3 || n != 4 {
		t.Fatalf("FNIR %d/%d, want 3/4", k, n)
	}
	if got := FNIR(mated, 1, 0); !near(got, 0.5) {
		t.Fatalf("FNIR at 1.0 = %v, want 0.5 (wrong person and no face)", got)
	}
	if got := Rank1(mated); !near(got, 0.5) {
		t.Fatalf("rank-1 %v, want 0.5", got)
	}
	op := AtFPIR(mated, nonMated, 0.2, 0)
	if op.FalsePositives != 1 || op.Misses != 3 || !near(op.FPIR(), 0.2) || !near(op.FNIR(), 0.75) {
		t.Fatalf("operating point %+v", op)
	}
	pts := DETIdent(mated, nonMated, 0)
	// Thresholds are the distinct eligible scores: 0.2 0.3 0.4 0.5 0.6 0.7 0.9.
	if len(pts) != 7 || !near(pts[0].FNMR, 0.75) || !near(pts[0].FMR, 0) || !near(pts[4].FNMR, 0.5) || !near(pts[4].FMR, 0.4) {
		t.Fatalf("DET points %+v", pts)
	}
}

func TestFusionRules(t *testing.T) {
	hits := []Hit{
		{Person: "A", D1: 0.3, D2: 0.8},
		{Person: "A", D1: 0.5, D2: 0.6},
		{Person: "B", D1: 0.2, D2: 0.6},
	}
	if d := VoteDecision(hits, 2, 0, "A"); d.Missing || d.Person != "A" || !near(d.Score, 0.5) {
		t.Fatalf("2-of-3 vote: %+v, want A at 0.5 (second-best agreeing frame)", d)
	}
	// A margin of 0.2 disqualifies the 0.5 frame (margin 0.1): no two agree.
	if d := VoteDecision(hits, 2, 0.2, "A"); !d.Missing || d.Opens(2, 0) {
		t.Fatalf("2-of-3 vote with margin 0.2: %+v, want no decision", d)
	}
	if d := BestDecision(hits, "A"); d.Person != "B" || !near(d.Score, 0.2) || !near(d.Margin, 0.4) {
		t.Fatalf("best frame: %+v, want B at 0.2 margin 0.4", d)
	}
	missing := []Hit{{D1: math.Inf(1), D2: math.Inf(1)}}
	if d := BestDecision(missing, "A"); !d.Missing {
		t.Fatalf("best frame of no faces: %+v, want missing", d)
	}
	m := MeanEmbedding([]engine.Embedding{at(0), at(4)}, nil)
	w := MeanEmbedding([]engine.Embedding{at(0), at(4)}, []float64{1, 3})
	if m[0] != 2 || w[0] != 3 {
		t.Fatalf("mean %v weighted %v, want 2 and 3", m[0], w[0])
	}
	var g Gallery
	g.Enrol("A", at(0))
	g.Enrol("B", at(3))
	walker := Walker{Truth: "A", Frames: []Frame{{Face: CachedFace{Embedding: at(0.9)}, OK: true}, {OK: false}, {Face: CachedFace{Embedding: at(-0.3)}, OK: true}}}
	d := MeanOfFrames(0).Decide(&g, walker, SearchFrames(&g, walker), 0)
	if d.Person != "A" || !near(d.Score, 0.3) || !near(d.Margin, 2.4) {
		t.Fatalf("mean of frames: %+v, want A at 0.3 (mean 0.3 of the two usable frames)", d)
	}
	d = SingleFrame().Decide(&g, walker, SearchFrames(&g, walker), 0)
	if d.Person != "A" || !near(d.Score, 0.9) {
		t.Fatalf("single frame: %+v, want A at 0.9", d)
	}
}

func TestClopperPearson(t *testing.T) {
	lo, hi := ClopperPearson(0, 100, 0.95)
	if lo != 0 || math.Abs(hi-(1-math.Pow(0.025, 0.01))) > 1e-6 {
		t.Fatalf("0/100: [%v, %v], want [0, %v]", lo, hi, 1-math.Pow(0.025, 0.01))
	}
	lo, hi = ClopperPearson(100, 100, 0.95)
	if hi != 1 || math.Abs(lo-math.Pow(0.025, 0.01)) > 1e-6 {
		t.Fatalf("100/100: [%v, %v]", lo, hi)
	}
	lo, hi = ClopperPearson(5, 10, 0.95)
	if !(lo < 0.5 && hi > 0.5 && near(lo, 1-hi)) {
		t.Fatalf("5/10 should be symmetric around 0.5: [%v, %v]", lo, hi)
	}
}

func TestParsePairs(t *testing.T) {
	folds, err := ParsePairs(strings.NewReader("2\t1\nAl\t1\t2\nAl\t1\tBo\t3\nCy\t2\t3\nDi\t1\tEd\t1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(folds) != 2 || len(folds[1]) != 2 {
		t.Fatalf("got %d folds", len(folds))
	}
	if p := folds[0][1]; p.Same || p.A != LFWKey("Al", 1) || p.B != "datasets/lfw/images/Bo/Bo_0003.jpg" {
		t.Fatalf("mismatched pair: %+v", p)
	}
	if p := folds[1][0]; !p.Same || p.B != LFWKey("Cy", 3) {
		t.Fatalf("matched pair: %+v", p)
	}
	if _, err := ParsePairs(strings.NewReader("1\t2\nAl\t1\t2\n")); err == nil {
		t.Fatal("truncated pairs file accepted")
	}
	if _, err := ParsePairs(strings.NewReader("1\t1\nAl\t1\nAl\t1\tBo\t2\n")); err == nil {
		t.Fatal("malformed matched line accepted")
	}
}

func TestSubjectIsNearestCentre(t *testing.T) {
	r := CacheRecord{Width: 250, Height: 250, Faces: []CachedFace{
		{Box: [4]int{0, 0, 60, 60}, Sharpness: 1},
		{Box: [4]int{80, 80, 170, 170}, Sharpness: 2},
		{Box: [4]int{190, 10, 250, 70}, Sharpness: 3},
	}}
	f, ok := r.Subject()
	if !ok || f.Sharpness != 2 {
		t.Fatalf("subject %+v, want the centred face", f)
	}
	if _, ok := (CacheRecord{Width: 250, Height: 250}).Subject(); ok {
		t.Fatal("a record without faces has no subject")
	}
}

func TestLaplacianVariance(t *testing.T) {
	g := image.NewGray(image.Rect(0, 0, 5, 5))
	if v := LaplacianVariance(g, g.Bounds()); v != 0 {
		t.Fatalf("flat image: %v, want 0", v)
	}
	g.SetGray(2, 2, color.Gray{Y: 255})
	// Interior 3x3: -1020 at the centre, +255 at its 4 neighbours, 0 at the corners.
	if v := LaplacianVariance(g, g.Bounds()); !near(v, 1300500.0/9) {
		t.Fatalf("single bright pixel: %v, want %v", v, 1300500.0/9)
	}
	if LaplacianVariance(nil, image.Rect(0, 0, 5, 5)) != 0 {
		t.Fatal("nil image should give 0")
	}
}

func TestSequentialMeanTakesEveryLook(t *testing.T) {
	var g Gallery
	g.Enrol("A", at(0))
	g.Enrol("B", at(2))
	// Running means: 0.9 (after 1 frame), 0.6 (after 2), 0.5 (after 3).
	walker := Walker{Frames: []Frame{{Face: CachedFace{Embedding: at(0.9)}, OK: true}, {Face: CachedFace{Embedding: at(0.3)}, OK: true}, {Face: CachedFace{Embedding: at(0.3)}, OK: true}}}
	d := SequentialMean(2, 3).Decide(&g, walker, nil, 0)
	if d.Missing || d.Person != "A" || !near(d.Score, 0.5) {
		t.Fatalf("sequential 2..3: %+v, want A at 0.5 (the best of the means after 2 and 3 frames)", d)
	}
	// The margin applies per look: after 2 frames the gap is 0.8, after 3 it is 1.0.
	if d := SequentialMean(2, 3).Decide(&g, walker, nil, 0.9); d.Missing || !near(d.Score, 0.5) {
		t.Fatalf("margin 0.9: %+v, want only the 3-frame look (margin 1.0) at 0.5", d)
	}
	if d := SequentialMean(2, 2).Decide(&g, walker, nil, 0.9); !d.Missing {
		t.Fatalf("2..2 with margin 0.9: %+v, want no qualifying look", d)
	}
	if d := SequentialMean(4, 5).Decide(&g, walker, nil, 0); !d.Missing {
		t.Fatalf("too few frames: %+v, want no decision", d)
	}
}
