// Package gallery is the enrolled-people store: PostgreSQL with pgvector.
// Templates go in, nearest neighbours by Euclidean distance come out; all
// SQL is parameterised.
package gallery

import (
	"context"
	"errors"
	"fmt"
	"image"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgvector/pgvector-go"
	pgxvec "github.com/pgvector/pgvector-go/pgx"

	"github.com/loopgate/loopgate/engine"
)

// ErrIDConflict means the external ID is enrolled under another name.
var ErrIDConflict = errors.New("person id already enrolled under a different name")

// Gallery is a connection pool to the template store.
type Gallery struct {
	pool *pgxpool.Pool
}

// Open connects to the database at url, applies pending migrations, and
// returns a ready gallery.
func Open(ctx context.Context, url string) (*Gallery, []Migration, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, nil, fmt.Errorf("gallery: connect: %w", err)
	}
	applied, err := Migrate(ctx, conn)
	conn.Close(ctx)
	if err != nil {
		return nil, applied, err
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, applied, fmt.Errorf("gallery: parse database url: %w", err)
	}
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		return pgxvec.RegisterTypes(ctx, c)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, applied, fmt.Errorf("gallery: pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, applied, fmt.Errorf("gallery: ping: %w", err)
	}
	return &Gallery{pool: pool}, applied, nil
}

// Close releases the pool.
func (g *Gallery) Close() { g.pool.Close() }

// Pool exposes the pool for tests and tools that need raw SQL.
func (g *Gallery) Pool() *pgxpool.Pool { return g.pool }

// Template is one face embedding to store.
type Template struct {
	Embedding   engine.Embedding
	Model       string
	PhotoSHA256 [32]byte
	Box         image.Rectangle
	ImageWidth  int
	ImageHeight int
}

// Enrolment adds templates to a person, creating the person if needed.
type Enrolment struct {
	ExternalID string
	Name       string
	Source     string
	Operator   string
	// Gates are gates or zones the person may use, added to those they
	// already have.
	Gates     []string
	Templates []Template
}

// EnrolResult says what an enrolment stored.
type EnrolResult struct {
	PersonID      int64
	EnrolmentID   int64 // 0 when nothing new was stored
	CreatedPerson bool
	Added         int
	// AlreadyEnrolled counts photos this person already had templates from.
	AlreadyEnrolled int
	// GatesAdded counts gates the person did not have before.
	GatesAdded int
}

// Enrol stores an enrolment in one transaction: either every new template
// is stored or none is.
func (g *Gallery) Enrol(ctx context.Context, e Enrolment) (EnrolResult, error) {
	if len(e.Templates) == 0 {
		return EnrolResult{}, errors.New("gallery: enrolment has no templates")
	}
	for i, t := range e.Templates {
		if err := t.Embedding.Valid(); err != nil {
			return EnrolResult{}, fmt.Errorf("gallery: template %d: %w", i, err)
		}
		if t.Model == "" {
			return EnrolResult{}, fmt.Errorf("gallery: template %d has no model tag", i)
		}
	}
	for _, gate := range e.Gates {
		if !GateNamePattern.MatchString(gate) {
			return EnrolResult{}, fmt.Errorf("gallery: gate name %q: want 1-64 letters, digits, '.', '_' or '-'", gate)
		}
	}
	var res EnrolResult
	err := pgx.BeginFunc(ctx, g.pool, func(tx pgx.Tx) error {
		res = EnrolResult{}
		var name string
		err := tx.QueryRow(ctx, `SELECT id, name FROM people WHERE external_id = $1 FOR UPDATE`, e.ExternalID).Scan(&res.PersonID, &name)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if err := tx.QueryRow(ctx, `INSERT INTO people (external_id, name) VALUES ($1, $2) RETURNING id`,
				e.ExternalID, e.Name).Scan(&res.PersonID); err != nil {
				return fmt.Errorf("gallery: insert person: %w", err)
			}
			res.CreatedPerson = true
		case err != nil:
			return fmt.Errorf("gallery: look up person: %w", err)
		case name != e.Name:
			return fmt.Errorf("%w: %q is %q, not %q", ErrIDConflict, e.ExternalID, name, e.Name)
		}
		if err := tx.QueryRow(ctx, `INSERT INTO enrolments (person_id, source, operator) VALUES ($1, $2, $3) RETURNING id`,
			res.PersonID, e.Source, e.Operator).Scan(&res.EnrolmentID); err != nil {
			return fmt.Errorf("gallery: insert enrolment: %w", err)
		}
		for _, t := range e.Templates {
			tag, err := tx.Exec(ctx, `INSERT INTO face_templates
				(person_id, enrolment_id, embedding, model, photo_sha256, face_box, image_width, image_height)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
				ON CONFLICT (person_id, photo_sha256) DO NOTHING`,
				res.PersonID, res.EnrolmentID, pgvector.NewVector(t.Embedding[:]), t.Model, t.PhotoSHA256[:],
				[]int32{int32(t.Box.Min.X), int32(t.Box.Min.Y), int32(t.Box.Max.X), int32(t.Box.Max.Y)},
				t.ImageWidth, t.ImageHeight)
			if err != nil {
				return fmt.Errorf("gallery: insert template: %w", err)
			}
			if tag.RowsAffected() == 1 {
				res.Added++
			} else {
				res.AlreadyEnrolled++
			}
		}
		if len(e.Gates) > 0 {
			tag, err := tx.Exec(ctx, `INSERT INTO person_gates (person_id, gate) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING`,
				res.PersonID, e.Gates)
			if err != nil {
				return fmt.Errorf("gallery: insert gates: %w", err)
			}
			res.GatesAdded = int(tag.RowsAffected())
		}
		if res.Added == 0 && res.GatesAdded == 0 {
			return errNothingNew
		}
		return nil
	})
	if errors.Is(err, errNothingNew) {
		res.EnrolmentID = 0
		return res, nil
	}
	return res, err
}

var errNothingNew = errors.New("nothing new to store")

// Nearest returns the k templates closest to e among those made by model,
// nearest first, by pgvector's Euclidean <-> operator.
func (g *Gallery) Nearest(ctx context.Context, e engine.Embedding, model string, k int) ([]engine.Candidate, error) {
	rows, err := g.pool.Query(ctx, `
		SELECT p.id, p.external_id, p.name, t.id, t.embedding <-> $1 AS distance
		FROM face_templates t JOIN people p ON p.id = t.person_id
		WHERE t.model = $2
		ORDER BY t.embedding <-> $1
		LIMIT $3`, pgvector.NewVector(e[:]), model, k)
	if err != nil {
		return nil, fmt.Errorf("gallery: nearest: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (engine.Candidate, error) {
		var c engine.Candidate
		err := r.Scan(&c.PersonID, &c.ExternalID, &c.Name, &c.TemplateID, &c.Distance)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("gallery: nearest: %w", err)
	}
	return out, nil
}

// Stats counts what the gallery holds.
type Stats struct {
	People, Templates int64
}

// Stats returns the gallery's size.
func (g *Gallery) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	err := g.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM people), (SELECT count(*) FROM face_templates)`).Scan(&s.People, &s.Templates)
	if err != nil {
		return s, fmt.Errorf("gallery: stats: %w", err)
	}
	return s, nil
}
