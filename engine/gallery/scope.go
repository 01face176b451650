package gallery

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgvector/pgvector-go"

	"github.com/loopgate/loopgate/engine"
)

// GateNamePattern is what a gate or zone name may look like (also checked
// by the database).
var GateNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// NearestPeople returns the k people nearest to e among those registered
// for any of the gates or zones in scope, each at the distance of their
// nearest template made by model, nearest first, whatever their status: the
// caller decides (a revoked person's match is a deny with that reason).
//
// The scope is part of the search, not a filter after it: only templates of
// in-scope people are compared. This is an exact scan, grouped per person so
// the margin to the second person is exact; gate-scoped galleries are small
// (benchmarks/ measures the cost).
func (g *Gallery) NearestPeople(ctx context.Context, e engine.Embedding, model string, scope []string, k int) ([]engine.PersonMatch, error) {
	if len(scope) == 0 {
		return nil, errors.New("gallery: empty gate scope")
	}
	rows, err := g.pool.Query(ctx, `
		SELECT p.id, p.external_id, p.name, min(t.embedding <-> $1) AS distance,
		       p.status, p.revoked_at, coalesce(p.revoked_reason, ''), p.valid_from, p.valid_until
		FROM face_templates t JOIN people p ON p.id = t.person_id
		WHERE t.model = $2
		  AND p.id IN (SELECT person_id FROM person_gates WHERE gate = ANY($3))
		GROUP BY p.id
		ORDER BY distance
		LIMIT $4`, pgvector.NewVector(e[:]), model, scope, k)
	if err != nil {
		return nil, fmt.Errorf("gallery: nearest people: %w", err)
	}
	return collectPeople(rows)
}

// PersonDistance is the 1:1 comparison: the distance from e to the nearest
// template of one person (by external ID), with the registration. It returns
// engine.ErrUnknownPerson when the person has no template of model.
func (g *Gallery) PersonDistance(ctx context.Context, e engine.Embedding, model, externalID string) (engine.PersonMatch, error) {
	rows, err := g.pool.Query(ctx, `
		SELECT p.id, p.external_id, p.name, min(t.embedding <-> $1) AS distance,
		       p.status, p.revoked_at, coalesce(p.revoked_reason, ''), p.valid_from, p.valid_until
		FROM face_templates t JOIN people p ON p.id = t.person_id
		WHERE t.model = $2 AND p.external_id = $3
		GROUP BY p.id`, pgvector.NewVector(e[:]), model, externalID)
	if err != nil {
		return engine.PersonMatch{}, fmt.Errorf("gallery: person distance: %w", err)
	}
	out, err := collectPeople(rows)
	if err != nil {
		return engine.PersonMatch{}, err
	}
	if len(out) == 0 {
		return engine.PersonMatch{}, fmt.Errorf("%w: %q has no template", engine.ErrUnknownPerson, externalID)
	}
	return out[0], nil
}

func collectPeople(rows pgx.Rows) ([]engine.PersonMatch, error) {
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (engine.PersonMatch, error) {
		var m engine.PersonMatch
		err := r.Scan(&m.PersonID, &m.ExternalID, &m.Name, &m.Distance,
			&m.Registration.Status, &m.Registration.RevokedAt, &m.Registration.RevokedReason,
			&m.Registration.ValidFrom, &m.Registration.ValidUntil)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("gallery: read people: %w", err)
	}
	return out, nil
}

// RegisteredInScope reports whether a person is registered for any gate in
// scope, with the registration (for 1:1 claims).
func (g *Gallery) RegisteredInScope(ctx context.Context, externalID string, scope []string) (engine.PersonMatch, error) {
	var m engine.PersonMatch
	err := g.pool.QueryRow(ctx, `
		SELECT p.id, p.external_id, p.name, p.status, p.revoked_at, coalesce(p.revoked_reason, ''), p.valid_from, p.valid_until
		FROM people p
		WHERE p.external_id = $1 AND p.id IN (SELECT person_id FROM person_gates WHERE gate = ANY($2))`,
		externalID, scope).Scan(&m.PersonID, &m.ExternalID, &m.Name, &m.Registration.Status, &m.Registration.RevokedAt,
		&m.Registration.RevokedReason, &m.Registration.ValidFrom, &m.Registration.ValidUntil)
	if errors.Is(err, pgx.ErrNoRows) {
		return m, fmt.Errorf("%w: %q is not registered for %v", engine.ErrUnknownPerson, externalID, scope)
	}
	if err != nil {
		return m, fmt.Errorf("gallery: look up %q: %w", externalID, err)
	}
	return m, nil
}

// SetGates replaces the gates and zones a person may use.
func (g *Gallery) SetGates(ctx context.Context, externalID string, gates []string) error {
	for _, gate := range gates {
		if !GateNamePattern.MatchString(gate) {
			return fmt.Errorf("gallery: gate name %q: want 1-64 letters, digits, '.', '_' or '-'", gate)
		}
	}
	return pgx.BeginFunc(ctx, g.pool, func(tx pgx.Tx) error {
		id, err := personID(ctx, tx, externalID)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM person_gates WHERE person_id = $1`, id); err != nil {
			return fmt.Errorf("gallery: set gates: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO person_gates (person_id, gate) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING`, id, gates); err != nil {
			return fmt.Errorf("gallery: set gates: %w", err)
		}
		_, err = tx.Exec(ctx, `UPDATE people SET updated_at = now() WHERE id = $1`, id)
		return err
	})
}

// Revoke marks a registration revoked: from then on the person's face gives
// a deny with that reason.
func (g *Gallery) Revoke(ctx context.Context, externalID, reason string) error {
	if reason == "" {
		return errors.New("gallery: revoke needs a reason")
	}
	tag, err := g.pool.Exec(ctx, `UPDATE people SET status = 'revoked', revoked_at = now(), revoked_reason = $2, updated_at = now()
		WHERE external_id = $1`, externalID, reason)
	if err != nil {
		return fmt.Errorf("gallery: revoke: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %q", engine.ErrUnknownPerson, externalID)
	}
	return nil
}

// Reinstate makes a revoked registration active again.
func (g *Gallery) Reinstate(ctx context.Context, externalID string) error {
	tag, err := g.pool.Exec(ctx, `UPDATE people SET status = 'active', revoked_at = NULL, revoked_reason = NULL, updated_at = now()
		WHERE external_id = $1`, externalID)
	if err != nil {
		return fmt.Errorf("gallery: reinstate: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %q", engine.ErrUnknownPerson, externalID)
	}
	return nil
}

// SetValidity sets the validity window (nil bounds are open-ended).
func (g *Gallery) SetValidity(ctx context.Context, externalID string, from, until *time.Time) error {
	if from != nil && until != nil && !from.Before(*until) {
		return fmt.Errorf("gallery: validity window: from %s is not before until %s", from, until)
	}
	tag, err := g.pool.Exec(ctx, `UPDATE people SET valid_from = $2, valid_until = $3, updated_at = now() WHERE external_id = $1`,
		externalID, from, until)
	if err != nil {
		return fmt.Errorf("gallery: set validity: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %q", engine.ErrUnknownPerson, externalID)
	}
	return nil
}

func personID(ctx context.Context, tx pgx.Tx, externalID string) (int64, error) {
	var id int64
	err := tx.QueryRow(ctx, `SELECT id FROM people WHERE external_id = $1 FOR UPDATE`, externalID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("%w: %q", engine.ErrUnknownPerson, externalID)
	}
	if err != nil {
		return 0, fmt.Errorf("gallery: look up %q: %w", externalID, err)
	}
	return id, nil
}
