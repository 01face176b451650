package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/enroll"
)

func runEnroll(ctx context.Context, cfg Config, args []string) error {
	if bulkRequested(args) {
		return runBulkEnroll(ctx, cfg, args)
	}
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	id := fs.String("id", "", "the person's external ID (required)")
	name := fs.String("name", "", "the person's name (required)")
	operator := fs.String("operator", os.Getenv("USER"), "who is enrolling")
	storeGood := fs.Bool("store-good", false, "store the usable photos even if others are rejected")
	var gates stringList
	fs.Var(&gates, "gate", "a gate or zone the person may use (repeatable, or ':'-separated)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *id == "" || *name == "" || fs.NArg() == 0 {
		return fmt.Errorf("%w: enroll --id ID --name NAME PHOTO [PHOTO...], or in bulk: %s", errUsage, bulkUsage)
	}
	req := enroll.Request{ExternalID: *id, Name: *name, Source: "cli", Operator: *operator, StoreGood: *storeGood, Gates: gates}
	// Read every file first: a missing file is reported before any work.
	for _, path := range fs.Args() {
		data, err := readBounded(path, int64(engine.DefaultImageLimits.MaxBytes))
		if err != nil {
			return err
		}
		req.Photos = append(req.Photos, enroll.Photo{Name: path, Data: data})
	}
	if err := req.Validate(); err != nil {
		return err
	}
	a, err := openApp(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	res, err := a.enroller.Enrol(ctx, req)
	for _, p := range res.Photos {
		if p.Err != nil {
			fmt.Printf("  REJECTED %s: %v\n", p.Name, p.Err)
		} else {
			fmt.Printf("  ok       %s: face %v in %dx%d (%s)\n", p.Name, p.Face.Box, p.Width, p.Height, p.Elapsed.Round(1e5))
		}
	}
	var rej *enroll.RejectedError
	if errors.As(err, &rej) {
		return fmt.Errorf("nothing stored for %s: fix or remove the rejected photos, or pass --store-good", *id)
	}
	if err != nil {
		return err
	}
	s := res.Stored
	verb := "updated"
	if s.CreatedPerson {
		verb = "enrolled"
	}
	fmt.Printf("%s %s %q: %d template(s) added, %d photo(s) already enrolled", verb, *id, *name, s.Added, s.AlreadyEnrolled)
	if len(gates) > 0 {
		fmt.Printf(", %d new gate(s) of %v", s.GatesAdded, []string(gates))
	}
	fmt.Println()
	return nil
}

// readBounded reads a file, refusing one larger than limit before reading it all.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", path, engine.ErrImageTooLarge, limit)
	}
	return data, nil
}
