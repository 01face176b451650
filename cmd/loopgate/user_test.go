package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/loopgate/loopgate/enroll"
)

func (h *cliHarness) accounts(t *testing.T) *enroll.Accounts {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), h.db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return enroll.NewAccounts(pool)
}

func secretFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestUserAndTokenCLI drives accounts and tokens through the binary and
// checks the result with the accounts store itself.
func TestUserAndTokenCLI(t *testing.T) {
	ctx := context.Background()
	h := newCLIHarness(t, false) // account commands load no models
	const alicePW, bobPW = "correct horse battery", "bob's long password"

	// The first admin, password from a file (trailing newline dropped).
	res := h.run(t, 0, nil, "user", "add", "--username", "alice", "--role", "admin", "--password-file", secretFile(t, alicePW+"\n"))
	if !strings.Contains(res.stdout, `created admin account "alice"`) {
		t.Fatalf("user add:\n%s", res)
	}
	// An officer, password from the environment.
	h.run(t, 0, []string{passwordEnv + "=" + bobPW}, "user", "add", "--username", "bob", "--role", "officer")

	acc := h.accounts(t)
	if a, err := acc.Authenticate(ctx, "alice", alicePW); err != nil || a.Role != enroll.RoleAdmin {
		t.Fatalf("alice: %+v %v", a, err)
	}
	if _, err := acc.Authenticate(ctx, "bob", bobPW); err != nil {
		t.Fatalf("bob: %v", err)
	}

	// Refusals: taken name, short password, no password source, a plain
	// --password flag, an unknown role.
	res = h.run(t, 1, []string{passwordEnv + "=" + bobPW}, "user", "add", "--username", "bob", "--role", "officer")
	if !strings.Contains(res.stderr, "already exists") {
		t.Fatalf("duplicate user:\n%s", res)
	}
	res = h.run(t, 1, []string{passwordEnv + "=short"}, "user", "add", "--username", "carol", "--role", "officer")
	if !strings.Contains(res.stderr, "password: must be 12 to 1024 characters") {
		t.Fatalf("short password:\n%s", res)
	}
	res = h.run(t, 2, nil, "user", "add", "--username", "carol", "--role", "officer")
	if !strings.Contains(res.stderr, "no terminal to read the password from") {
		t.Fatalf("no password source:\n%s", res)
	}
	h.run(t, 2, nil, "user", "add", "--username", "carol", "--role", "officer", "--password", "x")
	res = h.run(t, 1, []string{passwordEnv + "=" + bobPW}, "user", "add", "--username", "carol", "--role", "boss")
	if !strings.Contains(res.stderr, "role: must be") {
		t.Fatalf("bad role:\n%s", res)
	}

	res = h.run(t, 0, nil, "user", "list")
	if !regexp.MustCompile(`(?m)^alice +admin +\S+ \S+ +active$`).MatchString(res.stdout) ||
		!regexp.MustCompile(`(?m)^bob +officer +\S+ \S+ +active$`).MatchString(res.stdout) || strings.Contains(res.stdout, "carol") {
		t.Fatalf("user list:\n%s", res)
	}

	// passwd: flags after the username work too.
	const newPW = "a brand new passphrase"
	h.run(t, 0, nil, "user", "passwd", "alice", "--password-file", secretFile(t, newPW))
	if _, err := acc.Authenticate(ctx, "alice", newPW); err != nil {
		t.Fatalf("new password: %v", err)
	}
	if _, err := acc.Authenticate(ctx, "alice", alicePW); !errors.Is(err, enroll.ErrBadCredentials) {
		t.Fatalf("old password still works: %v", err)
	}
	h.run(t, 1, []string{passwordEnv + "=" + newPW}, "user", "passwd", "nobody")

	h.run(t, 0, nil, "user", "disable", "bob")
	if _, err := acc.Authenticate(ctx, "bob", bobPW); !errors.Is(err, enroll.ErrBadCredentials) {
		t.Fatalf("disabled bob still logs in: %v", err)
	}
	res = h.run(t, 0, nil, "user", "list")
	if !regexp.MustCompile(`(?m)^bob +officer +\S+ \S+ +disabled `).MatchString(res.stdout) {
		t.Fatalf("user list after disable:\n%s", res)
	}
	h.run(t, 1, nil, "user", "disable", "bob")
	h.run(t, 2, nil, "user", "disable")
	h.run(t, 2, nil, "user", "frobnicate")

	// token add: the secret alone on stdout, once.
	res = h.run(t, 0, nil, "token", "add", "--name", "lane-a-reader", "--role", "officer")
	secret := strings.TrimSpace(res.stdout)
	if !strings.HasPrefix(secret, enroll.TokenPrefix) || strings.Contains(secret, "\n") || !strings.Contains(res.stderr, "shown only this once") {
		t.Fatalf("token add:\n%s", res)
	}
	tok, err := acc.LookupToken(ctx, secret)
	if err != nil || tok.Name != "lane-a-reader" || tok.Role != enroll.RoleOfficer {
		t.Fatalf("token lookup: %+v %v", tok, err)
	}
	h.run(t, 1, nil, "token", "add", "--name", "lane-a-reader", "--role", "officer")
	res = h.run(t, 0, nil, "token", "list")
	if strings.Contains(res.stdout, secret) ||
		!regexp.MustCompile(`(?m)^`+itoa(tok.ID)+` +lane-a-reader +officer +\S+ +\S+ \S+ +\S+ \S+ +active$`).MatchString(res.stdout) {
		t.Fatalf("token list:\n%s", res)
	}
	h.run(t, 0, nil, "token", "revoke", itoa(tok.ID))
	if _, err := acc.LookupToken(ctx, secret); !errors.Is(err, enroll.ErrBadCredentials) {
		t.Fatalf("revoked token still works: %v", err)
	}
	res = h.run(t, 0, nil, "token", "list")
	if !regexp.MustCompile(`(?m)^` + itoa(tok.ID) + ` +lane-a-reader .* revoked `).MatchString(res.stdout) {
		t.Fatalf("token list after revoke:\n%s", res)
	}
	h.run(t, 1, nil, "token", "revoke", itoa(tok.ID))
	h.run(t, 2, nil, "token", "revoke", "abc")

	// Every change is audited as the CLI.
	var n int
	var kinds string
	if err := h.conn(t).QueryRow(ctx, `SELECT count(*), string_agg(DISTINCT actor_kind, ',') FROM enrolment_audit
		WHERE action IN ('account.created', 'account.password_set', 'account.disabled', 'token.created', 'token.revoked')`).Scan(&n, &kinds); err != nil {
		t.Fatal(err)
	}
	if n != 6 || kinds != "cli" {
		t.Fatalf("audit: %d entries by %q, want 6 by cli", n, kinds)
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
