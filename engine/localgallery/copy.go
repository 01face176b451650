package localgallery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	pgxvec "github.com/pgvector/pgvector-go/pgx"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/gallery"
)

// ErrStale is what every search returns (wrapped in a *StaleError) when the
// copy is older than MaxStaleness or was never loaded: the node must open
// for nobody. It is engine.ErrGalleryStale, so callers that do not import
// this package can test for it.
var ErrStale = engine.ErrGalleryStale

// ErrNotInCopy means a search asked for a model or a gate the copy does not
// hold; the copy cannot answer it (the SQL gallery could).
var ErrNotInCopy = errors.New("localgallery: not in the local copy")

// StaleError says how old the copy is.
type StaleError struct {
	FreshAsOf    time.Time // zero: never loaded
	Age          time.Duration
	MaxStaleness time.Duration
}

func (e *StaleError) Error() string {
	if e.FreshAsOf.IsZero() {
		return "gallery copy never loaded: the database has not answered since the node started and there is no usable snapshot"
	}
	return fmt.Sprintf("gallery copy is %s old (max %s): last synced with the database at %s",
		e.Age.Round(time.Second), e.MaxStaleness, e.FreshAsOf.UTC().Format(time.RFC3339))
}

func (e *StaleError) Unwrap() error { return ErrStale }

// Defaults of Config's zero fields.
const (
	DefaultRefreshInterval   = 100 * time.Millisecond
	DefaultMaxStaleness      = 5 * time.Minute
	DefaultHeartbeatInterval = time.Second
	DefaultStartTimeout      = 10 * time.Second
	DefaultQueryTimeout      = 5 * time.Second
)

// Config says what to copy and from where.
type Config struct {
	// ReadURL is the database the gallery is read from: a streaming replica
	// or the primary. Migration 0004 must be applied (on the primary).
	ReadURL string
	// Scope is the node's gate and zones; Model the embedding model tag.
	// Only people registered for the scope and templates of the model are
	// copied.
	Scope []string
	Model string
	// RefreshInterval is how often the change feed is polled (default 250
	// ms). On a primary a NOTIFY also triggers a refresh at once.
	RefreshInterval time.Duration
	// MaxStaleness: beyond this age every search fails with ErrStale
	// (default 5 min). See the package doc for the rule.
	MaxStaleness time.Duration
	// Heartbeat is a pool on the PRIMARY (the one decisions are written
	// to). When the read database is a standby, the node writes its clock
	// to gallery_heartbeats there every HeartbeatInterval and reads it back
	// from the standby to know how fresh the standby is. Without it a
	// standby's freshness is the commit time of the last transaction it
	// replayed, which on a quiet primary makes the copy look stale.
	Heartbeat         *pgxpool.Pool
	HeartbeatInterval time.Duration // default 1 s
	// NodeID names this node's heartbeat row (default: the scope).
	NodeID string
	// SnapshotPath, when set, is the file the copy is saved to and loaded
	// from when the database is unreachable at start. It holds face
	// templates: keep it on an encrypted local disk (it is written 0600).
	SnapshotPath string
	// StartTimeout bounds Open's first load from the database before it
	// falls back to the snapshot (default 10 s).
	StartTimeout time.Duration
	// QueryTimeout bounds one refresh (default 5 s).
	QueryTimeout time.Duration
	Metrics      *Metrics
	Logger       *slog.Logger
}

func (c *Config) fill() error {
	if c.ReadURL == "" {
		return errors.New("localgallery: ReadURL is required")
	}
	if len(c.Scope) == 0 {
		return errors.New("localgallery: empty gate scope")
	}
	for _, g := range c.Scope {
		if !gallery.GateNamePattern.MatchString(g) {
			return fmt.Errorf("localgallery: gate name %q: want 1-64 letters, digits, '.', '_' or '-'", g)
		}
	}
	if c.Model == "" {
		return errors.New("localgallery: model tag is required")
	}
	if c.RefreshInterval < 0 || c.MaxStaleness < 0 || c.HeartbeatInterval < 0 || c.StartTimeout < 0 || c.QueryTimeout < 0 {
		return errors.New("localgallery: durations must not be negative")
	}
	c.RefreshInterval = orDefault(c.RefreshInterval, DefaultRefreshInterval)
	c.MaxStaleness = orDefault(c.MaxStaleness, DefaultMaxStaleness)
	c.HeartbeatInterval = orDefault(c.HeartbeatInterval, DefaultHeartbeatInterval)
	c.StartTimeout = orDefault(c.StartTimeout, DefaultStartTimeout)
	c.QueryTimeout = orDefault(c.QueryTimeout, DefaultQueryTimeout)
	if c.RefreshInterval >= c.MaxStaleness {
		return fmt.Errorf("localgallery: refresh interval %s must be shorter than max staleness %s", c.RefreshInterval, c.MaxStaleness)
	}
	c.Scope = slices.Compact(slices.Sorted(slices.Values(c.Scope)))
	if c.NodeID == "" {
		c.NodeID = fmt.Sprint(c.Scope)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Copy is a node's local copy of its gate-scoped gallery. Searches are safe
// for concurrent use and never touch the database.
type Copy struct {
	cfg      Config
	scopeSet map[string]bool
	log      *slog.Logger
	m        *Metrics
	read     *pgxpool.Pool

	cur   atomic.Pointer[state]
	fresh atomic.Int64 // unix nanoseconds of freshAsOf; 0: never
	// source is where the current state came from: "database" once a load
	// from the database succeeded in this process, "snapshot" when it came
	// from the file, "" when there is none.
	source  atomic.Value
	standby atomic.Bool
	lastErr atomic.Value // string: the last refresh error, "" after a success

	// Refresh state, under syncMu.
	syncMu   sync.Mutex
	horizon  int64           // xmin of the snapshot of the last read
	lastSync time.Time       // start of the last successful refresh
	seen     map[int64]int64 // feed seq → xid, for rows with xid >= horizon
	failing  time.Time       // when refreshes started failing (zero: they succeed)
	stale    bool            // last reported staleness, for logging transitions
	opening  bool            // Open reports the first load itself

	kick chan struct{}
	// stop ends the refresh, LISTEN and heartbeat goroutines (wg); then
	// stopSaver ends the snapshot saver (saverWG), so its last save sees
	// the final state.
	stop      context.CancelFunc
	wg        sync.WaitGroup
	stopSaver context.CancelFunc
	saverWG   sync.WaitGroup
	closed    sync.Once
}

// Open builds the copy: it loads the gallery from the database (or, when
// the database does not answer within StartTimeout, from the snapshot file)
// and starts refreshing it in the background until Close. The database
// being down is not an error: the copy then answers from the snapshot until
// it is too old, or with ErrStale when there is none. Only a bad
// configuration is.
func Open(ctx context.Context, cfg Config) (*Copy, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(cfg.ReadURL)
	if err != nil {
		return nil, fmt.Errorf("localgallery: read url: %w", err)
	}
	pcfg.MaxConns = 2
	pcfg.MinConns = 0
	pcfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error { return pgxvec.RegisterTypes(ctx, c) }
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("localgallery: read pool: %w", err)
	}
	c := &Copy{cfg: cfg, scopeSet: map[string]bool{}, log: cfg.Logger.With("component", "gallery-copy"),
		m: cfg.Metrics, read: pool, seen: map[int64]int64{}, kick: make(chan struct{}, 1)}
	for _, g := range cfg.Scope {
		c.scopeSet[g] = true
	}
	c.source.Store("")
	c.lastErr.Store("")
	c.opening = true
	c.m.bind(c)

	start := time.Now()
	lctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	err = c.Refresh(lctx)
	cancel()
	if err != nil {
		c.log.Warn("gallery database unreachable at start", "err", err)
		c.loadSnapshotAtStart()
	} else {
		s := c.cur.Load()
		c.log.Info("gallery copy loaded", "people", len(s.people), "templates", s.templates,
			"took", time.Since(start).Round(time.Millisecond), "standby", c.standby.Load())
	}
	c.syncMu.Lock()
	c.stale = c.Stale(time.Now()) != nil
	c.opening = false
	c.syncMu.Unlock()

	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	saverCtx, stopSaver := context.WithCancel(context.WithoutCancel(ctx))
	c.stop, c.stopSaver = stop, stopSaver
	c.wg.Add(2)
	go func() { defer c.wg.Done(); c.refreshLoop(runCtx) }()
	go func() { defer c.wg.Done(); c.listen(runCtx) }()
	if cfg.Heartbeat != nil {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.heartbeat(runCtx) }()
	}
	if cfg.SnapshotPath != "" {
		c.saverWG.Add(1)
		go func() { defer c.saverWG.Done(); c.persist(saverCtx) }()
	}
	return c, nil
}

// Close stops refreshing, saves the snapshot one last time and releases
// the read pool. The copy still answers searches afterwards (until stale).
func (c *Copy) Close() error {
	c.closed.Do(func() {
		c.stop()
		c.wg.Wait()
		c.stopSaver()
		c.saverWG.Wait()
		c.read.Close()
	})
	return nil
}

// FreshAsOf is when the copy was last known to match the database (zero:
// never).
func (c *Copy) FreshAsOf() time.Time {
	n := c.fresh.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Stale returns a *StaleError when the copy may not be decided from at now,
// nil when it may.
func (c *Copy) Stale(now time.Time) error {
	fresh := c.FreshAsOf()
	if c.cur.Load() == nil || fresh.IsZero() {
		return &StaleError{MaxStaleness: c.cfg.MaxStaleness}
	}
	if age := now.Sub(fresh); age > c.cfg.MaxStaleness {
		return &StaleError{FreshAsOf: fresh, Age: age, MaxStaleness: c.cfg.MaxStaleness}
	}
	return nil
}

// Status is what the copy holds and how fresh it is.
type Status struct {
	Source       string // "database", "snapshot" or "" (nothing loaded)
	FreshAsOf    time.Time
	Age          time.Duration
	MaxStaleness time.Duration
	Stale        bool
	People       int
	Templates    int
	MaxSeq       int64  // newest change-feed row applied
	Standby      bool   // the read database is a hot standby
	LastError    string // the last refresh's error, "" when it succeeded
}

// Status reports the copy's state now.
func (c *Copy) Status() Status {
	now := time.Now()
	st := Status{Source: c.source.Load().(string), FreshAsOf: c.FreshAsOf(), MaxStaleness: c.cfg.MaxStaleness,
		Stale: c.Stale(now) != nil, Standby: c.standby.Load(), LastError: c.lastErr.Load().(string)}
	if !st.FreshAsOf.IsZero() {
		st.Age = now.Sub(st.FreshAsOf)
	}
	if s := c.cur.Load(); s != nil {
		st.People, st.Templates, st.MaxSeq = len(s.people), s.templates, s.maxSeq
	}
	return st
}

// usable returns the state to search, or why there is none.
func (c *Copy) usable(model string) (*state, error) {
	if err := c.Stale(time.Now()); err != nil {
		return nil, err
	}
	if model != c.cfg.Model {
		return nil, fmt.Errorf("%w: model %q (the copy holds %q)", ErrNotInCopy, model, c.cfg.Model)
	}
	return c.cur.Load(), nil
}

// scopeFilter returns nil when scope is the copy's whole scope, the set of
// its gates when it is a part of it, and ErrNotInCopy when it names a gate
// the copy does not hold.
func (c *Copy) scopeFilter(scope []string) (map[string]bool, error) {
	if len(scope) == 0 {
		return nil, errors.New("localgallery: empty gate scope")
	}
	set := make(map[string]bool, len(scope))
	for _, g := range scope {
		if !c.scopeSet[g] {
			return nil, fmt.Errorf("%w: gate %q (the copy holds %v)", ErrNotInCopy, g, c.cfg.Scope)
		}
		set[g] = true
	}
	if len(set) == len(c.scopeSet) {
		return nil, nil
	}
	return set, nil
}

func checkProbe(e *engine.Embedding) error {
	for i, v := range e {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("localgallery: probe component %d is %v", i, v)
		}
	}
	return nil
}

// NearestPeople returns the k people nearest to e among those registered
// for a gate in scope, each at the distance of their nearest template of
// model, nearest first, whatever their status: engine/gallery's
// NearestPeople, answered from memory.
func (c *Copy) NearestPeople(ctx context.Context, e engine.Embedding, model string, scope []string, k int) ([]engine.PersonMatch, error) {
	s, err := c.usable(model)
	if err != nil {
		return nil, err
	}
	filter, err := c.scopeFilter(scope)
	if err != nil {
		return nil, err
	}
	if err := checkProbe(&e); err != nil {
		return nil, err
	}
	if k < 0 {
		return nil, fmt.Errorf("localgallery: k %d: want at least 0", k)
	}
	if k == 0 {
		return []engine.PersonMatch{}, nil
	}
	top := s.nearest(&e, filter, k)
	out := make([]engine.PersonMatch, len(top))
	for i, t := range top {
		out[i] = t.p.match(t.d)
	}
	return out, nil
}

// PersonDistance is the 1:1 comparison: the distance from e to the nearest
// template of model of one person, with the registration. It returns
// engine.ErrUnknownPerson when the person has no such template in the copy
// (including a person not registered for the copy's scope).
func (c *Copy) PersonDistance(ctx context.Context, e engine.Embedding, model, externalID string) (engine.PersonMatch, error) {
	s, err := c.usable(model)
	if err != nil {
		return engine.PersonMatch{}, err
	}
	if err := checkProbe(&e); err != nil {
		return engine.PersonMatch{}, err
	}
	p := s.byExternal[externalID]
	if p == nil || len(p.emb) == 0 {
		return engine.PersonMatch{}, fmt.Errorf("%w: %q has no template", engine.ErrUnknownPerson, externalID)
	}
	return p.match(nearestTemplate(p.emb, &e)), nil
}

// RegisteredInScope reports whether a person is registered for any gate in
// scope, with the registration (for 1:1 claims), like engine/gallery's.
func (c *Copy) RegisteredInScope(ctx context.Context, externalID string, scope []string) (engine.PersonMatch, error) {
	if err := c.Stale(time.Now()); err != nil {
		return engine.PersonMatch{}, err
	}
	filter, err := c.scopeFilter(scope)
	if err != nil {
		return engine.PersonMatch{}, err
	}
	p := c.cur.Load().byExternal[externalID]
	if p == nil || !p.inScope(filter) {
		return engine.PersonMatch{}, fmt.Errorf("%w: %q is not registered for %v", engine.ErrUnknownPerson, externalID, scope)
	}
	return p.match(0), nil
}
