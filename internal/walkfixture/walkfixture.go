// Package walkfixture builds what the walk-through tests and benchmarks
// share: a SYNTHETIC clip of vetted LFW walkers, with the enrolled ones
// registered for a gate in a fresh schema of the test database.
package walkfixture

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loopgate/loopgate/camera/synth"
	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/engine/vision"
	"github.com/loopgate/loopgate/enroll"
	"github.com/loopgate/loopgate/internal/testenv"
)

// Gate is the gate the fixture registers enrolled walkers for.
const Gate = "bridge1-north"

// Fixture is a clip with its walkers enrolled.
type Fixture struct {
	Clip     string
	Manifest synth.Manifest
	DBURL    string
	// Revoked holds external IDs of enrolled walkers revoked before the run.
	Revoked map[string]bool
}

// WalkerID is the external ID a walker is enrolled under.
func WalkerID(w synth.WalkerTruth) string { return "lfw-" + w.Name }

// Vetted picks LFW walkers whose photos go-face handles (one face each,
// enrol and walk photos within maxDistance): the clips test the pipeline,
// not the model's accuracy, which benchmarks/ measures on LFW.
func Vetted(tb testing.TB, enrolled, strangers int, seed int64, maxDistance float64) []synth.Walker {
	tb.Helper()
	rec, err := facerec.New(facerec.Config{ModelDir: testenv.ModelDir(tb), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	defer rec.Close()
	v := synth.Vetter{Decoder: vision.NewDecoder(engine.ImageLimits{}), Embedder: rec, Threshold: maxDistance}
	lfw := filepath.Join(testenv.SharedDir(tb), "datasets", "lfw")
	walkers, err := synth.PickWalkersWith(lfw, enrolled, strangers, seed, v.Check)
	if err != nil {
		tb.Fatal(err)
	}
	return walkers
}

// New writes the clip of these walkers, in this order, enrols the enrolled
// ones for Gate (from their enrol photo) and revokes the last `revoke` of
// them.
func New(tb testing.TB, cfg synth.Config, walkers []synth.Walker, revoke int) *Fixture {
	tb.Helper()
	ctx := context.Background()
	name := "walk-synthetic-test.avi"
	if cfg.TwoLanes {
		name = "walk2lanes-synthetic-test.avi"
	}
	clip := filepath.Join(tb.TempDir(), name)
	man, err := synth.Write(ctx, clip, cfg, walkers)
	if err != nil {
		tb.Fatal(err)
	}
	fx := &Fixture{Clip: clip, Manifest: man, DBURL: testenv.DatabaseURL(tb), Revoked: map[string]bool{}}
	rec, err := facerec.New(facerec.Config{ModelDir: testenv.ModelDir(tb), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	defer rec.Close()
	g, _, err := gallery.Open(ctx, fx.DBURL)
	if err != nil {
		tb.Fatal(err)
	}
	defer g.Close()
	svc := &enroll.Service{Decoder: vision.NewDecoder(engine.ImageLimits{}), Embedder: rec, Store: g, Model: rec.ModelTag()}
	var ids []string
	for _, w := range man.Walkers {
		if !w.Enrolled {
			continue
		}
		data, err := os.ReadFile(w.EnrolPhoto)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := svc.Enrol(ctx, enroll.Request{ExternalID: WalkerID(w), Name: strings.ReplaceAll(w.Name, "_", " "),
			Source: "test", Gates: []string{Gate}, Photos: []enroll.Photo{{Name: w.EnrolPhoto, Data: data}}}); err != nil {
			tb.Fatalf("enrol %s: %v", w.Name, err)
		}
		ids = append(ids, WalkerID(w))
	}
	for _, id := range ids[len(ids)-revoke:] {
		if err := g.Revoke(ctx, id, "badge reported lost"); err != nil {
			tb.Fatal(err)
		}
		fx.Revoked[id] = true
	}
	return fx
}
