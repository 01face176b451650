// Package service is the enrolment service: it reads its configuration,
// builds the registry (database, detector, recogniser, optional photo
// vault) and the officers' API and web page, runs them, and closes them in
// order. `loopgate enrolment serve` is a thin wrapper around it.
package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.yaml.in/yaml/v3"
	"golang.org/x/sync/errgroup"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/engine/still"
	"github.com/loopgate/loopgate/enroll"
	"github.com/loopgate/loopgate/enroll/api"
)

// ErrConfig wraps every configuration error; messages name the field.
var ErrConfig = errors.New("enrolment config")

// Config is the enrolment service's YAML configuration
// (deploy/enrolment.example.yaml documents it). Unknown fields are errors.
type Config struct {
	Database struct {
		// URL of PostgreSQL; env LOOPGATE_DATABASE_URL overrides. URLFile
		// reads it from a file instead (a systemd credential, a secret
		// mount), so a password never sits in the config.
		URL     string `yaml:"url"`
		URLFile string `yaml:"url_file"`
		// Migrate applies schema migrations at start. It needs the schema
		// owner's role; a deployment with separate roles runs
		// `loopgate migrate` as the owner and sets this false.
		Migrate *bool `yaml:"migrate"`
	} `yaml:"database"`
	Models struct {
		// Dir holds the verified model files; env LOOPGATE_MODEL_DIR overrides.
		Dir string `yaml:"dir"`
	} `yaml:"models"`
	HTTP struct {
		// Addr; env LOOPGATE_HTTP_ADDR overrides. Default 127.0.0.1:8444.
		Addr           string        `yaml:"addr"`
		TLSCertFile    string        `yaml:"tls_cert_file"`
		TLSKeyFile     string        `yaml:"tls_key_file"`
		SecureCookies  bool          `yaml:"secure_cookies"`
		SessionTTL     time.Duration `yaml:"session_ttl"`
		LoginPerMinute int           `yaml:"login_per_minute"`
		MaxPhotoBytes  int64         `yaml:"max_photo_bytes"`
	} `yaml:"http"`
	Photos struct {
		// Retain keeps each accepted photo sealed (AES-256-GCM) with the
		// key in KeyFile, for Retention. Off by default: templates only.
		Retain    bool          `yaml:"retain"`
		KeyFile   string        `yaml:"key_file"`
		Retention time.Duration `yaml:"retention"`
	} `yaml:"photos"`
	Identity struct {
		// DuplicateThreshold: default engine.DefaultMatchThreshold.
		DuplicateThreshold float64 `yaml:"duplicate_threshold"`
	} `yaml:"identity"`
}

// Load reads a YAML file strictly, applies the environment, and validates.
func Load(path string) (Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("%w: %s: %v", ErrConfig, path, err)
	}
	c.ApplyEnv()
	return c, c.Validate()
}

// ApplyEnv applies the LOOPGATE_* overrides.
func (c *Config) ApplyEnv() {
	if v := os.Getenv("LOOPGATE_DATABASE_URL"); v != "" {
		c.Database.URL, c.Database.URLFile = v, ""
	}
	if v := os.Getenv("LOOPGATE_MODEL_DIR"); v != "" {
		c.Models.Dir = v
	}
	if v := os.Getenv("LOOPGATE_HTTP_ADDR"); v != "" {
		c.HTTP.Addr = v
	}
}

// Validate checks the configuration and reads the URL file.
func (c *Config) Validate() error {
	if c.Database.URLFile != "" {
		if c.Database.URL != "" {
			return fmt.Errorf("%w: database.url and database.url_file: give one", ErrConfig)
		}
		b, err := os.ReadFile(os.ExpandEnv(c.Database.URLFile))
		if err != nil {
			return fmt.Errorf("%w: database.url_file: %v", ErrConfig, err)
		}
		c.Database.URL = strings.TrimSpace(string(b))
	}
	if c.Database.URL == "" {
		return fmt.Errorf("%w: database.url (or url_file, or LOOPGATE_DATABASE_URL) is required", ErrConfig)
	}
	if c.Models.Dir == "" {
		return fmt.Errorf("%w: models.dir (or LOOPGATE_MODEL_DIR) is required", ErrConfig)
	}
	if c.HTTP.Addr == "" {
		c.HTTP.Addr = "127.0.0.1:8444"
	}
	if c.Database.Migrate == nil {
		yes := true
		c.Database.Migrate = &yes
	}
	if c.Photos.Retain {
		if c.Photos.KeyFile == "" {
			return fmt.Errorf("%w: photos.key_file is required when photos.retain is true", ErrConfig)
		}
		if c.Photos.Retention <= 0 {
			return fmt.Errorf("%w: photos.retention must be positive when photos.retain is true (e.g. 720h)", ErrConfig)
		}
	}
	if d := c.Identity.DuplicateThreshold; d < 0 || d > 2 {
		return fmt.Errorf("%w: identity.duplicate_threshold %v: want 0 (default %.2f) to 2", ErrConfig, d, engine.DefaultMatchThreshold)
	}
	return nil
}

// Options are what the caller adds.
type Options struct {
	Logger   *slog.Logger
	Registry *prometheus.Registry
}

// Service is a provisioned enrolment service.
type Service struct {
	cfg      Config
	log      *slog.Logger
	gallery  *gallery.Gallery
	rec      *facerec.Recognizer
	stills   *still.Analyzer
	registry *enroll.Registry
	accounts *enroll.Accounts
	api      *api.Server
}

// New provisions the service: database, models, registry and API.
func New(ctx context.Context, cfg Config, opts Options) (s *Service, err error) {
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
	s = &Service{cfg: cfg, log: opts.Logger}
	built := s // `return nil, err` clears s before the deferred call runs
	defer func() {
		if err != nil {
			built.Close()
		}
	}()
	if *cfg.Database.Migrate {
		s.gallery, _, err = gallery.Open(ctx, cfg.Database.URL)
	} else {
		s.gallery, err = gallery.Connect(ctx, cfg.Database.URL)
	}
	if err != nil {
		return nil, err
	}
	if s.rec, err = facerec.New(facerec.Config{ModelDir: cfg.Models.Dir, Logger: s.log}); err != nil {
		return nil, err
	}
	if s.stills, err = still.New(still.Config{ModelDir: cfg.Models.Dir}, s.rec); err != nil {
		return nil, err
	}
	var vault *enroll.PhotoVault
	if cfg.Photos.Retain {
		if vault, err = enroll.NewPhotoVault(os.ExpandEnv(cfg.Photos.KeyFile), cfg.Photos.Retention); err != nil {
			return nil, err
		}
	} else {
		s.log.Info("photo retention is off: only templates are stored")
	}
	s.registry, err = enroll.NewRegistry(enroll.RegistryConfig{
		Pool:               s.gallery.Pool(),
		Checker:            &enroll.Service{Stills: s.stills, Model: s.rec.ModelTag()},
		DuplicateThreshold: cfg.Identity.DuplicateThreshold,
		Vault:              vault,
		Logger:             s.log,
	})
	if err != nil {
		return nil, err
	}
	s.accounts = enroll.NewAccounts(s.gallery.Pool())
	s.api, err = api.New(api.Config{
		Addr: cfg.HTTP.Addr, TLSCertFile: os.ExpandEnv(cfg.HTTP.TLSCertFile), TLSKeyFile: os.ExpandEnv(cfg.HTTP.TLSKeyFile),
		SecureCookies: cfg.HTTP.SecureCookies, SessionTTL: cfg.HTTP.SessionTTL, LoginPerMinute: cfg.HTTP.LoginPerMinute,
		MaxPhotoBytes: cfg.HTTP.MaxPhotoBytes,
	}, api.Deps{
		Registry: s.registry, Accounts: s.accounts, DB: s.gallery.Pool(),
		Registerer: opts.Registry, Gatherer: opts.Registry, Logger: s.log,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Registry is the service's registry (tests, the bulk loader).
func (s *Service) Registry() *enroll.Registry { return s.registry }

// Accounts is the service's account store.
func (s *Service) Accounts() *enroll.Accounts { return s.accounts }

// API is the HTTP server.
func (s *Service) API() *api.Server { return s.api }

// Run serves until ctx ends, purging expired photos every hour.
func (s *Service) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.api.Run(ctx) })
	if s.cfg.Photos.Retain {
		g.Go(func() error {
			t := time.NewTicker(time.Hour)
			defer t.Stop()
			for {
				n, err := enroll.PurgeExpired(ctx, s.gallery.Pool())
				switch {
				case err != nil && ctx.Err() == nil:
					s.log.Error("purging expired photos", "err", err)
				case n > 0:
					s.log.Info("purged expired photos", "count", n)
				}
				select {
				case <-ctx.Done():
					return nil
				case <-t.C:
				}
			}
		})
	}
	return g.Wait()
}

// Close releases everything New built.
func (s *Service) Close() {
	if s.stills != nil {
		s.stills.Close()
	}
	if s.rec != nil {
		s.rec.Close()
	}
	if s.gallery != nil {
		s.gallery.Close()
	}
}
