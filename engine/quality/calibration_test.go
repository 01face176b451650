package quality_test

// CALIBRATION TOOL, not a test: TestCalibrationReport measures real faces and
// prints the tables behind the thresholds in profiles.go and THRESHOLDS.md.
// It asserts nothing and runs only when asked:
//
//	LOOPGATE_CALIBRATE=1 go test -count=1 -timeout 60m -run TestCalibrationReport -v ./engine/quality/
//
// LOOPGATE_CALIBRATE_N sets the LFW sample size (default 300).

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/detect"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/quality"
	"github.com/loopgate/loopgate/engine/vision"
	"github.com/loopgate/loopgate/internal/testenv"
)

func TestCalibrationReport(t *testing.T) {
	if os.Getenv("LOOPGATE_CALIBRATE") != "1" {
		t.Skip("calibration tool: set LOOPGATE_CALIBRATE=1 to print the calibration tables")
	}
	n := 300
	if s := os.Getenv("LOOPGATE_CALIBRATE_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		n = v
	}
	c := &calibration{t: t, rec: newRecognizer(t), yunet: newYuNet(t)}
	c.loadLFW(n)
	c.cleanDistributions()
	c.yawCalibration()
	c.genuineByYaw()
	c.otherSets()
	c.scaleInvariance()
	c.degradations()
	c.idolsSweeps()
	c.profileOutcomes()
}

type calibration struct {
	t     *testing.T
	rec   *facerec.Recognizer
	yunet *detect.YuNet
	lfw   []lfwFace
	idols []quality.Measures // every face YuNet finds in the idols photos
	all   []variantResult    // every degraded LFW variant, for the pooled tables
}

type lfwFace struct {
	name     string
	path     string
	f        face             // go-face: embedding, 68 landmarks
	det      detect.Detection // YuNet: box, five landmarks, score
	m        quality.Measures // from YuNet + MeasureFace, as the pipeline measures
	yawIdx   float64          // from YuNet's landmarks
	yawIdx68 float64          // from go-face's 68 landmarks reduced to five
	yawRef   float64          // from 14 other landmarks, see referenceYaw
	other    engine.Embedding
	hasPair  bool
}

// centre of a rectangle.
func centre(r image.Rectangle) image.Point { return r.Min.Add(r.Max).Div(2) }

func (c *calibration) printf(format string, args ...any) { fmt.Printf(format, args...) }

// loadLFW takes n people with at least two images, evenly spread over the
// alphabetical list, and measures image 1 and embeds image 2.
func (c *calibration) loadLFW(n int) {
	t := c.t
	root := filepath.Join(testenv.SharedDir(t), "datasets", "lfw", "images")
	dirs, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var people []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(root, d.Name(), d.Name()+"_0002.jpg")); err == nil {
			people = append(people, d.Name())
		}
	}
	sort.Strings(people)
	step := float64(len(people)) / float64(n)
	missedGoFace, missedYuNet := 0, 0
	for i := 0; i < n; i++ {
		name := people[int(float64(i)*step)]
		path := lfwPath(t, name, 1)
		mat := readMat(t, path)
		f, _, ok := centralFace(t, c.rec, mat)
		if !ok {
			missedGoFace++
			mat.Close()
			continue
		}
		det, faces, ok := yunetFace(t, c.yunet, mat, centre(f.Box))
		if !ok {
			missedYuNet++
			mat.Close()
			continue
		}
		lf := lfwFace{name: name, path: path, f: f, det: det, m: measureDetection(t, mat, det, faces)}
		lf.yawIdx, _, _ = quality.YawIndex(det.Landmarks)
		lf.yawIdx68, _, _ = quality.YawIndex(f.five)
		lf.yawRef = referenceYaw(f.Landmarks)
		mat.Close()
		mat2 := readMat(t, lfwPath(t, name, 2))
		if f2, _, ok := centralFace(t, c.rec, mat2); ok {
			lf.other, lf.hasPair = f2.Embedding, true
		}
		mat2.Close()
		c.lfw = append(c.lfw, lf)
	}
	c.printf("\n## LFW sample\n%d people with >= 2 images (of %d), every %.2f-th alphabetically; image _0001 measured, _0002 embedded as the person's other photo. Left out: go-face found no face in %d, YuNet none in %d; %d faces used.\n",
		n, len(people), step, missedGoFace, missedYuNet, len(c.lfw))
}

func distRow(label string, xs []float64) string {
	return fmt.Sprintf("| %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |", label, len(xs),
		percentile(xs, 1), percentile(xs, 5), percentile(xs, 25), percentile(xs, 50), percentile(xs, 75), percentile(xs, 95), percentile(xs, 99))
}

const distHeader = "| measure | n | p1 | p5 | p25 | p50 | p75 | p95 | p99 |\n|---|---|---|---|---|---|---|---|---|"

func measureColumns(ms []quality.Measures) map[string][]float64 {
	cols := map[string][]float64{}
	for _, m := range ms {
		cols["inter_eye_px"] = append(cols["inter_eye_px"], m.InterEyePx)
		cols["sharpness_var"] = append(cols["sharpness_var"], m.SharpnessVar)
		cols["brightness"] = append(cols["brightness"], m.Brightness)
		cols["contrast"] = append(cols["contrast"], m.Contrast)
		cols["abs_yaw_deg"] = append(cols["abs_yaw_deg"], math.Abs(m.YawDeg))
		cols["abs_roll_deg"] = append(cols["abs_roll_deg"], math.Abs(m.RollDeg))
		cols["detector_score"] = append(cols["detector_score"], m.DetectorScore)
	}
	return cols
}

func (c *calibration) printDistributions(title string, ms []quality.Measures) {
	c.printf("\n%s\n%s\n", title, distHeader)
	cols := measureColumns(ms)
	for _, k := range []string{"inter_eye_px", "sharpness_var", "brightness", "contrast", "abs_yaw_deg", "abs_roll_deg", "detector_score"} {
		row := distRow(k, cols[k])
		if k == "detector_score" {
			row = fmt.Sprintf("| %s | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |", k, len(cols[k]), percentile(cols[k], 1), percentile(cols[k], 5),
				percentile(cols[k], 25), percentile(cols[k], 50), percentile(cols[k], 75), percentile(cols[k], 95), percentile(cols[k], 99))
		}
		c.printf("%s\n", row)
	}
}

func (c *calibration) cleanDistributions() {
	var ms []quality.Measures
	for _, lf := range c.lfw {
		ms = append(ms, lf.m)
	}
	c.printDistributions("## Clean LFW deep-funneled (250x250): YuNet box and landmarks, MeasureFace", ms)
}

// yawCalibration fits NoseDepthRatio: r = k·tan(yawRef) through the origin.
func (c *calibration) yawCalibration() {
	fit := func(index func(lfwFace) float64) float64 {
		var sxy, sxx float64
		for _, lf := range c.lfw {
			tn := math.Tan(lf.yawRef * math.Pi / 180)
			sxy += index(lf) * tn
			sxx += tn * tn
		}
		return sxy / sxx
	}
	k := fit(func(lf lfwFace) float64 { return lf.yawIdx })
	k68 := fit(func(lf lfwFace) float64 { return lf.yawIdx68 })
	c.printf("\n## Yaw calibration\nReference yaw: scaled-orthographic fit of a 14-point anthropometric 3D model (brows, eye corners, nose wings, mouth corners, lower lip, chin; not the nose tip) to go-face's 68 landmarks.\nFitted k (yaw index = k·tan(reference yaw)), least squares through the origin: **%.3f** with YuNet's five landmarks, %.3f with go-face's 68 reduced to five (in use: %.2f).\n",
		k, k68, quality.NoseDepthRatio)
	c.printf("\n| reference abs(yaw) | n | median abs(ours) (YuNet) | median abs(ours - reference) | p90 abs(ours - reference) |\n|---|---|---|---|---|\n")
	bins := []float64{0, 5, 10, 15, 20, 30, 45, 90}
	for i := 0; i+1 < len(bins); i++ {
		var ours, errs []float64
		for _, lf := range c.lfw {
			if a := math.Abs(lf.yawRef); a >= bins[i] && a < bins[i+1] {
				ours = append(ours, math.Abs(lf.m.YawDeg))
				errs = append(errs, math.Abs(lf.m.YawDeg-lf.yawRef))
			}
		}
		c.printf("| %.0f–%.0f° | %d | %.1f | %.1f | %.1f |\n", bins[i], bins[i+1], len(ours), percentile(ours, 50), percentile(errs, 50), percentile(errs, 90))
	}
	var ref, ours, roll68, rollY []float64
	for _, lf := range c.lfw {
		ref = append(ref, lf.yawRef)
		ours = append(ours, lf.m.YawDeg)
		_, r68 := quality.PoseFromLandmarks(lf.f.five)
		roll68 = append(roll68, r68)
		rollY = append(rollY, lf.m.RollDeg)
	}
	var rollDiff []float64
	for i := range roll68 {
		rollDiff = append(rollDiff, math.Abs(roll68[i]-rollY[i]))
	}
	c.printf("Pearson correlation, our yaw (YuNet) vs reference: %.3f. Roll, YuNet vs go-face eye centres: |difference| p50 %.1f°, p90 %.1f°.\n",
		pearson(ref, ours), percentile(rollDiff, 50), percentile(rollDiff, 90))
}

func pearson(x, y []float64) float64 {
	var mx, my float64
	for i := range x {
		mx += x[i]
		my += y[i]
	}
	mx /= float64(len(x))
	my /= float64(len(y))
	var sxy, sxx, syy float64
	for i := range x {
		sxy += (x[i] - mx) * (y[i] - my)
		sxx += (x[i] - mx) * (x[i] - mx)
		syy += (y[i] - my) * (y[i] - my)
	}
	return sxy / math.Sqrt(sxx*syy)
}

// genuineByYaw: for each sampled person, up to 8 photos; the most frontal
// one (YuNet yaw) is the reference and every other photo is compared with
// it: how much a turned head costs the match.
func (c *calibration) genuineByYaw() {
	t := c.t
	type probe struct {
		yaw, roll float64
		emb       engine.Embedding
	}
	var pairsYaw, pairsDist []float64
	people := 0
	for _, lf := range c.lfw {
		var ps []probe
		for i := 1; i <= 8; i++ {
			path := lfwPath(t, lf.name, i)
			if _, err := os.Stat(path); err != nil {
				break
			}
			mat := readMat(t, path)
			if f, _, ok := centralFace(t, c.rec, mat); ok {
				if d, _, ok := yunetFace(t, c.yunet, mat, centre(f.Box)); ok {
					yaw, roll := quality.PoseFromLandmarks(d.Landmarks)
					ps = append(ps, probe{yaw, roll, f.Embedding})
				}
			}
			mat.Close()
		}
		if len(ps) < 2 {
			continue
		}
		people++
		ref := 0
		for i, p := range ps {
			if math.Abs(p.yaw) < math.Abs(ps[ref].yaw) {
				ref = i
			}
		}
		for i, p := range ps {
			if i != ref {
				pairsYaw = append(pairsYaw, math.Abs(p.yaw))
				pairsDist = append(pairsDist, engine.Distance(p.emb, ps[ref].emb))
			}
		}
	}
	c.printf("\n## Genuine distance by abs(yaw): %d people, up to 8 photos each; each photo against the same person's most frontal photo\n| probe abs(yaw) (ours) | pairs | p50 distance | p90 distance | match rate at %.2f |\n|---|---|---|---|---|\n", people, engine.DefaultMatchThreshold)
	bins := []float64{0, 10, 20, 25, 30, 35, 40, 50, 90}
	for i := 0; i+1 < len(bins); i++ {
		var ds []float64
		match := 0
		for j, y := range pairsYaw {
			if y >= bins[i] && y < bins[i+1] {
				ds = append(ds, pairsDist[j])
				if pairsDist[j] <= engine.DefaultMatchThreshold {
					match++
				}
			}
		}
		c.printf("| %.0f–%.0f° | %d | %.3f | %.3f | %s |\n", bins[i], bins[i+1], len(ds), percentile(ds, 50), percentile(ds, 90), rate(match, len(ds)))
	}
}

func rate(k, n int) string {
	if n == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f%% (%d/%d)", 100*float64(k)/float64(n), k, n)
}

// otherSets measures every face YuNet finds in the idols photos and the
// obama resolutions, at full resolution as a camera frame would be.
func (c *calibration) otherSets() {
	t := c.t
	shared := testenv.SharedDir(t)
	paths, _ := filepath.Glob(filepath.Join(shared, "datasets", "idols", "images", "*.jpg"))
	sort.Strings(paths)
	var ms []quality.Measures
	for _, p := range paths {
		full := readMat(t, p)
		dets, err := c.yunet.Detect(full)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dets {
			ms = append(ms, measureDetection(t, full, d, len(dets)))
		}
		full.Close()
	}
	c.idols = ms
	c.printDistributions(fmt.Sprintf("## Idols (%d photos, %d faces found by YuNet, full resolution)", len(paths), len(ms)), ms)

	c.printf("\n## Obama, one photo at several resolutions (full frame, YuNet)\n| file | frame | faces | inter-eye px | sharpness | brightness | contrast | yaw° | roll° | score |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, name := range []string{"obama-240p.jpg", "obama-480p.jpg", "obama-720p.jpg", "obama-1080p.jpg", "obama_small.jpg"} {
		mat := readMat(t, filepath.Join(shared, "media", name))
		d, faces, ok := yunetFace(t, c.yunet, mat, image.Pt(mat.Cols()/2, mat.Rows()/2))
		if !ok {
			c.printf("| %s | %dx%d | 0 | | | | | | | |\n", name, mat.Cols(), mat.Rows())
			mat.Close()
			continue
		}
		m := measureDetection(t, mat, d, faces)
		c.printf("| %s | %dx%d | %d | %.1f | %.0f | %.0f | %.1f | %.1f | %.1f | %.2f |\n", name, mat.Cols(), mat.Rows(), faces, m.InterEyePx, m.SharpnessVar, m.Brightness, m.Contrast, m.YawDeg, m.RollDeg, m.DetectorScore)
		mat.Close()
	}
}

// rawLaplacianVar is the variance of the Laplacian on the face crop at its
// own size: what MeasureFace would report without the 112x112 resampling.
func rawLaplacianVar(t testing.TB, mat gocv.Mat, box image.Rectangle) float64 {
	region := mat.Region(box.Intersect(image.Rect(0, 0, mat.Cols(), mat.Rows())))
	defer region.Close()
	gray := gocv.NewMat()
	defer gray.Close()
	gocv.CvtColor(region, &gray, gocv.ColorBGRToGray)
	lap := gocv.NewMat()
	defer lap.Close()
	gocv.Laplacian(gray, &lap, gocv.MatTypeCV64F, 1, 1, 0, gocv.BorderDefault)
	mean, std := gocv.NewMat(), gocv.NewMat()
	defer mean.Close()
	defer std.Close()
	gocv.MeanStdDev(lap, &mean, &std)
	return std.GetDoubleAt(0, 0) * std.GetDoubleAt(0, 0)
}

// scaleInvariance shows why MeasureFace resamples to 112x112: the same
// sharp face (obama-1080p) shrunk to several sizes, raw versus normalised.
func (c *calibration) scaleInvariance() {
	t := c.t
	mat := readMat(t, filepath.Join(testenv.SharedDir(t), "media", "obama-1080p.jpg"))
	defer mat.Close()
	d, _, ok := yunetFace(t, c.yunet, mat, image.Pt(mat.Cols()/2, mat.Rows()/2))
	if !ok {
		t.Fatal("YuNet found no face in obama-1080p.jpg")
	}
	c.printf("\n## Why a fixed 112x112 patch: one face (obama-1080p, YuNet box) shrunk by area averaging\n| scale | box px | raw Laplacian variance on the crop | MeasureFace sharpness (112x112) |\n|---|---|---|---|\n")
	for _, s := range []float64{1, 0.75, 0.5, 0.35, 0.25, 0.15} {
		small := shrink(mat, s)
		box := scaleRect(d.Box, s)
		px, err := vision.MeasureFace(small, box)
		if err != nil {
			t.Fatal(err)
		}
		c.printf("| %.2f | %dx%d | %.0f | %.0f |\n", s, box.Dx(), box.Dy(), rawLaplacianVar(t, small, box), px.SharpnessVar)
		small.Close()
	}
}

// variantResult is one degraded version of one LFW face.
type variantResult struct {
	kind     string // blur, scale, dark, bright, contrast, roll, clean
	level    string
	detected bool             // YuNet found the face in the degraded frame
	m        quality.Measures // as the gate measures the degraded frame
	found    bool             // go-face found a face to embed
	drift    float64          // distance to the clean embedding of the same image
	matched  bool             // degraded vs the person's other photo <= 0.6
	hasOther bool
}

type degradation struct {
	kind, level string
	// apply returns the frame the gate sees, where the face should be in
	// it, and the image go-face embeds (the same Mat unless enlarged; the
	// caller closes both). ok=false: the level does not apply to this face.
	apply func(src gocv.Mat, lf lfwFace) (frame gocv.Mat, near image.Point, embedImg gocv.Mat, ok bool)
}

func pixelOp(kind, level string, op func(gocv.Mat) gocv.Mat) degradation {
	return degradation{kind, level, func(src gocv.Mat, lf lfwFace) (gocv.Mat, image.Point, gocv.Mat, bool) {
		out := op(src)
		return out, centre(lf.det.Box), out, true
	}}
}

func scaleTo(interEye float64) degradation {
	return degradation{"scale", fmt.Sprintf("%.0f px", interEye), func(src gocv.Mat, lf lfwFace) (gocv.Mat, image.Point, gocv.Mat, bool) {
		s := interEye / lf.m.InterEyePx
		if s >= 1 {
			return gocv.Mat{}, image.Point{}, gocv.Mat{}, false
		}
		small := shrink(src, s)
		big := enlarge(small, image.Pt(src.Cols(), src.Rows()))
		return small, centre(scaleRect(lf.det.Box, s)), big, true
	}}
}

func rotate(deg float64) degradation {
	return degradation{"roll", fmt.Sprintf("%.0f°", deg), func(src gocv.Mat, lf lfwFace) (gocv.Mat, image.Point, gocv.Mat, bool) {
		c := centre(lf.det.Box)
		rot := gocv.GetRotationMatrix2D(c, deg, 1)
		defer rot.Close()
		out := gocv.NewMat()
		gocv.WarpAffineWithParams(src, &out, rot, image.Pt(src.Cols(), src.Rows()), gocv.InterpolationLinear, gocv.BorderReflect101, color.RGBA{})
		return out, c, out, true
	}}
}

func degradations() []degradation {
	var ds []degradation
	for _, s := range []float64{0.5, 1, 1.5, 2, 3, 4} {
		ds = append(ds, pixelOp("blur", fmt.Sprintf("σ=%.1f", s), func(m gocv.Mat) gocv.Mat { return gaussianBlur(m, s) }))
	}
	for _, e := range []float64{32, 30, 28, 26, 24, 22, 20, 18, 16, 12} {
		ds = append(ds, scaleTo(e))
	}
	for _, a := range []float64{0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.07} {
		ds = append(ds, pixelOp("dark", fmt.Sprintf("×%.2f", a), func(m gocv.Mat) gocv.Mat { return scaleLevels(m, a, 0) }))
	}
	for _, a := range []float64{1.25, 1.5, 2, 2.5, 3} {
		ds = append(ds, pixelOp("bright", fmt.Sprintf("×%.2f", a), func(m gocv.Mat) gocv.Mat { return scaleLevels(m, a, 0) }))
	}
	for _, b := range []float64{40, 60, 80, 100, 140} {
		ds = append(ds, pixelOp("bright", fmt.Sprintf("+%.0f", b), func(m gocv.Mat) gocv.Mat { return scaleLevels(m, 1, b) }))
	}
	for _, k := range []float64{0.7, 0.5, 0.35, 0.25, 0.15, 0.1} {
		ds = append(ds, pixelOp("contrast", fmt.Sprintf("c=%.2f", k), func(m gocv.Mat) gocv.Mat { return flattenContrast(m, k) }))
	}
	for _, d := range []float64{10, 15, 20, 25, 30, 40} {
		ds = append(ds, rotate(d))
	}
	return ds
}

func (c *calibration) degradations() {
	t := c.t
	ds := degradations()
	results := make([][]variantResult, len(ds))
	// Noise floor of the embedding: the clean image after changes that
	// remove no face information worth the name.
	floors := []struct {
		name string
		op   func(gocv.Mat) (gocv.Mat, error)
		d    []float64
	}{
		{"JPEG q75 round trip", func(m gocv.Mat) (gocv.Mat, error) {
			buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, m, []int{gocv.IMWriteJpegQuality, 75})
			if err != nil {
				return gocv.Mat{}, err
			}
			defer buf.Close()
			return gocv.IMDecode(buf.GetBytes(), gocv.IMReadColor)
		}, nil},
		{"shifted by 2 px", func(m gocv.Mat) (gocv.Mat, error) {
			out := gocv.NewMat()
			gocv.CopyMakeBorder(m, &out, 2, 0, 2, 0, gocv.BorderReflect101, color.RGBA{})
			return out, nil
		}, nil},
		{"mirrored", func(m gocv.Mat) (gocv.Mat, error) {
			out := gocv.NewMat()
			gocv.Flip(m, &out, 1)
			return out, nil
		}, nil},
	}
	for _, lf := range c.lfw {
		src := readMat(t, lf.path)
		for i := range floors {
			m, err := floors[i].op(src)
			if err != nil {
				t.Fatal(err)
			}
			if g, _, ok := centralFace(t, c.rec, m); ok {
				floors[i].d = append(floors[i].d, engine.Distance(g.Embedding, lf.f.Embedding))
			}
			m.Close()
		}
		for i, d := range ds {
			frame, near, embedImg, ok := d.apply(src, lf)
			if !ok {
				continue
			}
			r := variantResult{kind: d.kind, level: d.level, hasOther: lf.hasPair}
			if det, faces, ok := yunetFace(t, c.yunet, frame, near); ok {
				r.detected = true
				r.m = measureDetection(t, frame, det, faces)
			}
			if g, _, ok := centralFace(t, c.rec, embedImg); ok {
				r.found = true
				r.drift = engine.Distance(g.Embedding, lf.f.Embedding)
				r.matched = lf.hasPair && engine.Distance(g.Embedding, lf.other) <= engine.DefaultMatchThreshold
			}
			results[i] = append(results[i], r)
			c.all = append(c.all, r)
			if embedImg.Ptr() != frame.Ptr() {
				embedImg.Close()
			}
			frame.Close()
		}
		src.Close()
	}
	c.printf("\n## Degraded LFW faces: embedding drift from the clean embedding of the same image\n")
	for _, f := range floors {
		c.printf("Noise floor, %s: drift p50 %.3f, p90 %.3f, max %.3f over %d faces.\n", f.name, percentile(f.d, 50), percentile(f.d, 90), percentile(f.d, 100), len(f.d))
	}
	var genuine []float64
	match := 0
	for _, lf := range c.lfw {
		if lf.hasPair {
			d := engine.Distance(lf.f.Embedding, lf.other)
			genuine = append(genuine, d)
			if d <= engine.DefaultMatchThreshold {
				match++
			}
		}
	}
	c.printf("Clean photo 1 vs photo 2 of the same person: distance p50 %.3f, p90 %.3f, match rate at %.2f (engine.DefaultMatchThreshold) %s.\n\n",
		percentile(genuine, 50), percentile(genuine, 90), engine.DefaultMatchThreshold, rate(match, len(genuine)))
	c.printf("Measures are YuNet + MeasureFace on the degraded frame (for scale: the small frame); drift and match use go-face on the degraded image (for scale: enlarged back).\n\n")
	c.printf("| degradation | n | YuNet found | go-face found | inter-eye p50 | sharpness p50 | brightness p50 | contrast p50 | abs(roll) p50 | drift p50 | drift p90 | drift > 0.15 | match vs other photo at %.2f |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n", engine.DefaultMatchThreshold)
	for i, d := range ds {
		rs := results[i]
		var drift, eye, sharp, bright, con, roll []float64
		detected, found, over, matched, withOther := 0, 0, 0, 0, 0
		for _, r := range rs {
			if r.detected {
				detected++
				eye = append(eye, r.m.InterEyePx)
				sharp = append(sharp, r.m.SharpnessVar)
				bright = append(bright, r.m.Brightness)
				con = append(con, r.m.Contrast)
				roll = append(roll, math.Abs(r.m.RollDeg))
			}
			if r.hasOther {
				withOther++
				if r.matched {
					matched++
				}
			}
			if !r.found {
				continue
			}
			found++
			drift = append(drift, r.drift)
			if r.drift > 0.15 {
				over++
			}
		}
		c.printf("| %s %s | %d | %s | %s | %.1f | %.0f | %.0f | %.1f | %.1f | %.3f | %.3f | %s | %s |\n", d.kind, d.level, len(rs), rate(detected, len(rs)), rate(found, len(rs)),
			percentile(eye, 50), percentile(sharp, 50), percentile(bright, 50), percentile(con, 50), percentile(roll, 50),
			percentile(drift, 50), percentile(drift, 90), rate(over, found), rate(matched, withOther))
	}
	sharpEdges := []float64{0, 10, 20, 30, 40, 50, 60, 70, 80, 100, 150, 1e9}
	c.pooled("sharpness_var (blur and scale variants, and clean)", []string{"blur", "scale", "clean"}, func(m quality.Measures) float64 { return m.SharpnessVar }, sharpEdges)
	c.pooled("sharpness_var (blur variants only, and clean)", []string{"blur", "clean"}, func(m quality.Measures) float64 { return m.SharpnessVar }, sharpEdges)
	c.pooled("inter_eye_px (scale variants and clean)", []string{"scale", "clean"}, func(m quality.Measures) float64 { return m.InterEyePx },
		[]float64{0, 14, 17, 19, 21, 23, 25, 27, 29, 31, 34, 38, 42, 1e9})
	c.pooled("brightness (dark variants and clean)", []string{"dark", "clean"}, func(m quality.Measures) float64 { return m.Brightness },
		[]float64{0, 15, 25, 30, 35, 40, 45, 50, 60, 70, 80, 256})
	c.pooled("brightness (bright variants and clean)", []string{"bright", "clean"}, func(m quality.Measures) float64 { return m.Brightness },
		[]float64{0, 150, 160, 170, 180, 190, 200, 210, 220, 230, 256})
	c.pooled("contrast (contrast variants and clean)", []string{"contrast", "clean"}, func(m quality.Measures) float64 { return m.Contrast },
		[]float64{0, 5, 8, 10, 12, 14, 16, 18, 20, 22, 25, 30, 1e9})
	c.pooled("abs_roll_deg measured on the rotated image (roll variants and clean)", []string{"roll", "clean"}, func(m quality.Measures) float64 { return math.Abs(m.RollDeg) },
		[]float64{0, 5, 10, 15, 20, 25, 30, 35, 45, 90})
}

// pooled bins every variant of the given kinds (plus the clean faces, drift
// 0 by definition) that YuNet found by one measure and prints the drift per
// bin.
func (c *calibration) pooled(title string, kinds []string, value func(quality.Measures) float64, edges []float64) {
	want := map[string]bool{}
	for _, k := range kinds {
		want[k] = true
	}
	rs := append([]variantResult(nil), c.all...)
	if want["clean"] {
		for _, lf := range c.lfw {
			rs = append(rs, variantResult{kind: "clean", detected: true, found: true, m: lf.m, hasOther: lf.hasPair,
				matched: lf.hasPair && engine.Distance(lf.f.Embedding, lf.other) <= engine.DefaultMatchThreshold})
		}
	}
	c.printf("\n### Drift by measured %s\n| bin | n | go-face found | drift p50 | drift p90 | drift > 0.15 | match vs other photo at %.2f |\n|---|---|---|---|---|---|---|\n", title, engine.DefaultMatchThreshold)
	for i := 0; i+1 < len(edges); i++ {
		var drift []float64
		n, found, over, matched, withOther := 0, 0, 0, 0, 0
		for _, r := range rs {
			if !want[r.kind] || !r.detected {
				continue
			}
			v := value(r.m)
			if v < edges[i] || v >= edges[i+1] {
				continue
			}
			n++
			if r.hasOther {
				withOther++
				if r.matched {
					matched++
				}
			}
			if !r.found {
				continue
			}
			found++
			drift = append(drift, r.drift)
			if r.drift > 0.15 {
				over++
			}
		}
		c.printf("| [%g, %s) | %d | %s | %.3f | %.3f | %s | %s |\n", edges[i], upper(edges[i+1]), n, rate(found, n), percentile(drift, 50), percentile(drift, 90), rate(over, found), rate(matched, withOther))
	}
}

func upper(v float64) string {
	if v >= 1e9 {
		return "∞"
	}
	return fmt.Sprintf("%g", v)
}

// idolsSweeps starts from larger, sharper faces than LFW's (~40 px between
// the eyes, soft JPEGs): each single-face idols photo with >= 90 px between
// the eyes at 1024 px is (a) shrunk so the eyes are N px apart and enlarged
// back for go-face, and (b) blurred with σ = f·(inter-eye distance), the
// same relative blur as σ = 0.5…4 px on LFW's 40 px faces. Measures come
// from YuNet on the shrunk or blurred frame.
func (c *calibration) idolsSweeps() {
	t := c.t
	paths, _ := filepath.Glob(filepath.Join(testenv.SharedDir(t), "datasets", "idols", "images", "*.jpg"))
	sort.Strings(paths)
	levels := []float64{80, 64, 48, 40, 36, 32, 30, 28, 26, 24, 22, 20, 18, 16, 12}
	blurs := []float64{0.00625, 0.0125, 0.01875, 0.025, 0.0375, 0.05, 0.075, 0.1}
	type cell struct {
		drift, sharp  []float64
		n, det, found int
	}
	cells := make([]cell, len(levels))
	blurCells := make([]cell, len(blurs))
	type point struct {
		sharp, drift float64
		blur         bool
	}
	var sharpDrift []point
	used := 0
	for _, p := range paths {
		if strings.HasSuffix(p, "pristin.jpg") { // group photo
			continue
		}
		src := readMat(t, p)
		if long := max(src.Cols(), src.Rows()); long > 1024 {
			s := shrink(src, 1024/float64(long))
			src.Close()
			src = s
		}
		f, _, ok := centralFace(t, c.rec, src)
		if !ok {
			src.Close()
			continue
		}
		det, faces, ok := yunetFace(t, c.yunet, src, centre(f.Box))
		if !ok || quality.InterEyePx(det.Landmarks) < 90 {
			src.Close()
			continue
		}
		eye := quality.InterEyePx(det.Landmarks)
		used++
		clean := measureDetection(t, src, det, faces)
		sharpDrift = append(sharpDrift, point{clean.SharpnessVar, 0, true})
		record := func(cl *cell, frame, embedImg gocv.Mat, near image.Point, blur bool) {
			cl.n++
			sharp := math.NaN()
			if d, n, ok := yunetFace(t, c.yunet, frame, near); ok {
				cl.det++
				sharp = measureDetection(t, frame, d, n).SharpnessVar
				cl.sharp = append(cl.sharp, sharp)
			}
			if g, _, ok := centralFace(t, c.rec, embedImg); ok {
				cl.found++
				d := engine.Distance(g.Embedding, f.Embedding)
				cl.drift = append(cl.drift, d)
				if !math.IsNaN(sharp) {
					sharpDrift = append(sharpDrift, point{sharp, d, blur})
				}
			}
		}
		for i, e := range levels {
			s := e / eye
			small := shrink(src, s)
			big := enlarge(small, image.Pt(src.Cols(), src.Rows()))
			record(&cells[i], small, big, centre(scaleRect(det.Box, s)), false)
			small.Close()
			big.Close()
		}
		for i, b := range blurs {
			blurred := gaussianBlur(src, b*eye)
			record(&blurCells[i], blurred, blurred, centre(det.Box), true)
			blurred.Close()
		}
		src.Close()
	}
	c.printf("\n## Idols scale sweep: %d single-face photos with >= 90 px between the eyes (at 1024 px), shrunk to N px and enlarged back\n| inter-eye px | n | YuNet found | go-face found | sharpness p50 | drift p50 | drift p90 |\n|---|---|---|---|---|---|---|\n", used)
	for i, e := range levels {
		cl := cells[i]
		c.printf("| %.0f | %d | %s | %s | %.0f | %.3f | %.3f |\n", e, cl.n, rate(cl.det, cl.n), rate(cl.found, cl.n), percentile(cl.sharp, 50), percentile(cl.drift, 50), percentile(cl.drift, 90))
	}
	c.printf("\n## Idols blur sweep (same photos at 1024 px), σ = f × inter-eye distance\n| f (same as σ on a 40 px LFW face) | n | YuNet found | go-face found | sharpness p50 | drift p50 | drift p90 |\n|---|---|---|---|---|---|---|\n")
	for i, b := range blurs {
		cl := blurCells[i]
		c.printf("| %.4f (σ=%.1f) | %d | %s | %s | %.0f | %.3f | %.3f |\n", b, b*40, cl.n, rate(cl.det, cl.n), rate(cl.found, cl.n), percentile(cl.sharp, 50), percentile(cl.drift, 50), percentile(cl.drift, 90))
	}
	edges := []float64{0, 10, 20, 30, 40, 50, 60, 70, 80, 100, 150, 200, 1e9}
	for _, blurOnly := range []bool{false, true} {
		title := "scale and blur variants, and clean"
		if blurOnly {
			title = "blur variants only, and clean"
		}
		c.printf("\n### Idols: drift by measured sharpness_var (%s)\n| bin | n | drift p50 | drift p90 | drift > 0.15 |\n|---|---|---|---|---|\n", title)
		for i := 0; i+1 < len(edges); i++ {
			var ds []float64
			over := 0
			for _, p := range sharpDrift {
				if (p.blur || !blurOnly) && p.sharp >= edges[i] && p.sharp < edges[i+1] {
					ds = append(ds, p.drift)
					if p.drift > 0.15 {
						over++
					}
				}
			}
			c.printf("| [%g, %s) | %d | %.3f | %.3f | %s |\n", edges[i], upper(edges[i+1]), len(ds), percentile(ds, 50), percentile(ds, 90), rate(over, len(ds)))
		}
	}
}

// profileOutcomes: how often each profile rejects the clean LFW faces and
// each degraded variant, and for which reasons.
func (c *calibration) profileOutcomes() {
	for _, prof := range []quality.Thresholds{quality.Gate, quality.Enrolment} {
		c.printf("\n## Profile %q: share of faces rejected, and how often each check fired\n| set | n | rejected | checks fired |\n|---|---|---|---|\n", prof.Name)
		var clean []quality.Measures
		for _, lf := range c.lfw {
			clean = append(clean, lf.m)
		}
		c.printf("| clean LFW | %s |\n", outcome(clean, prof))
		c.printf("| idols, every face YuNet finds | %s |\n", outcome(c.idols, prof))
		var order []string
		groups := map[string][]quality.Measures{}
		for _, r := range c.all {
			if !r.detected {
				continue
			}
			key := r.kind + " " + r.level
			if _, ok := groups[key]; !ok {
				order = append(order, key)
			}
			groups[key] = append(groups[key], r.m)
		}
		for _, key := range order {
			c.printf("| %s | %s |\n", key, outcome(groups[key], prof))
		}
	}
}

func outcome(ms []quality.Measures, prof quality.Thresholds) string {
	count := map[string]int{}
	rejected := 0
	for _, m := range ms {
		r := quality.Assess(m, prof)
		if !r.Accepted {
			rejected++
		}
		for _, f := range r.Failures {
			count[f.Check]++
		}
	}
	var parts []string
	for _, check := range quality.Checks {
		if count[check] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", check, count[check]))
		}
	}
	return fmt.Sprintf("%d | %s | %s", len(ms), rate(rejected, len(ms)), strings.Join(parts, ", "))
}

// referenceYaw estimates yaw (degrees, positive toward the person's left
// like PoseFromLandmarks) from 14 of dlib's 68 landmarks by a
// scaled-orthographic fit of an anthropometric 3D face model (the 14-point
// subset of Martins & Batista's model used by lincolnhard/head-pose-
// estimation). It deliberately leaves out the nose tip, which the yaw
// index uses.
func referenceYaw(shape []image.Point) float64 {
	idx := []int{17, 21, 22, 26, 36, 39, 42, 45, 31, 35, 48, 54, 57, 8}
	model := [][3]float64{
		{6.825897, 6.760612, 4.402142}, {1.330353, 7.122144, 6.903745}, {-1.330353, 7.122144, 6.903745}, {-6.825897, 6.760612, 4.402142},
		{5.311432, 5.485328, 3.987654}, {1.789930, 5.393625, 4.413414}, {-1.789930, 5.393625, 4.413414}, {-5.311432, 5.485328, 3.987654},
		{2.005628, 1.409845, 6.165652}, {-2.005628, 1.409845, 6.165652}, {2.774015, -2.080775, 5.048531}, {-2.774015, -2.080775, 5.048531},
		{0.000000, -3.116408, 6.097667}, {0.000000, -7.415691, 4.070434},
	}
	// The model's x points to the person's right (the image's left) and its
	// y up: image coordinates are mirrored into that frame, u = -x, v = -y.
	var mc [3]float64
	var ic [2]float64
	for i, j := range idx {
		for k := 0; k < 3; k++ {
			mc[k] += model[i][k] / float64(len(idx))
		}
		ic[0] += -float64(shape[j].X) / float64(len(idx))
		ic[1] += -float64(shape[j].Y) / float64(len(idx))
	}
	// Least squares affine M (2x3): M = (x Xᵀ)(X Xᵀ)⁻¹ on centred points.
	var xx [3][3]float64
	var ux [2][3]float64
	for i, j := range idx {
		X := [3]float64{model[i][0] - mc[0], model[i][1] - mc[1], model[i][2] - mc[2]}
		u := [2]float64{-float64(shape[j].X) - ic[0], -float64(shape[j].Y) - ic[1]}
		for a := 0; a < 3; a++ {
			for b := 0; b < 3; b++ {
				xx[a][b] += X[a] * X[b]
			}
			ux[0][a] += u[0] * X[a]
			ux[1][a] += u[1] * X[a]
		}
	}
	inv := inverse3(xx)
	var M [2][3]float64
	for r := 0; r < 2; r++ {
		for cc := 0; cc < 3; cc++ {
			for k := 0; k < 3; k++ {
				M[r][cc] += ux[r][k] * inv[k][cc]
			}
		}
	}
	// Nearest scaled rotation rows: M = U S Vᵀ → U Vᵀ, through the 2x2 M Mᵀ.
	a := dot3(M[0], M[0])
	b := dot3(M[0], M[1])
	d := dot3(M[1], M[1])
	tr, det := a+d, a*d-b*b
	disc := math.Sqrt(math.Max(tr*tr/4-det, 0))
	l1, l2 := tr/2+disc, tr/2-disc
	var u1 [2]float64
	if math.Abs(b) > 1e-12 {
		u1 = norm2([2]float64{b, l1 - a})
	} else if a >= d {
		u1 = [2]float64{1, 0}
	} else {
		u1 = [2]float64{0, 1}
	}
	u2 := [2]float64{-u1[1], u1[0]}
	s1, s2 := math.Sqrt(l1), math.Sqrt(math.Max(l2, 1e-12))
	var v1, v2 [3]float64 // V = Mᵀ U S⁻¹
	for k := 0; k < 3; k++ {
		v1[k] = (M[0][k]*u1[0] + M[1][k]*u1[1]) / s1
		v2[k] = (M[0][k]*u2[0] + M[1][k]*u2[1]) / s2
	}
	var r1, r2 [3]float64
	for k := 0; k < 3; k++ {
		r1[k] = u1[0]*v1[k] + u2[0]*v2[k]
		r2[k] = u1[1]*v1[k] + u2[1]*v2[k]
	}
	r3 := cross3(r1, r2)
	// R = Rz·Ry·Rx: yaw about the model's vertical axis is -asin(R[2][0]).
	// A turn toward the person's right (+x) moves the nose toward +u; our
	// convention is positive toward the person's left, hence the sign.
	yaw := math.Asin(math.Max(-1, math.Min(1, -r3[0])))
	return -yaw * 180 / math.Pi
}

func dot3(a, b [3]float64) float64 { return a[0]*b[0] + a[1]*b[1] + a[2]*b[2] }
func cross3(a, b [3]float64) [3]float64 {
	return [3]float64{a[1]*b[2] - a[2]*b[1], a[2]*b[0] - a[0]*b[2], a[0]*b[1] - a[1]*b[0]}
}
func norm2(v [2]float64) [2]float64 {
	n := math.Hypot(v[0], v[1])
	return [2]float64{v[0] / n, v[1] / n}
}
func inverse3(m [3][3]float64) [3][3]float64 {
	det := m[0][0]*(m[1][1]*m[2][2]-m[1][2]*m[2][1]) - m[0][1]*(m[1][0]*m[2][2]-m[1][2]*m[2][0]) + m[0][2]*(m[1][0]*m[2][1]-m[1][1]*m[2][0])
	var inv [3][3]float64
	inv[0][0] = (m[1][1]*m[2][2] - m[1][2]*m[2][1]) / det
	inv[0][1] = (m[0][2]*m[2][1] - m[0][1]*m[2][2]) / det
	inv[0][2] = (m[0][1]*m[1][2] - m[0][2]*m[1][1]) / det
	inv[1][0] = (m[1][2]*m[2][0] - m[1][0]*m[2][2]) / det
	inv[1][1] = (m[0][0]*m[2][2] - m[0][2]*m[2][0]) / det
	inv[1][2] = (m[0][2]*m[1][0] - m[0][0]*m[1][2]) / det
	inv[2][0] = (m[1][0]*m[2][1] - m[1][1]*m[2][0]) / det
	inv[2][1] = (m[0][1]*m[2][0] - m[0][0]*m[2][1]) / det
	inv[2][2] = (m[0][0]*m[1][1] - m[0][1]*m[1][0]) / det
	return inv
}
