package vision_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	stdjpeg "image/jpeg"
	"path/filepath"
	"sync"
	"testing"

	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/vision"
	"github.com/loopgate/loopgate/internal/testenv"
)

// lfwFaces are LFW deep-funneled images with one clear frontal face each.
var lfwFaces = []string{
	"Colin_Powell/Colin_Powell_0001.jpg",
	"George_W_Bush/George_W_Bush_0001.jpg",
	"Tony_Blair/Tony_Blair_0001.jpg",
	"Serena_Williams/Serena_Williams_0001.jpg",
	"Gerhard_Schroeder/Gerhard_Schroeder_0001.jpg",
	"Hugo_Chavez/Hugo_Chavez_0001.jpg",
}

var (
	poolOnce sync.Once
	pool     *facerec.Pool
	poolErr  error
)

// sharedPool loads one pool for the package's tests: loading takes seconds.
func sharedPool(t *testing.T) *facerec.Pool {
	t.Helper()
	dir := testenv.ModelDir(t)
	poolOnce.Do(func() {
		pool, poolErr = facerec.NewPool(facerec.PoolConfig{Config: facerec.Config{ModelDir: dir}, Size: 2})
	})
	if poolErr != nil {
		t.Fatal(poolErr)
	}
	return pool
}

// reference is an LFW image with go-face's face on the original 250x250.
type reference struct {
	name string
	img  gocv.Mat
	face engine.Face
}

func loadReference(t *testing.T, p *facerec.Pool, rel string) reference {
	t.Helper()
	data := testenv.SharedFile(t, filepath.Join("datasets", "lfw", "images", rel))
	img, err := gocv.IMDecode(data, gocv.IMReadColor)
	if err != nil || img.Empty() {
		t.Fatalf("%s: decode: %v", rel, err)
	}
	t.Cleanup(func() { img.Close() })
	jpeg, err := vision.EncodeJPEG(img)
	if err != nil {
		t.Fatal(err)
	}
	faces, err := p.Faces(jpeg)
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	// LFW centres the labelled face: take the one nearest the centre.
	mid := image.Pt(img.Cols(), img.Rows()).Div(2)
	var best engine.Face
	bestD := -1
	for _, f := range faces {
		c := f.Box.Min.Add(f.Box.Max).Div(2).Sub(mid)
		if d := c.X*c.X + c.Y*c.Y; bestD < 0 || d < bestD {
			best, bestD = f, d
		}
	}
	if bestD < 0 {
		t.Fatalf("%s: go-face finds no face in the original", rel)
	}
	return reference{name: filepath.Base(rel), img: img, face: best}
}

// place scales ref so that its face box is faceWidth pixels wide and pastes
// it into a grey 1280x720 canvas so that the face box starts at at (parts
// falling outside the canvas are cut off). It returns the canvas and the
// face box in canvas pixels.
func place(t *testing.T, ref reference, faceWidth int, at image.Point) (gocv.Mat, image.Rectangle) {
	t.Helper()
	f := float64(faceWidth) / float64(ref.face.Box.Dx())
	scaled := gocv.NewMat()
	defer scaled.Close()
	interp := gocv.InterpolationArea
	if f > 1 {
		interp = gocv.InterpolationCubic
	}
	gocv.Resize(ref.img, &scaled, image.Point{}, f, f, interp)
	scaleRect := func(r image.Rectangle) image.Rectangle {
		return image.Rect(int(float64(r.Min.X)*f+0.5), int(float64(r.Min.Y)*f+0.5), int(float64(r.Max.X)*f+0.5), int(float64(r.Max.Y)*f+0.5))
	}
	box := scaleRect(ref.face.Box)
	offset := at.Sub(box.Min)
	canvas := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(128, 128, 128, 0), 720, 1280, gocv.MatTypeCV8UC3)
	dst := image.Rect(0, 0, scaled.Cols(), scaled.Rows()).Add(offset)
	vis := dst.Intersect(image.Rect(0, 0, 1280, 720))
	src := scaled.Region(vis.Sub(offset))
	defer src.Close()
	roi := canvas.Region(vis)
	defer roi.Close()
	src.CopyTo(&roi)
	return canvas, box.Add(offset)
}

// TestCropEmbedMatchesOriginal places LFW faces at several sizes in a
// 720p canvas, crops them at the box go-face gives on the original and
// embeds the crop: from 60 px up the embedding must stay within 0.25 of the
// original image's.
func TestCropEmbedMatchesOriginal(t *testing.T) {
	p := sharedPool(t)
	ctx := context.Background()
	sizes := []int{30, 60, 120, 250}
	worst := map[int]float64{}
	for _, rel := range lfwFaces {
		ref := loadReference(t, p, rel)
		line := ref.name + ":"
		for _, size := range sizes {
			canvas, box := place(t, ref, size, image.Pt(500, 360-size/2))
			crop, err := vision.CropFace(canvas, box, vision.CropOptions{})
			canvas.Close()
			if err != nil {
				t.Fatalf("%s at %d px: %v", ref.name, size, err)
			}
			got, err := p.EmbedCrop(ctx, crop)
			switch {
			case err != nil && size < 60:
				line += fmt.Sprintf(" %d px: %v;", size, err)
				worst[size] = 99
				continue
			case err != nil:
				t.Errorf("%s at %d px: %v", ref.name, size, err)
				continue
			}
			d := engine.Distance(got.Embedding, ref.face.Embedding)
			worst[size] = max(worst[size], d)
			line += fmt.Sprintf(" %d px %.3f;", size, d)
			if size >= 60 && d > 0.25 {
				t.Errorf("%s at %d px: distance %.3f to the original's embedding, want <= 0.25", ref.name, size, d)
			}
			// The face found in the crop, mapped back, must sit on the box.
			if c := got.Box.Min.Add(got.Box.Max).Div(2); !c.In(box) {
				t.Errorf("%s at %d px: face centre %v (frame pixels) outside the box %v", ref.name, size, c, box)
			}
		}
		t.Log(line)
	}
	for _, size := range sizes {
		t.Logf("largest distance at %d px: %.3f", size, worst[size])
	}
}

// TestCropEmbedAtFrameCorner puts the face box against each corner of the
// frame, so that the crop's margin falls outside it.
func TestCropEmbedAtFrameCorner(t *testing.T) {
	p := sharedPool(t)
	ctx := context.Background()
	const size = 120
	for _, rel := range lfwFaces[:3] {
		ref := loadReference(t, p, rel)
		for _, corner := range []image.Point{{0, 0}, {1280 - size, 720 - size}} {
			canvas, box := place(t, ref, size, corner)
			crop, err := vision.CropFace(canvas, box, vision.CropOptions{})
			canvas.Close()
			if err != nil {
				t.Fatal(err)
			}
			if crop.Pad == (image.Point{}) && corner == (image.Point{}) {
				t.Errorf("%s: no padding at the top-left corner: %+v", ref.name, crop)
			}
			got, err := p.EmbedCrop(ctx, crop)
			if err != nil {
				t.Errorf("%s at corner %v: %v", ref.name, corner, err)
				continue
			}
			d := engine.Distance(got.Embedding, ref.face.Embedding)
			t.Logf("%s, %d px face at corner %v: crop %v, distance %.3f", ref.name, size, corner, crop.Size, d)
			if d > 0.25 {
				t.Errorf("%s at corner %v: distance %.3f, want <= 0.25", ref.name, corner, d)
			}
		}
	}
}

func TestEmbedCropWithoutFace(t *testing.T) {
	p := sharedPool(t)
	ref := loadReference(t, p, lfwFaces[0])
	canvas, _ := place(t, ref, 120, image.Pt(900, 300))
	defer canvas.Close()
	// Grey canvas only: the face is far to the right.
	crop, err := vision.CropFace(canvas, image.Rect(100, 100, 220, 220), vision.CropOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.EmbedCrop(context.Background(), crop); !errors.Is(err, engine.ErrNoFace) {
		t.Fatalf("got %v, want ErrNoFace", err)
	}
}

// testFrame is a 640x480 gradient, so that every pixel says where it came from.
func testFrame() gocv.Mat {
	m := gocv.NewMatWithSize(480, 640, gocv.MatTypeCV8UC3)
	for y := 0; y < 480; y++ {
		for x := 0; x < 640; x++ {
			m.SetUCharAt(y, x*3, uint8(x/3))
			m.SetUCharAt(y, x*3+1, uint8(y/2))
			m.SetUCharAt(y, x*3+2, 100)
		}
	}
	return m
}

func TestCropFaceGeometry(t *testing.T) {
	frame := testFrame()
	defer frame.Close()
	for _, c := range []struct {
		name     string
		box      image.Rectangle
		opts     vision.CropOptions
		wantRect image.Rectangle
		wantPad  image.Point
	}{
		{"centre, shrink", image.Rect(200, 150, 400, 350), vision.CropOptions{}, image.Rect(80, 30, 520, 470), image.Point{}},
		{"small face, enlarge", image.Rect(300, 200, 330, 230), vision.CropOptions{}, image.Rect(282, 182, 348, 248), image.Point{}},
		{"top-left corner", image.Rect(0, 0, 100, 100), vision.CropOptions{}, image.Rect(0, 0, 160, 160), image.Pt(84, 84)},
		{"bottom-right, clip", image.Rect(540, 380, 640, 480), vision.CropOptions{Edge: vision.EdgeClip}, image.Rect(480, 320, 640, 480), image.Point{}},
		{"margin 0.25, face 100", image.Rect(100, 100, 200, 200), vision.CropOptions{Margin: 0.25, TargetFace: 100}, image.Rect(75, 75, 225, 225), image.Point{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			crop, err := vision.CropFace(frame, c.box, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			if crop.Rect != c.wantRect || crop.Pad != c.wantPad {
				t.Errorf("rect %v pad %v, want %v pad %v", crop.Rect, crop.Pad, c.wantRect, c.wantPad)
			}
			target := c.opts.TargetFace
			if target == 0 {
				target = vision.DefaultTargetFace
			}
			if crop.Target.Dx() != target {
				t.Errorf("target %v is %d px wide, want %d", crop.Target, crop.Target.Dx(), target)
			}
			if back := crop.RectToFrame(crop.Target); !near(back, c.box, 1) {
				t.Errorf("target maps back to %v, want %v", back, c.box)
			}
			cfg, err := stdjpeg.DecodeConfig(bytes.NewReader(crop.JPEG))
			if err != nil {
				t.Fatal(err)
			}
			if image.Pt(cfg.Width, cfg.Height) != crop.Size || cfg.ColorModel != color.YCbCrModel {
				t.Errorf("JPEG is %dx%d %v, Size says %v", cfg.Width, cfg.Height, cfg.ColorModel, crop.Size)
			}
			// A pixel in the crop's middle holds the frame pixel it maps to.
			img, err := stdjpeg.Decode(bytes.NewReader(crop.JPEG))
			if err != nil {
				t.Fatal(err)
			}
			mid := crop.Target.Min.Add(crop.Target.Max).Div(2)
			fp := crop.PointToFrame(mid)
			r, g, b, _ := img.At(mid.X, mid.Y).RGBA()
			wantB, wantG := fp.X/3, fp.Y/2
			if absDiff(int(b>>8), wantB) > 4 || absDiff(int(g>>8), wantG) > 4 || absDiff(int(r>>8), 100) > 4 {
				t.Errorf("crop pixel %v = rgb(%d,%d,%d), frame pixel %v should be rgb(100,%d,%d)", mid, r>>8, g>>8, b>>8, fp, wantG, wantB)
			}
		})
	}
}

func TestCropFaceRefuses(t *testing.T) {
	frame := testFrame()
	defer frame.Close()
	gray := gocv.NewMatWithSize(100, 100, gocv.MatTypeCV8U)
	defer gray.Close()
	for _, c := range []struct {
		name  string
		frame gocv.Mat
		box   image.Rectangle
		want  error
	}{
		{"empty box", frame, image.Rect(10, 10, 10, 50), vision.ErrEmptyBox},
		{"sliver", frame, image.Rect(10, 10, 12, 400), vision.ErrBoxShape},
		{"box outside", frame, image.Rect(700, 10, 760, 70), vision.ErrBoxOutsideFrame},
		{"grey frame", gray, image.Rect(10, 10, 50, 50), vision.ErrFrameFormat},
	} {
		if _, err := vision.CropFace(c.frame, c.box, vision.CropOptions{}); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestPickTarget(t *testing.T) {
	// A 2x enlargement of frame pixels (100,100)-(300,300), target face in
	// the middle, a neighbour at the crop's edge.
	crop := vision.Crop{Rect: image.Rect(100, 100, 300, 300), Scale: 2, Size: image.Pt(400, 400), Target: image.Rect(140, 140, 260, 260)}
	target := engine.Face{Box: image.Rect(150, 160, 250, 260), Landmarks: []image.Point{{180, 200}}}
	neighbour := engine.Face{Box: image.Rect(300, 150, 400, 250)}
	got, err := crop.PickTarget([]engine.Face{neighbour, target})
	if err != nil {
		t.Fatal(err)
	}
	if want := image.Rect(175, 180, 225, 230); got.Box != want || got.Landmarks[0] != image.Pt(190, 200) {
		t.Errorf("got box %v landmarks %v, want %v and (190,200)", got.Box, got.Landmarks, want)
	}
	if _, err := crop.PickTarget([]engine.Face{neighbour}); !errors.Is(err, engine.ErrNoFace) {
		t.Errorf("neighbour only: got %v, want ErrNoFace", err)
	}
	if _, err := crop.PickTarget(nil); !errors.Is(err, engine.ErrNoFace) {
		t.Errorf("no faces: got %v, want ErrNoFace", err)
	}
}

func near(a, b image.Rectangle, tol int) bool {
	return absDiff(a.Min.X, b.Min.X) <= tol && absDiff(a.Min.Y, b.Min.Y) <= tol && absDiff(a.Max.X, b.Max.X) <= tol && absDiff(a.Max.Y, b.Max.Y) <= tol
}

func absDiff(a, b int) int {
	if a > b {
		return a - b
	}
	return b - a
}
