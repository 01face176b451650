package synth

import (
	"fmt"
	"image"
	"math"
	"math/rand/v2"

	"gocv.io/x/gocv"
)

// LFW deep-funneled geometry, in pixels of its 250x250 images: the face
// fills roughly the central 110x110 square. The cut-out keeps a margin of
// hair, neck and shoulders around it.
const (
	lfwSide          = 250.0
	faceLFW          = 110.0 // nominal face width
	faceCX, faceCY   = 125.0, 125.0
	cropX0, cropY0   = 45.0, 30.0
	cropW, cropH     = 160.0, 210.0
	maskCX, maskCY   = 80.0, 100.0 // ellipse centre, crop coordinates
	maskRX, maskRY   = 78.0, 104.0
	maskSolid        = 0.62     // fully opaque inside this fraction of the ellipse
	shirtY0, shirtY1 = 222, 247 // rows sampled for the shirt colour
	shirtX0, shirtX1 = 95, 155
)

// pose is one walker's state in one frame.
type pose struct {
	face   float64 // nominal face width, px
	cx, cy float64 // face centre, px
	blur   int     // vertical motion-blur length, px (0: sharp)
	gain   float64 // the walker's own lighting
	stride float64 // leg swing phase, radians
	legs   rgb
}

// makePoses draws one walker's motion from rng: distance falls linearly in
// time and the face width is k/distance, so 1/width is linear in time; the
// head bobs at the step rate (~2 Hz), sways and drifts sideways a little,
// and about one frame in five gets motion blur. Note that 25 -> 200 px is
// an 8:1 distance ratio (16 m -> 2 m for a 2 m end), not the 3:1 of
// 6 m -> 2 m; the pixel range and the walk time are what the clip keeps.
func makePoses(cfg Config, rng *rand.Rand, lane string, n int) []pose {
	w, h := float64(cfg.Width), float64(cfg.Height)
	stepHz := 1.8 + 0.4*rng.Float64()
	bobPhase := 2 * math.Pi * rng.Float64()
	swayPhase := 2 * math.Pi * rng.Float64()
	drift := 0.04
	laneX, laneLo, laneHi := w/2, 0.0, w
	switch lane {
	case "a":
		laneX, laneHi, drift = w/6, w/3, 0.02
	case "b":
		laneX, laneLo, drift = 5*w/6, 2*w/3, 0.02
	}
	drift0 := drift * w * (2*rng.Float64() - 1)
	drift1 := drift * w * (2*rng.Float64() - 1)
	gain := 0.95 + 0.10*rng.Float64()
	legs := trouserColours[rng.IntN(len(trouserColours))]
	inv0, inv1 := 1/float64(cfg.MinFace), 1/float64(cfg.MaxFace)
	poses := make([]pose, n)
	for i := range poses {
		p := float64(i) / float64(n-1)
		t := float64(i) / cfg.FPS
		face := 1 / (inv0 + p*(inv1-inv0))
		q := (face - float64(cfg.MinFace)) / float64(cfg.MaxFace-cfg.MinFace)
		// Lanes converge toward the vanishing point when far away.
		x := w/2 + (laneX-w/2)*(0.6+0.4*q)
		x += drift0 + (drift1-drift0)*p + 0.02*face*math.Sin(math.Pi*stepHz*t+swayPhase)
		x = clamp(x, max(laneLo, 0)+face/2+2, min(laneHi, w)-face/2-2)
		// Perspective: the offset below the horizon grows like the size.
		y := horizonFrac*h + 0.22*face + 0.03*face*math.Sin(2*math.Pi*stepHz*t+bobPhase)
		blur := 0
		if rng.Float64() < 0.2 {
			blur = max(3, int(math.Round(0.025*face)))
		}
		poses[i] = pose{face: face, cx: x, cy: y, blur: blur, gain: gain, stride: math.Pi * stepHz * t, legs: legs}
	}
	return poses
}

var trouserColours = []rgb{
	{0.18, 0.16, 0.15}, {0.35, 0.25, 0.18}, {0.22, 0.22, 0.24}, {0.30, 0.33, 0.36}, {0.16, 0.20, 0.28},
}

func clamp(v, lo, hi float64) float64 {
	if hi < lo {
		return (lo + hi) / 2
	}
	return math.Max(lo, math.Min(hi, v))
}

// sprite is a walker's cut-out: the cropped photo and its feathered
// elliptical alpha, at the photo's own resolution.
type sprite struct {
	img, alpha gocv.Mat
	scale      float64 // photo pixels per LFW pixel
	shirt      rgb
}

func loadSprite(path string) (*sprite, error) {
	src := gocv.IMRead(path, gocv.IMReadColor)
	if src.Empty() {
		src.Close()
		return nil, fmt.Errorf("%w: cannot read walk photo %s", ErrWalkers, path)
	}
	defer src.Close()
	if src.Cols() != src.Rows() {
		return nil, fmt.Errorf("%w: walk photo %s is %dx%d, want a square LFW image", ErrWalkers, path, src.Cols(), src.Rows())
	}
	k := float64(src.Cols()) / lfwSide
	crop := image.Rect(int(cropX0*k), int(cropY0*k), int((cropX0+cropW)*k), int((cropY0+cropH)*k))
	region := src.Region(crop)
	s := &sprite{img: region.Clone(), scale: k}
	region.Close()

	cw, ch := crop.Dx(), crop.Dy()
	a := make([]byte, cw*ch)
	for y := 0; y < ch; y++ {
		for x := 0; x < cw; x++ {
			dx := (float64(x)+0.5)/k - maskCX
			dy := (float64(y)+0.5)/k - maskCY
			r := math.Sqrt(dx*dx/(maskRX*maskRX) + dy*dy/(maskRY*maskRY))
			a[y*cw+x] = to8(1 - smoothstep(maskSolid, 1, r))
		}
	}
	alpha, err := gocv.NewMatFromBytes(ch, cw, gocv.MatTypeCV8UC1, a)
	if err != nil {
		s.img.Close()
		return nil, fmt.Errorf("synth: alpha mask: %w", err)
	}
	s.alpha = alpha.Clone() // own the pixels in OpenCV memory
	alpha.Close()

	// The drawn torso continues the shirt seen at the bottom of the photo.
	pix, err := src.DataPtrUint8()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("synth: %w", err)
	}
	var sum [3]float64
	n := 0
	for y := int(shirtY0 * k); y < int(shirtY1*k); y++ {
		for x := int(shirtX0 * k); x < int(shirtX1*k); x++ {
			i := (y*src.Cols() + x) * 3
			for c := range 3 {
				sum[c] += float64(pix[i+c])
			}
			n++
		}
	}
	s.shirt = rgb{sum[0] / float64(n) / 255, sum[1] / float64(n) / 255, sum[2] / float64(n) / 255}
	return s, nil
}

func (s *sprite) Close() {
	s.img.Close()
	s.alpha.Close()
}

func smoothstep(e0, e1, x float64) float64 {
	t := clamp((x-e0)/(e1-e0), 0, 1)
	return t * t * (3 - 2*t)
}

// renderer composes frames into one reusable OpenCV-owned buffer.
type renderer struct {
	cfg       Config
	bg        []byte
	frame     gocv.Mat
	pix       []byte
	noise     []int8
	rng       *rand.Rand
	phase1    float64
	phase2    float64
	scaled    gocv.Mat
	scaledA   gocv.Mat
	blurredA  gocv.Mat
	blurredIm gocv.Mat
}

const noiseSlack = 1 << 16

func newRenderer(cfg Config, seed uint64) (*renderer, error) {
	r := &renderer{
		cfg:       cfg,
		bg:        drawFootbridge(cfg.Width, cfg.Height),
		frame:     gocv.NewMatWithSize(cfg.Height, cfg.Width, gocv.MatTypeCV8UC3),
		rng:       rand.New(rand.NewPCG(seed, 0xf7a3e5)),
		scaled:    gocv.NewMat(),
		scaledA:   gocv.NewMat(),
		blurredA:  gocv.NewMat(),
		blurredIm: gocv.NewMat(),
	}
	pix, err := r.frame.DataPtrUint8()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("synth: frame buffer: %w", err)
	}
	r.pix = pix
	// Sensor noise: one long buffer read at a random offset per frame is
	// as good as fresh noise and far cheaper.
	r.noise = make([]int8, len(r.bg)+noiseSlack)
	for i := range r.noise {
		r.noise[i] = int8(clamp(math.Round(r.rng.NormFloat64()*2.5), -12, 12))
	}
	r.phase1, r.phase2 = 2*math.Pi*r.rng.Float64(), 2*math.Pi*r.rng.Float64()
	return r, nil
}

func (r *renderer) Close() {
	for _, m := range []*gocv.Mat{&r.frame, &r.scaled, &r.scaledA, &r.blurredA, &r.blurredIm} {
		m.Close()
	}
}

// begin starts a frame from the empty footbridge.
func (r *renderer) begin() { copy(r.pix, r.bg) }

// finish applies the frame's exposure (±10 % drift; walkers add ±5 % of
// their own) and sensor noise, and returns the frame, valid until the next
// begin.
func (r *renderer) finish(frame int) gocv.Mat {
	t := float64(frame) / r.cfg.FPS
	gain := 1 + 0.07*math.Sin(2*math.Pi*0.13*t+r.phase1) + 0.03*math.Sin(2*math.Pi*0.9*t+r.phase2)
	var lut [256]int
	for v := range lut {
		lut[v] = int(math.Round(float64(v) * gain))
	}
	noise := r.noise[r.rng.IntN(noiseSlack):]
	for i, v := range r.pix {
		o := lut[v] + int(noise[i])
		r.pix[i] = byte(min(max(o, 0), 255))
	}
	return r.frame
}

// drawWalker paints one walker and returns the nominal face box.
func (r *renderer) drawWalker(s *sprite, p pose) image.Rectangle {
	k := p.face / faceLFW // frame pixels per LFW pixel
	r.drawBody(s, p)

	sw, sh := max(1, int(math.Round(cropW*k))), max(1, int(math.Round(cropH*k)))
	interp := gocv.InterpolationArea
	if k > s.scale {
		interp = gocv.InterpolationLinear
	}
	gocv.Resize(s.img, &r.scaled, image.Pt(sw, sh), 0, 0, interp)
	gocv.Resize(s.alpha, &r.scaledA, image.Pt(sw, sh), 0, 0, interp)
	img, alpha := r.scaled, r.scaledA
	if p.blur > 1 {
		gocv.Blur(img, &r.blurredIm, image.Pt(1, p.blur))
		gocv.Blur(alpha, &r.blurredA, image.Pt(1, p.blur))
		img, alpha = r.blurredIm, r.blurredA
	}
	ix := int(math.Round(p.cx - (faceCX-cropX0)*k))
	iy := int(math.Round(p.cy - (faceCY-cropY0)*k))
	// Resize and Blur allocate continuous outputs, so these cannot fail.
	sp, _ := img.DataPtrUint8()
	ap, _ := alpha.DataPtrUint8()
	W, H := r.cfg.Width, r.cfg.Height
	gain := int(math.Round(p.gain * 256))
	for y := max(0, -iy); y < sh && iy+y < H; y++ {
		for x := max(0, -ix); x < sw && ix+x < W; x++ {
			a := int(ap[y*sw+x])
			if a == 0 {
				continue
			}
			si, di := (y*sw+x)*3, ((iy+y)*W+ix+x)*3
			for c := range 3 {
				src := min(int(sp[si+c])*gain>>8, 255)
				r.pix[di+c] = byte((src*a + int(r.pix[di+c])*(255-a) + 127) / 255)
			}
		}
	}
	bx := ix + int(math.Round((faceCX-faceLFW/2-cropX0)*k))
	by := iy + int(math.Round((faceCY-faceLFW/2-cropY0)*k))
	side := int(math.Round(p.face))
	return image.Rect(bx, by, bx+side, by+side)
}

// drawBody paints a plain body under the cut-out so the head does not
// float: a neck hidden under the photo's chin widening into shoulders, a
// torso in the colour of the shirt at the bottom of the photo with arms
// down its sides, and legs swinging with the stride. Edges are anti-aliased
// by pixel coverage.
func (r *renderer) drawBody(s *sprite, p pose) {
	F := p.face
	yTop, yShoulder, yArmpit := p.cy+0.55*F, p.cy+1.3*F, p.cy+1.7*F
	yHip, yHand, yFeet := p.cy+3.6*F, p.cy+3.9*F, p.cy+7.2*F
	neck, shoulder, waist := 0.22*F, 1.2*F, 1.1*F
	arm := 0.28 * F
	legHalf, legGap, swing := 0.34*F, 0.40*F, 0.15*F*math.Sin(p.stride)
	W, H := r.cfg.Width, r.cfg.Height
	x0, x1 := max(0, int(p.cx-shoulder-2)), min(W, int(p.cx+shoulder+3))
	y0, y1 := max(0, int(yTop)), min(H, int(yFeet)+2)
	shirt := s.shirt.scale(p.gain)
	legs := p.legs.scale(p.gain)
	for y := y0; y < y1; y++ {
		fy := float64(y) + 0.5
		// Outline half-width: the neck sloping out to the shoulders, then
		// the arms hanging down the sides.
		var hw float64
		if fy < yShoulder {
			hw = neck + (shoulder-neck)*math.Sqrt(clamp((fy-yTop)/(yShoulder-yTop), 0, 1))
		} else {
			hw = shoulder + (waist-shoulder)*clamp((fy-yShoulder)/(yHand-yShoulder), 0, 1)
		}
		vBody := clamp(fy-yTop+0.5, 0, 1) * clamp(yHand-fy+0.5, 0, 1)
		vLegs := clamp(fy-(yHip-0.1*F)+0.5, 0, 1) * clamp(yFeet-fy+0.5, 0, 1)
		armSeam := fy > yArmpit
		armsOnly := fy > yHip
		for x := x0; x < x1; x++ {
			dx := math.Abs(float64(x) + 0.5 - p.cx)
			a := clamp(hw-dx+0.5, 0, 1) * vBody
			if armsOnly {
				a *= clamp(dx-(hw-arm)+0.5, 0, 1)
			}
			c := shirt.scale(0.8 + 0.2*math.Cos(math.Min(1, dx/hw)*math.Pi/2))
			if armSeam && math.Abs(dx-(hw-arm)) < max(0.5, 0.025*F) {
				c = c.scale(0.6) // the fold between arm and torso
			}
			if a < 1 && vLegs > 0 {
				sx := float64(x) + 0.5 - p.cx
				l := clamp(legHalf-math.Abs(sx-legGap-swing)+0.5, 0, 1)
				rr := clamp(legHalf-math.Abs(sx+legGap+swing)+0.5, 0, 1)
				if la := max(l, rr) * vLegs; la > a {
					a, c = la, legs
				}
			}
			if a <= 0 {
				continue
			}
			i := (y*W + x) * 3
			r.pix[i] = blend(r.pix[i], c.b, a)
			r.pix[i+1] = blend(r.pix[i+1], c.g, a)
			r.pix[i+2] = blend(r.pix[i+2], c.r, a)
		}
	}
}

func blend(dst byte, src, a float64) byte {
	return to8(float64(dst)/255*(1-a) + src*a)
}
