package still_test

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	stdjpeg "image/jpeg"
	"log/slog"
	"sync"
	"testing"

	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/still"
	"github.com/loopgate/loopgate/engine/vision"
	"github.com/loopgate/loopgate/internal/testenv"
)

const pristin = "datasets/idols/images/pristin.jpg"

var (
	setupOnce sync.Once
	rec       *facerec.Recognizer
	analyzer  *still.Analyzer
	setupErr  error
)

// shared loads one recogniser and one analyzer for the package's tests:
// loading the models takes about a second.
func shared(t testing.TB) (*facerec.Recognizer, *still.Analyzer) {
	t.Helper()
	dir := testenv.ModelDir(t)
	setupOnce.Do(func() {
		rec, setupErr = facerec.New(facerec.Config{ModelDir: dir, Logger: slog.New(slog.DiscardHandler)})
		if setupErr == nil {
			analyzer, setupErr = still.New(still.Config{ModelDir: dir}, rec)
		}
	})
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	return rec, analyzer
}

func analyze(t *testing.T, a *still.Analyzer, rel string, opts engine.StillOptions) engine.Still {
	t.Helper()
	st, err := a.AnalyzeStill(context.Background(), testenv.SharedFile(t, rel), opts)
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return st
}

func centre(r image.Rectangle) image.Point { return r.Min.Add(r.Max).Div(2) }

// TestGroupPhoto: go-face's HOG on the 1024 px copy found no face in the
// PRISTIN group photo; YuNet on the full 2100x1040 image, then one crop per
// face, must find and embed (nearly) all ten.
func TestGroupPhoto(t *testing.T) {
	_, a := shared(t)
	st := analyze(t, a, pristin, engine.StillOptions{})
	if st.Width != 2100 || st.Height != 1040 || st.Format != "jpeg" {
		t.Fatalf("decoded %s %dx%d, want jpeg 2100x1040 (full resolution)", st.Format, st.Width, st.Height)
	}
	if len(st.Faces) < 8 {
		t.Fatalf("%d faces, want at least 8 of the 10", len(st.Faces))
	}
	bounds := image.Rect(0, 0, st.Width, st.Height)
	embedded := 0
	for i, f := range st.Faces {
		if i > 0 && f.DetectorBox.Min.X < st.Faces[i-1].DetectorBox.Min.X {
			t.Errorf("face %d at x=%d comes after x=%d: want left-to-right order", i+1, f.DetectorBox.Min.X, st.Faces[i-1].DetectorBox.Min.X)
		}
		if f.Measures.Faces != len(st.Faces) || !(f.Measures.InterEyePx > 0) || !(f.Measures.SharpnessVar > 0) {
			t.Errorf("face %d: measures %+v not filled", i+1, f.Measures)
		}
		if !f.Embedded {
			t.Errorf("face %d at %v not embedded: %v", i+1, f.DetectorBox, f.Err)
			continue
		}
		embedded++
		// go-face's face is the detector's face, in the same (original) pixels.
		if !f.Face.Box.In(bounds.Inset(-f.Face.Box.Dx()/4)) || !centre(f.Face.Box).In(f.DetectorBox) {
			t.Errorf("face %d: recogniser box %v does not sit on detector box %v in the %v image", i+1, f.Face.Box, f.DetectorBox, bounds)
		}
		if err := f.Face.Embedding.Valid(); err != nil {
			t.Errorf("face %d: %v", i+1, err)
		}
	}
	// Ten different people: no two faces may embed as the same one.
	for i := range st.Faces {
		for j := i + 1; j < len(st.Faces); j++ {
			if d := engine.Distance(st.Faces[i].Face.Embedding, st.Faces[j].Face.Embedding); d < 0.2 {
				t.Errorf("faces %d and %d embed %.3f apart: the same face twice?", i+1, j+1, d)
			}
		}
	}
	t.Logf("%d faces, %d embedded; decode %v, detect %v, crop+embed %v", len(st.Faces), embedded, st.Decode, st.Detect, st.Embed)
}

// TestBoxesInOriginalPixels: the same photo at 853x480 and 1920x1080 must
// give the same face, its box scaled by the size ratio: boxes are in the
// photo's own pixels, not in a downscaled copy's.
func TestBoxesInOriginalPixels(t *testing.T) {
	_, a := shared(t)
	small := analyze(t, a, "media/obama-480p.jpg", engine.StillOptions{})
	large := analyze(t, a, "media/obama-1080p.jpg", engine.StillOptions{})
	if len(small.Faces) != 1 || len(large.Faces) != 1 || !small.Faces[0].Embedded || !large.Faces[0].Embedded {
		t.Fatalf("want one embedded face in each: %d and %d", len(small.Faces), len(large.Faces))
	}
	if large.Width != 1920 || large.Height != 1080 {
		t.Fatalf("1080p decoded as %dx%d", large.Width, large.Height)
	}
	scale := float64(large.Width) / float64(small.Width)
	s, l := small.Faces[0].Face.Box, large.Faces[0].Face.Box
	tol := 0.08 * float64(l.Dx())
	for _, c := range []struct {
		name       string
		got, small int
	}{
		{"min x", l.Min.X, s.Min.X}, {"min y", l.Min.Y, s.Min.Y}, {"max x", l.Max.X, s.Max.X}, {"max y", l.Max.Y, s.Max.Y},
	} {
		if want := float64(c.small) * scale; abs(float64(c.got)-want) > tol {
			t.Errorf("%s: %d in 1080p, want %.0f (480p's %d scaled by %.3f) ± %.0f", c.name, c.got, want, c.small, scale, tol)
		}
	}
	if d := engine.Distance(small.Faces[0].Face.Embedding, large.Faces[0].Face.Embedding); d > 0.25 {
		t.Errorf("same photo at two sizes embeds %.3f apart", d)
	}
	t.Logf("480p box %v, 1080p box %v", s, l)
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

// TestMaxEmbed: enrolment asks for at most one face; a group photo is then
// measured but not embedded.
func TestMaxEmbed(t *testing.T) {
	_, a := shared(t)
	st := analyze(t, a, pristin, engine.StillOptions{MaxEmbed: 1})
	if len(st.Faces) < 8 {
		t.Fatalf("%d faces, want at least 8", len(st.Faces))
	}
	for i, f := range st.Faces {
		if f.Embedded || f.Err != nil || f.Face.Embedding != (engine.Embedding{}) {
			t.Errorf("face %d embedded (%v, %v) although MaxEmbed is 1", i+1, f.Embedded, f.Err)
		}
		if !(f.Measures.InterEyePx > 0) {
			t.Errorf("face %d not measured: %+v", i+1, f.Measures)
		}
	}
	one := analyze(t, a, "media/obama-480p.jpg", engine.StillOptions{MaxEmbed: 1})
	if len(one.Faces) != 1 || !one.Faces[0].Embedded {
		t.Fatalf("single face with MaxEmbed 1: %+v", one.Faces)
	}
}

// TestConcurrentEmbedding: embedding a photo's faces on a two-recogniser
// pool, two at a time, gives the same faces as one at a time.
func TestConcurrentEmbedding(t *testing.T) {
	_, a := shared(t)
	dir := testenv.ModelDir(t)
	pool, err := facerec.NewPool(facerec.PoolConfig{Config: facerec.Config{ModelDir: dir, Logger: slog.New(slog.DiscardHandler)}, Size: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	par, err := still.New(still.Config{ModelDir: dir, Concurrency: 2}, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer par.Close()
	seq := analyze(t, a, pristin, engine.StillOptions{})
	got := analyze(t, par, pristin, engine.StillOptions{})
	if len(got.Faces) != len(seq.Faces) {
		t.Fatalf("%d faces in parallel, %d in sequence", len(got.Faces), len(seq.Faces))
	}
	for i := range got.Faces {
		g, s := got.Faces[i], seq.Faces[i]
		if g.Embedded != s.Embedded || g.Face.Box != s.Face.Box {
			t.Errorf("face %d: parallel %v %v, sequential %v %v", i+1, g.Embedded, g.Face.Box, s.Embedded, s.Face.Box)
		}
		if d := engine.Distance(g.Face.Embedding, s.Face.Embedding); d > 1e-4 {
			t.Errorf("face %d: parallel and sequential embeddings %.5f apart", i+1, d)
		}
	}
	t.Logf("crop+embed of %d faces: %v one at a time, %v two at a time", len(seq.Faces), seq.Embed, got.Embed)
}

func blankJPEG(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 320, 240))
	for y := range 240 {
		for x := range 320 {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 128, 255})
		}
	}
	var buf bytes.Buffer
	if err := stdjpeg.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestInadmissibleAndEmpty: bad bytes fail with the engine's sentinels
// before any detector runs; a photo without a face is not an error.
func TestInadmissibleAndEmpty(t *testing.T) {
	_, a := shared(t)
	good := testenv.SharedFile(t, "datasets/lfw/images/Colin_Powell/Colin_Powell_0001.jpg")
	for _, c := range []struct {
		name string
		data []byte
		want error
	}{
		{"truncated JPEG", good[:len(good)/2], engine.ErrUndecodable},
		{"text", []byte("name,id\nAda,A123\n"), engine.ErrUnsupportedFormat},
		{"too large", append(bytes.Clone(good), make([]byte, engine.DefaultImageLimits.MaxBytes)...), engine.ErrImageTooLarge},
	} {
		st, err := a.AnalyzeStill(context.Background(), c.data, engine.StillOptions{})
		if !errors.Is(err, c.want) || len(st.Faces) != 0 {
			t.Errorf("%s: got %v with %d faces, want %v", c.name, err, len(st.Faces), c.want)
		}
	}
	st, err := a.AnalyzeStill(context.Background(), blankJPEG(t), engine.StillOptions{})
	if err != nil || len(st.Faces) != 0 || st.Width != 320 || st.Height != 240 {
		t.Fatalf("blank image: %d faces, %dx%d, %v; want no face and no error", len(st.Faces), st.Width, st.Height, err)
	}
}

// TestCancelled: a cancelled request embeds nothing and says so.
func TestCancelled(t *testing.T) {
	_, a := shared(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	st, err := a.AnalyzeStill(ctx, testenv.SharedFile(t, pristin), engine.StillOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	for i, f := range st.Faces {
		if f.Embedded {
			t.Errorf("face %d embedded after cancellation", i+1)
		}
	}
}

// TestEmbedFaceWithoutFace: a box on background gives ErrNoFace, which the
// pipeline counts as "no_face_in_crop".
func TestEmbedFaceWithoutFace(t *testing.T) {
	r, _ := shared(t)
	frame := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(90, 120, 150, 0), 480, 640, gocv.MatTypeCV8UC3)
	defer frame.Close()
	_, err := still.EmbedFace(context.Background(), r, frame, image.Rect(200, 150, 320, 270), vision.CropOptions{})
	if !errors.Is(err, engine.ErrNoFace) {
		t.Fatalf("got %v, want ErrNoFace", err)
	}
}
