package quality

import (
	"encoding/json"
	"image"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/loopgate/loopgate/engine/detect"
)

func TestLandmarkOrderMatchesDetect(t *testing.T) {
	got := [5]int{RightEye, LeftEye, NoseTip, RightMouth, LeftMouth}
	want := [5]int{detect.RightEye, detect.LeftEye, detect.NoseTip, detect.RightMouth, detect.LeftMouth}
	if got != want {
		t.Fatalf("landmark indices %v, engine/detect has %v", got, want)
	}
}

// goodFace passes both profiles with a margin on every check.
func goodFace() Measures {
	return Measures{Faces: 1, InterEyePx: 80, SharpnessVar: 400, Brightness: 130, Contrast: 45, YawDeg: 3, RollDeg: -2, DetectorScore: 0.98}
}

func TestAssessAcceptsGoodFace(t *testing.T) {
	for _, prof := range []Thresholds{Gate, Enrolment} {
		r := Assess(goodFace(), prof)
		if !r.Accepted || len(r.Failures) != 0 || r.Profile != prof.Name {
			t.Errorf("%s: %+v, want accepted with no failures", prof.Name, r)
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"failures":[]`) || !strings.Contains(string(b), `"accepted":true`) {
			t.Errorf("%s: JSON %s, want accepted and an empty failures list", prof.Name, b)
		}
	}
}

func TestAssessListsEveryFailure(t *testing.T) {
	dark := Measures{Faces: 3, InterEyePx: 15, SharpnessVar: 5, Brightness: 20, Contrast: 4, YawDeg: -50, RollDeg: 40}
	r := Assess(dark, Enrolment)
	want := []string{CheckFaceCount, CheckFaceTooSmall, CheckBlurry, CheckTooDark, CheckLowContrast, CheckYaw, CheckRoll}
	if r.Accepted || !reflect.DeepEqual(r.Codes(), want) {
		t.Fatalf("codes %v (accepted %v), want %v", r.Codes(), r.Accepted, want)
	}
	byCode := map[string]Failure{}
	for _, f := range r.Failures {
		byCode[f.Check] = f
	}
	checks := []struct {
		code         string
		value, limit float64
		advice       string
	}{
		{CheckFaceCount, 3, float64(Enrolment.MaxFaces), "only the person"},
		{CheckFaceTooSmall, 15, Enrolment.MinInterEyePx, "move closer"},
		{CheckBlurry, 5, Enrolment.MinSharpness, "lighting"}, // dark too: light first
		{CheckTooDark, 20, Enrolment.MinBrightness, "add light"},
		{CheckLowContrast, 4, Enrolment.MinContrast, "light the face"},
		{CheckYaw, 50, Enrolment.MaxAbsYaw, "face the camera"},
		{CheckRoll, 40, Enrolment.MaxAbsRoll, "upright"},
	}
	for _, c := range checks {
		f := byCode[c.code]
		if f.Value != c.value || f.Limit != c.limit || !strings.Contains(f.Message, c.advice) {
			t.Errorf("%s: %+v, want value %v, limit %v, advice %q", c.code, f, c.value, c.limit, c.advice)
		}
	}

	bright := goodFace()
	bright.Brightness, bright.SharpnessVar, bright.YawDeg = 250, 1, Gate.MaxAbsYaw-1
	r = Assess(bright, Gate)
	if want := []string{CheckBlurry, CheckTooBright}; !reflect.DeepEqual(r.Codes(), want) {
		t.Errorf("overexposed, blurred, turned just within the limit at the gate: codes %v, want %v", r.Codes(), want)
	}
	if f := r.Failures[0]; !strings.Contains(f.Message, "hold still") {
		t.Errorf("blurry in good light should blame motion or focus: %q", f.Message)
	}
}

func TestAssessBoundaries(t *testing.T) {
	m := Measures{Faces: 1, InterEyePx: Gate.MinInterEyePx, SharpnessVar: Gate.MinSharpness, Brightness: Gate.MinBrightness,
		Contrast: Gate.MinContrast, YawDeg: -Gate.MaxAbsYaw, RollDeg: Gate.MaxAbsRoll}
	if r := Assess(m, Gate); !r.Accepted {
		t.Errorf("every measure exactly at its limit: %v, want accepted (limits are inclusive)", r.Codes())
	}
	m.Brightness = Gate.MaxBrightness
	if r := Assess(m, Gate); !r.Accepted {
		t.Errorf("brightness exactly at the maximum: %v, want accepted", r.Codes())
	}
	m.InterEyePx = math.Nextafter(Gate.MinInterEyePx, 0)
	m.RollDeg = -math.Nextafter(Gate.MaxAbsRoll, 90)
	if r := Assess(m, Gate); !reflect.DeepEqual(r.Codes(), []string{CheckFaceTooSmall, CheckRoll}) {
		t.Errorf("just past two limits: %v", r.Codes())
	}
}

func TestAssessNoFace(t *testing.T) {
	r := Assess(Measures{}, Gate)
	if r.Accepted || !reflect.DeepEqual(r.Codes(), []string{CheckFaceCount}) {
		t.Errorf("no face: %+v, want only face_count", r)
	}
	// The gate judges each face on its own; enrolment wants exactly one.
	crowd := goodFace()
	crowd.Faces = 4
	if r := Assess(crowd, Gate); !r.Accepted {
		t.Errorf("gate, 4 faces in view: %v, want accepted", r.Codes())
	}
	if r := Assess(crowd, Enrolment); !reflect.DeepEqual(r.Codes(), []string{CheckFaceCount}) {
		t.Errorf("enrolment, 4 faces in view: %v, want face_count", r.Codes())
	}
}

func TestAssessZeroLimitsDisableChecks(t *testing.T) {
	awful := Measures{Faces: 9, InterEyePx: 1, SharpnessVar: 0, Brightness: 255, Contrast: 0, YawDeg: 89, RollDeg: 89}
	if r := Assess(awful, Thresholds{}); !r.Accepted {
		t.Errorf("zero thresholds: %v, want every check disabled", r.Codes())
	}
}

func TestAssessNaNPoseFailsAndEncodes(t *testing.T) {
	var l [5]image.Point // all landmarks on one point
	m := FromLandmarks(1, l, 0.9)
	if !math.IsNaN(m.YawDeg) || !math.IsNaN(m.RollDeg) {
		t.Fatalf("degenerate landmarks: yaw %v roll %v, want NaN", m.YawDeg, m.RollDeg)
	}
	m.SharpnessVar, m.Brightness, m.Contrast = 400, 130, 45
	r := Assess(m, Gate)
	if !r.Failed(CheckYaw) || !r.Failed(CheckRoll) || r.Accepted {
		t.Fatalf("NaN pose: %v, want yaw and roll failures", r.Codes())
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("a report with a NaN pose must still encode: %v", err)
	}
	if !strings.Contains(string(b), `"yaw_deg":null`) {
		t.Errorf("NaN yaw should encode as null: %s", b)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || back.Accepted || len(back.Failures) != len(r.Failures) {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}

// TestGateIsMoreLenientThanEnrolment: a face good enough to enrol is always
// good enough for the gate, limit by limit.
func TestGateIsMoreLenientThanEnrolment(t *testing.T) {
	g, e := Gate, Enrolment
	mins := [][3]any{
		{"MinInterEyePx", g.MinInterEyePx, e.MinInterEyePx},
		{"MinSharpness", g.MinSharpness, e.MinSharpness},
		{"MinBrightness", g.MinBrightness, e.MinBrightness},
		{"MinContrast", g.MinContrast, e.MinContrast},
	}
	for _, c := range mins {
		if c[1].(float64) > c[2].(float64) {
			t.Errorf("%s: gate %v is stricter than enrolment %v", c[0], c[1], c[2])
		}
	}
	maxs := [][3]any{
		{"MaxBrightness", g.MaxBrightness, e.MaxBrightness},
		{"MaxAbsYaw", g.MaxAbsYaw, e.MaxAbsYaw},
		{"MaxAbsRoll", g.MaxAbsRoll, e.MaxAbsRoll},
	}
	for _, c := range maxs {
		if c[1].(float64) < c[2].(float64) {
			t.Errorf("%s: gate %v is stricter than enrolment %v", c[0], c[1], c[2])
		}
	}
	if e.MaxFaces != 1 || g.MaxFaces != 0 {
		t.Errorf("MaxFaces: gate %d (want 0, any), enrolment %d (want 1)", g.MaxFaces, e.MaxFaces)
	}
}

// syntheticFace projects a face under weak perspective: eyes ±E/2 at
// height 0, nose tip at 0.55·H, mouth corners ±0.4·E at H, with the nose
// NoseDepthRatio·E in front of the eye/mouth plane; yaw turns it about the
// vertical axis (positive toward the person's left, which is the image's
// right), then roll rotates the image clockwise; finally it is scaled and
// placed at centre.
func syntheticFace(yawDeg, rollDeg, interEye float64, centre image.Point) [5]image.Point {
	const heightRatio = 1.1 // eye-to-mouth over eye-to-eye
	e, h := 1.0, heightRatio
	type p3 struct{ x, y, z float64 }
	pts := [5]p3{
		RightEye:   {-e / 2, 0, 0},
		LeftEye:    {e / 2, 0, 0},
		NoseTip:    {0, 0.55 * h, NoseDepthRatio * e},
		RightMouth: {-0.4 * e, h, 0},
		LeftMouth:  {0.4 * e, h, 0},
	}
	yaw, roll := yawDeg*math.Pi/180, rollDeg*math.Pi/180
	var out [5]image.Point
	for i, p := range pts {
		x := p.x*math.Cos(yaw) + p.z*math.Sin(yaw) // toward the image's right
		y := p.y
		rx := x*math.Cos(roll) - y*math.Sin(roll) // y down: clockwise on screen
		ry := x*math.Sin(roll) + y*math.Cos(roll)
		out[i] = image.Pt(centre.X+int(math.Round(rx*interEye)), centre.Y+int(math.Round(ry*interEye)))
	}
	return out
}

func TestPoseSyntheticFrontal(t *testing.T) {
	yaw, roll := PoseFromLandmarks(syntheticFace(0, 0, 400, image.Pt(500, 500)))
	if math.Abs(yaw) > 0.5 || math.Abs(roll) > 0.5 {
		t.Errorf("frontal: yaw %.2f roll %.2f, want 0, 0", yaw, roll)
	}
}

func TestPoseRollFromRotatedLandmarks(t *testing.T) {
	for _, deg := range []float64{20, -20, 45} {
		yaw, roll := PoseFromLandmarks(syntheticFace(0, deg, 400, image.Pt(500, 500)))
		if math.Abs(roll-deg) > 0.5 || math.Abs(yaw) > 0.5 {
			t.Errorf("rotated %v°: roll %.2f, yaw %.2f, want roll %v, yaw 0", deg, roll, yaw, deg)
		}
	}
}

func TestPoseYawRecoversTheModel(t *testing.T) {
	// Yaw is computed after removing roll, so a turned and tilted head
	// gives both angles back.
	for _, c := range [][2]float64{{10, 0}, {25, 0}, {-40, 0}, {20, 15}, {-30, -25}} {
		yaw, roll := PoseFromLandmarks(syntheticFace(c[0], c[1], 400, image.Pt(500, 500)))
		// A yawed head's eye line is shorter but stays level, so roll is exact.
		if math.Abs(yaw-c[0]) > 1 || math.Abs(roll-c[1]) > 0.5 {
			t.Errorf("yaw %v roll %v: measured yaw %.2f roll %.2f", c[0], c[1], yaw, roll)
		}
	}
}

func TestPoseMirroredYawHasOppositeSign(t *testing.T) {
	l := syntheticFace(25, 5, 300, image.Pt(400, 400))
	yaw, roll := PoseFromLandmarks(l)
	// Mirror the image: x → 1000 - x. The person's right eye is now on the
	// image's right, so the labels swap too.
	mirror := func(p image.Point) image.Point { return image.Pt(1000-p.X, p.Y) }
	var m [5]image.Point
	m[RightEye], m[LeftEye] = mirror(l[LeftEye]), mirror(l[RightEye])
	m[RightMouth], m[LeftMouth] = mirror(l[LeftMouth]), mirror(l[RightMouth])
	m[NoseTip] = mirror(l[NoseTip])
	myaw, mroll := PoseFromLandmarks(m)
	if yaw < 20 || math.Abs(myaw+yaw) > 0.5 || math.Abs(mroll+roll) > 0.5 {
		t.Errorf("yaw %.2f roll %.2f, mirrored yaw %.2f roll %.2f: want opposite signs", yaw, roll, myaw, mroll)
	}
}

func TestInterEyeAndFromLandmarks(t *testing.T) {
	l := syntheticFace(0, 30, 60, image.Pt(100, 100))
	m := FromLandmarks(2, l, 0.87)
	if math.Abs(m.InterEyePx-60) > 1.5 || m.Faces != 2 || m.DetectorScore != 0.87 || math.Abs(m.RollDeg-30) > 2 {
		t.Errorf("FromLandmarks: %+v", m)
	}
}

func TestMetricsObserve(t *testing.T) {
	var none *Metrics
	none.Observe(Assess(goodFace(), Gate)) // nil-safe

	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Observe(Assess(goodFace(), Gate))
	m.Observe(Assess(Measures{Faces: 1, InterEyePx: 5, SharpnessVar: 1, Brightness: 130, Contrast: 45}, Gate))
	m.Observe(Assess(Measures{Faces: 1, InterEyePx: 5, SharpnessVar: 400, Brightness: 130, Contrast: 45}, Gate))
	for _, c := range []struct {
		got  prometheus.Counter
		want float64
	}{
		{m.Assessed.WithLabelValues("gate", "accepted"), 1},
		{m.Assessed.WithLabelValues("gate", "rejected"), 2},
		{m.Failures.WithLabelValues("gate", CheckFaceTooSmall), 2},
		{m.Failures.WithLabelValues("gate", CheckBlurry), 1},
	} {
		var out dto.Metric
		if err := c.got.Write(&out); err != nil {
			t.Fatal(err)
		}
		if v := out.GetCounter().GetValue(); v != c.want {
			t.Errorf("%s = %v, want %v", c.got.Desc(), v, c.want)
		}
	}
}
