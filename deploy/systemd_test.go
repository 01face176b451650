package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/testenv"
)

// unitRoot builds a root directory for systemd-analyze --root: the host's
// unit tree (targets the units refer to), the units under test in
// /etc/systemd/system, and an executable stand-in for /usr/local/bin/loopgate
// (verify refuses a unit whose ExecStart= does not exist).
func unitRoot(t *testing.T, units map[string][]byte) string {
	t.Helper()
	root := t.TempDir()
	hostUnits := "/usr/lib/systemd/system"
	if _, err := os.Stat(filepath.Join(hostUnits, "multi-user.target")); err != nil {
		hostUnits = "/lib/systemd/system"
	}
	if _, err := os.Stat(filepath.Join(hostUnits, "multi-user.target")); err != nil {
		testenv.Unavailable(t, "the host's systemd unit tree: %v (Debian package systemd)", err)
	}
	if err := os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	runTool(t, "", time.Minute, "cp", "-a", hostUnits, filepath.Join(root, "usr/lib/systemd/system"))
	for _, dir := range []string{"etc/systemd/system", "usr/local/bin"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "usr/local/bin/loopgate"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range units {
		if err := os.WriteFile(filepath.Join(root, "etc/systemd/system", name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestSystemdUnits checks the two units with `systemd-analyze verify` (no
// output at all is accepted: unknown keys and groups are only warnings),
// proves the check sees a broken unit, asserts the hardening the units
// promise, and logs `systemd-analyze security --offline` exposure scores.
func TestSystemdUnits(t *testing.T) {
	sa := tool(t, "systemd-analyze", "Debian package systemd")
	gate := readFile(t, deployFile(t, "systemd/loopgate-gate@.service"))
	enrol := readFile(t, deployFile(t, "systemd/loopgate-enrolment.service"))
	broken := regexp.MustCompile(`(?m)^LockPersonality=yes$`).ReplaceAll(enrol, []byte("LockPersonality=yes\nProtectSystm=strict\nSystemCallFilter=@no-such-group"))
	root := unitRoot(t, map[string][]byte{
		"loopgate-gate@.service":     gate,
		"loopgate-enrolment.service": enrol,
		"loopgate-broken.service":    broken,
	})
	for _, unit := range []string{"loopgate-gate@hk-lane-a.service", "loopgate-gate@sz-lane-b.service", "loopgate-enrolment.service"} {
		out, err := runToolErr("", time.Minute, sa, "verify", "--root="+root, unit)
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		} else {
			t.Logf("systemd-analyze verify %s: clean", unit)
		}
	}
	out, _ := runToolErr("", time.Minute, sa, "verify", "--root="+root, "loopgate-broken.service")
	if !strings.Contains(out, "ProtectSystm") || !strings.Contains(out, "@no-such-group") {
		t.Errorf("systemd-analyze verify did not report the broken copy's errors:\n%s", out)
	}

	for _, u := range []struct {
		name string
		body string
		want []string
	}{
		{"loopgate-gate@hk-lane-a.service", string(gate), []string{
			"ExecStart=/usr/local/bin/loopgate serve --config /etc/loopgate/gate-%i.yaml",
			"DynamicUser=yes", "SupplementaryGroups=video", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
			"PrivateTmp=yes", "PrivateDevices=no", "DevicePolicy=closed", "DeviceAllow=char-video4linux rw",
			"StateDirectory=loopgate/gate-%i", "CapabilityBoundingSet=", "MemoryDenyWriteExecute=yes",
			"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "SystemCallFilter=@system-service",
			"SystemCallFilter=~@privileged @resources", "SystemCallArchitectures=native",
			"LoadCredential=pgpass:", "LoadCredential=tls-key:", "LoadCredential=controller-token:",
		}},
		{"loopgate-enrolment.service", string(enrol), []string{
			"ExecStart=/usr/local/bin/loopgate enrolment serve --config /etc/loopgate/enrolment.yaml",
			"DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
			"PrivateDevices=yes", "PrivateUsers=yes", "StateDirectory=loopgate/enrolment", "CapabilityBoundingSet=",
			"MemoryDenyWriteExecute=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
			"SystemCallFilter=@system-service", "SystemCallFilter=~@privileged @resources",
			"LoadCredential=database-url:", "LoadCredential=tls-key:",
		}},
	} {
		lines := map[string]bool{}
		for _, l := range strings.Split(u.body, "\n") {
			lines[strings.TrimSpace(l)] = true
		}
		for _, w := range u.want {
			found := lines[w]
			if strings.HasSuffix(w, ":") {
				for l := range lines {
					found = found || strings.HasPrefix(l, w)
				}
			}
			if !found {
				t.Errorf("%s: no line %q", u.name, w)
			}
		}
		// Secrets never in the unit: no Environment= with a password,
		// token or URL.
		if m := regexp.MustCompile(`(?mi)^Environment=.*(password|token|secret|postgres://)`).FindString(u.body); m != "" {
			t.Errorf("%s: a secret in the unit: %s", u.name, m)
		}
		sec, err := runToolErr("", time.Minute, sa, "security", "--offline=yes", "--root="+root, u.name)
		if err != nil {
			t.Errorf("systemd-analyze security %s: %v\n%s", u.name, err, sec)
			continue
		}
		score := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+) (\S+)`).FindStringSubmatch(sec)
		if score == nil {
			t.Errorf("systemd-analyze security %s: no overall exposure level in\n%s", u.name, sec)
			continue
		}
		t.Logf("systemd-analyze security --offline %s: exposure %s %s (0 = fully sandboxed, 10 = none)", u.name, score[1], score[2])
		if score[2] != "OK" {
			t.Errorf("%s: exposure %s %s, want OK", u.name, score[1], score[2])
		}
	}
}
