// Package synth generates SYNTHETIC walk-through clips and their ground
// truth. No real footage of people walking toward a camera exists for this
// project, so these clips stand in for it to prove the pipeline end to end:
// LFW photos are cut out with a feathered ellipse, scaled as if the person
// walked toward the camera, and pasted over a procedurally drawn footbridge
// that contains no faces. Every clip name contains "synthetic" and every
// manifest says "synthetic": true, so nobody mistakes them for real footage.
//
// The generator does not touch the database or the recogniser: it writes the
// clip (MJPG in AVI through OpenCV's FFmpeg backend, read back before Write
// returns) and a JSON manifest beside it that says who walks when, in which
// lane, and where their face is in every frame. Vetter, used only when
// picking walkers, is the one place that runs a recogniser.
package synth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"gocv.io/x/gocv"
)

// Version names the generator in every manifest; bump it whenever the same
// seed and walkers would produce different pixels.
const Version = "loopgate-synth/1"

// Codec is the FourCC the clips are written with.
const Codec = "MJPG"

var (
	// ErrConfig marks an unusable Config.
	ErrConfig = errors.New("synth: invalid config")
	// ErrWalkers marks an unusable walker list.
	ErrWalkers = errors.New("synth: invalid walkers")
	// ErrNotSyntheticName refuses a clip path whose file name does not say
	// "synthetic": the clips must never pass for real footage.
	ErrNotSyntheticName = errors.New(`synth: clip file name must contain "synthetic"`)
	// ErrNotEnoughPeople means the LFW directory lacks the people asked for.
	ErrNotEnoughPeople = errors.New("synth: not enough LFW people")
	// ErrVideo means OpenCV could not write the clip, or the written clip
	// does not read back as expected.
	ErrVideo = errors.New("synth: video")
	// ErrManifest marks a manifest that is unreadable or not synthetic.
	ErrManifest = errors.New("synth: manifest")
)

// Walker is one person crossing the clip.
type Walker struct {
	// Name is the LFW name (folder name, e.g. "Colin_Powell").
	Name string
	// EnrolPhoto is the photo to enrol the person with; empty for strangers.
	EnrolPhoto string
	// WalkPhoto is the photo pasted into the clip; a different photo of the
	// same person than EnrolPhoto.
	WalkPhoto string
	// Enrolled says whether the person is meant to be enrolled.
	Enrolled bool
	// Lane is "a" or "b" in a two-lane clip; empty means assigned by Write
	// (alternating). In a single-lane clip it must be empty or "a", and the
	// walker walks down the middle (reported as lane "a").
	Lane string
}

// Config shapes a clip. A zero Width, Height, FPS, WalkSeconds, GapSeconds,
// MinFace or MaxFace takes DefaultConfig's value.
type Config struct {
	Width, Height int
	FPS           float64
	// WalkSeconds is how long each face is in view (default 3 s: about 6 m
	// at 1.4 m/s).
	WalkSeconds float64
	// GapSeconds of empty frames come before the first walker, between
	// walkers (or pairs of walkers), and after the last one. Negative means
	// no gap; zero takes the default.
	GapSeconds float64
	// MinFace and MaxFace are the nominal face widths in pixels at the first
	// and last frame of a walk. In between the width is k/distance with the
	// distance falling linearly in time, so it grows slowly, then fast.
	MinFace, MaxFace int
	// Seed fixes every random choice: the same seed, walkers and config
	// give the same file, byte for byte, on the same build.
	Seed int64
	// TwoLanes puts two walkers in view at once: lane a in the left third,
	// lane b in the right third.
	TwoLanes bool
	// Progress, when set, is called after each written frame.
	Progress func(written, total int)
	// Selection says how the walkers were chosen; it is copied into the
	// manifest.
	Selection string
}

// DefaultConfig is a 640x480, 25 fps clip with 3 s walks, 1 s gaps and
// faces growing from 25 to 200 px.
func DefaultConfig() Config {
	return Config{Width: 640, Height: 480, FPS: 25, WalkSeconds: 3, GapSeconds: 1, MinFace: 25, MaxFace: 200, Seed: 1}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Width == 0 {
		c.Width = d.Width
	}
	if c.Height == 0 {
		c.Height = d.Height
	}
	if c.FPS == 0 {
		c.FPS = d.FPS
	}
	if c.WalkSeconds == 0 {
		c.WalkSeconds = d.WalkSeconds
	}
	switch {
	case c.GapSeconds == 0:
		c.GapSeconds = d.GapSeconds
	case c.GapSeconds < 0:
		c.GapSeconds = 0
	}
	if c.MinFace == 0 {
		c.MinFace = d.MinFace
	}
	if c.MaxFace == 0 {
		c.MaxFace = d.MaxFace
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Width < 64 || c.Height < 64 || c.Width > 4096 || c.Height > 4096:
		return fmt.Errorf("%w: size %dx%d (want 64..4096 per side)", ErrConfig, c.Width, c.Height)
	case c.Width%2 != 0 || c.Height%2 != 0:
		return fmt.Errorf("%w: size %dx%d must be even (MJPG chroma subsampling)", ErrConfig, c.Width, c.Height)
	case !(c.FPS >= 1 && c.FPS <= 120):
		return fmt.Errorf("%w: fps %v (want 1..120)", ErrConfig, c.FPS)
	case !(c.WalkSeconds > 0 && c.WalkSeconds <= 60) || !(c.GapSeconds >= 0 && c.GapSeconds <= 60):
		return fmt.Errorf("%w: walk %v s, gap %v s (want (0, 60] and [0, 60])", ErrConfig, c.WalkSeconds, c.GapSeconds)
	case c.MinFace < 8 || c.MaxFace <= c.MinFace:
		return fmt.Errorf("%w: face widths %d..%d px (want 8 <= min < max)", ErrConfig, c.MinFace, c.MaxFace)
	case float64(c.MaxFace)*cropH/faceLFW > 0.95*float64(c.Height):
		return fmt.Errorf("%w: max face %d px: the head-and-shoulders cut-out would be taller than the %d px frame", ErrConfig, c.MaxFace, c.Height)
	case c.TwoLanes && c.MaxFace > c.Width/3-8:
		return fmt.Errorf("%w: max face %d px does not fit a lane a third of %d px wide", ErrConfig, c.MaxFace, c.Width)
	case !c.TwoLanes && c.MaxFace > c.Width-16:
		return fmt.Errorf("%w: max face %d px wider than the %d px frame", ErrConfig, c.MaxFace, c.Width)
	}
	if walkFrames(c) < 2 {
		return fmt.Errorf("%w: a walk of %v s at %v fps is under 2 frames", ErrConfig, c.WalkSeconds, c.FPS)
	}
	return nil
}

func walkFrames(c Config) int { return int(math.Round(c.WalkSeconds * c.FPS)) }
func gapFrames(c Config) int  { return int(math.Round(c.GapSeconds * c.FPS)) }

// Manifest is a clip's ground truth, written as JSON beside the clip.
type Manifest struct {
	// Synthetic is always true: the clip is generated, not filmed.
	Synthetic bool   `json:"synthetic"`
	Generator string `json:"generator"`
	Note      string `json:"note"`
	// Clip is the clip's file name (base name, beside the manifest).
	Clip        string  `json:"clip"`
	Codec       string  `json:"codec"`
	Width       int     `json:"width"`
	Height      int     `json:"height"`
	FPS         float64 `json:"fps"`
	Frames      int     `json:"frames"`
	Seed        int64   `json:"seed"`
	WalkSeconds float64 `json:"walk_seconds"`
	GapSeconds  float64 `json:"gap_seconds"`
	MinFace     int     `json:"min_face_px"`
	MaxFace     int     `json:"max_face_px"`
	TwoLanes    bool    `json:"two_lanes"`
	Selection   string  `json:"selection,omitempty"`
	// FaceModel says what the face boxes mean.
	FaceModel string        `json:"face_model"`
	Walkers   []WalkerTruth `json:"walkers"`
}

// WalkerTruth is one walker's ground truth.
type WalkerTruth struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	EnrolPhoto string `json:"enrol_photo"`
	WalkPhoto  string `json:"walk_photo"`
	Enrolled   bool   `json:"enrolled"`
	Lane       string `json:"lane"`
	FirstFrame int    `json:"first_frame"`
	LastFrame  int    `json:"last_frame"`
	// FirstFacePx and LastFacePx are the nominal face widths at the first
	// and last frame.
	FirstFacePx int `json:"first_face_px"`
	LastFacePx  int `json:"last_face_px"`
	// Faces holds the nominal face box in every frame the walker is drawn.
	Faces []FaceBox `json:"faces"`
}

// FaceBox is where a walker's face is in one frame: LFW's central face
// square scaled and placed like the cut-out.
type FaceBox struct {
	Frame int `json:"frame"`
	X     int `json:"x"`
	Y     int `json:"y"`
	W     int `json:"w"`
	H     int `json:"h"`
	// Blurred marks frames with motion blur on the walker.
	Blurred bool `json:"blurred,omitempty"`
}

// Rect returns the box as an image.Rectangle.
func (b FaceBox) Rect() image.Rectangle { return image.Rect(b.X, b.Y, b.X+b.W, b.Y+b.H) }

// Walker returns the walker with the given id.
func (m Manifest) Walker(id string) (WalkerTruth, bool) {
	for _, w := range m.Walkers {
		if w.ID == id {
			return w, true
		}
	}
	return WalkerTruth{}, false
}

// InView returns the walkers drawn in frame.
func (m Manifest) InView(frame int) []WalkerTruth {
	var out []WalkerTruth
	for _, w := range m.Walkers {
		if frame >= w.FirstFrame && frame <= w.LastFrame {
			out = append(out, w)
		}
	}
	return out
}

// Box returns the walker's face box in frame.
func (w WalkerTruth) Box(frame int) (FaceBox, bool) {
	i := frame - w.FirstFrame
	if i < 0 || i >= len(w.Faces) || w.Faces[i].Frame != frame {
		return FaceBox{}, false
	}
	return w.Faces[i], true
}

// ManifestPath is where Write puts the manifest of the clip at clipPath.
func ManifestPath(clipPath string) string { return clipPath + ".json" }

// ReadManifest reads a manifest, given either the clip's path or the
// manifest's own (.json) path.
func ReadManifest(path string) (Manifest, error) {
	if !strings.HasSuffix(path, ".json") {
		path = ManifestPath(path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: %v", ErrManifest, err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return Manifest{}, fmt.Errorf("%w: %s: %v", ErrManifest, path, err)
	}
	if !m.Synthetic {
		return Manifest{}, fmt.Errorf("%w: %s does not say \"synthetic\": true", ErrManifest, path)
	}
	return m, nil
}

const note = "SYNTHETIC clip: LFW photos cut out and pasted over a drawn, faceless footbridge, " +
	"scaled as if walking toward the camera. Not real footage."

const faceModel = "face width px = MinFace..MaxFace with distance linear in time and width = k/distance; " +
	"boxes are LFW's central 110x110 face square (of 250x250) scaled and placed like the cut-out"

// Write renders the clip to path (an .avi whose name contains "synthetic")
// and its manifest to ManifestPath(path). The same cfg and walkers give the
// same pixels. On error or cancellation no clip or manifest is left behind.
func Write(ctx context.Context, path string, cfg Config, walkers []Walker) (Manifest, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return Manifest{}, err
	}
	if !strings.Contains(strings.ToLower(filepath.Base(path)), "synthetic") {
		return Manifest{}, fmt.Errorf("%w: %s", ErrNotSyntheticName, path)
	}
	if !strings.EqualFold(filepath.Ext(path), ".avi") {
		return Manifest{}, fmt.Errorf("%w: %s: want an .avi file (MJPG in AVI)", ErrConfig, path)
	}
	plan, err := schedule(cfg, walkers)
	if err != nil {
		return Manifest{}, err
	}
	sprites := make([]*sprite, len(plan.walks))
	defer func() {
		for _, s := range sprites {
			if s != nil {
				s.Close()
			}
		}
	}()
	for i, w := range plan.walks {
		if sprites[i], err = loadSprite(w.walker.WalkPhoto); err != nil {
			return Manifest{}, err
		}
	}

	m := Manifest{
		Synthetic: true, Generator: Version, Note: note, Clip: filepath.Base(path), Codec: Codec,
		Width: cfg.Width, Height: cfg.Height, FPS: cfg.FPS, Frames: plan.frames, Seed: cfg.Seed,
		WalkSeconds: cfg.WalkSeconds, GapSeconds: cfg.GapSeconds, MinFace: cfg.MinFace, MaxFace: cfg.MaxFace,
		TwoLanes: cfg.TwoLanes, Selection: cfg.Selection, FaceModel: faceModel,
	}
	for i, w := range plan.walks {
		m.Walkers = append(m.Walkers, WalkerTruth{
			ID: fmt.Sprintf("w%d", i+1), Name: w.walker.Name, EnrolPhoto: w.walker.EnrolPhoto,
			WalkPhoto: w.walker.WalkPhoto, Enrolled: w.walker.Enrolled, Lane: w.walker.Lane,
			FirstFrame: w.first, LastFrame: w.first + len(w.poses) - 1,
			FirstFacePx: int(math.Round(w.poses[0].face)), LastFacePx: int(math.Round(w.poses[len(w.poses)-1].face)),
		})
	}

	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return Manifest{}, fmt.Errorf("synth: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.Remove(path)
			os.Remove(ManifestPath(path))
		}
	}()
	vw, err := gocv.VideoWriterFile(path, Codec, cfg.FPS, cfg.Width, cfg.Height, true)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: open writer for %s: %v", ErrVideo, path, err)
	}
	if !vw.IsOpened() {
		vw.Close()
		return Manifest{}, fmt.Errorf("%w: OpenCV cannot write %s with codec %s", ErrVideo, path, Codec)
	}
	r, err := newRenderer(cfg, uint64(cfg.Seed))
	if err != nil {
		vw.Close()
		return Manifest{}, err
	}
	defer r.Close()
	for f := 0; f < plan.frames; f++ {
		if err := ctx.Err(); err != nil {
			vw.Close()
			return Manifest{}, err
		}
		r.begin()
		for i, w := range plan.walks {
			if p, in := w.pose(f); in {
				box := r.drawWalker(sprites[i], p)
				m.Walkers[i].Faces = append(m.Walkers[i].Faces, FaceBox{
					Frame: f, X: box.Min.X, Y: box.Min.Y, W: box.Dx(), H: box.Dy(), Blurred: p.blur > 1,
				})
			}
		}
		vw.Write(r.finish(f))
		if cfg.Progress != nil {
			cfg.Progress(f+1, plan.frames)
		}
	}
	vw.Close()
	if err := checkReadable(path, cfg, plan.frames); err != nil {
		return Manifest{}, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep "<=" readable in the selection text
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return Manifest{}, fmt.Errorf("synth: %w", err)
	}
	tmp := ManifestPath(path) + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return Manifest{}, fmt.Errorf("synth: %w", err)
	}
	if err := os.Rename(tmp, ManifestPath(path)); err != nil {
		os.Remove(tmp)
		return Manifest{}, fmt.Errorf("synth: %w", err)
	}
	ok = true
	return m, nil
}

// checkReadable reopens the clip: gocv's writer reports no errors, so a
// clip is only trusted once OpenCV reads back its geometry and length.
func checkReadable(path string, cfg Config, frames int) error {
	vc, err := gocv.VideoCaptureFile(path)
	if err != nil {
		return fmt.Errorf("%w: read back %s: %v", ErrVideo, path, err)
	}
	defer vc.Close()
	if !vc.IsOpened() {
		return fmt.Errorf("%w: OpenCV cannot read back %s", ErrVideo, path)
	}
	w, h := int(vc.Get(gocv.VideoCaptureFrameWidth)), int(vc.Get(gocv.VideoCaptureFrameHeight))
	n := int(vc.Get(gocv.VideoCaptureFrameCount))
	if w != cfg.Width || h != cfg.Height || n != frames {
		return fmt.Errorf("%w: %s reads back as %dx%d with %d frames, wrote %dx%d with %d", ErrVideo, path, w, h, n, cfg.Width, cfg.Height, frames)
	}
	return nil
}

// walk is one walker's scheduled crossing.
type walk struct {
	walker Walker
	first  int
	poses  []pose
}

func (w walk) pose(frame int) (pose, bool) {
	i := frame - w.first
	if i < 0 || i >= len(w.poses) {
		return pose{}, false
	}
	return w.poses[i], true
}

type plan struct {
	walks  []walk
	frames int
}

// schedule assigns lanes and start frames and precomputes every pose, so
// all randomness is drawn in one fixed order from the seed.
func schedule(cfg Config, walkers []Walker) (plan, error) {
	if len(walkers) == 0 {
		return plan{}, fmt.Errorf("%w: no walkers", ErrWalkers)
	}
	walkers = append([]Walker(nil), walkers...)
	for i, w := range walkers {
		switch {
		case w.Name == "" || w.WalkPhoto == "":
			return plan{}, fmt.Errorf("%w: walker %d needs a name and a walk photo", ErrWalkers, i+1)
		case w.Enrolled && w.EnrolPhoto == "":
			return plan{}, fmt.Errorf("%w: %s is enrolled but has no enrol photo", ErrWalkers, w.Name)
		case w.EnrolPhoto != "" && filepath.Clean(w.EnrolPhoto) == filepath.Clean(w.WalkPhoto):
			return plan{}, fmt.Errorf("%w: %s walks with the photo they are enrolled with", ErrWalkers, w.Name)
		case w.Lane != "" && w.Lane != "a" && w.Lane != "b":
			return plan{}, fmt.Errorf("%w: %s has lane %q (want a or b)", ErrWalkers, w.Name, w.Lane)
		case !cfg.TwoLanes && w.Lane == "b":
			return plan{}, fmt.Errorf("%w: %s is in lane b of a single-lane clip", ErrWalkers, w.Name)
		}
	}
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x5eed5717))
	nWalk, nGap := walkFrames(cfg), gapFrames(cfg)
	var p plan
	if !cfg.TwoLanes {
		for i := range walkers {
			walkers[i].Lane = "a"
			first := nGap + i*(nWalk+nGap)
			p.walks = append(p.walks, walk{walker: walkers[i], first: first, poses: makePoses(cfg, rng, "", nWalk)})
		}
		p.frames = nGap + len(walkers)*(nWalk+nGap)
		return p, nil
	}
	// Two lanes: unassigned walkers alternate, filling the shorter lane.
	var lanes [2][]int
	for i, w := range walkers {
		switch w.Lane {
		case "a":
			lanes[0] = append(lanes[0], i)
		case "b":
			lanes[1] = append(lanes[1], i)
		}
	}
	for i := range walkers {
		if walkers[i].Lane == "" {
			l := 0
			if len(lanes[1]) < len(lanes[0]) {
				l = 1
			}
			walkers[i].Lane = string(rune('a' + l))
			lanes[l] = append(lanes[l], i)
		}
	}
	// Each slot holds one walker per lane; one of the two starts up to
	// 0.4 s after the other so they are side by side but not in lockstep.
	stagger := int(math.Round(0.4 * cfg.FPS))
	slotLen := nWalk + stagger + nGap
	slots := max(len(lanes[0]), len(lanes[1]))
	starts := make([]int, len(walkers))
	for s := 0; s < slots; s++ {
		late := rng.IntN(2)
		delay := rng.IntN(stagger + 1)
		for l := 0; l < 2; l++ {
			if s < len(lanes[l]) {
				starts[lanes[l][s]] = nGap + s*slotLen
				if l == late {
					starts[lanes[l][s]] += delay
				}
			}
		}
	}
	for i, w := range walkers {
		p.walks = append(p.walks, walk{walker: w, first: starts[i], poses: makePoses(cfg, rng, w.Lane, nWalk)})
	}
	p.frames = nGap + slots*slotLen
	return p, nil
}
