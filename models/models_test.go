package models

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/loopgate/loopgate/internal/testenv"
)

func hexSHA(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
func hexMD5(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }

func TestManifestIsComplete(t *testing.T) {
	sha := regexp.MustCompile(`^[0-9a-f]{64}$`)
	md := regexp.MustCompile(`^[0-9a-f]{32}$`)
	// go-face opens exactly these three names; engine/detect opens YuNet.
	for _, name := range []string{"shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat",
		"mmod_human_face_detector.dat", "face_detection_yunet_2022mar.onnx"} {
		if _, ok := Lookup(name); !ok {
			t.Fatalf("manifest lacks %s", name)
		}
	}
	for _, m := range Manifest {
		name := m.Name
		hasUpstream := false
		for _, v := range m.Variants {
			for _, u := range v.URLs {
				// A plain download has nothing but its sha256 to vouch for it.
				if !strings.HasSuffix(u, ".bz2") && v.SHA256 == "" {
					t.Errorf("%s/%s: plain URL %s without a sha256", name, v.Label, u)
				}
			}
			if v.SHA256 != "" && !sha.MatchString(v.SHA256) {
				t.Errorf("%s/%s: malformed sha256 %q", name, v.Label, v.SHA256)
			}
			if v.ArchiveMD5 != "" && !md.MatchString(v.ArchiveMD5) {
				t.Errorf("%s/%s: malformed md5 %q", name, v.Label, v.ArchiveMD5)
			}
			if v.SHA256 == "" && v.ArchiveMD5 == "" {
				t.Errorf("%s/%s: no digest at all: it could never be verified", name, v.Label)
			}
			if v.Licence == "" {
				t.Errorf("%s/%s: no licence", name, v.Label)
			}
			if len(v.URLs) > 0 {
				hasUpstream = true
			}
		}
		if !hasUpstream {
			t.Errorf("%s: no upstream URL", name)
		}
	}
}

// testManifest is a one-file manifest over synthetic content.
func testManifest(content []byte, archiveMD5, url string) []Model {
	return []Model{{
		Name: "weights.dat",
		Variants: []Variant{
			{Label: "upstream", FileName: "weights.dat", URLs: []string{url}, ArchiveMD5: archiveMD5, Licence: "test"},
			{Label: "mirror", FileName: "weights-mirror.dat", SHA256: hexSHA(content), Size: int64(len(content)), Licence: "test"},
		},
	}}
}

func bzip2Bytes(t *testing.T, b []byte) []byte {
	t.Helper()
	cmd := exec.Command("bzip2", "-c")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bzip2: %v (Debian package bzip2)", err)
	}
	return out
}

func TestVerifyMissingAndMismatch(t *testing.T) {
	content := []byte("real weights")
	man := testManifest(content, "", "")
	dir := t.TempDir()
	if _, err := VerifyManifest(dir, man); !errors.Is(err, ErrMissing) {
		t.Fatalf("empty dir: got %v, want ErrMissing", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "weights.dat"), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := VerifyManifest(dir, man)
	var mm *MismatchError
	if !errors.As(err, &mm) || mm.Got != hexSHA([]byte("tampered")) {
		t.Fatalf("tampered file: got %v, want MismatchError", err)
	}
}

func TestFetchFromMirrorVerifiesDigest(t *testing.T) {
	content := []byte("mirror weights v1")
	man := testManifest(content, "", "")
	mirror, dir := t.TempDir(), t.TempDir()

	// A mirror file with the wrong content is refused, nothing installed.
	if err := os.WriteFile(filepath.Join(mirror, "weights-mirror.dat"), []byte("corrupt"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Fetch(context.Background(), FetchOptions{Dir: dir, Mirrors: []string{mirror}, NoDownload: true, Manifest: man}); err == nil {
		t.Fatal("corrupt mirror file accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, "weights.dat")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("corrupt file left in model dir: %v", err)
	}

	if err := os.WriteFile(filepath.Join(mirror, "weights-mirror.dat"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Fetch(context.Background(), FetchOptions{Dir: dir, Mirrors: []string{mirror}, NoDownload: true, Manifest: man})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Variant.Label != "mirror" || got[0].Pinned {
		t.Fatalf("installed %+v, want the mirror variant, not pinned", got[0])
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "weights.dat")); !bytes.Equal(b, content) {
		t.Fatal("installed file differs from the mirror's")
	}
	// Re-running is a no-op that keeps the verified file.
	if _, err := Fetch(context.Background(), FetchOptions{Dir: dir, NoDownload: true, Manifest: man}); err != nil {
		t.Fatalf("second fetch: %v", err)
	}
}

func TestDownloadChecksArchiveMD5AndPins(t *testing.T) {
	content := []byte("upstream weights, digest unknown to the manifest")
	archive := bzip2Bytes(t, content)
	served := archive
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(served) }))
	defer srv.Close()
	man := testManifest([]byte("other"), hexMD5(archive), srv.URL+"/weights.dat.bz2")
	dir := t.TempDir()

	// A tampered archive fails the MD5 check.
	served = bzip2Bytes(t, []byte("evil weights"))
	if _, err := Fetch(context.Background(), FetchOptions{Dir: dir, Manifest: man}); err == nil {
		t.Fatal("archive with the wrong md5 accepted")
	}

	served = archive
	got, err := Fetch(context.Background(), FetchOptions{Dir: dir, Manifest: man})
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].Pinned || got[0].SHA256 != hexSHA(content) {
		t.Fatalf("got %+v, want the upstream variant pinned to %s", got[0], hexSHA(content))
	}
	if _, err := VerifyManifest(dir, man); err != nil {
		t.Fatalf("pinned file does not verify: %v", err)
	}
	// Changing the file after the fetch breaks the pin.
	path := filepath.Join(dir, "weights.dat")
	os.Chmod(path, 0o644)
	if err := os.WriteFile(path, []byte("swapped later"), 0o644); err != nil {
		t.Fatal(err)
	}
	var mm *MismatchError
	if _, err := VerifyManifest(dir, man); !errors.As(err, &mm) {
		t.Fatalf("file changed after pinning: got %v, want MismatchError", err)
	}
}

// plainManifest is a one-file manifest whose only source is a plain
// (uncompressed) download verified by its sha256.
func plainManifest(content []byte, urls ...string) []Model {
	return []Model{{
		Name: "detector.onnx",
		Variants: []Variant{{
			Label: "upstream", FileName: "detector.onnx", SHA256: hexSHA(content), Size: int64(len(content)),
			URLs: urls, Licence: "test",
		}},
	}}
}

func TestDownloadPlainVerifiesSHA256(t *testing.T) {
	content := []byte("plain onnx weights, served as they are")
	served := []byte("tampered weights, same length as real!")
	if len(served) != len(content) {
		t.Fatalf("test setup: tampered content must keep the size (%d vs %d) so only the digest can catch it", len(served), len(content))
	}
	var hits []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits = append(hits, r.URL.Path)
		if r.URL.Path == "/gone/detector.onnx" {
			http.NotFound(w, r)
			return
		}
		w.Write(served)
	}))
	defer srv.Close()
	// The first URL is dead, so the second one must be tried.
	man := plainManifest(content, srv.URL+"/gone/detector.onnx", srv.URL+"/media/detector.onnx")
	dir := t.TempDir()
	final := filepath.Join(dir, "detector.onnx")

	// Tampered content of the right size fails the sha256 and installs nothing.
	_, err := Fetch(context.Background(), FetchOptions{Dir: dir, Manifest: man})
	if err == nil || !strings.Contains(err.Error(), "sha256 "+hexSHA(served)) {
		t.Fatalf("tampered download: got %v, want a sha256 mismatch", err)
	}
	if _, err := os.Stat(final); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tampered file installed: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".detector.onnx.partial-*")); len(left) != 0 {
		t.Fatalf("partial files left behind: %v", left)
	}
	// Oversized content is cut off at size+1 and refused.
	served = bytes.Repeat([]byte("x"), 10*len(content))
	if _, err := Fetch(context.Background(), FetchOptions{Dir: dir, Manifest: man}); err == nil {
		t.Fatal("oversized download accepted")
	}

	served = content
	hits = nil
	got, err := Fetch(context.Background(), FetchOptions{Dir: dir, Manifest: man})
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 2 || hits[1] != "/media/detector.onnx" {
		t.Fatalf("requests %v, want the dead URL then the second", hits)
	}
	if got[0].Pinned || got[0].SHA256 != hexSHA(content) || got[0].Variant.Label != "upstream" {
		t.Fatalf("installed %+v, want the upstream variant verified (not pinned)", got[0])
	}
	if b, _ := os.ReadFile(final); !bytes.Equal(b, content) {
		t.Fatal("installed file differs from the served one")
	}
	if o, ok := readOrigin(dir, "detector.onnx"); !ok || o.Source != srv.URL+"/media/detector.onnx" {
		t.Fatalf("origin %+v, want the second URL", o)
	}
	if _, err := VerifyManifest(dir, man); err != nil {
		t.Fatalf("downloaded file does not verify: %v", err)
	}
}

// TestDownloadPlainWithoutSHA256Refused: a plain URL with no recorded
// digest would install whatever the server sends, so it is refused.
func TestDownloadPlainWithoutSHA256Refused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("anything")) }))
	defer srv.Close()
	man := []Model{{Name: "w.dat", Variants: []Variant{{Label: "upstream", FileName: "w.dat", URLs: []string{srv.URL + "/w.dat"}, Licence: "test"}}}}
	dir := t.TempDir()
	_, err := Fetch(context.Background(), FetchOptions{Dir: dir, Manifest: man})
	if err == nil || !strings.Contains(err.Error(), "no sha256 is recorded") {
		t.Fatalf("got %v, want a refusal for the missing sha256", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "w.dat")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unverified file installed: %v", err)
	}
}

// TestFetchRealMirror fills a model directory from the real offline mirror
// (shared/models plus Debian's libdlib-data) and verifies it.
func TestFetchRealMirror(t *testing.T) {
	shared := testenv.SharedDir(t)
	mirrors := []string{filepath.Join(shared, "models"), "/usr/share/dlib"}
	if _, err := os.Stat("/usr/share/dlib/shape_predictor_68_face_landmarks.dat"); err != nil {
		testenv.Unavailable(t, "Debian libdlib-data: %v", err)
	}
	dir := t.TempDir()
	got, err := Fetch(context.Background(), FetchOptions{Dir: dir, Mirrors: mirrors, NoDownload: true, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(Manifest) {
		t.Fatalf("installed %d files, want %d", len(got), len(Manifest))
	}
	ver, err := Verify(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range ver {
		t.Logf("%s: %s %s", in.Model.Name, in.Variant.Label, in.SHA256)
	}
}
