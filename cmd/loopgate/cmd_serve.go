package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"

	"github.com/loopgate/loopgate/internal/runtimetune"
	"github.com/loopgate/loopgate/node"
)

// runServe is the gate node: cameras → pipeline → decisions, until
// interrupted (or until every file source has ended).
func runServe(ctx context.Context, cfg Config, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", "", "the gate node's YAML configuration (see deploy/gate-node.example.yaml)")
	check := fs.Bool("check", false, "validate the configuration and exit")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *path == "" || fs.NArg() != 0 {
		return fmt.Errorf("%w: serve --config FILE [--check]", errUsage)
	}
	ncfg, err := node.Load(*path)
	if err != nil {
		return err
	}
	if *check {
		fmt.Printf("%s: valid (gate %s, %d camera(s))\n", *path, ncfg.Gate, len(ncfg.Cameras))
		return nil
	}
	n, err := node.New(ctx, ncfg, node.Options{Logger: slog.Default()})
	if err != nil {
		return err
	}
	defer n.Close()
	slog.Info("runtime tuning", "tuning", runtimetune.Current())
	slog.Info("gate node running", "gate", ncfg.Gate, "scope", ncfg.Scope(), "cameras", len(ncfg.Cameras), "http", n.Addr())
	return n.Run(ctx)
}
