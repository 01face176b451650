package accuracy

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot/plotter"

	"github.com/loopgate/loopgate/engine"
)

// FMRTargets are the per-comparison false-match rates calibrated on all
// LFW cross-person pairs.
var FMRTargets = []float64{1e-2, 1e-3, 1e-4, 1e-5}

// fixedThresholds are the distance thresholds every table reports.
var fixedThresholds = []float64{0.6, 0.55, 0.5, 0.45, 0.4}

// LFWResult is the outcome of the View 2 protocol.
type LFWResult struct {
	Folds []FoldResult
	// Accuracy mean and sample std over folds, misses counted as errors.
	Mean, Std float64
	// AtShipped is the accuracy per fold at engine.DefaultMatchThreshold.
	AtShipped []float64
	// MissedImages are View 2 images without a usable face; MissedPairs the
	// pairs they spoil.
	MissedImages []string
	MissedPairs  int
	// Alternative treatments of the missed pairs, for comparison only.
	MeanMissAsNoMatch, MeanMissExcluded float64
	Scores                              []Score
}

// RunView2 runs LFW's View 2 protocol on the cache.
func RunView2(c *Cache, folds [][]Pair) LFWResult {
	var res LFWResult
	missed := map[string]bool{}
	scoreFolds := make([][]Score, len(folds))
	asNoMatch := make([][]Score, len(folds))
	excluded := make([][]Score, len(folds))
	for k, fold := range folds {
		for _, p := range fold {
			a, okA := c.Subject(p.A)
			b, okB := c.Subject(p.B)
			if !okA {
				missed[p.A] = true
			}
			if !okB {
				missed[p.B] = true
			}
			s := Score{Same: p.Same, Missing: !okA || !okB}
			if !s.Missing {
				s.Distance = engine.Distance(a.Embedding, b.Embedding)
				excluded[k] = append(excluded[k], s)
				asNoMatch[k] = append(asNoMatch[k], s)
			} else {
				res.MissedPairs++
				asNoMatch[k] = append(asNoMatch[k], Score{Same: p.Same, Distance: math.Inf(1)})
			}
			scoreFolds[k] = append(scoreFolds[k], s)
			res.Scores = append(res.Scores, s)
		}
	}
	for key := range missed {
		res.MissedImages = append(res.MissedImages, key)
	}
	slices.Sort(res.MissedImages)
	res.Folds = CrossValidate(scoreFolds)
	accs := make([]float64, len(res.Folds))
	for i, f := range res.Folds {
		accs[i] = f.TestAccuracy
		res.AtShipped = append(res.AtShipped, Accuracy(scoreFolds[i], engine.DefaultMatchThreshold))
	}
	res.Mean, res.Std = MeanStd(accs)
	res.MeanMissAsNoMatch = meanTest(CrossValidate(asNoMatch))
	res.MeanMissExcluded = meanTest(CrossValidate(excluded))
	return res
}

func meanTest(fr []FoldResult) float64 {
	xs := make([]float64, len(fr))
	for i, f := range fr {
		xs[i] = f.TestAccuracy
	}
	m, _ := MeanStd(xs)
	return m
}

// lfwFaces lists the subject face of every LFW image with one, grouped by
// person, and counts the images without.
func lfwFaces(c *Cache, l *LFW, people []string) (faces []Labelled, misses []string) {
	for _, p := range people {
		for _, img := range l.Images[p] {
			if f, ok := c.Subject(img.Key); ok {
				faces = append(faces, Labelled{Person: p, Emb: f.Embedding})
			} else {
				misses = append(misses, img.Key)
			}
		}
	}
	return faces, misses
}

// RunLFW embeds LFW (cached), runs View 2 and the all-pairs calibration,
// and writes lfw.md with its plots into env.OutDir.
func RunLFW(ctx context.Context, env *Env, d Datasets) error {
	machine := DescribeMachine()
	caches, err := EmbedAll(ctx, env, d, false)
	if err != nil {
		return err
	}
	c := caches.Plain
	f, err := os.Open(filepath.Join(env.SharedDir, "datasets/lfw/pairs.txt"))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDataset, err)
	}
	folds, err := ParsePairs(f)
	f.Close()
	if err != nil {
		return err
	}
	start := time.Now()
	res := RunView2(c, folds)
	faces, allMisses := lfwFaces(c, d.LFW, d.LFW.People)
	env.logger().Info("comparing all LFW pairs", "faces", len(faces), "pairs", len(faces)*(len(faces)-1)/2)
	ap := CompareAll(faces)
	analysis := time.Since(start)

	if err := lfwPlots(env.OutDir, res, ap); err != nil {
		return err
	}
	report := lfwReport(env, machine, c, d, res, ap, allMisses, analysis)
	if err := writeReport(env.OutDir, "lfw.md", report); err != nil {
		return err
	}
	env.logger().Info("LFW View 2", "accuracy", pct(res.Mean), "std", pct(res.Std), "report", filepath.Join(env.OutDir, "lfw.md"))
	return nil
}

func lfwPlots(dir string, res LFWResult, ap AllPairs) error {
	mark := func(name string, pts []DETPoint, t float64) Series {
		// The point of the curve at the largest threshold not above t.
		i, _ := slices.BinarySearchFunc(pts, t, func(p DETPoint, t float64) int { return cmpFloat(p.Threshold, t) })
		if i >= len(pts) || pts[i].Threshold > t && i > 0 {
			i--
		}
		return Series{Name: name, XY: plotter.XYs{{X: pts[i].FMR, Y: pts[i].FNMR}}, Points: true}
	}
	view2 := DET(res.Scores)
	all := HistDET(ap.Genuine, ap.Impostor)
	det := Chart{
		Title: "LFW deep-funneled: DET (lower left is better)",
		X:     "FMR", Y: "FNMR",
		LogX: true, LogY: true, XMin: 1e-6, YMin: 1e-4, LegendBottom: true, LegendLeft: true,
		Series: []Series{
			detSeries(fmt.Sprintf("View 2 pairs (%d)", len(res.Scores)), view2),
			detSeries(fmt.Sprintf("all pairs (%.3gM impostor)", float64(ap.Impostor.N)/1e6), all),
			mark("threshold 0.6, View 2", view2, engine.DefaultMatchThreshold),
			mark("threshold 0.6, all pairs", all, engine.DefaultMatchThreshold),
		},
	}
	if err := det.Save(dir, "lfw-det.png"); err != nil {
		return err
	}
	roc := func(name string, pts []DETPoint) Series {
		s := detSeries(name, pts)
		for i := range s.XY {
			s.XY[i].Y = 1 - s.XY[i].Y
		}
		return s
	}
	rocChart := Chart{
		Title: "LFW deep-funneled: ROC",
		X:     "FMR", Y: "1 - FNMR",
		LogX: true, XMin: 1e-6, LegendBottom: true,
		Series: []Series{
			roc(fmt.Sprintf("View 2 pairs (%d)", len(res.Scores)), view2),
			roc("all pairs", all),
		},
	}
	if err := rocChart.Save(dir, "lfw-roc.png"); err != nil {
		return err
	}
	density := func(name string, h *Histogram) Series {
		// Re-bin to 0.01 so the curves are smooth; density per unit distance.
		const w = 0.01
		per := int(math.Round(w / h.Width))
		var xy plotter.XYs
		for k := 0; k+per <= len(h.Counts); k += per {
			var n int64
			for _, c := range h.Counts[k : k+per] {
				n += c
			}
			xy = append(xy, plotter.XY{X: (float64(k) + float64(per)/2) * h.Width, Y: float64(n) / float64(h.N) / w})
		}
		return Series{Name: name, XY: xy}
	}
	dist := Chart{
		Title: "LFW deep-funneled: distance distributions, all pairs",
		X:     "distance", Y: "density",
		XMin: 0, XMax: 1.4,
		Series:       []Series{density("same person", ap.Genuine), density("different people", ap.Impostor)},
		VerticalAt:   []float64{engine.DefaultMatchThreshold},
		VerticalName: []string{"shipped threshold 0.6"},
	}
	return dist.Save(dir, "lfw-distances.png")
}

func lfwReport(env *Env, m Machine, c *Cache, d Datasets, res LFWResult, ap AllPairs, allMisses []string, analysis time.Duration) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# LFW verification accuracy\n\n")
	w("Generated by `loopgate bench lfw`; every figure below comes from that run. ")
	w("Protocol: **LFW deep-funneled, View 2, 10-fold** (pairs.txt: 10 folds × 300 matched + 300 mismatched pairs). ")
	w("For each fold the threshold that maximises accuracy on the other 9 folds is chosen, and accuracy is measured on the held-out fold.\n\n")
	w("## Setup\n\n")
	w("%s", m.Markdown())
	w("- Data: LFW deep-funneled, %d images of %d people (%s)\n", d.LFW.NumImages(), len(d.LFW.People), filepath.Join(env.SharedDir, "datasets/lfw"))
	w("- Recogniser: engine/vision decoder + engine/facerec, model tag `%s`, detector `%s`; with several faces the one nearest the image centre is the subject\n", env.ModelTag, env.Detector)
	w("- Embedding cache: `%s` (%d images)%s\n", c.Path(), c.Len(), runsSummary(c))
	w("- Distance: Euclidean (engine.Distance; pgvector's `<->` is the same metric); a pair matches when distance ≤ threshold\n")
	w("- Analysis time (all cached): %s\n\n", analysis.Round(time.Millisecond))

	accs := make([]float64, len(res.Folds))
	ts := make([]float64, len(res.Folds))
	for i, f := range res.Folds {
		accs[i], ts[i] = f.TestAccuracy, f.Threshold
	}
	mt, st := MeanStd(ts)
	ms, ss := MeanStd(res.AtShipped)
	w("## Result\n\n")
	w("**Accuracy %.2f%% ± %.2f** (mean ± sample standard deviation over the 10 folds; standard error of the mean %.2f).\n\n",
		100*res.Mean, 100*res.Std, 100*res.Std/math.Sqrt(float64(len(res.Folds))))
	w("Chosen thresholds: %.4f–%.4f (mean %.4f ± %.4f).\n\n", slices.Min(ts), slices.Max(ts), mt, st)
	w("At the engine's shipped threshold (engine.DefaultMatchThreshold = %.2f, no training): **%.2f%% ± %.2f**.\n\n", engine.DefaultMatchThreshold, 100*ms, 100*ss)
	w("References: dlib publishes 99.38%% ± 0.27 for the original weights on the original (not deep-funneled) images; ")
	w("these model files (face-api.js port re-serialised for dlib) measured 98.83%% ± 0.44 in a separate harness (shared/models/README.md).\n\n")
	rows := [][]string{}
	for i, f := range res.Folds {
		rows = append(rows, []string{fmt.Sprint(f.Fold + 1), thr(f.Threshold), pct(f.TrainAccuracy), pct(f.TestAccuracy), pct(res.AtShipped[i]), fmt.Sprint(f.Missing)})
	}
	w("%s\n", table([]string{"fold", "threshold (9 folds)", "accuracy on 9 folds", "accuracy on this fold", "accuracy at 0.6", "pairs with a miss"}, rows))

	w("## Detector misses\n\n")
	w("Across all of LFW, %d of %d images have no usable face (detector `%s`).", len(allMisses), d.LFW.NumImages(), env.Detector)
	w(" In View 2, %d images are missed, spoiling %d of %d pairs.\n\n", len(res.MissedImages), res.MissedPairs, len(res.Scores))
	w("**Handling: a pair with a missed image counts as wrong, whatever its label** (never dropped). For comparison only: ")
	w("treating a miss as \"no match\" (right for mismatched pairs) gives %s, and excluding those pairs gives %s.\n\n", pct(res.MeanMissAsNoMatch), pct(res.MeanMissExcluded))
	if len(res.MissedImages) > 0 {
		w("Missed View 2 images: %s.\n\n", "`"+strings.Join(res.MissedImages, "`, `")+"`")
	}

	w("## Per-comparison calibration on all LFW pairs\n\n")
	w("Every pair of the %d LFW faces was compared (no sampling): %d same-person pairs and %d cross-person (impostor) pairs. ",
		len(d.LFW.AllKeys())-len(allMisses), ap.Genuine.N, ap.Impostor.N)
	w("Histogram bins are %.0e wide, so thresholds below are accurate to one bin. ", HistBin)
	w("Same-person pairs are dominated by a few people (the most-photographed person alone has hundreds of images), so FNMR is also given averaged per person (%d people).\n\n", len(ap.GenuineByPerson))
	rows = nil
	for _, target := range FMRTargets {
		t := ap.Impostor.ThresholdAtRate(target)
		rows = append(rows, []string{fmt.Sprintf("FMR ≤ %.0e", target), thr(t), fmt.Sprintf("%.2e (%d pairs)", ap.Impostor.RateBelow(t), ap.Impostor.Below(t)),
			pct(1 - ap.Genuine.RateBelow(t)), pct(ap.FNMRPersonBalanced(t))})
	}
	for _, t := range fixedThresholds {
		rows = append(rows, []string{"fixed", thr(t), fmt.Sprintf("%.2e (%d pairs)", ap.Impostor.RateBelow(t), ap.Impostor.Below(t)),
			pct(1 - ap.Genuine.RateBelow(t)), pct(ap.FNMRPersonBalanced(t))})
	}
	w("%s\n", table([]string{"target", "threshold (match if distance < t)", "FMR measured", "FNMR (all pairs)", "FNMR (per-person mean)"}, rows))
	w("Note: LFW has a few mislabelled and near-duplicate images; at FMR 1e-5 (≈%d impostor pairs) such errors are a visible share of the tail.\n\n", int64(1e-5*float64(ap.Impostor.N)))

	w("## Plots\n\n")
	w("- `lfw-det.png`: DET (FNMR vs FMR, log-log) for the 6,000 View 2 pairs and for all pairs, with the 0.6 operating point marked\n")
	w("- `lfw-roc.png`: ROC (true match rate vs FMR)\n")
	w("- `lfw-distances.png`: same-person and cross-person distance distributions with the 0.6 threshold\n")
	return b.String()
}

// runsSummary describes the logged embedding runs of a cache.
func runsSummary(c *Cache) string {
	runs := c.Runs()
	if len(runs) == 0 {
		return "; no embedding runs logged"
	}
	var n int
	var secs float64
	blas := map[string]bool{}
	for _, r := range runs {
		n += r.Embedded
		secs += r.ElapsedSeconds
		blas[r.BLAS] = true
	}
	var bl []string
	for k := range blas {
		bl = append(bl, k)
	}
	slices.Sort(bl)
	s := fmt.Sprintf("; %d logged embedding runs embedded %d images in %.0f s (%.1f ms per image with %d recognisers in parallel on a shared machine), BLAS %s",
		len(runs), n, secs, 1000*secs/float64(max(n, 1)), runs[len(runs)-1].Workers, strings.Join(bl, " / "))
	if n < c.Len() {
		s += fmt.Sprintf("; %d records were made before run logging was added (same code path)", c.Len()-n)
	}
	return s
}
