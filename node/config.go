// Package node is a gate node: it reads the configuration, builds the
// components (cameras, detector, recogniser pool, gallery, pipeline, sinks,
// HTTP server), runs them under one context, and closes them in order.
// `loopgate serve` is a thin wrapper around it.
package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/fuse"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/engine/localgallery"
	"github.com/loopgate/loopgate/engine/quality"
	"github.com/loopgate/loopgate/engine/track"
)

// Config is the gate node's YAML configuration (deploy/gate-node.example.yaml
// documents every field). Unknown fields are errors.
type Config struct {
	// Gate is this node's gate; Zones are larger areas it belongs to. The
	// node searches only people registered for one of them.
	Gate  string   `yaml:"gate"`
	Zones []string `yaml:"zones"`

	Database struct {
		// URL of the PRIMARY PostgreSQL with pgvector: migrations, decisions
		// (sinks.audit) and, with read_url, the gallery heartbeat. Env
		// LOOPGATE_DATABASE_URL overrides.
		URL string `yaml:"url"`
		// ReadURL is where the node reads its gallery copy from: a streaming
		// replica near the node, or empty for URL. Env
		// LOOPGATE_DATABASE_READ_URL overrides.
		ReadURL string `yaml:"read_url"`
		// Migrate applies pending migrations at start (default true: the
		// project-local and demo set-ups). A node whose role may not
		// change the schema (deploy/roles.sql's loopgate_gate) sets false:
		// it then checks that the schema is current and refuses to start
		// on an older one.
		Migrate *bool `yaml:"migrate"`
	} `yaml:"database"`

	Gallery GalleryConfig `yaml:"gallery"`

	Models struct {
		// Dir holds the verified model files; env LOOPGATE_MODEL_DIR overrides.
		Dir string `yaml:"dir"`
	} `yaml:"models"`

	Cameras []CameraConfig `yaml:"cameras"`

	Detector struct {
		InputWidth     int     `yaml:"input_width"`
		ScoreThreshold float32 `yaml:"score_threshold"`
	} `yaml:"detector"`

	// Recognizers is the go-face pool size (default: the number of cores).
	Recognizers int `yaml:"recognizers"`

	// Quality is the gate quality profile (default quality.Gate); a YAML
	// quality: section overrides the fields it names, the rest stay.
	Quality *quality.Thresholds `yaml:"quality"`

	Fusion   FusionConfig   `yaml:"fusion"`
	Tracking TrackingConfig `yaml:"tracking"`

	Claims struct {
		Enabled    bool          `yaml:"enabled"`
		DefaultTTL time.Duration `yaml:"default_ttl"`
		MaxTTL     time.Duration `yaml:"max_ttl"`
	} `yaml:"claims"`

	Sinks SinksConfig `yaml:"sinks"`

	HTTP HTTPConfig `yaml:"http"`

	Live struct {
		// FPS bounds annotated frames per camera for /live (0 disables).
		FPS float64 `yaml:"fps"`
	} `yaml:"live"`
}

// CameraConfig is one camera.
type CameraConfig struct {
	Name string `yaml:"name"`
	// URI: a file path or file:// URI, device:N or /dev/videoN, rtsp://,
	// http(s):// (MJPEG).
	URI  string `yaml:"uri"`
	Lane string `yaml:"lane"`
	// Loop replays a file source forever (demos, soak runs).
	Loop bool `yaml:"loop"`
	// Fast reads a file source as fast as possible instead of at its own
	// frame rate (benchmarks).
	Fast bool `yaml:"fast"`
}

// GalleryConfig is the node's local copy of its gate-scoped gallery
// (engine/localgallery): the node decides from it, so it keeps working
// while the database does not answer.
type GalleryConfig struct {
	// RefreshInterval is how often the copy polls the change feed; on a
	// primary a NOTIFY also refreshes it at once.
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	// MaxStaleness: when the copy has not synced with the database for
	// longer than this, the node denies everyone (reason gallery_stale): it
	// cannot know who was revoked since. Within it, a revocation can take
	// this long to reach a node cut off from the database.
	MaxStaleness time.Duration `yaml:"max_staleness"`
	// Snapshot is a file the copy is saved to, loaded when the database is
	// unreachable at start (so a node restarted during an outage still
	// decides within max_staleness); empty: none. It holds the face
	// templates of everyone registered for this gate: put it on an
	// encrypted local disk; it is written with mode 0600.
	Snapshot string `yaml:"snapshot"`
}

// FusionConfig is the decision rule (engine/fuse.Rule).
type FusionConfig struct {
	Threshold      float64 `yaml:"threshold"`
	Margin         float64 `yaml:"margin"`
	MinFrames      int     `yaml:"min_frames"`
	MaxFrames      int     `yaml:"max_frames"`
	ClaimThreshold float64 `yaml:"claim_threshold"`
}

// Rule converts to the engine's type.
func (f FusionConfig) Rule() fuse.Rule {
	return fuse.Rule{Threshold: f.Threshold, Margin: f.Margin, MinFrames: f.MinFrames, MaxFrames: f.MaxFrames, ClaimThreshold: f.ClaimThreshold}
}

// TrackingConfig is engine/track's Config plus the noise filter.
type TrackingConfig struct {
	MinIoU         float64       `yaml:"min_iou"`
	MaxCentreShift float64       `yaml:"max_centre_shift"`
	MaxGap         time.Duration `yaml:"max_gap"`
	MaxAge         time.Duration `yaml:"max_age"`
	MinTrackHits   int           `yaml:"min_track_hits"`
}

// Track converts to the engine's type.
func (t TrackingConfig) Track() track.Config {
	return track.Config{MinIoU: t.MinIoU, MaxCentreShift: t.MaxCentreShift, MaxGap: t.MaxGap, MaxAge: t.MaxAge}
}

// SinksConfig says where decisions go.
type SinksConfig struct {
	// Stdout writes JSON lines to standard output.
	Stdout bool `yaml:"stdout"`
	// File appends JSON lines to a file.
	File string `yaml:"file"`
	// Audit writes every decision to the database's decisions table.
	Audit bool `yaml:"audit"`
	// AuditSpool keeps decisions on local disk until the database has them,
	// so a database outage or a SIGKILL loses none (sink/spool.go).
	AuditSpool AuditSpoolConfig `yaml:"audit_spool"`
	Webhook    *WebhookConfig   `yaml:"webhook"`
}

// AuditSpoolConfig is the audit sink's durable queue.
type AuditSpoolConfig struct {
	// Dir on persistent local disk (not tmpfs), used by this node alone;
	// empty keeps the backlog in memory only (lost on a crash).
	Dir string `yaml:"dir"`
	// MaxBytes bounds the spool (default 1 GiB); beyond it decisions wait
	// in memory.
	MaxBytes int64 `yaml:"max_bytes"`
}

// WebhookConfig posts decisions to the gate controller.
type WebhookConfig struct {
	URL       string        `yaml:"url"`
	Timeout   time.Duration `yaml:"timeout"`
	QueueSize int           `yaml:"queue_size"`
	// BearerTokenFile holds the controller's token (never in the config).
	BearerTokenFile string `yaml:"bearer_token_file"`
}

// HTTPConfig is the node's HTTP side.
type HTTPConfig struct {
	// Addr to listen on; empty disables HTTP. Env LOOPGATE_HTTP_ADDR overrides.
	Addr    string `yaml:"addr"`
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// Tokens authenticate API clients and operators; only the sha256 of
	// each secret is configured.
	Tokens []TokenConfig `yaml:"tokens"`
}

// TokenConfig is one accepted token.
type TokenConfig struct {
	Name   string   `yaml:"name"`
	SHA256 string   `yaml:"sha256"`
	Roles  []string `yaml:"roles"`
}

// DefaultFusion is the calibrated decision rule (benchmarks/results/
// identify.md, section 6): the mean embedding of 3 quality frames, searched
// once against a gate scope of 100 people, opens within 0.42 of a person
// who is at least 0.08 nearer than the next. Measured on LFW walkers (3
// photos each): per-walker FPIR 0.25% (6 of 2,384 stranger searches, 95% CI
// 0.09-0.55%), FNIR 14.75% (45 of 305). Only 596 distinct strangers exist in
// LFW, so "0.3%" rests on about two people: recalibrate on site data.
//
// MaxFrames equals MinFrames: one search per traveller. Searching again
// after every further frame gives a stranger another chance each time (on
// 5-frame walkers FPIR rose from 0.37% to 0.56%), so a site that raises
// max_frames must recalibrate. ClaimThreshold (1:1) is the per-comparison
// engine.DefaultMatchThreshold (FMR 1e-4 on LFW pairs).
var DefaultFusion = FusionConfig{Threshold: 0.42, Margin: 0.08, MinFrames: 3, MaxFrames: 3, ClaimThreshold: engine.DefaultMatchThreshold}

// Defaults returns a configuration with every default filled in.
func Defaults() Config {
	var c Config
	c.Models.Dir = ".loopgate/models"
	c.Detector.InputWidth = 640
	c.Detector.ScoreThreshold = 0.75
	c.Recognizers = runtime.NumCPU()
	gate := quality.Gate
	c.Quality = &gate
	c.Fusion = DefaultFusion
	c.Tracking = TrackingConfig{MinIoU: track.DefaultConfig.MinIoU, MaxCentreShift: track.DefaultConfig.MaxCentreShift,
		MaxGap: track.DefaultConfig.MaxGap, MaxAge: track.DefaultConfig.MaxAge, MinTrackHits: 4}
	c.Gallery.RefreshInterval = localgallery.DefaultRefreshInterval
	c.Gallery.MaxStaleness = localgallery.DefaultMaxStaleness
	c.Claims.DefaultTTL = 10 * time.Second
	c.Claims.MaxTTL = 60 * time.Second
	c.Sinks.Stdout = true
	c.Sinks.Audit = true
	c.Live.FPS = 5
	return c
}

// Load reads a YAML file strictly over the defaults, applies environment
// overrides, and validates the result.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML over the defaults (unknown fields are errors), applies
// environment overrides and validates.
func Parse(data []byte) (Config, error) {
	cfg := Defaults()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, err
	}
	if err := cfg.applyEnv(os.LookupEnv); err != nil {
		return Config{}, err
	}
	if cfg.Recognizers == 0 {
		cfg.Recognizers = runtime.NumCPU()
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// EnvOverrides lists the environment variables that override the file.
var EnvOverrides = []struct{ Name, Field string }{
	{"LOOPGATE_DATABASE_URL", "database.url"},
	{"LOOPGATE_DATABASE_READ_URL", "database.read_url"},
	{"LOOPGATE_MODEL_DIR", "models.dir"},
	{"LOOPGATE_HTTP_ADDR", "http.addr"},
	{"LOOPGATE_FUSION_THRESHOLD", "fusion.threshold"},
}

func (c *Config) applyEnv(lookup func(string) (string, bool)) error {
	if v, ok := lookup("LOOPGATE_DATABASE_URL"); ok && v != "" {
		c.Database.URL = v
	}
	if v, ok := lookup("LOOPGATE_DATABASE_READ_URL"); ok && v != "" {
		c.Database.ReadURL = v
	}
	if v, ok := lookup("LOOPGATE_MODEL_DIR"); ok && v != "" {
		c.Models.Dir = v
	}
	if v, ok := lookup("LOOPGATE_HTTP_ADDR"); ok {
		c.HTTP.Addr = v
	}
	if v, ok := lookup("LOOPGATE_FUSION_THRESHOLD"); ok && v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("LOOPGATE_FUSION_THRESHOLD=%q: %w", v, err)
		}
		c.Fusion.Threshold = f
	}
	return nil
}

// Validate checks every field and names the first bad one.
func (c Config) Validate() error {
	if !gallery.GateNamePattern.MatchString(c.Gate) {
		return fmt.Errorf("gate %q: required, 1-64 letters, digits, '.', '_' or '-'", c.Gate)
	}
	for i, z := range c.Zones {
		if !gallery.GateNamePattern.MatchString(z) {
			return fmt.Errorf("zones[%d] %q: 1-64 letters, digits, '.', '_' or '-'", i, z)
		}
	}
	if c.Database.URL == "" {
		return errors.New("database.url: required (or set LOOPGATE_DATABASE_URL)")
	}
	if g := c.Gallery; g.RefreshInterval < 10*time.Millisecond || g.RefreshInterval > time.Minute {
		return fmt.Errorf("gallery.refresh_interval %s: want 10ms-1m", g.RefreshInterval)
	} else if g.MaxStaleness <= g.RefreshInterval || g.MaxStaleness > 24*time.Hour {
		return fmt.Errorf("gallery.max_staleness %s: want more than refresh_interval (%s), at most 24h", g.MaxStaleness, g.RefreshInterval)
	}
	if c.Models.Dir == "" {
		return errors.New("models.dir: required")
	}
	if len(c.Cameras) == 0 {
		return errors.New("cameras: at least one camera is required")
	}
	names := map[string]bool{}
	for i, cam := range c.Cameras {
		switch {
		case !gallery.GateNamePattern.MatchString(cam.Name):
			return fmt.Errorf("cameras[%d].name %q: required, 1-64 letters, digits, '.', '_' or '-'", i, cam.Name)
		case names[cam.Name]:
			return fmt.Errorf("cameras[%d].name %q: duplicate", i, cam.Name)
		case strings.TrimSpace(cam.URI) == "":
			return fmt.Errorf("cameras[%d].uri: required", i)
		case cam.Lane != "" && !gallery.GateNamePattern.MatchString(cam.Lane):
			return fmt.Errorf("cameras[%d].lane %q: 1-64 letters, digits, '.', '_' or '-'", i, cam.Lane)
		}
		names[cam.Name] = true
	}
	if c.Detector.InputWidth < 160 || c.Detector.InputWidth > 1920 {
		return fmt.Errorf("detector.input_width %d: want 160-1920", c.Detector.InputWidth)
	}
	if c.Detector.ScoreThreshold <= 0 || c.Detector.ScoreThreshold >= 1 {
		return fmt.Errorf("detector.score_threshold %v: want (0, 1)", c.Detector.ScoreThreshold)
	}
	if c.Recognizers < 1 || c.Recognizers > 64 {
		return fmt.Errorf("recognizers %d: want 1-64", c.Recognizers)
	}
	if err := c.Fusion.Rule().Validate(); err != nil {
		return err
	}
	if err := c.Tracking.Track().Validate(); err != nil {
		return fmt.Errorf("tracking: %w", err)
	}
	if c.Tracking.MinTrackHits < 1 {
		return fmt.Errorf("tracking.min_track_hits %d: want at least 1", c.Tracking.MinTrackHits)
	}
	if c.Claims.Enabled {
		if c.Claims.DefaultTTL <= 0 || c.Claims.MaxTTL < c.Claims.DefaultTTL {
			return fmt.Errorf("claims: default_ttl %s must be positive and at most max_ttl %s", c.Claims.DefaultTTL, c.Claims.MaxTTL)
		}
		if c.HTTP.Addr == "" {
			return errors.New("claims.enabled needs http.addr: claims arrive over POST /api/v1/claims")
		}
	}
	if w := c.Sinks.Webhook; w != nil {
		if !strings.HasPrefix(w.URL, "http://") && !strings.HasPrefix(w.URL, "https://") {
			return fmt.Errorf("sinks.webhook.url %q: want an http(s) URL", w.URL)
		}
		if w.QueueSize < 0 || w.Timeout < 0 {
			return errors.New("sinks.webhook: queue_size and timeout must not be negative")
		}
	}
	if (c.HTTP.TLSCert == "") != (c.HTTP.TLSKey == "") {
		return errors.New("http.tls_cert and http.tls_key: give both or neither")
	}
	for i, t := range c.HTTP.Tokens {
		if t.Name == "" || len(t.SHA256) != 64 || strings.Trim(strings.ToLower(t.SHA256), "0123456789abcdef") != "" {
			return fmt.Errorf("http.tokens[%d]: want a name and the 64-hex-digit sha256 of the secret", i)
		}
		if len(t.Roles) == 0 {
			return fmt.Errorf("http.tokens[%d].roles: at least one of operator, lane", i)
		}
		for _, r := range t.Roles {
			if r != "operator" && r != "lane" {
				return fmt.Errorf("http.tokens[%d].roles: unknown role %q (operator, lane)", i, r)
			}
		}
	}
	if c.Live.FPS < 0 || c.Live.FPS > 30 {
		return fmt.Errorf("live.fps %v: want 0-30", c.Live.FPS)
	}
	return nil
}

// Scope is the gate plus its zones.
func (c Config) Scope() []string { return append([]string{c.Gate}, c.Zones...) }

// ReadURL is where the gallery copy is read from: database.read_url, or
// database.url without one.
func (c Config) ReadURL() string {
	if c.Database.ReadURL != "" {
		return c.Database.ReadURL
	}
	return c.Database.URL
}
