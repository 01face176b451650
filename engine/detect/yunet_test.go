package detect_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/engine/detect"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/internal/testenv"
	"github.com/loopgate/loopgate/models"
)

func modelPath(t testing.TB) string {
	t.Helper()
	path := filepath.Join(testenv.ModelDir(t), detect.ModelName)
	if _, err := os.Stat(path); err != nil {
		testenv.Unavailable(t, "YuNet model: %v", err)
	}
	return path
}

func newYuNet(t testing.TB, cfg detect.Config) *detect.YuNet {
	t.Helper()
	y, err := detect.NewYuNet(modelPath(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { y.Close() })
	return y
}

func readMat(t testing.TB, rel string) gocv.Mat {
	t.Helper()
	m, err := gocv.IMDecode(testenv.SharedFile(t, rel), gocv.IMReadColor)
	if err != nil || m.Empty() {
		t.Fatalf("decode %s: %v", rel, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func iou(a, b image.Rectangle) float64 {
	inter := a.Intersect(b)
	if inter.Empty() {
		return 0
	}
	ia := float64(inter.Dx() * inter.Dy())
	return ia / (float64(a.Dx()*a.Dy()+b.Dx()*b.Dy()) - ia)
}

func scaleRect(r image.Rectangle, s float64) image.Rectangle {
	f := func(v int) int { return int(math.Round(float64(v) * s)) }
	return image.Rect(f(r.Min.X), f(r.Min.Y), f(r.Max.X), f(r.Max.Y))
}

// dlibFaces returns go-face's (dlib's) boxes on a JPEG, the reference the
// YuNet boxes are compared with.
func dlibFaces(t *testing.T, jpeg []byte) []image.Rectangle {
	t.Helper()
	rec, err := facerec.New(facerec.Config{ModelDir: testenv.ModelDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	faces, err := rec.Faces(jpeg)
	if err != nil {
		t.Fatal(err)
	}
	boxes := make([]image.Rectangle, len(faces))
	for i, f := range faces {
		boxes[i] = f.Box
	}
	return boxes
}

// checkLandmarks: all five inside the box, eyes above the mouth, and the
// person's right eye and mouth corner on the image's left.
func checkLandmarks(t *testing.T, d detect.Detection) {
	t.Helper()
	for i, p := range d.Landmarks {
		if !p.In(d.Box) {
			t.Errorf("landmark %d %v outside the box %v", i, p, d.Box)
		}
	}
	lm := d.Landmarks
	if eyes, mouth := max(lm[detect.RightEye].Y, lm[detect.LeftEye].Y), min(lm[detect.RightMouth].Y, lm[detect.LeftMouth].Y); eyes >= mouth {
		t.Errorf("eyes (y %d) not above the mouth (y %d): %v", eyes, mouth, lm)
	}
	if lm[detect.RightEye].X >= lm[detect.LeftEye].X || lm[detect.RightMouth].X >= lm[detect.LeftMouth].X {
		t.Errorf("right/left landmarks swapped: %v", lm)
	}
	if n := lm[detect.NoseTip]; n.X <= lm[detect.RightEye].X || n.X >= lm[detect.LeftEye].X {
		t.Errorf("nose %v not between the eyes: %v", n, lm)
	}
}

func TestObama720pOneFaceMatchesDlib(t *testing.T) {
	y := newYuNet(t, detect.Config{})
	const rel = "media/obama-720p.jpg"
	faces, err := y.Detect(readMat(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	if len(faces) != 1 {
		t.Fatalf("%d faces, want 1: %+v", len(faces), faces)
	}
	ref := dlibFaces(t, testenv.SharedFile(t, rel))
	if len(ref) != 1 {
		t.Fatalf("dlib found %d faces, want 1", len(ref))
	}
	got := iou(faces[0].Box, ref[0])
	t.Logf("YuNet %v score %.3f, dlib %v, IoU %.3f, landmarks %v", faces[0].Box, faces[0].Score, ref[0], got, faces[0].Landmarks)
	if got <= 0.5 {
		t.Errorf("IoU with dlib's box %.3f, want > 0.5", got)
	}
	checkLandmarks(t, faces[0])
}

// TestResolutionsAgree runs the same frame at four resolutions: each is
// downscaled to (at most) 640 wide, and every box must map back to the
// same face in its own frame's pixels.
func TestResolutionsAgree(t *testing.T) {
	y := newYuNet(t, detect.Config{})
	var ref image.Rectangle
	for _, rel := range []string{"media/obama-720p.jpg", "media/obama-240p.jpg", "media/obama-480p.jpg", "media/obama-1080p.jpg"} {
		frame := readMat(t, rel)
		faces, err := y.Detect(frame)
		if err != nil || len(faces) != 1 {
			t.Fatalf("%s: %d faces, %v", rel, len(faces), err)
		}
		in720 := scaleRect(faces[0].Box, 1280/float64(frame.Cols()))
		if ref.Empty() {
			ref = in720
			continue
		}
		got := iou(in720, ref)
		t.Logf("%s (%dx%d): box %v, in 720p pixels %v, IoU with 720p %.3f", rel, frame.Cols(), frame.Rows(), faces[0].Box, in720, got)
		if got < 0.8 {
			t.Errorf("%s: IoU %.3f with the 720p box, want ≥ 0.8", rel, got)
		}
		checkLandmarks(t, faces[0])
	}
}

func TestTwoPeople(t *testing.T) {
	y := newYuNet(t, detect.Config{})
	faces, err := y.Detect(readMat(t, "media/two_people.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d faces: %+v", len(faces), faces)
	if len(faces) != 2 {
		t.Fatalf("%d faces, want 2", len(faces))
	}
	if faces[0].Score < faces[1].Score {
		t.Error("faces not sorted by score")
	}
	if faces[0].Box.Overlaps(faces[1].Box) {
		t.Errorf("the two boxes overlap: %v %v", faces[0].Box, faces[1].Box)
	}
	for _, f := range faces {
		checkLandmarks(t, f)
	}
}

func TestGroupPhoto(t *testing.T) {
	y := newYuNet(t, detect.Config{})
	frame := readMat(t, "datasets/idols/images/pristin.jpg")
	faces, err := y.Detect(frame)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pristin.jpg (%dx%d): %d faces at InputWidth %d", frame.Cols(), frame.Rows(), len(faces), y.Config().InputWidth)
	for _, f := range faces {
		t.Logf("  %v score %.3f", f.Box, f.Score)
	}
	if len(faces) < 8 {
		t.Errorf("%d faces, want at least 8", len(faces))
	}
	for i := 1; i < len(faces); i++ {
		if faces[i].Score > faces[i-1].Score {
			t.Fatal("faces not sorted by score")
		}
	}
}

// lfwFirstImages returns the first image of the first n people in
// lfw-names.txt that have one.
func lfwFirstImages(t *testing.T, n int) []string {
	t.Helper()
	shared := testenv.SharedDir(t)
	names := testenv.SharedFile(t, "datasets/lfw/lfw-names.txt")
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(names))
	for sc.Scan() && len(out) < n {
		name, _, _ := strings.Cut(sc.Text(), "\t")
		rel := filepath.Join("datasets/lfw/images", name, name+"_0001.jpg")
		if _, err := os.Stat(filepath.Join(shared, rel)); err == nil {
			out = append(out, rel)
		}
	}
	if len(out) != n {
		t.Fatalf("found %d LFW people with an image, want %d", len(out), n)
	}
	return out
}

// TestLFWDetectionRate: on LFW's first 100 people, a face must be found
// over the image centre (where LFW puts the labelled face) in ≥ 98%.
func TestLFWDetectionRate(t *testing.T) {
	y := newYuNet(t, detect.Config{})
	images := lfwFirstImages(t, 100)
	var at075, at090 int
	for _, rel := range images {
		frame := readMat(t, rel)
		faces, err := y.Detect(frame)
		if err != nil {
			t.Fatal(err)
		}
		centre := image.Pt(frame.Cols()/2, frame.Rows()/2)
		best := float32(0)
		for _, f := range faces {
			if centre.In(f.Box) {
				best = max(best, f.Score)
			}
		}
		switch {
		case best >= 0.9:
			at090++
			at075++
		case best >= 0.75:
			at075++
			t.Logf("%s: centre face only at score %.3f", rel, best)
		default:
			t.Logf("%s: no face over the centre (%d faces)", rel, len(faces))
		}
	}
	t.Logf("LFW first %d people: detection rate %d%% at score 0.75, %d%% at 0.9", len(images), at075*100/len(images), at090*100/len(images))
	if at075*100 < 98*len(images) {
		t.Errorf("detection rate %d/%d at the default threshold, want ≥ 98%%", at075, len(images))
	}
}

// TestSmallFaceMapsToFullResolution shrinks an LFW photo so its face is
// about 30 px wide, places it on a black 1280x720 canvas, and expects
// YuNet at InputWidth 640 (where the face is ~15 px) to find it where it
// was put. The face's place in the photo comes from dlib.
func TestSmallFaceMapsToFullResolution(t *testing.T) {
	y := newYuNet(t, detect.Config{InputWidth: 640})
	const rel = "datasets/lfw/images/AJ_Cook/AJ_Cook_0001.jpg"
	ref := dlibFaces(t, testenv.SharedFile(t, rel))
	if len(ref) != 1 {
		t.Fatalf("dlib found %d faces in %s, want 1", len(ref), rel)
	}
	photo := readMat(t, rel)
	scale := 30 / float64(ref[0].Dx())
	small := gocv.NewMat()
	defer small.Close()
	size := image.Pt(int(math.Round(float64(photo.Cols())*scale)), int(math.Round(float64(photo.Rows())*scale)))
	gocv.Resize(photo, &small, size, 0, 0, gocv.InterpolationArea)

	canvas := gocv.Zeros(720, 1280, gocv.MatTypeCV8UC3)
	defer canvas.Close()
	at := image.Pt(913, 437) // off the 2x grid on purpose
	roi := canvas.Region(image.Rectangle{Min: at, Max: at.Add(size)})
	small.CopyTo(&roi)
	roi.Close()
	want := scaleRect(ref[0], scale).Add(at)

	faces, err := y.Detect(canvas)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range faces {
		t.Logf("YuNet %v score %.3f, IoU %.3f with the placed face %v (%dx%d)", f.Box, f.Score, iou(f.Box, want), want, want.Dx(), want.Dy())
	}
	// The placed face must be the best detection. YuNet also reports a
	// large, lower-scoring box on empty black areas (OpenCV's own
	// FaceDetectorYN does the same), so other boxes may exist, but never
	// over the face.
	if len(faces) == 0 {
		t.Fatalf("no face found (placed at %v)", want)
	}
	if got := iou(faces[0].Box, want); got <= 0.4 {
		t.Errorf("best detection %v has IoU %.3f with the placed face %v, want > 0.4", faces[0].Box, got, want)
	}
	for _, f := range faces[1:] {
		if f.Box.Overlaps(want) {
			t.Errorf("second box %v over the placed face", f.Box)
		}
	}
}

// TestOddFrames feeds frames that must never crash the process (an OpenCV
// exception through cgo aborts it): each gives an error or no faces.
func TestOddFrames(t *testing.T) {
	y := newYuNet(t, detect.Config{})
	gray := gocv.NewMat()
	defer gray.Close()
	gocv.CvtColor(readMat(t, "media/obama-720p.jpg"), &gray, gocv.ColorBGRToGray)
	bgra := gocv.NewMat()
	defer bgra.Close()
	gocv.CvtColor(readMat(t, "media/obama-720p.jpg"), &bgra, gocv.ColorBGRToBGRA)

	mats := map[string]gocv.Mat{
		"empty":      gocv.NewMat(),
		"1x1":        gocv.Zeros(1, 1, gocv.MatTypeCV8UC3),
		"1x1 gray":   gocv.Zeros(1, 1, gocv.MatTypeCV8UC1),
		"62x62":      gocv.Zeros(62, 62, gocv.MatTypeCV8UC3),
		"5x3000":     gocv.Zeros(5, 3000, gocv.MatTypeCV8UC3),
		"3000x5":     gocv.Zeros(3000, 5, gocv.MatTypeCV8UC3),
		"359x641":    gocv.Zeros(359, 641, gocv.MatTypeCV8UC3),
		"gray black": gocv.Zeros(480, 640, gocv.MatTypeCV8UC1),
		"float":      gocv.Zeros(480, 640, gocv.MatTypeCV32FC3),
		"2 channels": gocv.Zeros(480, 640, gocv.MatTypeCV8UC2),
	}
	for name, m := range mats {
		bounds := image.Rect(0, 0, m.Cols(), m.Rows())
		faces, err := y.Detect(m)
		m.Close()
		t.Logf("%s: %d faces, err %v", name, len(faces), err)
		// Blank frames may still give boxes: YuNet 2022mar reports one or
		// two large faces (scores 0.76-0.81) on black 640x360 and 640x480
		// inputs, exactly as OpenCV 4.6's FaceDetectorYN does. They must at
		// least lie in the frame.
		for _, f := range faces {
			if !f.Box.In(bounds) {
				t.Errorf("%s: box %v outside the frame %v", name, f.Box, bounds)
			}
		}
		switch name {
		case "empty":
			if !errors.Is(err, detect.ErrEmptyFrame) {
				t.Errorf("empty: got %v, want ErrEmptyFrame", err)
			}
		case "float", "2 channels":
			if !errors.Is(err, detect.ErrUnsupportedFrame) {
				t.Errorf("%s: got %v, want ErrUnsupportedFrame", name, err)
			}
		default:
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
	// Noise of random odd sizes, from 1 px up: never an error.
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 40; i++ {
		h, w := 1+r.IntN(300), 1+r.IntN(300)
		m := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
		gocv.RandU(&m, gocv.NewScalar(0, 0, 0, 0), gocv.NewScalar(255, 255, 255, 0))
		faces, err := y.Detect(m)
		m.Close()
		if err != nil {
			t.Errorf("noise %dx%d: %v", w, h, err)
		}
		for _, f := range faces {
			if !f.Box.In(image.Rect(0, 0, w, h)) {
				t.Errorf("noise %dx%d: box %v outside the frame", w, h, f.Box)
			}
		}
	}
	// A zero Mat (never allocated, or closed) is an empty frame, not a crash.
	if _, err := y.Detect(gocv.Mat{}); !errors.Is(err, detect.ErrEmptyFrame) {
		t.Errorf("zero Mat: got %v, want ErrEmptyFrame", err)
	}
	// Grey and BGRA frames are converted, and the face is still found.
	for name, m := range map[string]gocv.Mat{"gray": gray, "bgra": bgra} {
		faces, err := y.Detect(m)
		if err != nil || len(faces) != 1 {
			t.Errorf("%s obama: %d faces, %v; want 1", name, len(faces), err)
		}
	}
}

// TestSharedDetectorIsSerialised: one YuNet used from several goroutines
// (not the intended use) must still give every caller the right answer.
func TestSharedDetectorIsSerialised(t *testing.T) {
	y := newYuNet(t, detect.Config{})
	frame := readMat(t, "media/obama-240p.jpg")
	want, err := y.Detect(frame)
	if err != nil || len(want) != 1 {
		t.Fatalf("%d faces, %v", len(want), err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*5)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				got, err := y.Detect(frame)
				if err == nil && (len(got) != 1 || got[0] != want[0]) {
					err = fmt.Errorf("got %+v, want %+v", got, want)
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestClosed(t *testing.T) {
	y, err := detect.NewYuNet(modelPath(t), detect.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := y.Close(); err != nil {
		t.Fatal(err)
	}
	if err := y.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := y.Detect(readMat(t, "media/obama-240p.jpg")); !errors.Is(err, detect.ErrClosed) {
		t.Fatalf("Detect after Close: got %v, want ErrClosed", err)
	}
}

func TestNewYuNetRefusesBadModelOrConfig(t *testing.T) {
	good, err := os.ReadFile(modelPath(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 0xff
	tampered := filepath.Join(dir, detect.ModelName)
	if err := os.WriteFile(tampered, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	var mm *models.MismatchError
	if _, err := detect.NewYuNet(tampered, detect.Config{}); !errors.As(err, &mm) {
		t.Errorf("tampered model: got %v, want a MismatchError", err)
	}
	// Truncated: OpenCV would abort the process on it, so it must never get there.
	if err := os.WriteFile(tampered, good[:1000], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := detect.NewYuNet(tampered, detect.Config{}); !errors.As(err, &mm) {
		t.Errorf("truncated model: got %v, want a MismatchError", err)
	}
	if _, err := detect.NewYuNet(filepath.Join(dir, "missing.onnx"), detect.Config{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing model: got %v, want ErrNotExist", err)
	}
	if _, err := detect.NewYuNet(modelPath(t), detect.Config{ScoreThreshold: 2}); !errors.Is(err, detect.ErrInvalidConfig) {
		t.Errorf("bad config: got %v, want ErrInvalidConfig", err)
	}
}
