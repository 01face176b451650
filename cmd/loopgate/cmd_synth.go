package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/loopgate/loopgate/camera/synth"
	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/vision"
)

// runSynth writes SYNTHETIC walk-through clips: LFW photos walking toward
// the camera over a drawn footbridge, with a JSON ground truth beside them.
func runSynth(ctx context.Context, cfg Config, args []string) error {
	if len(args) == 0 || args[0] != "walk" {
		return fmt.Errorf("%w: synth walk [--out DIR] [--size 640x480|1280x720] [--enrolled N] [--strangers N] [--two-lanes] [--seed N] [--shared DIR]", errUsage)
	}
	def := synth.DefaultConfig()
	fs := flag.NewFlagSet("synth walk", flag.ContinueOnError)
	out := fs.String("out", ".loopgate/clips", "directory to write the clip and its manifest into")
	name := fs.String("name", "", `clip file name (must contain "synthetic"; default walk-synthetic-WxH.avi or walk2lanes-synthetic-WxH.avi)`)
	size := fs.String("size", "640x480", "frame size WIDTHxHEIGHT (640x480 or 1280x720)")
	enrolled := fs.Int("enrolled", 3, "walkers meant to be enrolled (LFW people with two or more photos)")
	strangers := fs.Int("strangers", 2, "walkers nobody enrols (LFW people with a single photo)")
	twoLanes := fs.Bool("two-lanes", false, "two walkers side by side: lane a in the left third, lane b in the right third")
	seed := fs.Int64("seed", 1, "seed for the choice of people and every motion")
	shared := fs.String("shared", cfg.SharedDir, "the shared data directory (LFW under datasets/lfw)")
	fps := fs.Float64("fps", def.FPS, "frames per second")
	walkSec := fs.Float64("walk-seconds", def.WalkSeconds, "seconds each face is in view")
	gapSec := fs.Float64("gap-seconds", def.GapSeconds, "seconds of empty frames before, between and after walkers (negative: none)")
	minFace := fs.Int("min-face", def.MinFace, "face width in px when a walker appears")
	maxFace := fs.Int("max-face", def.MaxFace, "face width in px at a walker's last frame")
	vet := fs.Bool("vet", true, "check candidates with go-face first (one face per photo, enrol and walk photos match) and pass over the others")
	vetThreshold := fs.Float64("vet-threshold", cfg.Threshold, "largest enrol-walk photo distance a vetted walker may have")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	w, h, err := parseSize(*size)
	if err != nil {
		return err
	}
	if *name == "" {
		kind := "walk"
		if *twoLanes {
			kind = "walk2lanes"
		}
		*name = fmt.Sprintf("%s-synthetic-%dx%d.avi", kind, w, h)
	}
	lfw, err := filepath.Abs(filepath.Join(*shared, "datasets", "lfw"))
	if err != nil {
		return err
	}
	scfg := synth.Config{
		Width: w, Height: h, FPS: *fps, WalkSeconds: *walkSec, GapSeconds: *gapSec,
		MinFace: *minFace, MaxFace: *maxFace, Seed: *seed, TwoLanes: *twoLanes,
	}
	if *gapSec == 0 {
		scfg.GapSeconds = -1 // zero means "default" to synth; the flag's zero means none
	}

	start := time.Now()
	var walkers []synth.Walker
	if *vet {
		rec, err := facerec.New(facerec.Config{ModelDir: cfg.ModelDir, Detector: cfg.Detector})
		if err != nil {
			return fmt.Errorf("%w\n(`loopgate models fetch` fills the model directory; --vet=false skips the check)", err)
		}
		defer rec.Close()
		v := synth.Vetter{Decoder: vision.NewDecoder(engine.DefaultImageLimits), Embedder: rec, Threshold: *vetThreshold}
		passedOver := 0
		walkers, err = synth.PickWalkersWith(lfw, *enrolled, *strangers, *seed, func(cand synth.Walker) error {
			err := v.Check(cand)
			if errors.Is(err, synth.ErrRejected) {
				passedOver++
				fmt.Printf("  passed over %s: %v\n", cand.Name, err)
			}
			return err
		})
		if err != nil {
			return err
		}
		scfg.Selection = fmt.Sprintf("PickWalkers seed %d from %s, vetted with go-face (%s): exactly one face in each photo, "+
			"enrol photo face >= 80 px, enrol-walk distance <= %.2f", *seed, lfw, rec.ModelTag(), *vetThreshold)
		fmt.Printf("picked %d walkers in %s (vetted with go-face, %d candidates passed over)\n", len(walkers), time.Since(start).Round(time.Millisecond), passedOver)
	} else {
		walkers, err = synth.PickWalkers(lfw, *enrolled, *strangers, *seed)
		if err != nil {
			return err
		}
		scfg.Selection = fmt.Sprintf("PickWalkers seed %d from %s, not vetted", *seed, lfw)
	}

	path := filepath.Join(*out, *name)
	lastShown := -1
	scfg.Progress = func(done, total int) {
		// Long clips report every 10 %, on stderr so stdout stays the summary.
		if total < 200 {
			return
		}
		if pct := done * 10 / total; pct != lastShown {
			lastShown = pct
			fmt.Fprintf(os.Stderr, "  rendering %s: frame %d/%d (%d%%)\n", *name, done, total, pct*10)
		}
	}
	start = time.Now()
	m, err := synth.Write(ctx, path, scfg, walkers)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	fmt.Printf("wrote SYNTHETIC clip %s (%s, %.1f MB) in %s\n", path, m.Codec, float64(st.Size())/1e6, elapsed.Round(time.Millisecond))
	fmt.Printf("  %d frames, %dx%d at %g fps (%.1f s), seed %d, %s, %s\n", m.Frames, m.Width, m.Height, m.FPS,
		float64(m.Frames)/m.FPS, m.Seed, lanesText(m.TwoLanes), m.Generator)
	fmt.Printf("  ground truth %s\n", synth.ManifestPath(path))
	fmt.Printf("  %-3s %-28s %-9s %-4s %-9s %-11s %s\n", "id", "LFW name", "role", "lane", "frames", "face px", "enrol photo")
	for _, wt := range m.Walkers {
		role, enrol := "stranger", "-"
		if wt.Enrolled {
			role, enrol = "enrolled", wt.EnrolPhoto
		}
		fmt.Printf("  %-3s %-28s %-9s %-4s %-9s %-11s %s\n", wt.ID, wt.Name, role, wt.Lane,
			fmt.Sprintf("%d-%d", wt.FirstFrame, wt.LastFrame), fmt.Sprintf("%d->%d", wt.FirstFacePx, wt.LastFacePx), enrol)
	}
	return nil
}

func parseSize(s string) (int, int, error) {
	ws, hs, ok := strings.Cut(strings.ToLower(s), "x")
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	if !ok || err1 != nil || err2 != nil || w <= 0 || h <= 0 {
		return 0, 0, fmt.Errorf("%w: --size %q: want WIDTHxHEIGHT, e.g. 640x480 or 1280x720", errUsage, s)
	}
	return w, h, nil
}

func lanesText(two bool) string {
	if two {
		return "two lanes"
	}
	return "one lane"
}
