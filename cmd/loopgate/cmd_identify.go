package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/loopgate/loopgate/engine"
)

func runIdentify(ctx context.Context, cfg Config, args []string) error {
	fs := flag.NewFlagSet("identify", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: identify PHOTO [PHOTO...]", errUsage)
	}
	a, err := openApp(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	failed := 0
	for _, path := range fs.Args() {
		data, err := readBounded(path, int64(engine.DefaultImageLimits.MaxBytes))
		if err == nil {
			var ids []engine.Identification
			var t engine.Timings
			ids, t, err = a.identifier.IdentifyImage(ctx, data)
			if err == nil {
				// Boxes are in the photo's own pixels (full resolution, EXIF-rotated).
				for i, r := range ids {
					fmt.Printf("%s face %d %v: %s\n", path, i+1, r.Face.Box, describe(r, cfg.Threshold))
				}
				fmt.Printf("  %d face(s); timings: decode %s, detect %s, crop+embed %s, search %s\n",
					len(ids), ms(t.Decode), ms(t.Detect), ms(t.Embed), ms(t.Search))
				continue
			}
		}
		failed++
		if errors.Is(err, engine.ErrNoFace) {
			fmt.Printf("%s: no face: %v\n", path, err)
		} else {
			fmt.Printf("%s: error: %v\n", path, err)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d images could not be identified", failed, fs.NArg())
	}
	return nil
}

func describe(r engine.Identification, threshold float64) string {
	switch {
	case r.Err != nil:
		return fmt.Sprintf("not searched: %v", r.Err)
	case r.Best == nil:
		return "no match (gallery is empty)"
	case r.Matched:
		return fmt.Sprintf("MATCH id=%s name=%q distance=%.3f (threshold %.2f)", r.Best.ExternalID, r.Best.Name, r.Best.Distance, threshold)
	default:
		return fmt.Sprintf("no match (nearest distance %.3f > threshold %.2f)", r.Best.Distance, threshold)
	}
}
