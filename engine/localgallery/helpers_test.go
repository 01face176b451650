package localgallery

import (
	"context"
	"crypto/sha256"
	"fmt"
	"image"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/internal/testenv"
)

const testModel = "test-model"

func openGallery(t testing.TB) (*gallery.Gallery, string) {
	t.Helper()
	url := testenv.DatabaseURL(t)
	g, _, err := gallery.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g, url
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// openCopy opens a copy of scope on url, closed when the test ends.
func openCopy(t testing.TB, cfg Config) *Copy {
	t.Helper()
	if cfg.Model == "" {
		cfg.Model = testModel
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	c, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func randomEmbedding(r *rand.Rand) engine.Embedding {
	var e engine.Embedding
	for i := range e {
		e[i] = float32(r.NormFloat64() * 0.1)
	}
	return e
}

func template(e engine.Embedding, photo, model string) gallery.Template {
	return gallery.Template{Embedding: e, Model: model, PhotoSHA256: sha256.Sum256([]byte(photo)),
		Box: image.Rect(10, 20, 110, 120), ImageWidth: 250, ImageHeight: 250}
}

func enrol(t testing.TB, g *gallery.Gallery, id string, gates []string, model string, es ...engine.Embedding) {
	t.Helper()
	e := gallery.Enrolment{ExternalID: id, Name: "Person " + id, Source: "test", Gates: gates}
	for i, emb := range es {
		e.Templates = append(e.Templates, template(emb, fmt.Sprint(id, model, i, emb[:4]), model))
	}
	if _, err := g.Enrol(context.Background(), e); err != nil {
		t.Fatal(err)
	}
}

// lfwPerson is a real person's face embeddings from LFW photos.
type lfwPerson struct {
	Name string
	Embs []engine.Embedding
}

var (
	lfwOnce   sync.Once
	lfwPeople []lfwPerson
	lfwErr    error
)

// realPeople embeds the first n LFW people (alphabetically) who have at
// least photos photos, with go-face on the real model; computed once per
// test binary.
func realPeople(t testing.TB, n, photos int) []lfwPerson {
	t.Helper()
	dir := filepath.Join(testenv.SharedDir(t), "datasets", "lfw", "images")
	modelDir := testenv.ModelDir(t)
	lfwOnce.Do(func() {
		rec, err := facerec.New(facerec.Config{ModelDir: modelDir, Detector: facerec.DetectorHOG, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			lfwErr = err
			return
		}
		defer rec.Close()
		names, err := os.ReadDir(dir)
		if err != nil {
			lfwErr = err
			return
		}
		sort.Slice(names, func(i, j int) bool { return names[i].Name() < names[j].Name() })
		for _, d := range names {
			if len(lfwPeople) == n {
				break
			}
			files, _ := filepath.Glob(filepath.Join(dir, d.Name(), "*.jpg"))
			if len(files) < photos {
				continue
			}
			sort.Strings(files)
			p := lfwPerson{Name: d.Name()}
			for _, f := range files[:photos] {
				data, err := os.ReadFile(f)
				if err != nil {
					lfwErr = err
					return
				}
				faces, err := rec.Faces(data)
				if err != nil || len(faces) == 0 {
					break
				}
				p.Embs = append(p.Embs, centreFace(faces).Embedding)
			}
			if len(p.Embs) == photos {
				lfwPeople = append(lfwPeople, p)
			}
		}
	})
	if lfwErr != nil {
		t.Fatal(lfwErr)
	}
	if len(lfwPeople) < n {
		t.Fatalf("only %d LFW people with %d embeddable photos", len(lfwPeople), photos)
	}
	return lfwPeople[:n]
}

// centreFace is the face nearest the centre of a 250x250 LFW image: the
// labelled person.
func centreFace(faces []engine.Face) engine.Face {
	best, bestD := 0, 1<<30
	for i, f := range faces {
		c := f.Box.Min.Add(f.Box.Max).Div(2)
		d := (c.X-125)*(c.X-125) + (c.Y-125)*(c.Y-125)
		if d < bestD {
			best, bestD = i, d
		}
	}
	return faces[best]
}
