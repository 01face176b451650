package localgallery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgvector/pgvector-go"

	"github.com/loopgate/loopgate/engine"
)

// Channel is the NOTIFY channel migration 0004's triggers signal on.
const Channel = "loopgate_gallery"

// head is what every read learns besides the data: the snapshot's xmin,
// whether the database is a standby, and how fresh a standby is.
type head struct {
	xmin    int64
	standby bool
	beat    *time.Time // this node's heartbeat as the read database has it
	lag     *float64   // seconds since the last replayed commit (standby)
}

// headColumns selects a head; $1 is the node id.
const headColumns = `pg_snapshot_xmin(pg_current_snapshot())::text::bigint,
	pg_is_in_recovery(),
	(SELECT beat FROM gallery_heartbeats WHERE node = $1),
	extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8`

// freshness is when the data read at start (node clock) was known to match
// the primary, and whether that is known at all.
func (h head) freshness(start time.Time) (time.Time, bool) {
	switch {
	case !h.standby:
		return start, true
	case h.beat != nil:
		// The standby has replayed the primary at least up to our write of
		// beat; both times are this node's clock.
		return minTime(start, *h.beat), true
	case h.lag != nil:
		return start.Add(-time.Duration(*h.lag * float64(time.Second))), true
	}
	return time.Time{}, false
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Refresh brings the copy up to date once: a full load when the copy did
// not come from the database in this process or has gone stale, otherwise
// the people the change feed names. On error the copy stays as it was (and
// ages). The background loop calls it; tests and tools may too.
func (c *Copy) Refresh(ctx context.Context) error {
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.QueryTimeout)
	defer cancel()
	start := time.Now()
	var result string
	var err error
	// After a gap longer than the staleness bound the feed rows of the gap
	// may have been pruned: reload everything.
	if c.source.Load() != "database" || start.Sub(c.lastSync) > c.cfg.MaxStaleness {
		result, err = RefreshFull, c.fullLoad(ctx, start)
	} else {
		result, err = c.poll(ctx, start)
	}
	took := time.Since(start)
	if err != nil {
		result = RefreshError
		c.lastErr.Store(err.Error())
		if c.failing.IsZero() && !c.opening {
			c.failing = start
			c.log.Warn("gallery refresh failing: deciding from the local copy until it is too old",
				"err", err, "fresh_as_of", c.FreshAsOf(), "max_staleness", c.cfg.MaxStaleness)
		}
	} else {
		c.lastSync = start
		c.lastErr.Store("")
		if !c.failing.IsZero() {
			c.log.Info("gallery refresh works again", "failed_for", start.Sub(c.failing).Round(time.Millisecond), "result", result)
			c.failing = time.Time{}
		}
	}
	c.m.refreshed(result, took)
	c.reportStaleness(time.Now())
	return err
}

// reportStaleness logs when the copy goes stale or becomes usable again
// (under syncMu).
func (c *Copy) reportStaleness(now time.Time) {
	err := c.Stale(now)
	if c.opening || (err != nil) == c.stale {
		return
	}
	c.stale = err != nil
	if c.stale {
		c.log.Error("gallery copy too old: denying everyone (gallery_stale) until it syncs again", "err", err)
	} else {
		c.log.Info("gallery copy fresh again: deciding normally", "fresh_as_of", c.FreshAsOf())
	}
}

// fullLoad replaces the copy with everything in scope, read in one
// REPEATABLE READ snapshot (under syncMu).
func (c *Copy) fullLoad(ctx context.Context, start time.Time) error {
	tx, err := c.read.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("localgallery: full load: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var h head
	var maxSeq int64
	if err := tx.QueryRow(ctx, `SELECT `+headColumns+`, coalesce((SELECT max(seq) FROM gallery_changes), 0)`,
		c.cfg.NodeID).Scan(&h.xmin, &h.standby, &h.beat, &h.lag, &maxSeq); err != nil {
		return fmt.Errorf("localgallery: full load: %w", err)
	}
	people, err := c.loadPeople(ctx, tx, nil)
	if err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("localgallery: full load: %w", err)
	}
	var gen uint64
	if old := c.cur.Load(); old != nil {
		gen = old.gen
	}
	s := newState(people, maxSeq, gen+1)
	c.cur.Store(s)
	c.horizon = h.xmin
	clear(c.seen)
	c.source.Store("database")
	c.standby.Store(h.standby)
	// A full load's freshness replaces the old one: its content replaces
	// the old content.
	if fresh, ok := h.freshness(start); ok {
		c.fresh.Store(fresh.UnixNano())
	} else {
		c.fresh.Store(0)
	}
	c.m.size(s)
	return nil
}

// pollSQL reads the head and every feed row of a transaction that may not
// have been visible to the last read ($2: that read's xmin).
const pollSQL = `SELECT h.*, c.seq, c.person_id, c.xid
	FROM (SELECT ` + headColumns + `) h
	LEFT JOIN gallery_changes c ON c.xid >= $2
	ORDER BY c.seq`

// poll applies the change feed (under syncMu).
func (c *Copy) poll(ctx context.Context, start time.Time) (string, error) {
	rows, err := c.read.Query(ctx, pollSQL, c.cfg.NodeID, c.horizon)
	if err != nil {
		return "", fmt.Errorf("localgallery: poll: %w", err)
	}
	var h head
	type feedRow struct{ seq, xid int64 }
	var fresh []feedRow
	changed := map[int64]bool{}
	truncated := false
	var maxSeq int64
	for rows.Next() {
		var seq, person, xid *int64
		if err := rows.Scan(&h.xmin, &h.standby, &h.beat, &h.lag, &seq, &person, &xid); err != nil {
			rows.Close()
			return "", fmt.Errorf("localgallery: poll: %w", err)
		}
		if seq == nil { // no feed row: the LEFT JOIN's head only
			continue
		}
		if _, done := c.seen[*seq]; done {
			continue
		}
		fresh = append(fresh, feedRow{*seq, *xid})
		maxSeq = max(maxSeq, *seq)
		if person == nil {
			truncated = true
		} else {
			changed[*person] = true
		}
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("localgallery: poll: %w", err)
	}
	if h.xmin < c.horizon || truncated {
		// xmin went backwards (another server, a restored backup) or a
		// table was truncated: the feed cannot be trusted, reload.
		c.log.Warn("gallery change feed cannot be followed: reloading everything",
			"xmin", h.xmin, "horizon", c.horizon, "truncated", truncated)
		return RefreshFull, c.fullLoad(ctx, start)
	}
	result := RefreshUnchanged
	if len(changed) > 0 {
		ids := make([]int64, 0, len(changed))
		for id := range changed {
			ids = append(ids, id)
		}
		people, err := c.reload(ctx, ids)
		if err != nil {
			return "", err
		}
		s := c.cur.Load().with(changed, people, maxSeq)
		c.cur.Store(s)
		c.m.size(s)
		c.m.applied(len(ids))
		result = RefreshChanges
	}
	for _, r := range fresh {
		c.seen[r.seq] = r.xid
	}
	for seq, xid := range c.seen {
		if xid < h.xmin {
			delete(c.seen, seq)
		}
	}
	c.horizon = h.xmin
	c.standby.Store(h.standby)
	// The copy now holds everything the read could see, and nothing it
	// knew before is lost: freshness only moves forward.
	if f, ok := h.freshness(start); ok && f.UnixNano() > c.fresh.Load() {
		c.fresh.Store(f.UnixNano())
	}
	return result, nil
}

// reload reads the given people in one snapshot. A later snapshot than the
// poll's is fine: it can only be newer, and a change it already shows is
// reloaded once more at the next poll.
func (c *Copy) reload(ctx context.Context, ids []int64) ([]*person, error) {
	tx, err := c.read.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("localgallery: reload: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	people, err := c.loadPeople(ctx, tx, ids)
	if err != nil {
		return nil, err
	}
	return people, tx.Commit(ctx)
}

// loadPeople reads the people in scope (only those in ids when ids is not
// nil) with their templates of the copy's model.
func (c *Copy) loadPeople(ctx context.Context, tx pgx.Tx, ids []int64) ([]*person, error) {
	byID := map[int64]*person{}
	var people []*person
	rows, err := tx.Query(ctx, `
		SELECT p.id, p.external_id, p.name, p.status, p.revoked_at, coalesce(p.revoked_reason, ''), p.valid_from, p.valid_until,
		       array(SELECT g.gate FROM person_gates g WHERE g.person_id = p.id AND g.gate = ANY($1) ORDER BY g.gate)
		FROM people p
		WHERE p.id IN (SELECT person_id FROM person_gates WHERE gate = ANY($1))
		  AND ($2::bigint[] IS NULL OR p.id = ANY($2))
		ORDER BY p.id`, c.cfg.Scope, ids)
	if err != nil {
		return nil, fmt.Errorf("localgallery: load people: %w", err)
	}
	for rows.Next() {
		p := &person{}
		if err := rows.Scan(&p.id, &p.externalID, &p.name, &p.reg.Status, &p.reg.RevokedAt, &p.reg.RevokedReason,
			&p.reg.ValidFrom, &p.reg.ValidUntil, &p.gates); err != nil {
			rows.Close()
			return nil, fmt.Errorf("localgallery: load people: %w", err)
		}
		byID[p.id] = p
		people = append(people, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("localgallery: load people: %w", err)
	}
	rows, err = tx.Query(ctx, `
		SELECT t.person_id, t.embedding FROM face_templates t
		WHERE t.model = $2
		  AND t.person_id IN (SELECT person_id FROM person_gates WHERE gate = ANY($1))
		  AND ($3::bigint[] IS NULL OR t.person_id = ANY($3))
		ORDER BY t.person_id, t.id`, c.cfg.Scope, c.cfg.Model, ids)
	if err != nil {
		return nil, fmt.Errorf("localgallery: load templates: %w", err)
	}
	var id int64
	var v pgvector.Vector
	for rows.Next() {
		if err := rows.Scan(&id, &v); err != nil {
			rows.Close()
			return nil, fmt.Errorf("localgallery: load templates: %w", err)
		}
		p := byID[id]
		emb := v.Slice()
		if p == nil || len(emb) != engine.EmbeddingDim {
			rows.Close()
			return nil, fmt.Errorf("localgallery: load templates: template of person %d: %d dimensions or person missing", id, len(emb))
		}
		p.emb = append(p.emb, emb...)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("localgallery: load templates: %w", err)
	}
	for _, p := range people {
		// Templates never change in place: trim the slack append left.
		p.emb = p.emb[:len(p.emb):len(p.emb)]
	}
	return people, nil
}

// refreshLoop refreshes every RefreshInterval, at once when kicked (a
// NOTIFY), and backs off up to 2 s while the database does not answer.
func (c *Copy) refreshLoop(ctx context.Context) {
	wait := c.cfg.RefreshInterval
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
		}
		if err := c.Refresh(ctx); err != nil && ctx.Err() == nil {
			wait = min(2*wait, max(2*time.Second, c.cfg.RefreshInterval))
		} else {
			wait = c.cfg.RefreshInterval
		}
		t.Reset(wait)
	}
}

// Kick asks the background loop for a refresh now (it is also what a
// NOTIFY does).
func (c *Copy) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// listen keeps a LISTEN connection to the read database while it is a
// primary and kicks a refresh on every notification. On a standby (which
// delivers no notifications) it checks again every 30 s, in case it has
// been promoted.
func (c *Copy) listen(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		standby, err := c.listenOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case standby:
			backoff = 30 * time.Second
		case err != nil:
			c.log.Debug("gallery LISTEN connection lost; polling only", "err", err)
			backoff = min(2*backoff, 10*time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

func (c *Copy) listenOnce(ctx context.Context) (standby bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, c.cfg.QueryTimeout)
	conn, err := pgx.Connect(cctx, c.cfg.ReadURL)
	cancel()
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&standby); err != nil || standby {
		return standby, err
	}
	if _, err := conn.Exec(ctx, `LISTEN `+Channel); err != nil {
		return false, err
	}
	c.Kick() // a change may have committed while nobody listened
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return false, err
		}
		c.Kick()
	}
}

// heartbeat writes this node's clock to the primary while the read
// database is a standby (see Config.Heartbeat).
func (c *Copy) heartbeat(ctx context.Context) {
	t := time.NewTicker(c.cfg.HeartbeatInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !c.standby.Load() {
			continue
		}
		hctx, cancel := context.WithTimeout(ctx, c.cfg.QueryTimeout)
		_, err := c.cfg.Heartbeat.Exec(hctx, `INSERT INTO gallery_heartbeats (node, beat) VALUES ($1, $2)
			ON CONFLICT (node) DO UPDATE SET beat = excluded.beat`, c.cfg.NodeID, time.Now())
		cancel()
		if (err != nil) != failing && ctx.Err() == nil {
			failing = err != nil
			if failing {
				c.log.Warn("gallery heartbeat to the primary failing: the standby's freshness is unknown", "err", err)
			} else {
				c.log.Info("gallery heartbeat to the primary works again")
			}
		}
	}
}

// errNoSnapshot: there is no snapshot file to start from.
var errNoSnapshot = errors.New("no snapshot file")

// loadSnapshotAtStart installs the snapshot file, if usable, when the
// database did not answer at start.
func (c *Copy) loadSnapshotAtStart() {
	if c.cfg.SnapshotPath == "" {
		c.log.Error("no gallery copy and no snapshot configured: every decision is a gallery_stale deny until the database answers")
		return
	}
	snap, err := readSnapshot(c.cfg.SnapshotPath)
	if err == nil && (snap.Model != c.cfg.Model || !equalStrings(snap.Scope, c.cfg.Scope)) {
		err = fmt.Errorf("snapshot is of model %q scope %v, not %q %v", snap.Model, snap.Scope, c.cfg.Model, c.cfg.Scope)
	}
	if err != nil {
		c.log.Error("gallery snapshot unusable: every decision is a gallery_stale deny until the database answers",
			"path", c.cfg.SnapshotPath, "err", err)
		return
	}
	s := snap.state()
	c.cur.Store(s)
	c.fresh.Store(snap.FreshAsOf.UnixNano())
	c.source.Store("snapshot")
	c.m.size(s)
	age := time.Since(snap.FreshAsOf)
	c.log.Warn("gallery copy loaded from the snapshot file", "path", c.cfg.SnapshotPath, "people", len(s.people),
		"templates", s.templates, "fresh_as_of", snap.FreshAsOf, "age", age.Round(time.Second),
		"usable_for", max(0, c.cfg.MaxStaleness-age).Round(time.Second))
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
