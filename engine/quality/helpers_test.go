package quality_test

import (
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/detect"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/quality"
	"github.com/loopgate/loopgate/engine/vision"
	"github.com/loopgate/loopgate/internal/testenv"
)

// Until engine/detect's YuNet detector exists, the tests take faces and
// landmarks from go-face (dlib HOG box + 68-point shape) and convert the
// shape to YuNet's five points.

func newRecognizer(t testing.TB) *facerec.Recognizer {
	t.Helper()
	rec, err := facerec.New(facerec.Config{ModelDir: testenv.ModelDir(t), Detector: facerec.DetectorHOG})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close() })
	return rec
}

// fivePoints converts dlib's 68-point layout to YuNet's five points: eye
// centres (mean of each eye's six contour points; 36–41 is the person's
// right eye, on the image's left), nose tip 30, mouth corners 48 (right) and
// 54 (left).
func fivePoints(shape []image.Point) ([5]image.Point, error) {
	var l [5]image.Point
	if len(shape) != 68 {
		return l, fmt.Errorf("want 68 landmarks, got %d", len(shape))
	}
	mean := func(from, to int) image.Point {
		var sx, sy float64
		for _, p := range shape[from : to+1] {
			sx += float64(p.X)
			sy += float64(p.Y)
		}
		n := float64(to - from + 1)
		return image.Pt(int(math.Round(sx/n)), int(math.Round(sy/n)))
	}
	l[quality.RightEye] = mean(36, 41)
	l[quality.LeftEye] = mean(42, 47)
	l[quality.NoseTip] = shape[30]
	l[quality.RightMouth] = shape[48]
	l[quality.LeftMouth] = shape[54]
	return l, nil
}

// face is one go-face face with its five points.
type face struct {
	engine.Face
	five [5]image.Point
}

// centralFace runs go-face on mat and returns the face nearest the image
// centre (LFW images often hold bystanders), ok=false when there is none.
func centralFace(t testing.TB, rec *facerec.Recognizer, mat gocv.Mat) (face, int, bool) {
	t.Helper()
	jpg, err := vision.EncodeJPEG(mat)
	if err != nil {
		t.Fatal(err)
	}
	faces, err := rec.Faces(jpg)
	if err != nil {
		t.Fatal(err)
	}
	if len(faces) == 0 {
		return face{}, 0, false
	}
	centre := image.Pt(mat.Cols()/2, mat.Rows()/2)
	best, bestD := 0, math.Inf(1)
	for i, f := range faces {
		c := f.Box.Min.Add(f.Box.Max).Div(2).Sub(centre)
		if d := math.Hypot(float64(c.X), float64(c.Y)); d < bestD {
			best, bestD = i, d
		}
	}
	five, err := fivePoints(faces[best].Landmarks)
	if err != nil {
		t.Fatal(err)
	}
	return face{faces[best], five}, len(faces), true
}

// measure builds the quality measures of f in mat, as the pipeline will.
func measure(t testing.TB, mat gocv.Mat, f face, faces int) quality.Measures {
	t.Helper()
	px, err := vision.MeasureFace(mat, f.Box)
	if err != nil {
		t.Fatal(err)
	}
	m := quality.FromLandmarks(faces, f.five, 1)
	m.SharpnessVar, m.Brightness, m.Contrast = px.SharpnessVar, px.Brightness, px.Contrast
	return m
}

func readMat(t testing.TB, path string) gocv.Mat {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mat, err := gocv.IMDecode(data, gocv.IMReadColor)
	if err != nil || mat.Empty() {
		t.Fatalf("decode %s: %v", path, err)
	}
	return mat
}

func lfwPath(t testing.TB, name string, n int) string {
	return filepath.Join(testenv.SharedDir(t), "datasets", "lfw", "images", name, fmt.Sprintf("%s_%04d.jpg", name, n))
}

// Degradations. Each returns a new Mat the caller closes.

func gaussianBlur(src gocv.Mat, sigma float64) gocv.Mat {
	dst := gocv.NewMat()
	gocv.GaussianBlur(src, &dst, image.Point{}, sigma, sigma, gocv.BorderDefault)
	return dst
}

// scaleLevels maps each pixel v to alpha*v + beta, saturating at 0 and 255:
// alpha < 1 darkens, alpha > 1 or beta > 0 brightens.
func scaleLevels(src gocv.Mat, alpha, beta float64) gocv.Mat {
	dst := gocv.NewMat()
	src.ConvertToWithParams(&dst, gocv.MatTypeCV8UC3, float32(alpha), float32(beta))
	return dst
}

// flattenContrast pulls every level toward mid-gray: v' = 128 + c(v - 128).
func flattenContrast(src gocv.Mat, c float64) gocv.Mat {
	return scaleLevels(src, c, 128*(1-c))
}

// shrink resizes the whole image by s (area averaging, as a camera sensor
// integrates light) and returns the small image.
func shrink(src gocv.Mat, s float64) gocv.Mat {
	dst := gocv.NewMat()
	gocv.Resize(src, &dst, image.Point{}, s, s, gocv.InterpolationArea)
	return dst
}

// enlarge resizes small back to size with bilinear interpolation: what a
// pipeline does to a small crop so that go-face can find and align it.
func enlarge(small gocv.Mat, size image.Point) gocv.Mat {
	dst := gocv.NewMat()
	gocv.Resize(small, &dst, size, 0, 0, gocv.InterpolationLinear)
	return dst
}

func scaleRect(r image.Rectangle, s float64) image.Rectangle {
	f := func(v int) int { return int(math.Round(float64(v) * s)) }
	return image.Rect(f(r.Min.X), f(r.Min.Y), f(r.Max.X), f(r.Max.Y))
}

func scalePoints(l [5]image.Point, s float64) [5]image.Point {
	var out [5]image.Point
	for i, p := range l {
		out[i] = image.Pt(int(math.Round(float64(p.X)*s)), int(math.Round(float64(p.Y)*s)))
	}
	return out
}

// percentile of xs (p in 0..100), nearest rank; NaN for no data.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func newYuNet(t testing.TB) *detect.YuNet {
	t.Helper()
	y, err := detect.NewYuNet(filepath.Join(testenv.ModelDir(t), detect.ModelName), detect.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { y.Close() })
	return y
}

// yunetFace runs YuNet on frame and returns the detection whose box centre
// is nearest to near (the go-face face, or the image centre), and how many
// faces YuNet found.
func yunetFace(t testing.TB, y *detect.YuNet, frame gocv.Mat, near image.Point) (detect.Detection, int, bool) {
	t.Helper()
	dets, err := y.Detect(frame)
	if err != nil {
		t.Fatal(err)
	}
	best, bestD := -1, math.Inf(1)
	for i, d := range dets {
		c := d.Box.Min.Add(d.Box.Max).Div(2).Sub(near)
		if dist := math.Hypot(float64(c.X), float64(c.Y)); dist < bestD {
			best, bestD = i, dist
		}
	}
	if best < 0 {
		return detect.Detection{}, 0, false
	}
	return dets[best], len(dets), true
}

// measureDetection builds the quality measures exactly as the pipeline
// does: YuNet's detection plus MeasureFace on the frame.
func measureDetection(t testing.TB, frame gocv.Mat, d detect.Detection, faces int) quality.Measures {
	t.Helper()
	px, err := vision.MeasureFace(frame, d.Box)
	if err != nil {
		t.Fatal(err)
	}
	m := quality.FromLandmarks(faces, d.Landmarks, float64(d.Score))
	m.SharpnessVar, m.Brightness, m.Contrast = px.SharpnessVar, px.Brightness, px.Contrast
	return m
}
