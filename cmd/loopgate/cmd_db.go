package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/loopgate/loopgate/engine/gallery"
)

func runMigrate(ctx context.Context, cfg Config, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: migrate takes no arguments", errUsage)
	}
	conn, err := pgx.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("connect: %w\n(is the database running? `make db` starts the project-local cluster)", err)
	}
	defer conn.Close(ctx)
	applied, err := gallery.Migrate(ctx, conn)
	for _, m := range applied {
		fmt.Printf("applied %s\n", m.Name)
	}
	if err != nil {
		return err
	}
	all, _ := gallery.Migrations()
	fmt.Printf("schema up to date: %d migrations, %d applied now\n", len(all), len(applied))
	return nil
}

func runStats(ctx context.Context, cfg Config, args []string) error {
	g, _, err := gallery.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer g.Close()
	s, err := g.Stats(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("people: %d\ntemplates: %d\n", s.People, s.Templates)
	return nil
}
