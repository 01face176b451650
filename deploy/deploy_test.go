// Package deploy_test checks the deployment artefacts in deploy/ with the
// real tools and components: systemd-analyze on the units, node.Load on the
// node configurations, promtool on the Prometheus configuration and rules, a
// real Prometheus scraping a real gate node for the alert rules and every
// Grafana panel, the compose file's structure, and roles.sql against the
// real database.
package deploy_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/testenv"
)

// deployDir is the absolute path of deploy/ (the test's working directory).
func deployDir(t testing.TB) string {
	t.Helper()
	return filepath.Join(testenv.Root(t), "deploy")
}

// deployFile is a file under deploy/.
func deployFile(t testing.TB, rel string) string {
	t.Helper()
	return filepath.Join(deployDir(t), filepath.FromSlash(rel))
}

// tool finds a binary the test needs, or reports it unavailable (a failure
// under CI).
func tool(t testing.TB, name, installHint string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		testenv.Unavailable(t, "%s not found on PATH (%s)", name, installHint)
	}
	return p
}

// runTool runs a command with a deadline and returns its combined output;
// a non-zero exit fails the test with that output.
func runTool(t testing.TB, dir string, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	out, err := runToolErr(dir, timeout, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return out
}

func runToolErr(dir string, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.String(), err
}

// readFile reads a file or fails the test.
func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
