package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"

	"github.com/loopgate/loopgate/enroll/service"
)

// runEnrolment is the officers' enrolment service: the API and web page.
func runEnrolment(ctx context.Context, _ Config, args []string) error {
	if len(args) == 0 || args[0] != "serve" {
		return fmt.Errorf("%w: enrolment serve --config FILE [--check]", errUsage)
	}
	fs := flag.NewFlagSet("enrolment serve", flag.ContinueOnError)
	path := fs.String("config", "", "the enrolment service's YAML configuration (see deploy/enrolment.example.yaml)")
	check := fs.Bool("check", false, "validate the configuration and exit")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *path == "" || fs.NArg() != 0 {
		return fmt.Errorf("%w: enrolment serve --config FILE [--check]", errUsage)
	}
	cfg, err := service.Load(*path)
	if err != nil {
		return err
	}
	if *check {
		fmt.Printf("%s: valid (listen %s, photo retention %v)\n", *path, cfg.HTTP.Addr, cfg.Photos.Retain)
		return nil
	}
	s, err := service.New(ctx, cfg, service.Options{Logger: slog.Default()})
	if err != nil {
		return err
	}
	defer s.Close()
	slog.Info("enrolment service running", "addr", cfg.HTTP.Addr)
	return s.Run(ctx)
}
