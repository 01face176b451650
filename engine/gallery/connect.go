package gallery

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	pgxvec "github.com/pgvector/pgvector-go/pgx"
)

// ErrSchemaBehind: the database lacks migrations this binary needs. Run
// `loopgate migrate` as the schema owner.
var ErrSchemaBehind = errors.New("gallery: database schema is behind this binary: run `loopgate migrate` as the schema owner")

// Connect opens a pool without migrating, for services whose database role
// may not change the schema (gate nodes, a separately-roled enrolment
// service) or that read a read-only replica. It checks that every
// migration this binary knows has been applied.
func Connect(ctx context.Context, url string) (*Gallery, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("gallery: parse database url: %w", err)
	}
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		return pgxvec.RegisterTypes(ctx, c)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("gallery: pool: %w", err)
	}
	g := &Gallery{pool: pool}
	if err := g.CheckSchema(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return g, nil
}

// CheckSchema reports ErrSchemaBehind when a known migration is missing.
func (g *Gallery) CheckSchema(ctx context.Context) error {
	ms, err := Migrations()
	if err != nil {
		return err
	}
	var have int
	if err := g.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("gallery: read schema version: %w", err)
	}
	if want := ms[len(ms)-1].Version; have < want {
		return fmt.Errorf("%w (database at %d, binary needs %d)", ErrSchemaBehind, have, want)
	}
	return nil
}
