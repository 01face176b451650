package service_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/enroll"
	"github.com/loopgate/loopgate/enroll/service"
	"github.com/loopgate/loopgate/internal/testenv"
)

func TestExampleConfigRunsTheService(t *testing.T) {
	t.Setenv("LOOPGATE_DATABASE_URL", testenv.DatabaseURL(t))
	t.Setenv("LOOPGATE_MODEL_DIR", testenv.ModelDir(t))
	cfg, err := service.Load(filepath.Join(testenv.Root(t), "deploy/enrolment.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := service.New(ctx, cfg, service.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Accounts().AddUser(ctx, enroll.Actor{Name: "test", Kind: "cli"}, "ada", "correct horse battery", enroll.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.API().Handler())
	defer hs.Close()
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/api/v1/people": 401} {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp, err := http.Post(hs.URL+"/api/v1/login", "application/json", strings.NewReader(`{"username":"ada","password":"correct horse battery"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("login: %d", resp.StatusCode)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("LOOPGATE_DATABASE_URL", "")
	t.Setenv("LOOPGATE_MODEL_DIR", "")
	urlFile := filepath.Join(dir, "db-url")
	os.WriteFile(urlFile, []byte("postgres://x@/y\n"), 0o600)
	for body, want := range map[string]string{
		"database: {url: x}\nmodels: {dir: m}\nbogus: 1\n": "bogus",
		"models: {dir: m}\n": "database.url",
		"database: {url: x, url_file: " + urlFile + "}\nmodels: {dir: m}\n":               "give one",
		"database: {url: x}\nmodels: {dir: m}\nphotos: {retain: true}\n":                  "photos.key_file",
		"database: {url: x}\nmodels: {dir: m}\nphotos: {retain: true, key_file: k}\n":     "photos.retention",
		"database: {url: x}\nmodels: {dir: m}\nidentity: {duplicate_threshold: 3}\n":      "identity.duplicate_threshold",
		"database: {url_file: " + filepath.Join(dir, "missing") + "}\nmodels: {dir: m}\n": "database.url_file",
	} {
		_, err := service.Load(write(body))
		if !errors.Is(err, service.ErrConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error naming %s", body, err, want)
		}
	}
	cfg, err := service.Load(write("database: {url_file: " + urlFile + "}\nmodels: {dir: m}\nhttp: {session_ttl: 2h}\n"))
	if err != nil || cfg.Database.URL != "postgres://x@/y" || cfg.HTTP.SessionTTL != 2*time.Hour {
		t.Fatalf("url_file: %+v %v", cfg.Database, err)
	}
}

// A service that cannot be provisioned returns the error (and frees what
// it built) instead of panicking in its clean-up.
func TestNewFailsCleanly(t *testing.T) {
	t.Setenv("LOOPGATE_DATABASE_URL", testenv.DatabaseURL(t))
	t.Setenv("LOOPGATE_MODEL_DIR", t.TempDir()) // no models in it
	cfg, err := service.Load(filepath.Join(testenv.Root(t), "deploy/enrolment.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := service.New(context.Background(), cfg, service.Options{}); err == nil || s != nil {
		t.Fatalf("New without models: %v, %v", s, err)
	}
}
