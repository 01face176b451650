package deploy_test

import (
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/loopgate/loopgate/enroll/service"
	"github.com/loopgate/loopgate/node"
)

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Command    []string       `yaml:"command"`
	Entrypoint []string       `yaml:"entrypoint"`
	Env        map[string]any `yaml:"environment"`
	Secrets    []string       `yaml:"secrets"`
	Volumes    []string       `yaml:"volumes"`
	DependsOn  map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Ports []string `yaml:"ports"`
}

type composeFile struct {
	Services map[string]composeService        `yaml:"services"`
	Secrets  map[string]struct{ File string } `yaml:"secrets"`
	Volumes  map[string]any                   `yaml:"volumes"`
}

// TestComposeFile checks deploy/compose.yaml without docker (not installed
// on the build machine): it parses, has the services of the reference
// deployment, every file it mounts exists (or is made by `make demo` /
// make-secrets.sh, which is run here), the configurations it mounts load,
// and the names that must agree (secrets, roles, hosts, ports) do.
func TestComposeFile(t *testing.T) {
	clearEnv(t)
	dir := deployDir(t)
	var c composeFile
	raw := readFile(t, filepath.Join(dir, "compose.yaml"))
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	var names []string
	for n := range c.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	want := []string{"db-migrate", "db-primary", "db-replica", "db-roles", "enrolment", "gate-hk-lane-a", "gate-sz-lane-b", "grafana", "prometheus"}
	if !slices.Equal(names, want) {
		t.Errorf("services %v, want %v", names, want)
	}

	// make-secrets.sh creates exactly the secrets compose names, keeps them
	// on a second run, in a directory only its owner can enter.
	secretsDir := filepath.Join(t.TempDir(), "secrets")
	t.Setenv("SECRETS_DIR", secretsDir)
	runTool(t, dir, time.Minute, "bash", "compose/make-secrets.sh")
	first := readFile(t, filepath.Join(secretsDir, "db-owner-password"))
	runTool(t, dir, time.Minute, "bash", "compose/make-secrets.sh")
	if second := readFile(t, filepath.Join(secretsDir, "db-owner-password")); string(first) != string(second) {
		t.Error("make-secrets.sh replaced an existing secret")
	}
	if st, err := os.Stat(secretsDir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("secrets directory mode %v (%v), want 0700", st.Mode().Perm(), err)
	}
	made, _ := filepath.Glob(filepath.Join(secretsDir, "*"))
	var madeNames, declared []string
	for _, m := range made {
		madeNames = append(madeNames, filepath.Base(m))
	}
	for name, s := range c.Secrets {
		declared = append(declared, name)
		if s.File != "./compose/secrets/"+name {
			t.Errorf("secret %s: file %s, want ./compose/secrets/%s", name, s.File, name)
		}
	}
	sort.Strings(madeNames)
	sort.Strings(declared)
	if !slices.Equal(madeNames, declared) {
		t.Errorf("make-secrets.sh makes %v, compose.yaml declares %v", madeNames, declared)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "compose/.gitignore")); err != nil || !strings.Contains(string(b), "secrets/") {
		t.Error("deploy/compose/.gitignore must keep secrets/ out of the repository")
	}

	for _, name := range names {
		s := c.Services[name]
		if s.Image == "" && s.Build == nil {
			t.Errorf("%s: neither image nor build", name)
		}
		if s.Build != nil {
			if _, err := os.Stat(filepath.Join(dir, s.Build.Context, s.Build.Dockerfile)); err != nil {
				t.Errorf("%s: build %v: %v", name, s.Build, err)
			}
		}
		for dep := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s depends on unknown service %s", name, dep)
			}
		}
		for _, sec := range s.Secrets {
			if _, ok := c.Secrets[sec]; !ok {
				t.Errorf("%s: unknown secret %s", name, sec)
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if _, named := c.Volumes[src]; named {
				continue
			}
			if !strings.HasPrefix(src, ".") {
				t.Errorf("%s: volume %s is neither a named volume nor a relative path", name, v)
				continue
			}
			path := filepath.Clean(filepath.Join(dir, src))
			if strings.Contains(path, string(filepath.Separator)+".loopgate"+string(filepath.Separator)) {
				continue // made by `make demo` (models, clip), git-ignored
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s: mounts %s: %v", name, src, err)
			}
		}
	}

	for _, sh := range []string{"db-primary-init.sh", "db-replica-entrypoint.sh", "db-roles.sh", "make-secrets.sh"} {
		runTool(t, dir, time.Minute, "bash", "-n", "compose/"+sh)
	}
	roles := string(readFile(t, filepath.Join(dir, "compose/db-roles.sh")))

	// The gate nodes: their configurations load, and use the secrets,
	// roles and hosts the stack provides.
	targets := string(readFile(t, filepath.Join(dir, "prometheus/targets/gates.yml")))
	for _, gate := range []string{"gate-hk-lane-a", "gate-sz-lane-b"} {
		s := c.Services[gate]
		cfgPath := mountSource(t, dir, s.Volumes, "/etc/loopgate/gate.yaml")
		cfg, err := node.Load(cfgPath)
		if err != nil {
			t.Errorf("%s: node.Load(%s): %v", gate, cfgPath, err)
			continue
		}
		for _, u := range []string{cfg.Database.URL, cfg.Database.ReadURL} {
			pu, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			pf := pu.Query().Get("passfile")
			if !strings.HasPrefix(pf, "/run/secrets/") || !slices.Contains(s.Secrets, strings.TrimPrefix(pf, "/run/secrets/")) {
				t.Errorf("%s: passfile %q is not one of the service's secrets %v", gate, pf, s.Secrets)
			}
			pgpass := string(readFile(t, filepath.Join(secretsDir, filepath.Base(pf))))
			if !strings.Contains(pgpass, ":"+pu.User.Username()+":") {
				t.Errorf("%s: %s has no line for user %s", gate, filepath.Base(pf), pu.User.Username())
			}
			if !strings.Contains(roles, "login "+pu.User.Username()+" loopgate_gate ") {
				t.Errorf("%s: db-roles.sh creates no loopgate_gate login %s", gate, pu.User.Username())
			}
		}
		if host(t, cfg.Database.URL) != "db-primary:5432" || host(t, cfg.Database.ReadURL) != "db-replica:5432" {
			t.Errorf("%s: url host %s, read_url host %s; want db-primary and db-replica", gate, host(t, cfg.Database.URL), host(t, cfg.Database.ReadURL))
		}
		_, port, _ := strings.Cut(cfg.HTTP.Addr, ":")
		if !strings.Contains(targets, "'"+gate+":"+port+"'") {
			t.Errorf("%s listens on %s, but prometheus/targets/gates.yml does not scrape %s:%s", gate, cfg.HTTP.Addr, gate, port)
		}
		t.Logf("%s: gate %s, camera %s, primary %s, replica %s", gate, cfg.Gate, cfg.Cameras[0].URI, host(t, cfg.Database.URL), host(t, cfg.Database.ReadURL))
	}

	// The enrolment service: its configuration loads with the database URL
	// make-secrets.sh wrote, as the secret compose mounts.
	e := c.Services["enrolment"]
	ecfgPath := mountSource(t, dir, e.Volumes, "/etc/loopgate/enrolment.yaml")
	var ecfgRaw struct {
		Database struct {
			URLFile string `yaml:"url_file"`
		} `yaml:"database"`
	}
	if err := yaml.Unmarshal(readFile(t, ecfgPath), &ecfgRaw); err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimPrefix(ecfgRaw.Database.URLFile, "/run/secrets/")
	if !slices.Contains(e.Secrets, secret) {
		t.Errorf("enrolment: url_file %s is not one of its secrets %v", ecfgRaw.Database.URLFile, e.Secrets)
	}
	dbURL := strings.TrimSpace(string(readFile(t, filepath.Join(secretsDir, secret))))
	t.Setenv("LOOPGATE_DATABASE_URL", dbURL) // stands in for the mounted url_file
	ecfg, err := service.Load(ecfgPath)
	if err != nil {
		t.Errorf("enrolment: service.Load: %v", err)
	} else {
		pu, _ := url.Parse(ecfg.Database.URL)
		if !strings.Contains(roles, "login "+pu.User.Username()+" loopgate_enrolment ") || *ecfg.Database.Migrate {
			t.Errorf("enrolment: database user %s (migrate %v); want a loopgate_enrolment login of db-roles.sh, no migrations", pu.User.Username(), *ecfg.Database.Migrate)
		}
		_, port, _ := strings.Cut(ecfg.HTTP.Addr, ":")
		if !strings.Contains(string(readFile(t, filepath.Join(dir, "prometheus/targets/enrolment.yml"))), "'enrolment:"+port+"'") {
			t.Errorf("enrolment listens on %s, but prometheus/targets/enrolment.yml does not scrape it", ecfg.HTTP.Addr)
		}
	}
}

// mountSource returns the host path a service mounts at target.
func mountSource(t *testing.T, dir string, volumes []string, target string) string {
	t.Helper()
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == target {
			return filepath.Join(dir, parts[0])
		}
	}
	t.Fatalf("nothing mounted at %s in %v", target, volumes)
	return ""
}
