package deploy_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/decision"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/engine/localgallery"
	"github.com/loopgate/loopgate/internal/testenv"
	"github.com/loopgate/loopgate/sink"
)

// expectedGrants is the exact privilege set roles.sql must leave on the
// schema: table privileges, column privileges ("table.column") and sequence
// privileges. Anything more is a failure, so is anything less.
var expectedGrants = map[string][]string{
	"loopgate_gate": {
		"decisions INSERT", "decisions.event_id SELECT", "decisions_id_seq USAGE",
		"face_templates SELECT", "gallery_changes SELECT",
		"gallery_heartbeats INSERT", "gallery_heartbeats SELECT", "gallery_heartbeats.beat UPDATE",
		"people SELECT", "person_gates SELECT", "schema_migrations SELECT",
	},
	"loopgate_enrolment": {
		"accounts INSERT", "accounts SELECT", "accounts UPDATE", "accounts_id_seq USAGE",
		"api_tokens INSERT", "api_tokens SELECT", "api_tokens UPDATE", "api_tokens_id_seq USAGE",
		"enrolment_audit INSERT", "enrolment_audit SELECT", "enrolment_audit_id_seq USAGE",
		"enrolments INSERT", "enrolments SELECT", "enrolments_id_seq USAGE",
		"face_templates DELETE", "face_templates INSERT", "face_templates SELECT", "face_templates_id_seq USAGE",
		"gallery_changes INSERT", "gallery_changes SELECT", "gallery_changes_seq_seq USAGE",
		"people DELETE", "people INSERT", "people SELECT", "people UPDATE", "people_id_seq USAGE",
		"person_gates DELETE", "person_gates INSERT", "person_gates SELECT",
		"photos DELETE", "photos INSERT", "photos SELECT", "photos_id_seq USAGE",
		"schema_migrations SELECT",
		"template_history INSERT", "template_history SELECT", "template_history_id_seq USAGE",
	},
}

// TestDatabaseRoles applies roles.sql (twice: it must be idempotent) to a
// fresh, migrated schema of the real database and checks, as login roles
// that inherit the groups, what each may and may not do: the gate through
// the real code paths it runs (gallery.Connect, the local gallery copy, the
// audit sink), the enrolment service through the statements enroll/ issues.
func TestDatabaseRoles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dbURL := testenv.DatabaseURL(t)
	g, _, err := gallery.Open(ctx, dbURL) // migrates, as the schema's owner
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	admin := connect(t, ctx, dbURL)
	roles := string(readFile(t, deployFile(t, "roles.sql")))
	for run := 1; run <= 2; run++ {
		if _, err := admin.Exec(ctx, roles); err != nil {
			t.Fatalf("roles.sql, run %d: %v", run, err)
		}
	}
	for _, r := range []string{"loopgate_gate", "loopgate_enrolment"} {
		var login, super bool
		if err := admin.QueryRow(ctx, `SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = $1`, r).Scan(&login, &super); err != nil {
			t.Fatalf("role %s: %v", r, err)
		}
		if login || super {
			t.Errorf("role %s: can log in %v, superuser %v; want a NOLOGIN group role", r, login, super)
		}
	}
	t.Run("exact grants", func(t *testing.T) {
		got := grantsInSchema(t, ctx, admin)
		for role, want := range expectedGrants {
			if !slices.Equal(got[role], want) {
				t.Errorf("%s has\n  %v\nwant exactly\n  %v", role, got[role], want)
			}
		}
	})

	// A registered person with a template, written as the owner.
	var personID, enrolmentID int64
	if err := admin.QueryRow(ctx, `INSERT INTO people (external_id, name) VALUES ('roles-test-1', 'Roles Test') RETURNING id`).Scan(&personID); err != nil {
		t.Fatal(err)
	}
	if err := admin.QueryRow(ctx, `INSERT INTO enrolments (person_id, source) VALUES ($1, 'test') RETURNING id`, personID).Scan(&enrolmentID); err != nil {
		t.Fatal(err)
	}
	mustExec(t, ctx, admin, `INSERT INTO face_templates (person_id, enrolment_id, embedding, model, photo_sha256, face_box, image_width, image_height)
		VALUES ($1, $2, array_fill(0.1::real, ARRAY[128])::vector, 'test', sha256('a'), '{0,0,10,10}', 100, 100)`, personID, enrolmentID)
	mustExec(t, ctx, admin, `INSERT INTO person_gates (person_id, gate) VALUES ($1, 'bridge1-north')`, personID)
	var probe engine.Embedding
	for i := range probe {
		probe[i] = 0.1
	}

	t.Run("loopgate_gate", func(t *testing.T) {
		gateURL, _ := loginURL(t, ctx, admin, dbURL, "loopgate_gate")
		gate := loginPool(t, ctx, gateURL, "loopgate_gate")
		// The gallery as a gate node opens it: no migration, schema check.
		sg, err := gallery.Connect(ctx, gateURL)
		if err != nil {
			t.Fatalf("gallery.Connect as loopgate_gate: %v", err)
		}
		defer sg.Close()
		if m, err := sg.NearestPeople(ctx, probe, "test", []string{"bridge1-north"}, 2); err != nil || len(m) != 1 || m[0].ExternalID != "roles-test-1" {
			t.Errorf("NearestPeople as loopgate_gate: %+v, %v; want roles-test-1", m, err)
		}
		if _, err := sg.RegisteredInScope(ctx, "roles-test-1", []string{"bridge1-north"}); err != nil {
			t.Errorf("RegisteredInScope as loopgate_gate: %v", err)
		}
		// The node's local copy of the gallery, loaded as the gate.
		cp, err := localgallery.Open(ctx, localgallery.Config{ReadURL: gateURL, Scope: []string{"bridge1-north"}, Model: "test",
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		st := cp.Status()
		cp.Close()
		if st.Source != "database" || st.People != 1 || st.Templates != 1 || st.LastError != "" {
			t.Errorf("local gallery copy as loopgate_gate: %+v; want 1 person, 1 template from the database", st)
		}
		// The heartbeat a node reading a replica writes to the primary
		// (engine/localgallery), twice: insert, then the conflict update.
		for range 2 {
			if _, err := gate.Exec(ctx, `INSERT INTO gallery_heartbeats (node, beat) VALUES ($1, $2)
				ON CONFLICT (node) DO UPDATE SET beat = excluded.beat`, "bridge1-north", time.Now()); err != nil {
				t.Errorf("heartbeat as loopgate_gate: %v", err)
			}
		}
		// The real audit sink writes a decision, twice: the second is the
		// idempotent no-op of ON CONFLICT (event_id) DO NOTHING.
		reg := prometheus.NewRegistry()
		m := sink.NewMetrics(reg)
		audit, err := sink.NewAudit(gate, sink.AuditConfig{Metrics: m, Logger: slog.New(slog.DiscardHandler), FlushTimeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		dist, margin := 0.31, 0.2
		ev := decision.Event{ID: "bridge1-north/lane-a/1", Decision: decision.Open, Reason: decision.Matched, Gate: "bridge1-north",
			Lane: "a", Camera: "lane-a", TrackID: 1, Distance: &dist, Margin: &margin, Threshold: 0.42, FramesUsed: 3,
			FirstSeen: now.Add(-2 * time.Second), DecidedAt: now,
			Person: &decision.Person{ID: personID, ExternalID: "roles-test-1", Name: "Roles Test"}}
		audit.Send(ev)
		audit.Send(ev)
		if err := audit.Close(); err != nil {
			t.Fatalf("audit sink as loopgate_gate: %v", err)
		}
		delivered := testutil.ToFloat64(m.Delivered.WithLabelValues("audit"))
		failed := testutil.CollectAndCount(m.Failed)
		var rows int
		var stored *int64
		if err := admin.QueryRow(ctx, `SELECT count(*), max(person_id) FROM decisions WHERE event_id = $1`, ev.ID).Scan(&rows, &stored); err != nil {
			t.Fatal(err)
		}
		t.Logf("audit sink as loopgate_gate: delivered %v, failure series %d, rows %d", delivered, failed, rows)
		if delivered != 2 || failed != 0 || rows != 1 || stored == nil || *stored != personID {
			t.Errorf("audit sink as loopgate_gate: delivered %v, failure series %d, rows %d, person %v; want 2, 0, 1, %d", delivered, failed, rows, stored, personID)
		}
		refused(t, ctx, gate,
			`UPDATE people SET name = name`,
			`DELETE FROM decisions`,
			`SELECT * FROM accounts`,
			`SELECT * FROM decisions`,
			`SELECT person_id FROM decisions`,
			`UPDATE decisions SET reason = reason`,
			`TRUNCATE decisions`,
			`INSERT INTO people (external_id, name) VALUES ('x', 'y')`,
			`DELETE FROM people`,
			`DELETE FROM person_gates`,
			`DELETE FROM face_templates`,
			`INSERT INTO face_templates (person_id, enrolment_id, embedding, model, photo_sha256, face_box, image_width, image_height) VALUES (1, 1, array_fill(0::real, ARRAY[128])::vector, 'm', sha256(''), '{0,0,1,1}', 1, 1)`,
			`DELETE FROM gallery_heartbeats`,
			`UPDATE gallery_heartbeats SET node = node`,
			`SELECT * FROM enrolments`,
			`SELECT * FROM enrolment_audit`,
			`SELECT * FROM api_tokens`,
			`SELECT * FROM photos`,
			`SELECT * FROM template_history`,
			`INSERT INTO gallery_changes (person_id) VALUES (1)`,
			`SELECT gallery_changes_prune(interval '0 s')`,
			`CREATE TABLE gate_was_here (id int)`,
		)
	})

	t.Run("loopgate_enrolment", func(t *testing.T) {
		enrURL, _ := loginURL(t, ctx, admin, dbURL, "loopgate_enrolment")
		enr := loginPool(t, ctx, enrURL, "loopgate_enrolment")
		if sg, err := gallery.Connect(ctx, enrURL); err != nil {
			t.Errorf("gallery.Connect as loopgate_enrolment: %v", err)
		} else {
			sg.Close()
		}
		// What enroll/ does (registry.go, accounts.go, vault.go), in one
		// transaction per step as there.
		steps := []struct {
			name string
			sql  string
		}{
			{"lock a person", `SELECT id FROM people WHERE external_id = 'roles-test-1' FOR UPDATE`},
			{"register a person", `INSERT INTO people (external_id, name, organisation, home_park) VALUES ('roles-test-2', 'Second Person', 'Org', 'hk')`},
			{"enrol", `INSERT INTO enrolments (person_id, source, operator) SELECT id, 'api', 'officer-1' FROM people WHERE external_id = 'roles-test-2'`},
			{"add a template", `INSERT INTO face_templates (person_id, enrolment_id, embedding, model, photo_sha256, face_box, image_width, image_height)
				SELECT p.id, e.id, array_fill(0.2::real, ARRAY[128])::vector, 'test', sha256('b'), '{0,0,10,10}', 100, 100
				FROM people p JOIN enrolments e ON e.person_id = p.id WHERE p.external_id = 'roles-test-2'`},
			{"history", `INSERT INTO template_history (person_id, template_id, event, actor) SELECT person_id, id, 'added', 'officer-1' FROM face_templates WHERE model = 'test' AND photo_sha256 = sha256('b')`},
			{"seal a photo", `INSERT INTO photos (person_id, sha256, key_id, sealed, expires_at) SELECT id, sha256('b'), 'k1', '\x00', now() - interval '1 s' FROM people WHERE external_id = 'roles-test-2'`},
			{"register for gates", `INSERT INTO person_gates (person_id, gate) SELECT id, unnest(ARRAY['bridge1-north', 'bridge1']) FROM people WHERE external_id = 'roles-test-2' ON CONFLICT DO NOTHING`},
			{"replace the gates", `DELETE FROM person_gates WHERE person_id = (SELECT id FROM people WHERE external_id = 'roles-test-2') AND gate <> ALL(ARRAY['bridge1-north'])`},
			{"revoke", `UPDATE people SET status = 'revoked', revoked_at = now(), revoked_reason = 'test', updated_at = now() WHERE external_id = 'roles-test-2'`},
			{"replace templates", `DELETE FROM face_templates WHERE person_id = (SELECT id FROM people WHERE external_id = 'roles-test-2') RETURNING id`},
			{"expire photos", `DELETE FROM photos WHERE expires_at <= now()`},
			{"audit", `INSERT INTO enrolment_audit (actor, actor_kind, action, subject) VALUES ('officer-1', 'account', 'enrol', 'roles-test-2')`},
			{"read the audit log", `SELECT count(*) FROM enrolment_audit`},
			{"add an account", `INSERT INTO accounts (username, role, password_hash) VALUES ('officer-1', 'officer', 'x') RETURNING id`},
			{"disable an account", `UPDATE accounts SET disabled_at = now() WHERE username = 'officer-1' AND disabled_at IS NULL`},
			{"add a token", `INSERT INTO api_tokens (name, role, secret_sha256, created_by) VALUES ('reader', 'officer', sha256('t'), 'admin') RETURNING id`},
			{"revoke a token", `UPDATE api_tokens SET revoked_at = now() WHERE name = 'reader' AND revoked_at IS NULL RETURNING name`},
			// Erasure of a person with a recorded decision: the row stays,
			// person_id becomes NULL (the schema's ON DELETE SET NULL, run
			// as the table owner).
			{"erase a person", `DELETE FROM people WHERE external_id = 'roles-test-1'`},
		}
		for _, s := range steps {
			if _, err := queryAll(ctx, enr, s.sql); err != nil {
				t.Errorf("enrolment may %s, but: %v", s.name, err)
			}
		}
		var kept int
		var person *int64
		if err := admin.QueryRow(ctx, `SELECT count(*), max(person_id) FROM decisions WHERE event_id = 'bridge1-north/lane-a/1'`).Scan(&kept, &person); err != nil {
			t.Fatal(err)
		}
		if kept != 1 || person != nil {
			t.Errorf("after erasing the person: %d decision rows, person_id %v; want the row kept with person_id NULL", kept, person)
		}
		refused(t, ctx, enr,
			`SELECT * FROM decisions`,
			`DELETE FROM decisions`,
			`UPDATE decisions SET reason = reason`,
			`TRUNCATE decisions`,
			`INSERT INTO decisions (event_id, gate, camera, track_id, decision, reason, threshold, frames_used, first_seen, decided_at, event) VALUES ('x', 'g', 'c', 1, 'open', 'matched', 0.4, 3, now(), now(), '{}')`,
			`UPDATE enrolment_audit SET actor = actor`,
			`DELETE FROM enrolment_audit`,
			`TRUNCATE enrolment_audit`,
			`DELETE FROM accounts`,
			`DELETE FROM api_tokens`,
			`DELETE FROM enrolments`,
			`DELETE FROM template_history`,
			`UPDATE face_templates SET model = model`,
			`DELETE FROM gallery_changes`,
			`SELECT gallery_changes_prune(interval '0 s')`,
			`SELECT * FROM gallery_heartbeats`,
			`TRUNCATE people`,
			`CREATE TABLE enrolment_was_here (id int)`,
		)
	})
}

// TestRolesNeedMigratedSchema: roles.sql refuses a schema without the
// loopgate tables and says what to do.
func TestRolesNeedMigratedSchema(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := connect(t, ctx, testenv.DatabaseURL(t))
	_, err := admin.Exec(ctx, string(readFile(t, deployFile(t, "roles.sql"))))
	if err == nil || !strings.Contains(err.Error(), "run `loopgate migrate` first") {
		t.Fatalf("roles.sql on an empty schema: %v; want the 'run loopgate migrate first' error", err)
	}
}

func connect(t *testing.T, ctx context.Context, dbURL string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { t.Logf("postgres %s: %s", n.Severity, n.Message) }
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func mustExec(t *testing.T, ctx context.Context, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", oneLine(sql), err)
	}
}

// loginURL creates a login role that inherits group (dropped at the end of
// the test) and returns the test URL with that user and its password.
func loginURL(t *testing.T, ctx context.Context, admin *pgx.Conn, dbURL, group string) (string, string) {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "lgtest_" + hex.EncodeToString(b[:])
	_, _ = rand.Read(b[:])
	password := hex.EncodeToString(b[:])
	mustExec(t, ctx, admin, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD '%s' IN ROLE %s`, name, password, group))
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), dbURL)
		if err != nil {
			t.Logf("drop role %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), `DROP ROLE IF EXISTS `+name); err != nil {
			t.Logf("drop role %s: %v", name, err)
		}
	})
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(name, password)
	return u.String(), name
}

// loginPool connects a pool as the login role of loginURL.
func loginPool(t *testing.T, ctx context.Context, loginURL, group string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(ctx, loginURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close) // runs before the role is dropped
	if err := p.Ping(ctx); err != nil {
		t.Fatalf("connect as a %s login: %v", group, err)
	}
	return p
}

func queryAll(ctx context.Context, p *pgxpool.Pool, sql string) (int, error) {
	rows, err := p.Query(ctx, sql)
	if err != nil {
		return 0, err
	}
	n := 0
	for rows.Next() {
		n++
	}
	return n, rows.Err()
}

// refused checks that each statement fails with SQLSTATE 42501
// (insufficient_privilege).
func refused(t *testing.T, ctx context.Context, p *pgxpool.Pool, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		_, err := p.Exec(ctx, q)
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			t.Errorf("%q succeeded; want permission denied", oneLine(q))
		case !errors.As(err, &pgErr) || pgErr.Code != "42501":
			t.Errorf("%q: %v; want SQLSTATE 42501", oneLine(q), err)
		default:
			t.Logf("refused as expected: %q: %s (%s)", oneLine(q), pgErr.Message, pgErr.Code)
		}
	}
}

// grantsInSchema lists, per role, the privileges the two group roles hold on
// the current schema's tables, columns and sequences.
func grantsInSchema(t *testing.T, ctx context.Context, c *pgx.Conn) map[string][]string {
	t.Helper()
	rows, err := c.Query(ctx, `
		SELECT r.rolname, c.relname, a.privilege_type
		FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee
		WHERE c.relnamespace = current_schema()::regnamespace AND r.rolname IN ('loopgate_gate', 'loopgate_enrolment')
		UNION ALL
		SELECT r.rolname, c.relname || '.' || att.attname, a.privilege_type
		FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid
		CROSS JOIN LATERAL aclexplode(att.attacl) a JOIN pg_roles r ON r.oid = a.grantee
		WHERE c.relnamespace = current_schema()::regnamespace AND r.rolname IN ('loopgate_gate', 'loopgate_enrolment')`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for rows.Next() {
		var role, obj, priv string
		if err := rows.Scan(&role, &obj, &priv); err != nil {
			t.Fatal(err)
		}
		out[role] = append(out[role], obj+" "+priv)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
