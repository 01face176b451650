package jitter

import (
	"testing"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/vision"
	"github.com/loopgate/loopgate/internal/testenv"
)

// A jittered embedding is the mean over perturbed copies: close to the
// plain embedding of the same face, but not identical to it.
func TestJitteredEmbeddingIsNearPlain(t *testing.T) {
	dir := testenv.ModelDir(t)
	img, err := vision.NewDecoder(engine.DefaultImageLimits).Decode(testenv.SharedFile(t, "datasets/lfw/images/Colin_Powell/Colin_Powell_0001.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := facerec.New(facerec.Config{ModelDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	jit, err := New(dir, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer jit.Close()
	pf, err := plain.Faces(img.JPEG)
	if err != nil || len(pf) != 1 {
		t.Fatalf("plain: %d faces, %v", len(pf), err)
	}
	jf, err := jit.Faces(img.JPEG)
	if err != nil || len(jf) != 1 {
		t.Fatalf("jittered: %d faces, %v", len(jf), err)
	}
	if jf[0].Box != pf[0].Box {
		t.Fatalf("detection differs: %v vs %v", jf[0].Box, pf[0].Box)
	}
	d := engine.Distance(pf[0].Embedding, jf[0].Embedding)
	if d == 0 || d > 0.3 {
		t.Fatalf("jittered vs plain distance %v, want small but non-zero", d)
	}
	t.Logf("jittered vs plain distance: %.4f", d)
}

func TestNewRefusesNoCopies(t *testing.T) {
	if _, err := New(t.TempDir(), 0); err == nil {
		t.Fatal("0 copies accepted")
	}
}
