package quality

// The two quality profiles, defined here and nowhere else. Every value was
// chosen from measurements: THRESHOLDS.md has the tables and the command
// that prints them (LOOPGATE_CALIBRATE=1 go test -run TestCalibrationReport
// -v ./engine/quality/). Measures come from YuNet's box and landmarks and
// vision.MeasureFace, as in the pipeline. "Drift" is the Euclidean distance
// between the go-face embedding of a degraded image and that of the clean
// image. "Match" is the share of degraded photos still within
// engine.DefaultMatchThreshold (0.47) of the same person's other photo:
// 69.9% when clean (296 pairs, about ±2.7 points of sampling noise); the
// two photos are 0.426 apart at the median. LFW: 299 deep-funneled faces
// (about 44 px between the eyes); idols: 13 photos with at least 90 px
// between the eyes.

// Gate is the walk-through profile: it decides which frames are worth
// embedding. It is lenient (each traveller is seen in many frames and the
// decision fuses them, so a skipped frame costs little), and it rejects a
// frame where the embedding would have drifted about 0.15 or more at the
// median: the size of the drift a mirrored image causes (p50 0.185).
var Gate = Thresholds{
	Name: "gate",
	// Any number of people may be in view: each face is judged on its own.
	MaxFaces: 0,
	// Median drift of a face shrunk to N px between the eyes (and enlarged
	// back for go-face) reaches 0.150 at 24 px against a >= 90 px original
	// (idols; 0.168 at 22, 0.190 at 20), and 0.115 at 23–25 px against LFW's
	// 44 px (0.148 at 19–21 px). There is no cliff: drift grows steadily as
	// faces shrink, so the limit sits where it crosses 0.15. Match barely
	// moves down to 16 px (63.9% vs 69.9% clean) and drops at 12 px (53.4%):
	// by that measure 20 px would do, if earlier decisions matter more.
	MinInterEyePx: 24,
	// Blurring LFW faces: median drift 0.190 for measured sharpness 20–30,
	// 0.128 for 30–40 (blur only; Gaussian σ = 1.5 px on a 44 px face gives
	// sharpness 23 and drift 0.198; σ = 1 gives 39 and 0.120). 30 refuses
	// 2% of clean LFW (p1 23, p5 40). Sharp sources keep a higher value
	// after the same relative blur (idols: σ = 2.5% of the eye distance →
	// 55, drift 0.188), so this catches heavy blur everywhere but mild blur
	// only on soft images. Match: 65.2% at σ = 1, 61.1% at σ = 1.5, 55.4%
	// at σ = 2.
	MinSharpness: 30,
	// Darkened LFW faces: median drift 0.147 at brightness 50–60, 0.162 at
	// 45–50, 0.201 at 30–35 (match 64.2%, 61.9%, 54.0%). Clean LFW p1 74.
	MinBrightness: 50,
	// Brightened LFW faces (gain or offset, clipping highlights): median
	// drift 0.125 at 180–190, 0.151 at 190–200, 0.191 at 200–210; match
	// 59.9% at 190–200, 48.2% at 210–220.
	MaxBrightness: 200,
	// Flattened LFW faces (levels pulled toward mid-grey): median drift
	// 0.144 at contrast 18–20, 0.166 at 16–18, 0.208 at 14–16; match holds
	// at 60–71% down to 12 and falls to 51.8% at 8–10. Clean LFW p1 is 23.
	MinContrast: 18,
	// Genuine distance of a photo to the same person's most frontal one
	// (LFW, 834 pairs): p50 0.425 at 0–10°, 0.433 at 35–40°, 0.451 at
	// 40–50° (14 pairs), 0.523 beyond 50° (8 pairs); match 65–72% up to
	// 40°, 57.1% at 40–50°, 1 of 8 beyond. go-face's alignment absorbs
	// moderate yaw; LFW has too few faces past 40° to say more. Refuses
	// 1.3% of LFW.
	MaxAbsYaw: 40,
	// Rotated LFW faces: median drift 0.075 at 25–30° and 0.093 at 30–35°
	// (go-face still finds 96%), then 0.137 at 35–45° with p90 0.51 and 9%
	// of faces lost (alignment fails); match 65.7% at 30–35°, 52.6% at
	// 35–45°. Travellers walk upright; this only filters odd frames.
	MaxAbsRoll: 30,
}

// Enrolment is the officers' profile for the photo every later match is
// compared with: one face, big, frontal, sharp and well lit. A poor
// template costs every future passage, so it asks for drift near the noise
// floor (a 2 px shift already gives 0.039 at the median).
var Enrolment = Thresholds{
	Name: "enrolment",
	// Only the person enrolling may be in the photo.
	MaxFaces: 1,
	// Median drift 0.076 (p90 0.109) at 40 px against a >= 90 px original
	// (idols), 0.107 at 32 px. LFW (median 44 px) reaches 98.8% verification
	// accuracy with this model; 40 refuses 13% of LFW's small crops.
	MinInterEyePx: 40,
	// LFW blur only: median drift 0.048 at sharpness 50–60 and below 0.05
	// above, 0.112 at 40–50. Gaussian σ = 0.5 px on a 44 px face reads 76
	// (drift 0.044); σ = 1 reads 39 (0.120). Sharp photos blurred by 2.5%
	// of the eye distance read 55 (idols, drift 0.188) and are refused.
	MinSharpness: 60,
	// Every darkened LFW variant below 80 drifted: median 0.130 at 70–80,
	// 0.141 at 60–70, against 0 for the clean faces (p5 84).
	MinBrightness: 80,
	// Brightened LFW: median drift 0.094 at 160–170, 0.111 at 170–180,
	// 0.125 at 180–190, 0.151 at 190–200. A compromise: mean gray cannot
	// tell a clipped face from a pale, well-lit one, and studio photos of
	// East Asian faces read high without clipping (idols p95 192): 180
	// would refuse 6 of 46 idols faces, 190 refuses 3. Clean LFW p99 183.
	MaxBrightness: 190,
	// Flattened LFW: median drift 0.090 at contrast 25–30, 0.127 at 22–25.
	// Clean LFW p1 23, p5 29.
	MinContrast: 25,
	// Frontal. Our yaw differs from a 14-landmark reference by 2–4° at the
	// median and 6–10° at p90, so 20° reliably refuses heads turned beyond
	// about 30°. It refuses 20% of LFW's news photos (|yaw| p75 17°).
	MaxAbsYaw: 20,
	// Upright. Roll costs go-face little (median drift 0.056 at 15–20°),
	// so the limit is about posture, with margin for the roll estimate
	// (YuNet vs go-face eye centres differ by up to 4.9° at p90).
	MaxAbsRoll: 15,
}
