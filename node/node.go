package node

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	pgxvec "github.com/pgvector/pgvector-go/pgx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"gocv.io/x/gocv"
	"golang.org/x/sync/errgroup"

	"github.com/loopgate/loopgate/camera"
	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/claims"
	"github.com/loopgate/loopgate/engine/decision"
	"github.com/loopgate/loopgate/engine/detect"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/engine/localgallery"
	"github.com/loopgate/loopgate/engine/pipeline"
	"github.com/loopgate/loopgate/engine/quality"
	"github.com/loopgate/loopgate/engine/still"
	"github.com/loopgate/loopgate/engine/vision"
	"github.com/loopgate/loopgate/sink"
)

// DetectorModel is the YuNet file name in the model directory.
const DetectorModel = "face_detection_yunet_2022mar.onnx"

// Options are what the caller adds to the configuration.
type Options struct {
	Logger *slog.Logger
	// Registry receives every metric; nil makes a new one.
	Registry *prometheus.Registry
	// Sinks are extra decision sinks (the demo's printer, tests).
	Sinks []decision.Sink
	// Stdout is where the stdout sink writes (default os.Stdout).
	Stdout io.Writer
	// Observe receives every pipeline stage time (demo, benchmarks).
	Observe func(camera, stage string, d time.Duration)
}

// Node is a provisioned gate node. Run it once, then Close it.
type Node struct {
	cfg Config
	log *slog.Logger
	reg *prometheus.Registry
	// gallery is the primary, migrated at start; nil when the primary did
	// not answer at start (primary is then a pool that connects when it
	// can). primary takes the decisions and the heartbeat.
	gallery *gallery.Gallery
	primary *pgxpool.Pool
	// copy is the local gallery the pipeline and claims search.
	copy     *localgallery.Copy
	pool     *facerec.Pool
	cameras  []*camera.Camera
	dets     []*detect.YuNet
	claims   *claims.Registry
	sinks    *sink.Fanout
	pipeline *pipeline.Pipeline
	http     *httpSide
}

// New provisions a node: opens and migrates the database, verifies and
// loads the models (detector per camera, recogniser pool), loads the local
// gallery copy, opens the cameras' sources and builds the sinks. Nothing
// runs until Run. The database being unreachable does not stop the node:
// it decides from its gallery snapshot (gallery.snapshot) while that is
// fresh enough, and denies everyone with reason gallery_stale otherwise.
func New(ctx context.Context, cfg Config, opts Options) (n *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
		opts.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	n = &Node{cfg: cfg, log: opts.Logger, reg: opts.Registry}
	built := n // `return nil, err` clears n before the deferred call runs
	defer func() {
		if err != nil {
			built.Close()
		}
	}()
	if err := n.openPrimary(ctx); err != nil {
		return nil, err
	}
	n.pool, err = facerec.NewPool(facerec.PoolConfig{
		// HOG only: the crop holds a ~140 px face, which HOG finds; dlib's
		// CNN fallback costs ~220 ms per crop where HOG misses (a YuNet
		// false positive), and a miss is just a skipped frame here.
		Config:  facerec.Config{ModelDir: cfg.Models.Dir, Detector: facerec.DetectorHOG, Logger: n.log},
		Size:    cfg.Recognizers,
		Metrics: facerec.NewPoolMetrics(n.reg),
	})
	if err != nil {
		return nil, err
	}
	camMetrics := camera.NewMetrics(n.reg)
	var lanes []string
	for _, cc := range cfg.Cameras {
		spec, err := camera.ParseURI(cc.URI)
		if err != nil {
			return nil, fmt.Errorf("cameras %s: %w", cc.Name, err)
		}
		cam, err := camera.New(spec, camera.Options{Name: cc.Name, Loop: cc.Loop, Fast: cc.Fast, Metrics: camMetrics, Logger: n.log})
		if err != nil {
			return nil, fmt.Errorf("cameras %s: %w", cc.Name, err)
		}
		n.cameras = append(n.cameras, cam)
		det, err := detect.NewYuNet(filepath.Join(cfg.Models.Dir, DetectorModel),
			detect.Config{InputWidth: cfg.Detector.InputWidth, ScoreThreshold: cfg.Detector.ScoreThreshold})
		if err != nil {
			return nil, err
		}
		n.dets = append(n.dets, det)
		if cc.Lane != "" {
			lanes = append(lanes, cc.Lane)
		}
	}
	if n.copy, err = localgallery.Open(ctx, localgallery.Config{
		ReadURL: cfg.ReadURL(), Scope: cfg.Scope(), Model: n.pool.ModelTag(),
		RefreshInterval: cfg.Gallery.RefreshInterval, MaxStaleness: cfg.Gallery.MaxStaleness,
		Heartbeat: n.primary, NodeID: nodeID(cfg), SnapshotPath: cfg.Gallery.Snapshot,
		StartTimeout: databaseStartTimeout, Metrics: localgallery.NewMetrics(n.reg), Logger: n.log,
	}); err != nil {
		return nil, fmt.Errorf("gallery: %w", err)
	}
	if cfg.Claims.Enabled {
		n.claims = claims.New(lanes, func(ctx context.Context, externalID string) (engine.PersonMatch, error) {
			return n.copy.RegisteredInScope(ctx, externalID, cfg.Scope())
		}, cfg.Claims.DefaultTTL, cfg.Claims.MaxTTL)
	}
	if cfg.HTTP.Addr != "" {
		if n.http, err = newHTTPSide(n); err != nil {
			return nil, err
		}
	}
	if err := n.buildSinks(opts); err != nil {
		return nil, err
	}
	th := quality.Gate
	if cfg.Quality != nil {
		th = *cfg.Quality
	}
	var live pipeline.LiveView
	if n.http != nil {
		live = n.http.live
	}
	n.pipeline, err = pipeline.New(pipeline.Config{
		Gate: cfg.Gate, Scope: cfg.Scope(), Model: n.pool.ModelTag(),
		Rule: cfg.Fusion.Rule(), Track: cfg.Tracking.Track(), Quality: th,
		MinTrackHits: cfg.Tracking.MinTrackHits, LiveFPS: cfg.Live.FPS,
	}, pipeline.Deps{
		Embedder: cropEmbedder{pool: n.pool},
		Searcher: n.copy,
		Sink:     n.sinks,
		Claims:   n.claims,
		Live:     live,
		Metrics:  pipeline.NewMetrics(n.reg),
		Observe:  opts.Observe,
		Logger:   n.log,
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

func (n *Node) buildSinks(opts Options) (err error) {
	m := sink.NewMetrics(n.reg)
	var sinks []decision.Sink
	defer func() {
		if err != nil { // close what was built: a spool keeps its lock otherwise
			_ = sink.NewFanout(n.log, sinks...).Close()
		}
	}()
	// The audit sink goes first: with a spool its Send returns once the
	// decision is fsynced (~0.2 ms here), so nothing — the gate
	// controller's webhook included — learns of a decision that a crash
	// could lose from the record.
	if n.cfg.Sinks.Audit {
		a, err := sink.NewAudit(n.primary, sink.AuditConfig{
			SpoolDir: n.cfg.Sinks.AuditSpool.Dir, SpoolMaxBytes: n.cfg.Sinks.AuditSpool.MaxBytes,
			Metrics: m, Logger: n.log,
		})
		if err != nil {
			return fmt.Errorf("sinks.audit: %w", err)
		}
		sinks = append(sinks, a)
	}
	if n.cfg.Sinks.Stdout {
		sinks = append(sinks, sink.JSONLines(opts.Stdout, sink.JSONLOptions{Name: "stdout", Metrics: m, Logger: n.log}))
	}
	if n.cfg.Sinks.File != "" {
		f, err := sink.OpenFile(n.cfg.Sinks.File, sink.JSONLOptions{Name: "file", Metrics: m, Logger: n.log})
		if err != nil {
			return fmt.Errorf("sinks.file: %w", err)
		}
		sinks = append(sinks, f)
	}
	if w := n.cfg.Sinks.Webhook; w != nil {
		token := ""
		if w.BearerTokenFile != "" {
			b, err := os.ReadFile(w.BearerTokenFile)
			if err != nil {
				return fmt.Errorf("sinks.webhook.bearer_token_file: %w", err)
			}
			token = strings.TrimSpace(string(b))
		}
		wh, err := sink.NewWebhook(sink.WebhookConfig{URL: w.URL, Timeout: w.Timeout, QueueSize: w.QueueSize,
			BearerToken: token, Metrics: m, Logger: n.log})
		if err != nil {
			return fmt.Errorf("sinks.webhook: %w", err)
		}
		sinks = append(sinks, wh)
	}
	if n.http != nil {
		sinks = append(sinks, n.http.events)
	}
	sinks = append(sinks, opts.Sinks...)
	n.sinks = sink.NewFanout(n.log, sinks...)
	return nil
}

// Registry is the node's metrics registry.
func (n *Node) Registry() *prometheus.Registry { return n.reg }

// Cameras are the node's cameras (for their statistics).
func (n *Node) Cameras() []*camera.Camera { return n.cameras }

// Gallery is the node's primary database; nil when it did not answer at
// start.
func (n *Node) Gallery() *gallery.Gallery { return n.gallery }

// GalleryCopy is the local gallery the node decides from.
func (n *Node) GalleryCopy() *localgallery.Copy { return n.copy }

// databaseStartTimeout bounds how long New waits for each database before
// going on without it.
const databaseStartTimeout = 10 * time.Second

// openPrimary connects to the primary and migrates it (or, with
// database.migrate false, checks the schema is current). When the primary
// does not answer, the node goes on with a pool that connects once it does
// (the audit sink queues meanwhile); a refused login or a failed migration
// stops the node.
func (n *Node) openPrimary(ctx context.Context) error {
	octx, cancel := context.WithTimeout(ctx, databaseStartTimeout)
	var g *gallery.Gallery
	var err error
	if n.cfg.Database.Migrate == nil || *n.cfg.Database.Migrate {
		g, _, err = gallery.Open(octx, n.cfg.Database.URL)
	} else {
		g, err = gallery.Connect(octx, n.cfg.Database.URL)
	}
	cancel()
	if err == nil {
		n.gallery, n.primary = g, g.Pool()
		return nil
	}
	if !unreachable(err) {
		return err
	}
	n.log.Warn("primary database unreachable at start: deciding from the gallery copy, decisions queue", "err", err)
	pcfg, perr := pgxpool.ParseConfig(n.cfg.Database.URL)
	if perr != nil {
		return fmt.Errorf("database.url: %w", perr)
	}
	pcfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error { return pgxvec.RegisterTypes(ctx, c) }
	if n.primary, perr = pgxpool.NewWithConfig(ctx, pcfg); perr != nil {
		return fmt.Errorf("database.url: %w", perr)
	}
	return nil
}

// unreachable tells a database that is down or cut off (go on without it)
// from one that answers with a refusal (stop).
func unreachable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return false // the server answered: bad credentials, database, migration
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connErr) || errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err)
}

// nodeID names this node's heartbeat row: nodes on one host share the
// clock, so sharing a row is harmless.
func nodeID(cfg Config) string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	return cfg.Gate + "@" + host
}

// ModelTag is the embedding model's tag.
func (n *Node) ModelTag() string { return n.pool.ModelTag() }

// Run starts every camera and its pipeline, the HTTP side and the claim
// expiry, and returns when ctx is cancelled or every camera's source has
// ended (finite files): then every traveller in view has been decided.
func (n *Node) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	// The HTTP side and claim expiry outlive the pipelines only until all
	// cameras are done.
	sideCtx, stopSide := context.WithCancel(gctx)
	defer stopSide()
	var side sync.WaitGroup
	if n.http != nil {
		side.Add(1)
		g.Go(func() error { defer side.Done(); return n.http.run(sideCtx) })
	}
	if n.claims != nil {
		side.Add(1)
		g.Go(func() error { defer side.Done(); n.expireClaims(sideCtx); return nil })
	}
	var cams sync.WaitGroup
	for i, cam := range n.cameras {
		cam, det, lane := cam, n.dets[i], n.cfg.Cameras[i].Lane
		cams.Add(2)
		g.Go(func() error { defer cams.Done(); return cam.Run(gctx) })
		g.Go(func() error { defer cams.Done(); return n.pipeline.RunCamera(gctx, cam, det, lane) })
	}
	g.Go(func() error {
		cams.Wait()
		stopSide()
		return nil
	})
	err := g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil
	}
	return err
}

// expireClaims turns claims no face confirmed into deny events.
func (n *Node) expireClaims(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, c := range n.claims.Expired() {
			cam := ""
			for _, cc := range n.cfg.Cameras {
				if cc.Lane == c.Lane {
					cam = cc.Name
					break
				}
			}
			now := time.Now()
			n.sinks.Send(decision.Event{
				ID: "claim/" + c.ID, Decision: decision.Deny, Reason: decision.ClaimExpired,
				Detail: fmt.Sprintf("no face confirmed the claim within %s", c.Expires.Sub(c.Made).Round(time.Millisecond)),
				Gate:   n.cfg.Gate, Lane: c.Lane, Camera: cam, Claim: c.Person.ExternalID,
				Threshold: n.cfg.Fusion.ClaimThreshold, FirstSeen: c.Made, DecidedAt: now,
			})
		}
	}
}

// Close stops the sinks (flushing what they can) and frees everything.
func (n *Node) Close() error {
	var errs []error
	if n.sinks != nil {
		errs = append(errs, n.sinks.Close())
	}
	for _, c := range n.cameras {
		errs = append(errs, c.Close())
	}
	for _, d := range n.dets {
		errs = append(errs, d.Close())
	}
	if n.pool != nil {
		errs = append(errs, n.pool.Close())
	}
	if n.copy != nil {
		errs = append(errs, n.copy.Close())
	}
	if n.gallery != nil {
		n.gallery.Close()
	} else if n.primary != nil {
		n.primary.Close()
	}
	return errors.Join(errs...)
}

// cropEmbedder is the pipeline's embed stage: crop the face from the
// full-resolution frame, scale it, and let go-face align and embed it.
type cropEmbedder struct {
	pool *facerec.Pool
}

func (e cropEmbedder) EmbedFace(frame gocv.Mat, box image.Rectangle) (engine.Embedding, error) {
	// The same crop+embed step as stills (identify, enrolment).
	f, err := still.EmbedFace(context.Background(), e.pool, frame, box, vision.CropOptions{})
	if err != nil {
		return engine.Embedding{}, err
	}
	return f.Embedding, nil
}
