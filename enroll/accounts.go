package enroll

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/crypto/argon2"
)

// Argon2id parameters: RFC 9106's second recommended option (64 MiB,
// 3 passes) with 2 lanes for a 2-core server: ~100 ms per login here,
// which makes offline guessing of a stolen hash expensive and online
// guessing is rate limited anyway.
const (
	argonTime    = 3
	argonMemory  = 64 * 1024
	argonThreads = 2
	argonKeyLen  = 32
	// MinPasswordLength follows NIST SP 800-63B's advice of length over
	// composition rules.
	MinPasswordLength = 12
)

// Account is an officer's or admin's login.
type Account struct {
	ID         int64      `json:"id"`
	Username   string     `json:"username"`
	Role       string     `json:"role"`
	CreatedAt  time.Time  `json:"created_at"`
	DisabledAt *time.Time `json:"disabled_at"`
}

// APIToken is a machine credential; its secret is shown once, at creation.
type APIToken struct {
	ID         int64      `json:"id"`
	Name       string     `json:"name"`
	Role       string     `json:"role"`
	CreatedBy  string     `json:"created_by"`
	CreatedAt  time.Time  `json:"created_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

// Accounts stores officers' accounts and API tokens.
type Accounts struct {
	pool *pgxpool.Pool
	// dummy is a hash checked when the user does not exist, so a login
	// for an unknown user costs as much as one with a wrong password.
	dummyOnce sync.Once
	dummy     string
}

// NewAccounts uses pool (schema migrated).
func NewAccounts(pool *pgxpool.Pool) *Accounts { return &Accounts{pool: pool} }

var (
	usernameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,63}$`)
	roles      = []string{RoleOfficer, RoleAdmin}
)

func hashPassword(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("enroll: salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// verifyPassword checks a PHC argon2id string, with the parameters it
// records (so raising the cost later keeps old hashes valid).
func verifyPassword(encoded, password string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var version int
	var m uint32
	var t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 || m > 1<<21 || t > 16 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 || len(want) > 64 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

func checkPassword(pw string) error {
	if utf8.RuneCountInString(pw) < MinPasswordLength || len(pw) > 1024 || !utf8.ValidString(pw) {
		return invalid("password", "must be %d to 1024 characters", MinPasswordLength)
	}
	return nil
}

func checkRole(role string) error {
	if !slices.Contains(roles, role) {
		return invalid("role", "must be %q or %q", RoleOfficer, RoleAdmin)
	}
	return nil
}

// requireAdmin lets the CLI (run on the server by whoever holds the
// database credentials) and admins manage accounts.
func requireAdmin(by Actor) error {
	if by.Kind == "cli" || by.isAdmin() {
		return nil
	}
	return fmt.Errorf("managing accounts: %w", ErrForbidden)
}

// AddUser creates an account. Only admins (or the CLI) may.
func (a *Accounts) AddUser(ctx context.Context, by Actor, username, password, role string) (Account, error) {
	if err := requireAdmin(by); err != nil {
		return Account{}, err
	}
	if !usernameRe.MatchString(username) {
		return Account{}, invalid("username", "must be 2-64 lowercase letters, digits, '.', '_' or '-'")
	}
	if err := checkPassword(password); err != nil {
		return Account{}, err
	}
	if err := checkRole(role); err != nil {
		return Account{}, err
	}
	hash, err := hashPassword(password)
	if err != nil {
		return Account{}, err
	}
	var acc Account
	err = pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO accounts (username, role, password_hash) VALUES ($1, $2, $3)
			RETURNING id, username, role, created_at, disabled_at`, username, role, hash).
			Scan(&acc.ID, &acc.Username, &acc.Role, &acc.CreatedAt, &acc.DisabledAt)
		if isUniqueViolation(err) {
			return fmt.Errorf("account %q: %w", username, ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("enroll: add account: %w", err)
		}
		return audit(ctx, tx, by, "account.created", username, 0, map[string]any{"role": role})
	})
	return acc, err
}

// SetPassword changes an account's password (admins, the CLI, or the
// account holder).
func (a *Accounts) SetPassword(ctx context.Context, by Actor, username, password string) error {
	if by.Name != username || by.Kind != "account" {
		if err := requireAdmin(by); err != nil {
			return err
		}
	}
	if err := checkPassword(password); err != nil {
		return err
	}
	hash, err := hashPassword(password)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE accounts SET password_hash = $2 WHERE username = $1`, username, hash)
		if err != nil {
			return fmt.Errorf("enroll: set password: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("account %q: %w", username, ErrNotFound)
		}
		return audit(ctx, tx, by, "account.password_set", username, 0, nil)
	})
}

// Authenticate checks a username and password. Every failure is
// ErrBadCredentials, and an unknown user costs the same hash as a known one.
func (a *Accounts) Authenticate(ctx context.Context, username, password string) (Account, error) {
	var acc Account
	var hash string
	err := a.pool.QueryRow(ctx, `SELECT id, username, role, created_at, disabled_at, password_hash FROM accounts WHERE username = $1`,
		username).Scan(&acc.ID, &acc.Username, &acc.Role, &acc.CreatedAt, &acc.DisabledAt, &hash)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		a.dummyOnce.Do(func() { a.dummy, _ = hashPassword("loopgate-dummy-password") })
		verifyPassword(a.dummy, password)
		return Account{}, ErrBadCredentials
	case err != nil:
		return Account{}, fmt.Errorf("enroll: authenticate: %w", err)
	}
	if !verifyPassword(hash, password) || acc.DisabledAt != nil {
		return Account{}, ErrBadCredentials
	}
	return acc, nil
}

// ListUsers lists the accounts (never a nil slice).
func (a *Accounts) ListUsers(ctx context.Context) ([]Account, error) {
	rows, err := a.pool.Query(ctx, `SELECT id, username, role, created_at, disabled_at FROM accounts ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("enroll: list accounts: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Account])
	if out == nil {
		out = []Account{}
	}
	return out, err
}

// DisableUser stops an account from logging in. Its live web sessions end
// at their next request (the API re-checks the account).
func (a *Accounts) DisableUser(ctx context.Context, by Actor, username string) error {
	if err := requireAdmin(by); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE accounts SET disabled_at = now() WHERE username = $1 AND disabled_at IS NULL`, username)
		if err != nil {
			return fmt.Errorf("enroll: disable account: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("active account %q: %w", username, ErrNotFound)
		}
		return audit(ctx, tx, by, "account.disabled", username, 0, nil)
	})
}

// Active reports whether the account still exists and is enabled, and its
// current role (sessions call it so a disabled account's session stops).
func (a *Accounts) Active(ctx context.Context, username string) (Account, error) {
	var acc Account
	err := a.pool.QueryRow(ctx, `SELECT id, username, role, created_at, disabled_at FROM accounts WHERE username = $1 AND disabled_at IS NULL`,
		username).Scan(&acc.ID, &acc.Username, &acc.Role, &acc.CreatedAt, &acc.DisabledAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, ErrBadCredentials
	}
	if err != nil {
		return Account{}, fmt.Errorf("enroll: account: %w", err)
	}
	return acc, nil
}

// TokenPrefix starts every API token secret, so a leaked one is easy to
// recognise in logs and by secret scanners.
const TokenPrefix = "lgt_"

// CreateToken makes a machine credential and returns its secret once.
func (a *Accounts) CreateToken(ctx context.Context, by Actor, name, role string) (string, APIToken, error) {
	if err := requireAdmin(by); err != nil {
		return "", APIToken{}, err
	}
	name = strings.TrimSpace(name)
	if err := checkText("name", name, 1, 64); err != nil {
		return "", APIToken{}, err
	}
	if err := checkRole(role); err != nil {
		return "", APIToken{}, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", APIToken{}, fmt.Errorf("enroll: token: %w", err)
	}
	secret := TokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(secret))
	var t APIToken
	err := pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO api_tokens (name, role, secret_sha256, created_by) VALUES ($1, $2, $3, $4)
			RETURNING id, name, role, created_by, created_at, revoked_at, last_used_at`, name, role, sum[:], by.Name).
			Scan(&t.ID, &t.Name, &t.Role, &t.CreatedBy, &t.CreatedAt, &t.RevokedAt, &t.LastUsedAt)
		if isUniqueViolation(err) {
			return fmt.Errorf("token %q: %w", name, ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("enroll: create token: %w", err)
		}
		return audit(ctx, tx, by, "token.created", name, 0, map[string]any{"token_id": t.ID, "role": role})
	})
	if err != nil {
		return "", APIToken{}, err
	}
	return secret, t, nil
}

// LookupToken finds the live token for a secret. The secret is 256 random
// bits, so looking it up by its SHA-256 leaks nothing useful by timing.
func (a *Accounts) LookupToken(ctx context.Context, secret string) (APIToken, error) {
	if !strings.HasPrefix(secret, TokenPrefix) || len(secret) > 128 {
		return APIToken{}, ErrBadCredentials
	}
	sum := sha256.Sum256([]byte(secret))
	var t APIToken
	err := a.pool.QueryRow(ctx, `UPDATE api_tokens SET last_used_at = now()
		WHERE secret_sha256 = $1 AND revoked_at IS NULL
		RETURNING id, name, role, created_by, created_at, revoked_at, last_used_at`, sum[:]).
		Scan(&t.ID, &t.Name, &t.Role, &t.CreatedBy, &t.CreatedAt, &t.RevokedAt, &t.LastUsedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return APIToken{}, ErrBadCredentials
	}
	if err != nil {
		return APIToken{}, fmt.Errorf("enroll: token: %w", err)
	}
	return t, nil
}

// RevokeToken ends a token for good.
func (a *Accounts) RevokeToken(ctx context.Context, by Actor, id int64) error {
	if err := requireAdmin(by); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		var name string
		err := tx.QueryRow(ctx, `UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING name`, id).Scan(&name)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("live token %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("enroll: revoke token: %w", err)
		}
		return audit(ctx, tx, by, "token.revoked", name, 0, map[string]any{"token_id": id})
	})
}

// ListTokens lists tokens, never their secrets (never a nil slice).
func (a *Accounts) ListTokens(ctx context.Context) ([]APIToken, error) {
	rows, err := a.pool.Query(ctx, `SELECT id, name, role, created_by, created_at, revoked_at, last_used_at FROM api_tokens ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("enroll: list tokens: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[APIToken])
	if out == nil {
		out = []APIToken{}
	}
	return out, err
}

// RecordLogin audits a login attempt (success or failure) with where it
// came from; failures name the username tried, not the password.
func (a *Accounts) RecordLogin(ctx context.Context, username, remoteAddr string, ok bool) error {
	action := "login.failed"
	role := ""
	if ok {
		action = "login.succeeded"
		if acc, err := a.Active(ctx, username); err == nil {
			role = acc.Role
		}
	}
	return pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		return audit(ctx, tx, Actor{Name: username, Kind: "account", Role: role, RemoteAddr: remoteAddr}, action, username, 0, nil)
	})
}
