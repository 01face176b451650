package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/loopgate/loopgate/engine/gallery"
)

// runPerson manages registrations from the command line (the officers'
// API and web page cover the same ground with authentication).
func runPerson(ctx context.Context, cfg Config, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: person revoke|reinstate|gates|validity --id ID ...", errUsage)
	}
	fs := flag.NewFlagSet("person "+args[0], flag.ContinueOnError)
	id := fs.String("id", "", "the person's external ID (required)")
	reason := fs.String("reason", "", "why the registration is revoked (revoke)")
	var gates stringList
	fs.Var(&gates, "gate", "gate or zone the person may use (gates; repeatable, replaces the current set)")
	from := fs.String("from", "", "validity start, RFC 3339 (validity; empty = open-ended)")
	until := fs.String("until", "", "validity end, RFC 3339 (validity; empty = open-ended)")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *id == "" {
		return fmt.Errorf("%w: person %s needs --id", errUsage, args[0])
	}
	g, _, err := gallery.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer g.Close()
	switch args[0] {
	case "revoke":
		if *reason == "" {
			return fmt.Errorf("%w: person revoke needs --reason", errUsage)
		}
		err = g.Revoke(ctx, *id, *reason)
	case "reinstate":
		err = g.Reinstate(ctx, *id)
	case "gates":
		if len(gates) == 0 {
			return fmt.Errorf("%w: person gates needs at least one --gate", errUsage)
		}
		err = g.SetGates(ctx, *id, gates)
	case "validity":
		var f, u *time.Time
		if f, err = parseOptionalTime("--from", *from); err == nil {
			u, err = parseOptionalTime("--until", *until)
		}
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		err = g.SetValidity(ctx, *id, f, u)
	default:
		return fmt.Errorf("%w: unknown person subcommand %q (revoke, reinstate, gates, validity)", errUsage, args[0])
	}
	if err != nil {
		return err
	}
	fmt.Printf("%s: %s done\n", *id, args[0])
	return nil
}

func parseOptionalTime(flag, v string) (*time.Time, error) {
	if v == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return nil, fmt.Errorf("%s %q: want RFC 3339 (2026-01-31T18:00:00+08:00)", flag, v)
	}
	return &t, nil
}
