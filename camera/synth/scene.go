package synth

import "math"

// The background is a covered footbridge seen from one end, ray-cast from
// a camera mounted above head height: concrete floor with joints and guide
// strips, glass side walls with mullions and rails, a beamed ceiling with
// light strips, and the bright far exit. It is drawn from geometry alone
// (no photo), so it holds no faces; the tests check that with the real
// detectors.

type rgb struct{ b, g, r float64 }

func (c rgb) mix(d rgb, t float64) rgb {
	return rgb{c.b + (d.b-c.b)*t, c.g + (d.g-c.g)*t, c.r + (d.r-c.r)*t}
}

func (c rgb) scale(k float64) rgb { return rgb{c.b * k, c.g * k, c.r * k} }

const (
	bridgeHalfWidth = 2.4  // m, wall to centre line
	cameraHeight    = 2.3  // m
	ceilingHeight   = 3.1  // m
	farExit         = 70.0 // m, where the bridge opens to daylight
	horizonFrac     = 0.40 // vanishing point height as a fraction of the frame
)

var (
	colFloor    = rgb{0.50, 0.52, 0.55}
	colJoint    = rgb{0.36, 0.37, 0.39}
	colGuide    = rgb{0.20, 0.62, 0.78}
	colKick     = rgb{0.34, 0.35, 0.37}
	colSkyTop   = rgb{0.88, 0.80, 0.70}
	colSkyLow   = rgb{0.70, 0.71, 0.67}
	colBuilding = rgb{0.56, 0.56, 0.58}
	colMullion  = rgb{0.24, 0.25, 0.27}
	colRail     = rgb{0.72, 0.72, 0.74}
	colFascia   = rgb{0.80, 0.80, 0.78}
	colCeiling  = rgb{0.80, 0.81, 0.82}
	colBeam     = rgb{0.52, 0.53, 0.56}
	colLight    = rgb{0.98, 0.98, 0.97}
	colExit     = rgb{0.93, 0.91, 0.88}
	colHaze     = rgb{0.84, 0.83, 0.81}
)

// drawFootbridge returns a w x h BGR image of the empty footbridge.
func drawFootbridge(w, h int) []byte {
	out := make([]byte, w*h*3)
	f := 0.80 * float64(w)
	cx, cy := float64(w)/2, horizonFrac*float64(h)
	const ss = 3 // supersampling per axis, against aliased joints
	for v := 0; v < h; v++ {
		for u := 0; u < w; u++ {
			var acc rgb
			for sy := 0; sy < ss; sy++ {
				for sx := 0; sx < ss; sx++ {
					px := float64(u) + (float64(sx)+0.5)/ss
					py := float64(v) + (float64(sy)+0.5)/ss
					c := castRay((px-cx)/f, (py-cy)/f)
					acc = rgb{acc.b + c.b, acc.g + c.g, acc.r + c.r}
				}
			}
			c := acc.scale(1.0 / (ss * ss))
			// Lens vignetting and a fixed grain, so flat areas are not flat.
			nx, ny := (float64(u)-cx)/float64(w), (float64(v)-float64(h)/2)/float64(h)
			c = c.scale((1 - 0.35*(nx*nx+ny*ny)) * (1 + 0.03*(hash2(u, v)-0.5)))
			i := (v*w + u) * 3
			out[i], out[i+1], out[i+2] = to8(c.b), to8(c.g), to8(c.r)
		}
	}
	return out
}

// castRay returns the colour seen along direction (dx, dy, 1) from the
// camera, dy pointing down.
func castRay(dx, dy float64) rgb {
	t, surface := farExit, 0
	if dy > 1e-9 {
		if tf := cameraHeight / dy; tf < t {
			t, surface = tf, 1
		}
	}
	if dy < -1e-9 {
		if tc := (ceilingHeight - cameraHeight) / -dy; tc < t {
			t, surface = tc, 2
		}
	}
	if ad := math.Abs(dx); ad > 1e-9 {
		if tw := bridgeHalfWidth / ad; tw < t {
			t, surface = tw, 3
		}
	}
	x, y, z := dx*t, cameraHeight-dy*t, t
	var c rgb
	switch surface {
	case 0:
		c = colExit
	case 1:
		c = floorColour(x, z)
	case 2:
		c = ceilingColour(x, z)
	case 3:
		c = wallColour(y, z, dx < 0)
	}
	return c.mix(colHaze, 1-math.Exp(-t/45))
}

func floorColour(x, z float64) rgb {
	c := colFloor.scale(0.96 + 0.08*hash1(math.Floor(z/1.5)*31+math.Floor(x)))
	// Guide strips either side of the walking line.
	if math.Abs(math.Abs(x)-1.7) < 0.06 {
		c = colGuide
	}
	if band(z, 1.5, 0.03) || band(x+bridgeHalfWidth, 1.2, 0.03) {
		c = c.mix(colJoint, math.Max(0, 1-z/30))
	}
	// Darker where the floor meets the walls.
	return c.scale(1 - 0.3*math.Exp(-(bridgeHalfWidth-math.Abs(x))/0.25))
}

func wallColour(y, z float64, left bool) rgb {
	side := 0.0
	if left {
		side = 17
	}
	switch {
	case y < 0.25:
		return colKick
	case y > 2.55:
		return colFascia
	case band(z, 2.0, 0.09):
		return colMullion
	case y > 1.0 && y < 1.07:
		return colRail.scale(0.9 + 0.2*(y-1.0)/0.07)
	case y > 0.55 && y < 0.58:
		return colRail.scale(0.85)
	}
	// Through the glass: sky above a skyline of plain blocks.
	sky := colSkyLow.mix(colSkyTop, (y-0.25)/2.3)
	block := math.Floor(z/3.1 + side)
	if y < 1.1+0.9*hash1(block) {
		sky = colBuilding.scale(0.9 + 0.2*hash1(block+101))
	}
	// A faint reflection gradient on the glass.
	return sky.scale(0.92 + 0.08*math.Sin(z*0.21+side))
}

func ceilingColour(x, z float64) rgb {
	switch {
	case math.Abs(math.Abs(x)-0.9) < 0.08:
		return colLight
	case band(z, 3.0, 0.2):
		return colBeam
	}
	return colCeiling
}

// band reports whether v lies within width of a multiple of period.
func band(v, period, width float64) bool {
	m := math.Mod(v, period)
	if m < 0 {
		m += period
	}
	return m < width
}

func to8(v float64) byte {
	switch {
	case v <= 0:
		return 0
	case v >= 1:
		return 255
	}
	return byte(v*255 + 0.5)
}

// hash1 and hash2 are fixed pseudo-random functions in [0, 1): the
// background must be identical on every run and machine.
func hash1(v float64) float64 {
	x := uint64(int64(v*1000)) * 0x9e3779b97f4a7c15
	x ^= x >> 31
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 29
	return float64(x>>11) / (1 << 53)
}

func hash2(u, v int) float64 {
	x := uint64(u)*0x9e3779b97f4a7c15 ^ uint64(v)*0xc2b2ae3d27d4eb4f
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	return float64(x>>11) / (1 << 53)
}
