package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/loopgate/loopgate/internal/webauth"
)

// Roles a token can carry.
const (
	// RoleOperator may watch the live page and the decision stream: both
	// show names.
	RoleOperator = "operator"
	// RoleLane may make 1:1 claims at a lane.
	RoleLane = "lane"
)

var knownRoles = []string{RoleOperator, RoleLane}

// Token is one credential. Only the SHA-256 of the secret is configured:
// the server never stores or compares a plain secret.
type Token struct {
	// Name says whose token it is (logs, the page header).
	Name string
	// SHA256 is the lowercase hex SHA-256 of the secret (see HashToken).
	SHA256 string
	Roles  []string
}

// HashToken returns the value for Token.SHA256.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// NewTokenSecret returns a fresh random secret (256 bits, base64url) for a
// client, and its hash for the server's configuration.
func NewTokenSecret() (secret, sha256Hex string, err error) {
	secret, err = webauth.RandomString(32)
	if err != nil {
		return "", "", err
	}
	return secret, HashToken(secret), nil
}

type credential struct {
	name  string
	hash  [32]byte
	roles []string
}

func parseTokens(tokens []Token) ([]credential, error) {
	var creds []credential
	names := map[string]bool{}
	hashes := map[[32]byte]bool{}
	for i, t := range tokens {
		if t.Name == "" {
			return nil, fmt.Errorf("%w: token %d has no name", ErrBadConfig, i)
		}
		if names[t.Name] {
			return nil, fmt.Errorf("%w: token name %q used twice", ErrBadConfig, t.Name)
		}
		names[t.Name] = true
		raw, err := hex.DecodeString(strings.ToLower(t.SHA256))
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("%w: token %q: SHA256 must be 64 hex digits (the hash of the secret, not the secret)", ErrBadConfig, t.Name)
		}
		var h [32]byte
		copy(h[:], raw)
		if hashes[h] {
			return nil, fmt.Errorf("%w: token %q: same secret as another token", ErrBadConfig, t.Name)
		}
		hashes[h] = true
		if len(t.Roles) == 0 {
			return nil, fmt.Errorf("%w: token %q has no roles", ErrBadConfig, t.Name)
		}
		for _, r := range t.Roles {
			if !slices.Contains(knownRoles, r) {
				return nil, fmt.Errorf("%w: token %q: unknown role %q (known: %s)", ErrBadConfig, t.Name, r, strings.Join(knownRoles, ", "))
			}
		}
		creds = append(creds, credential{name: t.Name, hash: h, roles: slices.Clone(t.Roles)})
	}
	return creds, nil
}

// lookup finds the credential for a presented secret. It hashes the secret
// and compares against every configured hash in constant time, without
// stopping at a match, so timing says nothing about which token matched.
func lookup(creds []credential, secret string) (credential, bool) {
	h := sha256.Sum256([]byte(secret))
	found := -1
	for i := range creds {
		if subtle.ConstantTimeCompare(h[:], creds[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 || secret == "" {
		return credential{}, false
	}
	return creds[found], true
}

// principal is who made a request.
type principal struct {
	name    string
	roles   []string
	session *webauth.Session // nil for bearer tokens
}

func (p principal) has(role string) bool { return slices.Contains(p.roles, role) }
