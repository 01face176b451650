package deploy_test

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/enroll/service"
	"github.com/loopgate/loopgate/node"
)

// clearEnv removes the environment overrides of node and enrolment
// configurations for the test (restored afterwards), so the files alone
// are tested.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, o := range node.EnvOverrides {
		t.Setenv(o.Name, "")
		os.Unsetenv(o.Name)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	os.Unsetenv("CREDENTIALS_DIRECTORY")
}

// TestGateNodeConfigs loads deploy/nodes/gate-*.yaml with node.Load (what
// `loopgate serve --check` does) and checks what the deployment relies on:
// two parks, one primary for decisions, each park's replica for the
// gallery, secrets only as systemd credential files of the right unit
// instance, state in the unit's StateDirectory.
func TestGateNodeConfigs(t *testing.T) {
	clearEnv(t)
	files, err := filepath.Glob(deployFile(t, "nodes/gate-*.yaml"))
	if err != nil || len(files) != 2 {
		t.Fatalf("deploy/nodes/gate-*.yaml: %v %v; want the two parks' nodes", files, err)
	}
	primaries := map[string]bool{}
	replicas := map[string]bool{}
	for _, f := range files {
		instance := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "gate-"), ".yaml")
		creds := "/run/credentials/loopgate-gate@" + instance + ".service/"
		state := "/var/lib/loopgate/gate-" + instance + "/"
		t.Run(instance, func(t *testing.T) {
			cfg, err := node.Load(f)
			if err != nil {
				t.Fatalf("node.Load: %v", err)
			}
			t.Logf("%s: gate %s, scope %v, %d camera(s), read_url host %s, max_staleness %s",
				filepath.Base(f), cfg.Gate, cfg.Scope(), len(cfg.Cameras), host(t, cfg.Database.ReadURL), cfg.Gallery.MaxStaleness)
			if cfg.Database.ReadURL == "" || host(t, cfg.Database.ReadURL) == host(t, cfg.Database.URL) {
				t.Errorf("database.read_url %q: want the park's replica, not the primary %q", cfg.Database.ReadURL, cfg.Database.URL)
			}
			primaries[host(t, cfg.Database.URL)] = true
			replicas[host(t, cfg.Database.ReadURL)] = true
			if cfg.Gallery.MaxStaleness != 5*time.Minute {
				t.Errorf("gallery.max_staleness %s; alerts.yml's LoopgateGalleryCopyNearlyStale assumes 5m", cfg.Gallery.MaxStaleness)
			}
			if !strings.HasPrefix(cfg.Sinks.AuditSpool.Dir, state) {
				t.Errorf("sinks.audit_spool.dir %q: want it in the unit's StateDirectory %s", cfg.Sinks.AuditSpool.Dir, state)
			}
			if !strings.HasPrefix(cfg.Gallery.Snapshot, state) {
				t.Errorf("gallery.snapshot %q: want it in the unit's StateDirectory %s", cfg.Gallery.Snapshot, state)
			}
			for _, u := range []string{cfg.Database.URL, cfg.Database.ReadURL} {
				pu, err := url.Parse(u)
				if err != nil {
					t.Fatal(err)
				}
				if _, has := pu.User.Password(); has || pu.Query().Has("password") {
					t.Errorf("a password in the database URL %s", pu.Redacted())
				}
				if pf := pu.Query().Get("passfile"); !strings.HasPrefix(pf, creds) {
					t.Errorf("database URL passfile %q: want the unit's credential %spgpass", pf, creds)
				}
				if pu.Query().Get("sslmode") != "verify-full" {
					t.Errorf("database URL sslmode %q: want verify-full between parks", pu.Query().Get("sslmode"))
				}
			}
			if !strings.HasPrefix(cfg.HTTP.TLSKey, creds) || cfg.HTTP.TLSCert == "" {
				t.Errorf("http.tls_key %q: want TLS, the key as the unit's credential under %s", cfg.HTTP.TLSKey, creds)
			}
			if w := cfg.Sinks.Webhook; w == nil || !strings.HasPrefix(w.BearerTokenFile, creds) || !strings.HasPrefix(w.URL, "https://") {
				t.Errorf("sinks.webhook: want an https gate controller with its token as the unit's credential under %s", creds)
			}
			if cfg.Sinks.Stdout {
				t.Error("sinks.stdout: decisions (with names) would go to the journal")
			}
			if !cfg.Sinks.Audit {
				t.Error("sinks.audit: every decision must reach the decisions table")
			}
		})
	}
	if len(primaries) != 1 || len(replicas) != 2 {
		t.Errorf("primaries %v, replicas %v: want one primary for both parks and one replica per park", primaries, replicas)
	}
}

func host(t *testing.T, u string) string {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatalf("%q: %v", u, err)
	}
	return pu.Host
}

// TestEnrolmentConfig loads deploy/nodes/enrolment.yaml as the unit would
// run it: its database URL from the credentials directory.
func TestEnrolmentConfig(t *testing.T) {
	clearEnv(t)
	creds := t.TempDir()
	const dbURL = "postgres://enrolment@db-primary.loopgate.internal:5432/loopgate?sslmode=verify-full"
	if err := os.WriteFile(filepath.Join(creds, "database-url"), []byte(dbURL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	cfg, err := service.Load(deployFile(t, "nodes/enrolment.yaml"))
	if err != nil {
		t.Fatalf("service.Load: %v", err)
	}
	if cfg.Database.URL != dbURL {
		t.Errorf("database URL %q, want the credential's %q", cfg.Database.URL, dbURL)
	}
	if cfg.Database.Migrate == nil || *cfg.Database.Migrate {
		t.Error("database.migrate: the loopgate_enrolment role may not change the schema; want false")
	}
	if cfg.HTTP.TLSCertFile == "" || !strings.HasPrefix(cfg.HTTP.TLSKeyFile, "${CREDENTIALS_DIRECTORY}/") {
		t.Errorf("http TLS: cert %q key %q; want TLS with the key from the credentials directory", cfg.HTTP.TLSCertFile, cfg.HTTP.TLSKeyFile)
	}
	t.Logf("enrolment.yaml: listen %s, photo retention %v, migrate %v", cfg.HTTP.Addr, cfg.Photos.Retain, *cfg.Database.Migrate)
}
