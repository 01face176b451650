package accuracy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/vision"
	"github.com/loopgate/loopgate/internal/testenv"
)

func TestCachePathKeysModelAndVariant(t *testing.T) {
	a := CachePath("/c", "dlib-resnet-v1:cdb1d47b961f", "hog+cnn")
	b := CachePath("/c", "dlib-resnet-v1:cdb1d47b961f", "hog+cnn.jitter10")
	c := CachePath("/c", "dlib-resnet-v1:000000000000", "hog+cnn")
	if a == b || a == c || strings.Contains(filepath.Base(a), ":") {
		t.Fatalf("cache paths must differ by model tag and variant and be plain file names: %s %s %s", a, b, c)
	}
}

func TestOpenCacheCutsTornRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "embeddings", "x.jsonl")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	good := `{"key":"a.jpg","w":250,"h":250,"faces":[{"box":[1,2,3,4],"sharp":5,"emb":[` + strings.Repeat("0.5,", 127) + `0.5]}]}` + "\n"
	if err := os.WriteFile(path, []byte(good+`{"key":"b.jpg","w":2`), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := OpenCache(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != 1 {
		t.Fatalf("%d records, want 1 (the torn one dropped)", c.Len())
	}
	f, ok := c.Subject("a.jpg")
	if !ok || f.Embedding[127] != 0.5 || f.Box != [4]int{1, 2, 3, 4} {
		t.Fatalf("record a.jpg read back as %+v", f)
	}
	data, _ := os.ReadFile(path)
	if string(data) != good {
		t.Fatalf("torn tail not cut: %q", data[len(good):])
	}
	if got := c.Missing([]string{"a.jpg", "b.jpg"}); len(got) != 1 || got[0] != "b.jpg" {
		t.Fatalf("missing %v, want [b.jpg]", got)
	}
	if err := os.WriteFile(path, []byte("not json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenCache(path); err == nil {
		t.Fatal("a corrupt complete line must be an error, not silently dropped")
	}
}

// TestFillWithRealRecogniser embeds two LFW images and one non-image with
// the engine's decoder and recogniser, then reopens the cache.
func TestFillWithRealRecogniser(t *testing.T) {
	shared := testenv.SharedDir(t)
	rec, err := facerec.New(facerec.Config{ModelDir: testenv.ModelDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	// A file that is not an image must become a recorded error, not stop the run.
	junk := filepath.Join(t.TempDir(), "junk.jpg")
	if err := os.WriteFile(junk, []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	relJunk, err := filepath.Rel(shared, junk)
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{LFWKey("Colin_Powell", 1), LFWKey("Colin_Powell", 2), relJunk}
	path := CachePath(t.TempDir(), rec.ModelTag(), "hog+cnn")
	c, err := OpenCache(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Fill(context.Background(), keys, FillOptions{
		SharedDir: shared, Decoder: vision.NewDecoder(engine.DefaultImageLimits), Embedders: []engine.Embedder{rec},
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Embedded != 3 || st.Errors != 1 {
		t.Fatalf("stats %+v, want 3 embedded, 1 error", st)
	}
	again, err := OpenCache(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Missing(keys)) != 0 {
		t.Fatalf("reopened cache misses %v", again.Missing(keys))
	}
	a, okA := again.Subject(keys[0])
	b, okB := again.Subject(keys[1])
	if !okA || !okB {
		t.Fatal("no face in Colin Powell's LFW images")
	}
	// Two photos of one person: a genuine distance, well below impostor range.
	if d := engine.Distance(a.Embedding, b.Embedding); d <= 0 || d > 0.6 {
		t.Fatalf("same-person distance %v, want in (0, 0.6]", d)
	}
	if a.Sharpness <= 0 || a.BoxSide() < 50 {
		t.Fatalf("face quality not recorded: %+v", a)
	}
	if r, _ := again.Get(relJunk); r.Err == "" {
		t.Fatal("the non-image has no recorded error")
	}
	if runs := again.Runs(); len(runs) != 1 || runs[0].Embedded != 3 || !runs[0].Complete {
		t.Fatalf("run log %+v", runs)
	}
	// A full cache needs no recogniser.
	if st, err := again.Fill(context.Background(), keys, FillOptions{}); err != nil || st.Embedded != 0 {
		t.Fatalf("refill of a full cache: %+v, %v", st, err)
	}
}
