package enroll

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PhotoVault keeps enrolment photos when a site turns retention on. Each
// photo is sealed with AES-256-GCM under a key that lives in a file outside
// the database (and outside any web root); the person's and template's ids
// are bound in as associated data, so a sealed photo cannot be moved to
// another person. Photos expire after Retention and PurgeExpired deletes
// them. Without a vault only templates are stored.
type PhotoVault struct {
	aead      cipher.AEAD
	keyID     string
	retention time.Duration
	now       func() time.Time
}

// ErrVaultKey: the key file is missing, unreadable or not 32 bytes.
var ErrVaultKey = errors.New("enroll: photo vault key must be 32 random bytes (raw or 64 hex digits)")

// NewPhotoVault reads the key from keyFile. The file must not be readable
// by group or others.
func NewPhotoVault(keyFile string, retention time.Duration) (*PhotoVault, error) {
	if retention <= 0 {
		return nil, errors.New("enroll: photo retention must be positive")
	}
	st, err := os.Stat(keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrVaultKey, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s is readable by group or others (mode %v); chmod 600 it", ErrVaultKey, keyFile, st.Mode().Perm())
	}
	raw, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrVaultKey, err)
	}
	key := bytes.TrimSpace(raw)
	if len(key) == 64 {
		if key, err = hex.DecodeString(string(key)); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrVaultKey, err)
		}
	}
	if len(key) != 32 {
		return nil, ErrVaultKey
	}
	return newVault(key, retention)
}

func newVault(key []byte, retention time.Duration) (*PhotoVault, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(key)
	return &PhotoVault{aead: aead, keyID: hex.EncodeToString(sum[:4]), retention: retention, now: time.Now}, nil
}

func associated(personID, templateID int64) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, uint64(personID))
	binary.BigEndian.PutUint64(b[8:], uint64(templateID))
	return b
}

func (v *PhotoVault) store(ctx context.Context, tx pgx.Tx, personID, templateID int64, shaHex string, data []byte) error {
	nonce := make([]byte, v.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("enroll: vault nonce: %w", err)
	}
	sealed := v.aead.Seal(nonce, nonce, data, associated(personID, templateID))
	if _, err := tx.Exec(ctx, `INSERT INTO photos (person_id, template_id, sha256, key_id, sealed, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, personID, templateID, sha(shaHex), v.keyID, sealed, v.now().Add(v.retention)); err != nil {
		return fmt.Errorf("enroll: store photo: %w", err)
	}
	return nil
}

// Open returns the photo kept for a template (for an admin's review).
func (v *PhotoVault) Open(ctx context.Context, pool *pgxpool.Pool, externalID string, templateID int64) ([]byte, error) {
	var personID int64
	var keyID string
	var sealed []byte
	err := pool.QueryRow(ctx, `SELECT ph.person_id, ph.key_id, ph.sealed FROM photos ph JOIN people p ON p.id = ph.person_id
		WHERE p.external_id = $1 AND ph.template_id = $2 AND ph.expires_at > now()`, externalID, templateID).Scan(&personID, &keyID, &sealed)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("photo of template %d: %w", templateID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("enroll: read photo: %w", err)
	}
	if keyID != v.keyID {
		return nil, fmt.Errorf("enroll: photo sealed under key %s, vault has %s", keyID, v.keyID)
	}
	n := v.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("enroll: sealed photo is truncated")
	}
	plain, err := v.aead.Open(nil, sealed[:n], sealed[n:], associated(personID, templateID))
	if err != nil {
		return nil, fmt.Errorf("enroll: unseal photo: %w", err)
	}
	return plain, nil
}

// PurgeExpired deletes photos past their retention and returns how many.
func PurgeExpired(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	tag, err := pool.Exec(ctx, `DELETE FROM photos WHERE expires_at <= now()`)
	if err != nil {
		return 0, fmt.Errorf("enroll: purge photos: %w", err)
	}
	return tag.RowsAffected(), nil
}
