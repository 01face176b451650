// Command loopgate is the contactless clearance engine's single binary.
//
//	loopgate migrate                      apply database migrations
//	loopgate models fetch|verify          fill or check the model directory
//	loopgate enroll --id ID --name NAME photo.jpg...
//	loopgate enroll --from-dir DIR | --from-csv FILE --park hk|sz   bulk enrolment
//	loopgate user add|list|disable|passwd ...   officers' accounts
//	loopgate token add|list|revoke ...          API tokens
//	loopgate identify photo.jpg...
//	loopgate demo                         enrol and identify people from ../shared
//	loopgate stats                        count enrolled people and templates
//
// Configuration comes from LOOPGATE_* environment variables (see config.go)
// and each subcommand's flags.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/loopgate/loopgate/internal/runtimetune"
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, cfg Config, args []string) error
}

var commands = []command{
	{"migrate", "apply database migrations (also done by every command that uses the database)", runMigrate},
	{"models", "models fetch [--mirror DIR] [--no-download] | models verify", runModels},
	{"serve", "serve --config FILE: the walk-through gate node (cameras → decisions)", runServe},
	{"enrolment", "enrolment serve --config FILE: the officers' enrolment API and web page", runEnrolment},
	{"enroll", "enroll --id ID --name NAME [--gate GATE]... [--store-good] PHOTO...\n" +
		"            enroll --from-dir DIR | --from-csv FILE [--park hk|sz] [--gate G]... [--organisation O] [--dry-run] [--report FILE]:\n" +
		"            bulk, one request per person; exit 3 if anything was refused, 130 if interrupted", runEnroll},
	{"identify", "identify PHOTO...: best match per face, or no match", runIdentify},
	{"demo", "the walk-through on a synthetic clip with live view and latencies (demo stills: the still-photo demo)", runDemo},
	{"stats", "count enrolled people and templates", runStats},
	{"synth", "synth walk ...: write a synthetic walk-through clip and its ground truth", runSynth},
	{"person", "person revoke|reinstate|gates|validity --id ID ...: manage a registration", runPerson},
	{"user", "user add --username U --role officer|admin [--password-file F] | list | disable U | passwd U: officers' accounts", runUser},
	{"token", "token add --name N --role officer|admin | list | revoke ID: API tokens (the secret is printed once)", runToken},
	{"bench", "bench lfw|identify|search|pipeline|embed ...: benchmarks with Markdown reports and plots in benchmarks/results", runBench},
}

// errUsage marks a command-line mistake: the message says what was wrong.
var errUsage = errors.New("usage")

func main() {
	runtimetune.Apply() // first: one OpenBLAS thread, glibc malloc thresholds (see the package)
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := LoadConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loopgate:", err)
		os.Exit(2)
	}
	for _, c := range commands {
		if c.name == os.Args[1] {
			err := c.run(ctx, cfg, os.Args[2:])
			var exit *exitError
			switch {
			case err == nil:
				return
			case errors.As(err, &exit):
				fmt.Fprintf(os.Stderr, "loopgate %s: %v\n", c.name, err)
				os.Exit(exit.code)
			case errors.Is(err, errUsage):
				fmt.Fprintf(os.Stderr, "loopgate %s: %v\n", c.name, err)
				os.Exit(2)
			default:
				fmt.Fprintf(os.Stderr, "loopgate %s: %v\n", c.name, err)
				os.Exit(1)
			}
		}
	}
	fmt.Fprintf(os.Stderr, "loopgate: unknown command %q\n", os.Args[1])
	usage()
	os.Exit(2)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loopgate COMMAND [flags] [args]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(os.Stderr, "\nenvironment:")
	for _, e := range envVars {
		fmt.Fprintf(os.Stderr, "  %-26s %s\n", e.name, e.help)
	}
}
