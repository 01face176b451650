package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loopgate/loopgate/camera/synth"
	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/decision"
)

// dbProxy forwards a Unix socket to the test database's and can be cut:
// open connections drop and new ones are refused, as when the database
// host goes away (the gallery copy's package tests use the same device).
type dbProxy struct {
	t      *testing.T
	target string
	path   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

func newDBProxy(t *testing.T, dbURL string) (*dbProxy, string) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	host, port := q.Get("host"), q.Get("port")
	if !strings.HasPrefix(host, "/") || port == "" {
		t.Fatalf("proxy needs a Unix-socket database URL, got host %q port %q", host, port)
	}
	dir, err := os.MkdirTemp("", "lgproxy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &dbProxy{t: t, target: filepath.Join(host, ".s.PGSQL."+port), path: filepath.Join(dir, ".s.PGSQL."+port), conns: map[net.Conn]bool{}}
	p.restore()
	t.Cleanup(p.cut)
	q.Set("host", dir)
	u.RawQuery = q.Encode()
	return p, u.String()
}

func (p *dbProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		return
	}
	os.Remove(p.path)
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		p.t.Fatal(err)
	}
	p.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
}

func (p *dbProxy) serve(c net.Conn) {
	s, err := net.Dial("unix", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil {
		p.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	p.conns[c], p.conns[s] = true, true
	p.mu.Unlock()
	go func() { io.Copy(s, c); s.Close(); c.Close() }()
	io.Copy(c, s)
	c.Close()
	s.Close()
}

func (p *dbProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// startNode provisions a node (New); the test runs it.
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
	px, purl := newDBProxy(t, fx.DBURL)
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
		px.cut()
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
	px.restore()
	n, _ := provisionNode(t, cfg)
	if st := n.GalleryCopy().Status(); st.Source != "database" || st.Stale || n.Gallery() == nil {
		t.Fatalf("copy with the database back: %+v", st)
	}
}
