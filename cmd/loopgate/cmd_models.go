package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/loopgate/loopgate/models"
)

type stringList []string

func (s *stringList) String() string     { return fmt.Sprint(*s) }
func (s *stringList) Set(v string) error { *s = append(*s, filepath.SplitList(v)...); return nil }

func runModels(ctx context.Context, cfg Config, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: models fetch|verify", errUsage)
	}
	switch args[0] {
	case "fetch":
		fs := flag.NewFlagSet("models fetch", flag.ContinueOnError)
		var mirrors stringList
		fs.Var(&mirrors, "mirror", "local mirror directory (repeatable, or ':'-separated); default $LOOPGATE_MODEL_MIRROR")
		noDownload := fs.Bool("no-download", false, "never download from the upstream URLs")
		dir := fs.String("dir", cfg.ModelDir, "model directory to fill")
		if err := fs.Parse(args[1:]); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		if len(mirrors) == 0 {
			mirrors = cfg.Mirrors
		}
		installed, err := models.Fetch(ctx, models.FetchOptions{
			Dir: *dir, Mirrors: mirrors, NoDownload: *noDownload,
			Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) },
		})
		if err != nil {
			return err
		}
		printInstalled(installed)
		return nil
	case "verify":
		installed, err := models.Verify(cfg.ModelDir)
		printInstalled(installed)
		return err
	default:
		return fmt.Errorf("%w: unknown models subcommand %q (fetch, verify)", errUsage, args[0])
	}
}

func printInstalled(installed []models.Installed) {
	for _, in := range installed {
		pinned := ""
		if in.Pinned {
			pinned = " (digest pinned at fetch)"
		}
		fmt.Printf("%-42s %-13s sha256 %s%s\n", in.Model.Name, in.Variant.Label, in.SHA256, pinned)
		if in.Variant.Warning != "" {
			fmt.Printf("  WARNING: %s\n", in.Variant.Warning)
		}
	}
}
