package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Chromium finds the browser for the headless page tests:
// $LOOPGATE_CHROMIUM, else Debian's chromium. Missing, the test is skipped
// loudly, or fails under CI.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, p := range []string{os.Getenv("LOOPGATE_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	Unavailable(t, "chromium not found (deploy/install-deps.sh installs it, or set LOOPGATE_CHROMIUM)")
	return ""
}

// Artifacts is where tests save screenshots: $LOOPGATE_TEST_ARTIFACTS or
// $LOOPGATE_ARTIFACTS (created if needed), else a temporary directory.
func Artifacts(t testing.TB) string {
	t.Helper()
	for _, env := range []string{"LOOPGATE_TEST_ARTIFACTS", "LOOPGATE_ARTIFACTS"} {
		if d := os.Getenv(env); d != "" {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
	return t.TempDir()
}
