// Package quality is loopgate's face quality gate: one set of checks shared
// by the walk-through pipeline (a frame that fails is not embedded) and the
// officers' enrolment report (every reason a photo fails, with what to do).
//
// It is plain Go. The pixel figures come from vision.MeasureFace (OpenCV),
// the geometry from the detector's five landmarks; Assess compares them
// with a Thresholds profile. The two profiles, Gate and Enrolment, are
// defined in profiles.go, each value with the measurement behind it
// (THRESHOLDS.md has the tables). Use:
//
//	dets, err := yunet.Detect(frame)
//	for _, d := range dets {
//		px, err := vision.MeasureFace(frame, d.Box)
//		if err != nil {
//			continue // box outside the frame or too small to measure
//		}
//		m := quality.FromLandmarks(len(dets), d.Landmarks, float64(d.Score))
//		m.SharpnessVar, m.Brightness, m.Contrast = px.SharpnessVar, px.Brightness, px.Contrast
//		report := quality.Assess(m, quality.Gate) // or quality.Enrolment
//		metrics.Observe(report)
//		if !report.Accepted {
//			continue // report.Failures says why, every reason
//		}
//		// embed this face
//	}
package quality

import (
	"fmt"
	"image"
	"math"
)

// Check codes: stable strings for APIs, logs and metrics.
const (
	CheckFaceCount    = "face_count"
	CheckFaceTooSmall = "face_too_small"
	CheckBlurry       = "blurry"
	CheckTooDark      = "too_dark"
	CheckTooBright    = "too_bright"
	CheckLowContrast  = "low_contrast"
	CheckYaw          = "yaw"
	CheckRoll         = "roll"
)

// Checks lists every check code in the order Assess reports them.
var Checks = []string{CheckFaceCount, CheckFaceTooSmall, CheckBlurry, CheckTooDark, CheckTooBright, CheckLowContrast, CheckYaw, CheckRoll}

// Measures describe one face in one frame or photo.
type Measures struct {
	// Faces is how many faces the detector found in the frame or photo.
	Faces int `json:"faces"`
	// InterEyePx is the distance between the eye centres in full-resolution
	// pixels: the face's size as the embedding will see it.
	InterEyePx float64 `json:"inter_eye_px"`
	// SharpnessVar, Brightness and Contrast come from vision.MeasureFace
	// (variance of the Laplacian, mean and standard deviation of the gray
	// levels, on the face resampled to 112x112).
	SharpnessVar float64 `json:"sharpness_var"`
	Brightness   float64 `json:"brightness"`
	Contrast     float64 `json:"contrast"`
	// YawDeg and RollDeg come from PoseFromLandmarks.
	YawDeg  float64 `json:"yaw_deg"`
	RollDeg float64 `json:"roll_deg"`
	// DetectorScore is the detector's confidence, recorded for the report;
	// no check uses it (the detector applies its own threshold).
	DetectorScore float64 `json:"detector_score"`
}

// FromLandmarks fills the geometric measures of one face: the face count,
// the eye distance and the pose from the five landmarks (YuNet order), and
// the detector score. The caller copies in the pixel measures from
// vision.MeasureFace.
func FromLandmarks(faces int, landmarks [5]image.Point, detectorScore float64) Measures {
	yaw, roll := PoseFromLandmarks(landmarks)
	return Measures{
		Faces:         faces,
		InterEyePx:    InterEyePx(landmarks),
		YawDeg:        yaw,
		RollDeg:       roll,
		DetectorScore: detectorScore,
	}
}

// Thresholds is a quality profile. A zero limit disables its check, so a
// profile states only what it cares about. The YAML keys (node config
// overrides) are the JSON ones.
type Thresholds struct {
	// Name identifies the profile in reports and metrics.
	Name string `json:"name" yaml:"name"`
	// MaxFaces is how many faces may be in view (0: any number, each face
	// judged on its own). A frame with no face always fails face_count.
	MaxFaces      int     `json:"max_faces" yaml:"max_faces"`
	MinInterEyePx float64 `json:"min_inter_eye_px" yaml:"min_inter_eye_px"`
	MinSharpness  float64 `json:"min_sharpness" yaml:"min_sharpness"`
	MinBrightness float64 `json:"min_brightness" yaml:"min_brightness"`
	MaxBrightness float64 `json:"max_brightness" yaml:"max_brightness"`
	MinContrast   float64 `json:"min_contrast" yaml:"min_contrast"`
	MaxAbsYaw     float64 `json:"max_abs_yaw_deg" yaml:"max_abs_yaw_deg"`
	MaxAbsRoll    float64 `json:"max_abs_roll_deg" yaml:"max_abs_roll_deg"`
}

// Failure is one failed check.
type Failure struct {
	// Check is one of the Check* codes.
	Check string `json:"check"`
	// Value is the measured figure compared with Limit (for yaw and roll,
	// its absolute value; for face_count, the number of faces).
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	// Message tells the person what to do about it.
	Message string `json:"message"`
}

// Report is the verdict on one face: the measures, and every failed check.
type Report struct {
	Profile  string    `json:"profile"`
	Measures Measures  `json:"measures"`
	Accepted bool      `json:"accepted"`
	Failures []Failure `json:"failures"`
}

// Failed reports whether the check with this code failed.
func (r Report) Failed(check string) bool {
	for _, f := range r.Failures {
		if f.Check == check {
			return true
		}
	}
	return false
}

// Codes returns the codes of the failed checks, in report order.
func (r Report) Codes() []string {
	out := make([]string, len(r.Failures))
	for i, f := range r.Failures {
		out[i] = f.Check
	}
	return out
}

// Assess runs every check of t on m and lists every failure, not just the
// first, so an officer sees all that must change at once. A measure that is
// NaN (pose of degenerate landmarks) fails its check. With no face at all
// only face_count is reported: the other measures describe nothing.
func Assess(m Measures, t Thresholds) Report {
	r := Report{Profile: t.Name, Measures: m, Failures: []Failure{}}
	fail := func(check string, value, limit float64, msg string, args ...any) {
		r.Failures = append(r.Failures, Failure{Check: check, Value: value, Limit: limit, Message: fmt.Sprintf(msg, args...)})
	}
	switch {
	case m.Faces < 1:
		fail(CheckFaceCount, float64(m.Faces), 1, "No face found: face the camera with your whole face in view.")
		return r
	case t.MaxFaces > 0 && m.Faces > t.MaxFaces:
		fail(CheckFaceCount, float64(m.Faces), float64(t.MaxFaces),
			"%d faces in view: only the person being enrolled may be in the picture.", m.Faces)
	}
	// Each comparison is written so that NaN fails: !(value >= limit).
	if t.MinInterEyePx > 0 && !(m.InterEyePx >= t.MinInterEyePx) {
		fail(CheckFaceTooSmall, m.InterEyePx, t.MinInterEyePx,
			"Face too small (%.0f px between the eyes, need %.0f): move closer to the camera.", m.InterEyePx, t.MinInterEyePx)
	}
	// Darkening or flattening a face by a factor a scales the Laplacian's
	// variance by a², so a dark face also reads as soft: say so rather than
	// blame the focus.
	poorLight := (t.MinBrightness > 0 && !(m.Brightness >= t.MinBrightness)) || (t.MinContrast > 0 && !(m.Contrast >= t.MinContrast))
	if t.MinSharpness > 0 && !(m.SharpnessVar >= t.MinSharpness) {
		if poorLight {
			fail(CheckBlurry, m.SharpnessVar, t.MinSharpness,
				"Too little detail in the face (sharpness %.0f, need %.0f): improve the lighting first; if that is not enough, hold still and check the camera's focus.", m.SharpnessVar, t.MinSharpness)
		} else {
			fail(CheckBlurry, m.SharpnessVar, t.MinSharpness,
				"Image too blurred (sharpness %.0f, need %.0f): hold still, and check that the camera is focused and its lens clean.", m.SharpnessVar, t.MinSharpness)
		}
	}
	if t.MinBrightness > 0 && !(m.Brightness >= t.MinBrightness) {
		fail(CheckTooDark, m.Brightness, t.MinBrightness,
			"Face too dark (brightness %.0f, need %.0f): add light in front of the face.", m.Brightness, t.MinBrightness)
	}
	if t.MaxBrightness > 0 && !(m.Brightness <= t.MaxBrightness) {
		fail(CheckTooBright, m.Brightness, t.MaxBrightness,
			"Face overexposed (brightness %.0f, limit %.0f): reduce the light on the face or step out of direct sunlight.", m.Brightness, t.MaxBrightness)
	}
	if t.MinContrast > 0 && !(m.Contrast >= t.MinContrast) {
		fail(CheckLowContrast, m.Contrast, t.MinContrast,
			"Face lacks contrast (%.0f, need %.0f): light the face evenly from the front and avoid back-light.", m.Contrast, t.MinContrast)
	}
	if yaw := math.Abs(m.YawDeg); t.MaxAbsYaw > 0 && !(yaw <= t.MaxAbsYaw) {
		if math.IsNaN(yaw) {
			fail(CheckYaw, yaw, t.MaxAbsYaw, "Head pose could not be measured: face the camera.")
		} else {
			fail(CheckYaw, yaw, t.MaxAbsYaw, "Head turned %.0f° to the side (limit %.0f°): face the camera.", yaw, t.MaxAbsYaw)
		}
	}
	if roll := math.Abs(m.RollDeg); t.MaxAbsRoll > 0 && !(roll <= t.MaxAbsRoll) {
		if math.IsNaN(roll) {
			fail(CheckRoll, roll, t.MaxAbsRoll, "Head tilt could not be measured: hold your head upright and face the camera.")
		} else {
			fail(CheckRoll, roll, t.MaxAbsRoll, "Head tilted %.0f° (limit %.0f°): hold your head upright.", roll, t.MaxAbsRoll)
		}
	}
	r.Accepted = len(r.Failures) == 0
	return r
}
