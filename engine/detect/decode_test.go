package detect

import (
	"errors"
	"image"
	"math"
	"testing"
)

func TestPriorLayout(t *testing.T) {
	// Row counts of YuNet's outputs, read from the real network on OpenCV
	// 4.6 for these input sizes (TestPriorsMatchNetwork re-checks them).
	for _, c := range []struct{ w, h, want int }{
		{64, 64, 235}, {63, 63, 235}, {160, 120, 1076}, {640, 480, 17610}, {640, 360, 13150}, {641, 359, 13150},
	} {
		if got := len(generatePriors(c.w, c.h)); got != c.want {
			t.Errorf("%dx%d: %d priors, want %d", c.w, c.h, got, c.want)
		}
	}
	// Order: head, row, column, size. On 64x64 the stride-8 head is 8x8
	// with 3 sizes, so index 3*(8*1+2)+1 is row 1, column 2, size 16.
	p := generatePriors(64, 64)
	if got, want := p[3*(8*1+2)+1], (prior{cx: 2.5 * 8, cy: 1.5 * 8, size: 16}); got != want {
		t.Errorf("prior 31 = %+v, want %+v", got, want)
	}
	// The last prior is the stride-64 head's single cell, size 256.
	if got, want := p[len(p)-1], (prior{cx: 32, cy: 32, size: 256}); got != want {
		t.Errorf("last prior = %+v, want %+v", got, want)
	}
}

// tinyOutput is the network output for a 64x64 input with every prior
// silent (score 0) except those the test sets.
func tinyOutput() (priors []prior, loc, conf, iou []float32) {
	priors = generatePriors(64, 64)
	return priors, make([]float32, len(priors)*locWidth), make([]float32, len(priors)*confWidth), make([]float32, len(priors))
}

func near(a, b float32) bool { return math.Abs(float64(a-b)) < 1e-3 }

func TestDecodeOnePrior(t *testing.T) {
	priors, loc, conf, iou := tinyOutput()
	// Stride-16 head (after the stride-8 head's 8*8*3 = 192 priors), row 1,
	// column 2, second size: index 192 + (1*4+2)*2 + 1 = 205.
	// Its prior: centre ((2+0.5)*16, (1+0.5)*16) = (40, 24), size 48.
	const i = 205
	if priors[i] != (prior{cx: 40, cy: 24, size: 48}) {
		t.Fatalf("prior %d = %+v", i, priors[i])
	}
	copy(loc[i*14:], []float32{
		0.5, -0.25, 1, 1, // box
		-1, -1, 1, -1, 0, 0.5, -1, 2, 1, 2, // right eye, left eye, nose, right mouth, left mouth
	})
	conf[i*2+1] = 0.81
	iou[i] = 1.3 // clamped to 1: score sqrt(0.81*1) = 0.9
	// Below the threshold: sqrt(0.5*0.99) = 0.704.
	conf[7*2+1], iou[7] = 0.5, 0.99
	// Garbage must not pass: NaN score, and an overflowing width.
	conf[8*2+1], iou[8] = float32(math.NaN()), 1
	conf[9*2+1], iou[9] = 1, 1
	loc[9*14+2] = 1e6

	got, err := decode(priors, loc, conf, iou, 0.75)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("%d candidates, want 1: %+v", len(got), got)
	}
	c := got[0]
	// By hand:
	//   cx = 40 + 0.5*0.1*48 = 42.4        cy = 24 - 0.25*0.1*48 = 22.8
	//   w  = 48*exp(1*0.1) = 53.04820      h  = 48*exp(1*0.2) = 58.62733 (variance 0.2 for height)
	//   x1 = 42.4 - 26.52410 = 15.87590    x2 = 68.92410
	//   y1 = 22.8 - 29.31367 = -6.51367    y2 = 52.11367
	want := candidate{x1: 15.87590, y1: -6.51367, x2: 68.92410, y2: 52.11367, score: 0.9,
		// landmark = prior centre + offset*0.1*48, i.e. ±4.8 per unit
		landmarks: [10]float32{35.2, 19.2, 44.8, 19.2, 40, 26.4, 35.2, 33.6, 44.8, 33.6}}
	for k, pair := range [][2]float32{{c.x1, want.x1}, {c.y1, want.y1}, {c.x2, want.x2}, {c.y2, want.y2}, {c.score, want.score}} {
		if !near(pair[0], pair[1]) {
			t.Errorf("field %d = %v, want %v", k, pair[0], pair[1])
		}
	}
	for k := range want.landmarks {
		if !near(c.landmarks[k], want.landmarks[k]) {
			t.Errorf("landmark value %d = %v, want %v", k, c.landmarks[k], want.landmarks[k])
		}
	}

	// Mapped to a 128x100 frame at scale 2 and clipped:
	//   box (31.75, -13.03)-(137.85, 104.23) → (32, 0)-(128, 100)
	d, ok := toFrame(c, 2, 2, image.Rect(0, 0, 128, 100))
	if !ok {
		t.Fatal("candidate mapped outside the frame")
	}
	if d.Box != image.Rect(32, 0, 128, 100) {
		t.Errorf("box %v, want (32,0)-(128,100)", d.Box)
	}
	wantPts := [5]image.Point{{70, 38}, {90, 38}, {80, 53}, {70, 67}, {90, 67}}
	if d.Landmarks != wantPts {
		t.Errorf("landmarks %v, want %v", d.Landmarks, wantPts)
	}
	if d.Landmarks[RightEye].X >= d.Landmarks[LeftEye].X {
		t.Error("the right eye must be on the image's left")
	}
}

func TestDecodeRejectsWrongShapes(t *testing.T) {
	priors, loc, conf, iou := tinyOutput()
	for _, c := range []struct {
		name           string
		loc, conf, iou []float32
	}{
		{"short loc", loc[:len(loc)-1], conf, iou},
		{"long conf", append(conf, 0), conf, iou},
		{"no iou", loc, conf, nil},
	} {
		if _, err := decode(priors, c.loc, c.conf, c.iou, 0.5); !errors.Is(err, ErrModelOutput) {
			t.Errorf("%s: got %v, want ErrModelOutput", c.name, err)
		}
	}
}

func box(x1, y1, x2, y2, score float32) candidate {
	return candidate{x1: x1, y1: y1, x2: x2, y2: y2, score: score}
}

func TestNMS(t *testing.T) {
	a := box(0, 0, 10, 10, 0.8)
	b := box(0, 0, 10, 5, 0.95) // IoU with a = 50/100 = 0.5
	c := box(8, 0, 18, 10, 0.9) // IoU with a = 20/180 = 0.11, with b = 10/140
	d := box(50, 50, 60, 60, 0.76)
	got := nms([]candidate{a, b, c, d}, 0.3, 100)
	want := []candidate{b, c, d} // a overlaps b too much; sorted by score
	if len(got) != len(want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("kept[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	// A looser threshold keeps a as well.
	if got := nms([]candidate{a, b, c, d}, 0.6, 100); len(got) != 4 {
		t.Errorf("threshold 0.6 kept %d, want 4", len(got))
	}
	// Only the topK best take part.
	if got := nms([]candidate{a, b, c, d}, 0.3, 2); len(got) != 2 || got[0] != b || got[1] != c {
		t.Errorf("topK 2 kept %+v, want b and c", got)
	}
}

func TestToFrameDropsBoxesOutside(t *testing.T) {
	if _, ok := toFrame(box(70, 70, 90, 90, 1), 1, 1, image.Rect(0, 0, 64, 64)); ok {
		t.Error("a box wholly in the padding was kept")
	}
}

func TestInputSize(t *testing.T) {
	for _, c := range []struct {
		w, h, max int
		want      image.Point
	}{
		{1920, 1080, 640, image.Pt(640, 360)},
		{1280, 720, 640, image.Pt(640, 360)},
		{426, 240, 640, image.Pt(426, 240)},   // never upscaled
		{1000, 10, 640, image.Pt(640, 6)},     // padded to 64 later
		{640, 100000, 640, image.Pt(8, 1280)}, // height bounded to 2*640
		{1, 1, 640, image.Pt(1, 1)},
	} {
		if got := inputSize(c.w, c.h, c.max); got != c.want {
			t.Errorf("inputSize(%d, %d, %d) = %v, want %v", c.w, c.h, c.max, got, c.want)
		}
	}
}

func TestConfig(t *testing.T) {
	got, err := Config{}.withDefaults()
	if err != nil || got != DefaultConfig() {
		t.Fatalf("zero config: %+v, %v; want the defaults", got, err)
	}
	for _, bad := range []Config{
		{InputWidth: -1}, {InputWidth: 32}, {InputWidth: 5000},
		{ScoreThreshold: -0.1}, {ScoreThreshold: 1.5}, {ScoreThreshold: float32(math.NaN())},
		{NMSThreshold: -1}, {NMSThreshold: 2}, {TopK: -5},
	} {
		if _, err := bad.withDefaults(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: got %v, want ErrInvalidConfig", bad, err)
		}
	}
}
