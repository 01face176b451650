package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loopgate/loopgate/internal/testenv"
)

// TestCLIEnrolIdentify builds the binary and drives it as a user would.
func TestCLIEnrolIdentify(t *testing.T) {
	shared := testenv.SharedDir(t)
	env := append(os.Environ(),
		"LOOPGATE_DATABASE_URL="+testenv.DatabaseURL(t),
		"LOOPGATE_MODEL_DIR="+testenv.ModelDir(t),
	)
	bin := filepath.Join(t.TempDir(), "loopgate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	run := func(wantCode int, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != wantCode {
			t.Fatalf("loopgate %s: exit %d, want %d\n%s", strings.Join(args, " "), code, wantCode, out.String())
		}
		return out.String()
	}
	lfw := func(name string, n int) string {
		return filepath.Join(shared, "datasets", "lfw", "images", name, name+"_000"+string(rune('0'+n))+".jpg")
	}

	out := run(0, "enroll", "--id", "A123", "--name", "Hu Jintao", lfw("Hu_Jintao", 1), lfw("Hu_Jintao", 4))
	if !strings.Contains(out, `enrolled A123 "Hu Jintao": 2 template(s) added`) {
		t.Fatalf("enroll output:\n%s", out)
	}
	out = run(0, "identify", lfw("Hu_Jintao", 2))
	if !strings.Contains(out, `MATCH id=A123 name="Hu Jintao"`) {
		t.Fatalf("identify enrolled person:\n%s", out)
	}
	out = run(0, "identify", lfw("Colin_Powell", 1))
	if !strings.Contains(out, "no match") || strings.Contains(out, "Hu Jintao") {
		t.Fatalf("identify stranger:\n%s", out)
	}

	// A rejected photo: clear reason, exit 1, nothing stored.
	notImage := filepath.Join(t.TempDir(), "notes.jpg")
	os.WriteFile(notImage, []byte("just text"), 0o644)
	out = run(1, "enroll", "--id", "B9", "--name", "Bob", lfw("Colin_Powell", 1), notImage)
	if !strings.Contains(out, "REJECTED "+notImage+": unsupported image format") || !strings.Contains(out, "nothing stored for B9") {
		t.Fatalf("rejection output:\n%s", out)
	}
	if out := run(0, "stats"); !strings.Contains(out, "people: 1\ntemplates: 2") {
		t.Fatalf("stats after rejection:\n%s", out)
	}
	// Usage errors exit 2.
	run(2, "enroll", "--name", "No ID", lfw("Colin_Powell", 1))
	run(2, "frobnicate")
}
