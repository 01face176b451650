package quality_test

import (
	"image"
	"image/color"
	"math"
	"path/filepath"
	"reflect"
	"testing"

	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/engine/detect"
	"github.com/loopgate/loopgate/engine/quality"
	"github.com/loopgate/loopgate/internal/testenv"
)

// These tests run the whole measurement on real pixels: YuNet's box and
// landmarks, vision.MeasureFace, PoseFromLandmarks, then Assess.

// assessFrame detects the face nearest near in frame and assesses it.
func assessFrame(t *testing.T, y *detect.YuNet, frame gocv.Mat, near image.Point, prof quality.Thresholds) quality.Report {
	t.Helper()
	d, faces, ok := yunetFace(t, y, frame, near)
	if !ok {
		t.Fatal("YuNet found no face")
	}
	return quality.Assess(measureDetection(t, frame, d, faces), prof)
}

// sharpLFWFace is a frontal, sharp, evenly lit LFW face with 45 px between
// the eyes: an enrolment-grade photo at LFW's size.
const sharpLFWFace = "Serena_Williams"

func TestEnrolmentProfileOnRealFace(t *testing.T) {
	y := newYuNet(t)
	src := readMat(t, lfwPath(t, sharpLFWFace, 1))
	defer src.Close()
	centre := image.Pt(src.Cols()/2, src.Rows()/2)

	clean := assessFrame(t, y, src, centre, quality.Enrolment)
	t.Logf("clean: %+v", clean.Measures)
	if !clean.Accepted {
		t.Fatalf("clean %s: rejected for %v, want accepted", sharpLFWFace, clean.Failures)
	}

	blurred := gaussianBlur(src, 4)
	defer blurred.Close()
	r := assessFrame(t, y, blurred, centre, quality.Enrolment)
	t.Logf("blur σ=4: %v %+v", r.Codes(), r.Measures)
	if !r.Failed(quality.CheckBlurry) {
		t.Errorf("blur σ=4: failures %v, want blurry", r.Codes())
	}
	if r.Failed(quality.CheckTooDark) || r.Failed(quality.CheckFaceTooSmall) {
		t.Errorf("blur σ=4: failures %v: blur must not read as dark or small", r.Codes())
	}

	dark := scaleLevels(src, 0.3, 0)
	defer dark.Close()
	r = assessFrame(t, y, dark, centre, quality.Enrolment)
	t.Logf("darkened ×0.3: %v %+v", r.Codes(), r.Measures)
	if !r.Failed(quality.CheckTooDark) {
		t.Errorf("darkened ×0.3: failures %v, want too_dark", r.Codes())
	}
	if r.Failed(quality.CheckTooBright) || r.Failed(quality.CheckFaceTooSmall) {
		t.Errorf("darkened ×0.3: failures %v", r.Codes())
	}

	// Shrink the whole photo so the eyes are 20 px apart: a far face.
	s := 20 / clean.Measures.InterEyePx
	small := shrink(src, s)
	defer small.Close()
	r = assessFrame(t, y, small, image.Pt(small.Cols()/2, small.Rows()/2), quality.Enrolment)
	t.Logf("inter-eye 20 px: %v %+v", r.Codes(), r.Measures)
	if !r.Failed(quality.CheckFaceTooSmall) || math.Abs(r.Measures.InterEyePx-20) > 2 {
		t.Errorf("inter-eye %.1f px: failures %v, want face_too_small", r.Measures.InterEyePx, r.Codes())
	}
	if r.Failed(quality.CheckTooDark) || r.Failed(quality.CheckTooBright) {
		t.Errorf("shrinking must not change the exposure checks: %v", r.Codes())
	}
}

// TestGateProfileOnRealFrames: a sharp, well-lit face shrunk to
// walk-through distance (30 px between the eyes) passes the gate but not
// enrolment, for its size alone; shrunk to 16 px it fails the gate too.
func TestGateProfileOnRealFrames(t *testing.T) {
	y := newYuNet(t)
	src := readMat(t, filepath.Join(testenv.SharedDir(t), "media", "obama-1080p.jpg"))
	defer src.Close()
	full := assessFrame(t, y, src, image.Pt(src.Cols()/2, src.Rows()/2), quality.Gate)
	for _, c := range []struct {
		interEye    float64
		gate, enrol []string
	}{
		{30, []string{}, []string{quality.CheckFaceTooSmall}},
		{16, []string{quality.CheckFaceTooSmall}, []string{quality.CheckFaceTooSmall}},
	} {
		s := c.interEye / full.Measures.InterEyePx
		frame := shrink(src, s)
		near := image.Pt(frame.Cols()/2, frame.Rows()/2)
		gate := assessFrame(t, y, frame, near, quality.Gate)
		enrol := assessFrame(t, y, frame, near, quality.Enrolment)
		frame.Close()
		t.Logf("shrunk to %.0f px between the eyes: %+v", c.interEye, gate.Measures)
		if !reflect.DeepEqual(gate.Codes(), c.gate) || !reflect.DeepEqual(enrol.Codes(), c.enrol) {
			t.Errorf("%.0f px: gate %v, enrolment %v; want %v and %v", c.interEye, gate.Codes(), enrol.Codes(), c.gate, c.enrol)
		}
	}
}

func TestPoseOnRealPixels(t *testing.T) {
	y := newYuNet(t)
	// Tony Blair's first LFW photo is turned about 30° to his right.
	src := readMat(t, lfwPath(t, "Tony_Blair", 1))
	defer src.Close()
	centre := image.Pt(src.Cols()/2, src.Rows()/2)
	d, _, ok := yunetFace(t, y, src, centre)
	if !ok {
		t.Fatal("no face")
	}
	yaw, roll := quality.PoseFromLandmarks(d.Landmarks)

	mirrored := gocv.NewMat()
	defer mirrored.Close()
	gocv.Flip(src, &mirrored, 1)
	md, _, ok := yunetFace(t, y, mirrored, image.Pt(src.Cols()-1-centre.X, centre.Y))
	if !ok {
		t.Fatal("no face in the mirrored photo")
	}
	myaw, _ := quality.PoseFromLandmarks(md.Landmarks)
	t.Logf("yaw %.1f°, mirrored %.1f°", yaw, myaw)
	// YuNet is not mirror-symmetric: on this photo its two landmark sets
	// differ by about 6° of yaw, hence the tolerance.
	if math.Abs(yaw) < 15 || math.Signbit(yaw) == math.Signbit(myaw) || math.Abs(yaw+myaw) > 10 {
		t.Errorf("yaw %.1f°, mirrored photo %.1f°: want clearly turned, opposite signs, similar size", yaw, myaw)
	}

	// Rotating the photo by 20° counter-clockwise (OpenCV's positive
	// angle) tilts the head by 20° the other way from our clockwise roll.
	rot := gocv.GetRotationMatrix2D(centre, 20, 1)
	defer rot.Close()
	rotated := gocv.NewMat()
	defer rotated.Close()
	gocv.WarpAffineWithParams(src, &rotated, rot, image.Pt(src.Cols(), src.Rows()), gocv.InterpolationLinear, gocv.BorderReflect101, color.RGBA{})
	rd, _, ok := yunetFace(t, y, rotated, centre)
	if !ok {
		t.Fatal("no face in the rotated photo")
	}
	_, rroll := quality.PoseFromLandmarks(rd.Landmarks)
	t.Logf("roll %.1f°, rotated by 20°: %.1f°", roll, rroll)
	if math.Abs(rroll-(roll-20)) > 4 {
		t.Errorf("roll %.1f°, after rotating the photo 20° counter-clockwise %.1f°, want about %.1f°", roll, rroll, roll-20)
	}
}
