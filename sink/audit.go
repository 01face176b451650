package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/loopgate/loopgate/engine/decision"
)

// ErrNoPool is returned by NewAudit without a pool.
var ErrNoPool = errors.New("sink: audit needs a database pool")

// AuditConfig tunes the audit sink; the zero value is usable.
//
// Without SpoolDir the backlog lives in memory only: a process crash, or a
// database outage longer than the queue holds, loses decisions (each loss
// is counted and logged with the whole event, so it can be recovered from
// the log).
//
// With SpoolDir, Send appends each decision to a spool on local disk and
// fsyncs it before returning, so decisions made while the database is down
// survive a crash (SIGKILL, power cut) and are written when it returns,
// including by the next start. The spool delivers at least once; the
// INSERT ignores an event_id it already has, so the table gets each
// decision exactly once. When the spool cannot take a decision (disk full,
// SpoolMaxBytes reached, I/O error) it is held in memory instead, up to
// QueueSize, and the next decision the spool takes brings those to disk
// too: nothing is lost unless the memory queue overflows as well, or the
// process dies while they are in memory (loopgate_sink_spool_fallback_length
// says how many that would be).
//
// Memory overflow drops the OLDEST queued event, like the webhook: either
// choice loses one record, and the recent ones are what operators ask about
// first when the database comes back.
type AuditConfig struct {
	Name string // metrics label; default "audit"
	// QueueSize bounds the backlog kept in memory: all of it without a
	// spool, only what the spool could not take with one; default 10000
	// (about 10 MB of events).
	QueueSize int
	// SpoolDir is the spool's directory on local disk, its own (created
	// 0700; files 0600, decisions carry names; one process at a time, it is
	// locked). Empty: no spool, the backlog is in memory only.
	SpoolDir string
	// SpoolMaxBytes bounds the spool on disk; default 1 GiB (about two
	// million decisions of 500 bytes), minimum 16 KiB.
	SpoolMaxBytes int64
	// MinBackoff and MaxBackoff bound the retry backoff; defaults 200 ms and 10 s.
	MinBackoff, MaxBackoff time.Duration
	// WriteTimeout bounds one INSERT (including getting a connection);
	// default 5 s.
	WriteTimeout time.Duration
	// FlushTimeout bounds how long Close keeps writing the backlog; default
	// 10 s. With a spool, Close stops at the first failed write too, and
	// what is left stays in the spool for the next start.
	FlushTimeout time.Duration
	Metrics      *Metrics
	Logger       *slog.Logger
}

// Audit writes every decision into the decisions table. A write that fails
// for a transient reason (connection, timeout, server shutting down) is
// retried with backoff until it succeeds or Close's deadline passes. The
// INSERT is idempotent on event_id, so a retry after a lost reply stores
// the row once. A row the database refuses for good (a constraint or data
// error) is counted and logged with the whole event, never retried forever.
type Audit struct {
	pool    *pgxpool.Pool
	cfg     AuditConfig
	q       auditQueue
	backoff backoff
	// stopRetrying, with a spool, reports that Close has begun: a failed
	// write then leaves its event in the spool instead of being retried.
	stopRetrying func() bool
}

// auditQueue is the backlog: pump (memory) or spooledPump (disk).
type auditQueue interface {
	send(decision.Event)
	backlog() int
	shutdown(ctx context.Context) error
}

var _ decision.Sink = (*Audit)(nil)

// NewAudit starts an audit writer on pool (gallery.Gallery.Pool() gives
// one; the schema must be migrated). With cfg.SpoolDir it first takes stock
// of the spool, and starts by writing what a previous run left there.
func NewAudit(pool *pgxpool.Pool, cfg AuditConfig) (*Audit, error) {
	if pool == nil {
		return nil, ErrNoPool
	}
	if cfg.QueueSize < 0 || cfg.SpoolMaxBytes < 0 || cfg.MinBackoff < 0 || cfg.MaxBackoff < 0 ||
		cfg.WriteTimeout < 0 || cfg.FlushTimeout < 0 {
		return nil, errors.New("sink: audit: durations and sizes must not be negative")
	}
	cfg.Name = orDefault(cfg.Name, "audit")
	cfg.QueueSize = orDefault(cfg.QueueSize, 10000)
	cfg.SpoolMaxBytes = orDefault(cfg.SpoolMaxBytes, 1<<30)
	cfg.MinBackoff = orDefault(cfg.MinBackoff, 200*time.Millisecond)
	cfg.MaxBackoff = orDefault(cfg.MaxBackoff, 10*time.Second)
	cfg.WriteTimeout = orDefault(cfg.WriteTimeout, 5*time.Second)
	cfg.FlushTimeout = orDefault(cfg.FlushTimeout, 10*time.Second)
	cfg.Logger = orDefaultLogger(cfg.Logger)
	if cfg.MaxBackoff < cfg.MinBackoff {
		return nil, fmt.Errorf("sink: audit: MaxBackoff %v < MinBackoff %v", cfg.MaxBackoff, cfg.MinBackoff)
	}
	a := &Audit{pool: pool, cfg: cfg, backoff: backoff{min: cfg.MinBackoff, max: cfg.MaxBackoff}}
	if cfg.SpoolDir != "" {
		sp, err := openSpool(cfg.SpoolDir, cfg.SpoolMaxBytes, cfg.Name, cfg.Metrics, cfg.Logger)
		if err != nil {
			return nil, fmt.Errorf("sink: audit: %w", err)
		}
		sq := newSpooledPump(sp, cfg.QueueSize, cfg.Name, cfg.Metrics, cfg.Logger, cfg.FlushTimeout, a.deliver)
		a.q, a.stopRetrying = sq, sq.closingNow
		sq.start()
		return a, nil
	}
	p := &pump{
		name:         cfg.Name,
		logEvents:    true,
		q:            newQueue(cfg.QueueSize),
		m:            cfg.Metrics,
		log:          cfg.Logger,
		flushTimeout: cfg.FlushTimeout,
		deliver:      a.deliver,
	}
	a.q = p
	p.start()
	return a, nil
}

// Name is the metrics label.
func (a *Audit) Name() string { return a.cfg.Name }

// Send queues e; it never waits for the database. With a spool it returns
// once e is on disk and fsynced (or, the spool failing, held in memory).
func (a *Audit) Send(e decision.Event) { a.q.send(e) }

// Backlog is the number of events waiting to be written (with a spool: on
// disk, being written, and held in memory).
func (a *Audit) Backlog() int { return a.q.backlog() }

// Close writes the backlog within FlushTimeout, then stops. Without a
// spool, events still unwritten are counted, logged in full, and reported
// in the error; with one they stay in the spool for the next start, and
// only those it could not take are. It does not close the pool.
func (a *Audit) Close() error { return a.Shutdown(context.Background()) }

// Shutdown is Close bounded by ctx as well.
func (a *Audit) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.FlushTimeout)
	defer cancel()
	return a.q.shutdown(ctx)
}

const insertDecision = `
INSERT INTO decisions (event_id, gate, lane, camera, track_id, decision, reason, person_id,
                       distance, margin, threshold, frames_used, first_seen, decided_at, event)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (event_id) DO NOTHING`

type writeFailure int

const (
	transientFailure writeFailure = iota
	rowRejected
	personGone
)

// classify sorts a failed INSERT: a row the database refuses (SQLSTATE class
// 22 data exception, 23 integrity violation) will be refused again, while
// everything else (no connection, timeouts, class 08/40/53/57/58, even a
// missing table during a deployment) may pass later.
func classify(err error) writeFailure {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return transientFailure
	}
	if pgErr.Code == "23503" && pgErr.ConstraintName == "decisions_person_id_fkey" {
		return personGone
	}
	switch pgErr.Code[:2] {
	case "22", "23":
		return rowRejected
	}
	return transientFailure
}

func (a *Audit) deliver(ctx context.Context, e decision.Event) bool {
	name, log := a.cfg.Name, a.cfg.Logger
	raw, err := json.Marshal(e)
	if err != nil {
		a.cfg.Metrics.failed(name, FailMarshal)
		log.Error("AUDIT: decision not recorded: cannot encode it", "sink", name, "event_id", e.ID, "err", err)
		return true
	}
	var personID *int64
	if e.Person != nil {
		id := e.Person.ID
		personID = &id
	}
	for attempt := 0; ; attempt++ {
		inserted, err := a.insert(ctx, e, raw, personID)
		if err == nil {
			a.cfg.Metrics.delivered(name)
			if !inserted {
				log.Debug("audit: decision already recorded", "sink", name, "event_id", e.ID)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		switch classify(err) {
		case personGone:
			// The registration was deleted between the match and this
			// write: keep the decision, as the schema's ON DELETE SET NULL
			// would have.
			a.cfg.Metrics.failed(name, FailPersonGone)
			log.Warn("audit: matched person no longer exists; recording the decision without person_id",
				"sink", name, "event_id", e.ID, "person_id", *personID)
			personID = nil
			continue
		case rowRejected:
			a.cfg.Metrics.failed(name, FailRejected)
			log.Error("AUDIT: database refused the decision row; NOT RECORDED", "sink", name,
				"event_id", e.ID, "err", err, "event", string(raw))
			return true
		}
		a.cfg.Metrics.failed(name, FailDatabase)
		if a.stopRetrying != nil && a.stopRetrying() {
			log.Warn("audit: decision write failed while closing; it stays in the spool for the next start",
				"sink", name, "event_id", e.ID, "err", err)
			return false
		}
		wait := a.backoff.delay(attempt)
		log.Warn("audit: decision write failed; retrying", "sink", name, "event_id", e.ID,
			"attempt", attempt+1, "retry_in", wait, "backlog", a.Backlog(), "err", err)
		a.cfg.Metrics.retried(name)
		if !sleep(ctx, wait) {
			return false
		}
	}
}

func (a *Audit) insert(ctx context.Context, e decision.Event, raw []byte, personID *int64) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.WriteTimeout)
	defer cancel()
	tag, err := a.pool.Exec(ctx, insertDecision,
		e.ID, e.Gate, e.Lane, e.Camera, e.TrackID, string(e.Decision), string(e.Reason), personID,
		e.Distance, e.Margin, e.Threshold, e.FramesUsed, e.FirstSeen, e.DecidedAt, json.RawMessage(raw))
	if err != nil {
		return false, fmt.Errorf("audit: insert decision %s: %w", e.ID, err)
	}
	return tag.RowsAffected() == 1, nil
}
