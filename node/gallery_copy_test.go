package node

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/camera/synth"
	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/decision"
	"github.com/loopgate/loopgate/internal/testenv"
)

// provisionNode provisions a node (New); the test runs it.
func provisionNode(t *testing.T, cfg Config) (*Node, *collector) {
	t.Helper()
	col := &collector{}
	n, err := New(context.Background(), cfg, Options{Sinks: []decision.Sink{col}, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, col
}

// runToEnd runs the node over its clip and returns the decisions.
func runClipToEnd(t *testing.T, n *Node, col *collector) []decision.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := n.Run(ctx); err != nil {
		t.Fatal(err)
	}
	n.sinks.Close()
	return col.all()
}

// TestNodeDecidesWithoutDatabase: the database goes away after the node
// started, and the node decides every walker exactly as with it (from its
// gallery copy); a node restarted while the database is still away decides
// from the snapshot file; a node with neither database nor snapshot denies
// everyone with reason gallery_stale.
func TestNodeDecidesWithoutDatabase(t *testing.T) {
	scfg := synth.DefaultConfig()
	scfg.Seed = 7
	fx := newWalkFixture(t, scfg, 3, 1, 1)
	px, purl := testenv.NewDBProxy(t, fx.DBURL)
	snapshot := filepath.Join(t.TempDir(), "gallery.snapshot")
	cfg := testConfig(t, fx, true)
	cfg.Database.URL = purl
	cfg.Gallery.Snapshot = snapshot
	// The audit sink would spend its flush timeout on every Close; the
	// restart subtest turns it on (it must start without the primary too).
	cfg.Sinks.Audit = false

	t.Run("database lost after start", func(t *testing.T) {
		n, col := provisionNode(t, cfg)
		if st := n.GalleryCopy().Status(); st.Source != "database" || st.People != 3 {
			t.Fatalf("copy at start: %+v", st)
		}
		px.Cut()
		if err := n.GalleryCopy().Refresh(context.Background()); err == nil {
			t.Fatal("refresh succeeded through a cut proxy")
		}
		events := runClipToEnd(t, n, col)
		checkDecisions(t, fx, events, time.Time{}, false)
		if st := n.GalleryCopy().Status(); st.LastError == "" || st.Stale {
			t.Fatalf("copy after the run: %+v", st)
		}
		// Closing the node (at the end of this subtest) saves the snapshot.
	})

	t.Run("restarted during the outage", func(t *testing.T) {
		cfg := cfg
		cfg.Sinks.Audit = true // the primary is away too: decisions queue
		n, col := provisionNode(t, cfg)
		if st := n.GalleryCopy().Status(); st.Source != "snapshot" || st.People != 3 || st.Stale {
			t.Fatalf("copy at start: %+v", st)
		}
		if n.Gallery() != nil {
			t.Fatal("a gallery was opened on an unreachable primary")
		}
		check := n.galleryCheck()
		if err := check.Fn(context.Background()); err != nil || !strings.HasPrefix(check.Detail(), "copy age ") {
			t.Fatalf("/readyz gallery check: %v, detail %q", err, check.Detail())
		}
		t.Logf("/readyz gallery detail: %s", check.Detail())
		events := runClipToEnd(t, n, col)
		checkDecisions(t, fx, events, time.Time{}, false)
	})

	t.Run("no database, no snapshot", func(t *testing.T) {
		cfg := cfg
		cfg.Gallery.Snapshot = ""
		n, col := provisionNode(t, cfg)
		check := n.galleryCheck()
		if err := check.Fn(context.Background()); !errors.Is(err, engine.ErrGalleryStale) || check.Detail() != "never synced (max 5m0s)" {
			t.Fatalf("/readyz gallery check without a copy: %v, detail %q", err, check.Detail())
		}
		events := runClipToEnd(t, n, col)
		if len(events) != len(fx.Manifest.Walkers) {
			t.Fatalf("%d decisions for %d walkers", len(events), len(fx.Manifest.Walkers))
		}
		for _, e := range events {
			if e.Decision != decision.Deny || e.Reason != decision.GalleryStale || e.Person != nil {
				t.Errorf("decision without a gallery: %s/%s %+v", e.Decision, e.Reason, e.Person)
			}
		}
		t.Logf("detail: %s", events[0].Detail)
	})

	// The database is back: a node starts from it again.
	px.Restore()
	n, _ := provisionNode(t, cfg)
	if st := n.GalleryCopy().Status(); st.Source != "database" || st.Stale || n.Gallery() == nil {
		t.Fatalf("copy with the database back: %+v", st)
	}
}
