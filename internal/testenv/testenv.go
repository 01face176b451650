// Package testenv locates the real resources integration tests need: the
// verified model directory, the shared data set and a PostgreSQL database
// with pgvector. Outside CI a missing resource skips the test with a loud
// reason; under CI (CI=true) it fails the test, so nothing is skipped silently.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Root returns the project root (the directory holding go.mod).
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testenv: go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// Unavailable skips the test, or fails it under CI, with the reason.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("REQUIRED RESOURCE MISSING under CI: %s", msg)
	}
	t.Skipf("SKIPPED, resource missing: %s (run `make test` to set everything up)", msg)
}

// ModelDir returns a model directory holding the manifest's files.
func ModelDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("LOOPGATE_MODEL_DIR")
	if dir == "" {
		dir = filepath.Join(Root(t), ".loopgate", "models")
	}
	if _, err := os.Stat(filepath.Join(dir, "dlib_face_recognition_resnet_model_v1.dat")); err != nil {
		Unavailable(t, "model directory %s: %v", dir, err)
	}
	return dir
}

// SharedDir returns the shared data directory (../shared by default).
func SharedDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("LOOPGATE_SHARED_DIR")
	if dir == "" {
		dir = filepath.Join(Root(t), "..", "shared")
	}
	if _, err := os.Stat(filepath.Join(dir, "datasets", "lfw", "images")); err != nil {
		Unavailable(t, "shared data set at %s: %v", dir, err)
	}
	return dir
}

// SharedFile reads a file under the shared directory.
func SharedFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(SharedDir(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// DatabaseURL returns the URL of a fresh, empty schema in the test database
// named by LOOPGATE_TEST_DATABASE_URL, dropped when the test ends. Each test
// gets its own schema, so packages can run in parallel.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("LOOPGATE_TEST_DATABASE_URL")
	if base == "" {
		Unavailable(t, "LOOPGATE_TEST_DATABASE_URL is not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		Unavailable(t, "connect to LOOPGATE_TEST_DATABASE_URL: %v", err)
	}
	defer conn.Close(ctx)
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	schema := "test_" + hex.EncodeToString(suffix[:])
	// The extension is per database; create it once, serialised, so parallel
	// test packages do not race on it.
	for _, q := range []string{
		`SELECT pg_advisory_lock(4242)`,
		`CREATE EXTENSION IF NOT EXISTS vector`,
		`SELECT pg_advisory_unlock(4242)`,
		`CREATE SCHEMA ` + schema,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("testenv: %s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("testenv: drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Logf("testenv: drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", strings.Join([]string{schema, "public"}, ","))
	u.RawQuery = q.Encode()
	return u.String()
}
