package synth

import (
	"context"
	"crypto/sha256"
	"errors"
	"image"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/vision"
	"github.com/loopgate/loopgate/internal/testenv"
)

func lfwDir(t *testing.T) string {
	return filepath.Join(testenv.SharedDir(t), "datasets", "lfw")
}

// readFrames decodes the whole clip as OpenCV sees it.
func readFrames(t *testing.T, path string) (frames []gocv.Mat, fps float64) {
	t.Helper()
	vc, err := gocv.VideoCaptureFile(path)
	if err != nil || !vc.IsOpened() {
		t.Fatalf("OpenCV cannot read %s back: %v", path, err)
	}
	defer vc.Close()
	fps = vc.Get(gocv.VideoCaptureFPS)
	for {
		m := gocv.NewMat()
		if !vc.Read(&m) || m.Empty() {
			m.Close()
			break
		}
		frames = append(frames, m)
	}
	t.Cleanup(func() {
		for _, m := range frames {
			m.Close()
		}
	})
	return frames, fps
}

func jpegOf(t *testing.T, m gocv.Mat) []byte {
	t.Helper()
	b, err := vision.EncodeJPEG(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func embedPhoto(t *testing.T, rec *facerec.Recognizer, path string) engine.Embedding {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := vision.NewDecoder(engine.ImageLimits{}).Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	faces, err := rec.Faces(img.JPEG)
	if err != nil || len(faces) != 1 {
		t.Fatalf("%s: %d faces, %v", path, len(faces), err)
	}
	return faces[0].Embedding
}

func iou(a, b image.Rectangle) float64 {
	in := a.Intersect(b)
	if in.Empty() {
		return 0
	}
	i := float64(in.Dx() * in.Dy())
	return i / (float64(a.Dx()*a.Dy()+b.Dx()*b.Dy()) - i)
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestClipEndToEnd writes a short clip of two enrolled walkers, reads it
// back through OpenCV, and checks with the real go-face models that each
// walker's face is found where the manifest says and matches their enrol
// photo, and that the empty frames hold no face.
func TestClipEndToEnd(t *testing.T) {
	rec, err := facerec.New(facerec.Config{ModelDir: testenv.ModelDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	vet := Vetter{Decoder: vision.NewDecoder(engine.ImageLimits{}), Embedder: rec}
	walkers, err := PickWalkersWith(lfwDir(t), 2, 0, 7, vet.Check)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Width: 640, Height: 480, FPS: 25, WalkSeconds: 1.2, GapSeconds: 0.4, Seed: 7}
	path := filepath.Join(t.TempDir(), "walk-synthetic-test.avi")
	m, err := Write(context.Background(), path, cfg, walkers)
	if err != nil {
		t.Fatal(err)
	}

	// The schedule: 10 empty frames, 30 of walker 1, 10 empty, 30 of walker 2, 10 empty.
	const gap, walkLen = 10, 30
	if m.Frames != gap+2*(walkLen+gap) || !m.Synthetic || m.Generator != Version || m.Seed != 7 {
		t.Fatalf("manifest header: frames %d synthetic %v generator %q seed %d", m.Frames, m.Synthetic, m.Generator, m.Seed)
	}
	for i, w := range m.Walkers {
		in := walkers[i]
		wantFirst := gap + i*(walkLen+gap)
		if w.ID != []string{"w1", "w2"}[i] || w.Name != in.Name || w.EnrolPhoto != in.EnrolPhoto || w.WalkPhoto != in.WalkPhoto ||
			!w.Enrolled || w.Lane != "a" || w.FirstFrame != wantFirst || w.LastFrame != wantFirst+walkLen-1 {
			t.Errorf("walker %d: %+v (input %+v)", i, w, in)
		}
		if w.FirstFacePx != 25 || w.LastFacePx != 200 || len(w.Faces) != walkLen {
			t.Errorf("%s: faces %d..%d px over %d boxes, want 25..200 over %d", w.ID, w.FirstFacePx, w.LastFacePx, len(w.Faces), walkLen)
		}
		for j := 1; j < len(w.Faces); j++ {
			if w.Faces[j].W < w.Faces[j-1].W || w.Faces[j].Frame != w.Faces[j-1].Frame+1 {
				t.Fatalf("%s: face boxes do not grow frame by frame: %+v then %+v", w.ID, w.Faces[j-1], w.Faces[j])
			}
		}
	}
	back, err := ReadManifest(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, m) {
		t.Fatalf("manifest on disk differs from the one returned")
	}

	frames, fps := readFrames(t, path)
	if len(frames) != m.Frames || fps != 25 {
		t.Fatalf("read back %d frames at %v fps, manifest says %d at 25", len(frames), fps, m.Frames)
	}
	for i, f := range frames {
		if f.Cols() != 640 || f.Rows() != 480 || f.Channels() != 3 {
			t.Fatalf("frame %d is %dx%dx%d", i, f.Cols(), f.Rows(), f.Channels())
		}
	}

	enrol := []engine.Embedding{embedPhoto(t, rec, walkers[0].EnrolPhoto), embedPhoto(t, rec, walkers[1].EnrolPhoto)}
	for i, w := range m.Walkers {
		frame := w.LastFrame - 1
		faces, err := rec.Faces(jpegOf(t, frames[frame]))
		if err != nil {
			t.Fatal(err)
		}
		if len(faces) != 1 {
			t.Fatalf("%s frame %d: %d faces, want 1", w.ID, frame, len(faces))
		}
		box, _ := w.Box(frame)
		if o := iou(faces[0].Box, box.Rect()); o < 0.5 {
			t.Errorf("%s frame %d: detected %v, manifest box %v (IoU %.2f)", w.ID, frame, faces[0].Box, box.Rect(), o)
		}
		own, other := engine.Distance(faces[0].Embedding, enrol[i]), engine.Distance(faces[0].Embedding, enrol[1-i])
		t.Logf("%s (%s) frame %d: detected %v, manifest box %v, distance to own enrol photo %.3f, to the other walker's %.3f",
			w.ID, w.Name, frame, faces[0].Box, box.Rect(), own, other)
		if own >= engine.DefaultMatchThreshold || other <= own || other <= engine.DefaultMatchThreshold {
			t.Errorf("%s: distance to own enrol photo %.3f, to the other walker's %.3f", w.ID, own, other)
		}
	}
	// Empty frames: the lead-in and between the walkers. The default
	// detector runs HOG and then the CNN on these.
	for _, f := range []int{0, m.Walkers[0].LastFrame + gap/2} {
		if in := m.InView(f); len(in) != 0 {
			t.Fatalf("frame %d should be empty, manifest has %d walkers", f, len(in))
		}
		faces, err := rec.Faces(jpegOf(t, frames[f]))
		if err != nil {
			t.Fatal(err)
		}
		if len(faces) != 0 {
			t.Errorf("empty frame %d: %d faces found in the background, first at %v", f, len(faces), faces[0].Box)
		}
	}

	// Same seed, same walkers: the same bytes.
	again := filepath.Join(t.TempDir(), "walk-synthetic-test.avi")
	if _, err := Write(context.Background(), again, cfg, walkers); err != nil {
		t.Fatal(err)
	}
	if fileHash(t, path) != fileHash(t, again) || fileHash(t, ManifestPath(path)) != fileHash(t, ManifestPath(again)) {
		t.Errorf("two runs with seed %d differ", cfg.Seed)
	}
}

func TestTwoLanes(t *testing.T) {
	walkers, err := PickWalkers(lfwDir(t), 3, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Width: 640, Height: 480, FPS: 20, WalkSeconds: 1, GapSeconds: 0.5, Seed: 3, TwoLanes: true}
	path := filepath.Join(t.TempDir(), "walk2lanes-synthetic.avi")
	m, err := Write(context.Background(), path, cfg, walkers)
	if err != nil {
		t.Fatal(err)
	}
	lanes := map[string]int{}
	for _, w := range m.Walkers {
		lanes[w.Lane]++
		for _, b := range w.Faces {
			cx := b.X + b.W/2
			if (w.Lane == "a" && cx >= 640/3) || (w.Lane == "b" && cx < 2*640/3) || b.X < 0 || b.X+b.W > 640 {
				t.Fatalf("%s lane %s: face box %+v outside its third", w.ID, w.Lane, b)
			}
		}
	}
	if lanes["a"] != 2 || lanes["b"] != 2 {
		t.Fatalf("lanes %v, want 2 walkers in each", lanes)
	}
	// Walkers 1 and 2 share the first slot, 3 and 4 the second: side by
	// side, at most 0.4 s apart, and the slots do not overlap.
	w := m.Walkers
	for _, pair := range [][2]int{{0, 1}, {2, 3}} {
		a, b := w[pair[0]], w[pair[1]]
		if a.Lane == b.Lane || abs(a.FirstFrame-b.FirstFrame) > 8 {
			t.Errorf("%s and %s should walk side by side: lanes %s/%s, first frames %d/%d", a.ID, b.ID, a.Lane, b.Lane, a.FirstFrame, b.FirstFrame)
		}
	}
	if end := max(w[0].LastFrame, w[1].LastFrame); min(w[2].FirstFrame, w[3].FirstFrame)-end <= 10 {
		t.Errorf("second pair starts at %d, within the 10-frame gap after %d", min(w[2].FirstFrame, w[3].FirstFrame), end)
	}
	frames, _ := readFrames(t, path)
	if len(frames) != m.Frames || frames[0].Cols() != 640 || frames[0].Rows() != 480 {
		t.Fatalf("read back %d frames of %dx%d, manifest says %d", len(frames), frames[0].Cols(), frames[0].Rows(), m.Frames)
	}
}

func abs(v int) int { return max(v, -v) }

func TestPickWalkers(t *testing.T) {
	lfw := lfwDir(t)
	a, err := PickWalkers(lfw, 3, 2, 11)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := PickWalkers(lfw, 3, 2, 11)
	c, _ := PickWalkers(lfw, 3, 2, 12)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different walkers")
	}
	if reflect.DeepEqual(a, c) {
		t.Fatal("seeds 11 and 12 picked the same walkers")
	}
	seen := map[string]bool{}
	var enrolled int
	for _, w := range a {
		if seen[w.Name] {
			t.Fatalf("%s picked twice", w.Name)
		}
		seen[w.Name] = true
		photos, _ := filepath.Glob(filepath.Join(lfw, "images", w.Name, "*.jpg"))
		switch {
		case w.Enrolled:
			enrolled++
			if filepath.Base(w.EnrolPhoto) != w.Name+"_0001.jpg" || filepath.Base(w.WalkPhoto) != w.Name+"_0002.jpg" || len(photos) < 2 {
				t.Errorf("enrolled %+v with %d photos", w, len(photos))
			}
		default:
			if w.EnrolPhoto != "" || filepath.Base(w.WalkPhoto) != w.Name+"_0001.jpg" || len(photos) != 1 {
				t.Errorf("stranger %+v with %d photos", w, len(photos))
			}
		}
	}
	if enrolled != 3 || len(a) != 5 {
		t.Fatalf("%d walkers, %d enrolled", len(a), enrolled)
	}

	// A tiny LFW-shaped tree without lfw-names.txt: counted by listing.
	dir := t.TempDir()
	for _, f := range []string{"A_B/A_B_0001.jpg", "A_B/A_B_0002.jpg", "C_D/C_D_0001.jpg"} {
		p := filepath.Join(dir, "images", f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := PickWalkers(dir, 1, 1, 1)
	if err != nil || len(got) != 2 {
		t.Fatalf("small tree: %v %v", got, err)
	}
	if _, err := PickWalkers(dir, 2, 0, 1); !errors.Is(err, ErrNotEnoughPeople) {
		t.Fatalf("two enrolled from one eligible person: %v", err)
	}
	rejectAll := func(Walker) error { return ErrRejected }
	if _, err := PickWalkersWith(dir, 1, 0, 1, rejectAll); !errors.Is(err, ErrNotEnoughPeople) {
		t.Fatalf("every candidate rejected: %v", err)
	}
}

func TestWriteRefuses(t *testing.T) {
	lfw := lfwDir(t)
	walkers, err := PickWalkers(lfw, 1, 1, 5)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ok := filepath.Join(dir, "x-synthetic.avi")
	laneB := []Walker{walkers[0]}
	laneB[0].Lane = "b"
	missing := []Walker{{Name: "Nobody", WalkPhoto: filepath.Join(dir, "missing.jpg")}}
	cases := []struct {
		name    string
		path    string
		cfg     Config
		walkers []Walker
		want    error
	}{
		{"name without synthetic", filepath.Join(dir, "walk.avi"), Config{}, walkers, ErrNotSyntheticName},
		{"not an avi", filepath.Join(dir, "walk-synthetic.mp4"), Config{}, walkers, ErrConfig},
		{"odd width", ok, Config{Width: 641}, walkers, ErrConfig},
		{"max face too tall", ok, Config{Height: 240}, walkers, ErrConfig},
		{"max face too wide for a lane", ok, Config{TwoLanes: true, Width: 480}, walkers, ErrConfig},
		{"min above max", ok, Config{MinFace: 90, MaxFace: 80}, walkers, ErrConfig},
		{"no walkers", ok, Config{}, nil, ErrWalkers},
		{"lane b in one lane", ok, Config{}, laneB, ErrWalkers},
		{"unreadable photo", ok, Config{}, missing, ErrWalkers},
	}
	for _, c := range cases {
		if _, err := Write(context.Background(), c.path, c.cfg, c.walkers); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	// A cancelled run leaves nothing behind.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Write(ctx, ok, Config{}, walkers); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Fatalf("files left behind: %v", left)
	}
	// ReadManifest insists on "synthetic": true.
	bad := filepath.Join(dir, "real.avi.json")
	if err := os.WriteFile(bad, []byte(`{"synthetic": false, "frames": 3}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadManifest(bad); !errors.Is(err, ErrManifest) {
		t.Fatalf("non-synthetic manifest: %v", err)
	}
	if _, err := ReadManifest(filepath.Join(dir, "real.avi")); !errors.Is(err, ErrManifest) {
		t.Fatalf("non-synthetic manifest by clip path: %v", err)
	}
}
