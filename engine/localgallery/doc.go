// Package localgallery keeps a gate node's own in-memory copy of the
// gallery it searches, so the gate keeps deciding when the database does
// not answer.
//
// # What the copy holds
//
// Every person registered for one of the node's gates or zones (its scope),
// whatever their status, with their registration (status, revocation,
// validity window), their gates within the scope and their templates made
// by the node's model, as float32. Revoked and out-of-window people stay in
// the copy on purpose: the SQL search (engine/gallery.NearestPeople) returns
// them too, so that a revoked face is denied with that reason and still
// counts in the margin to the second person. Dropping them would let a
// revoked person's face open for whoever is next nearest. The validity
// window is judged by the caller (engine/fuse) against the clock at
// decision time, as with the SQL search.
//
// Copy.NearestPeople, PersonDistance and RegisteredInScope answer exactly as
// their engine/gallery counterparts do on the same data (same people, same
// order, distances within float32 rounding of pgvector's), with one
// difference: the copy holds only its scope, so PersonDistance for a person
// not registered for the scope is engine.ErrUnknownPerson (the SQL version
// would compare them; the pipeline only asks about people claimed at this
// gate, who were in scope when the claim was made).
//
// # Keeping it current
//
// Open loads everything in one REPEATABLE READ snapshot. Then, every
// RefreshInterval (100 ms by default: a revocation reaches a node reading a
// replica within about that, plus replay lag) and at once on a NOTIFY, it
// reads the change feed (table gallery_changes, filled by triggers: migration 0004)
// and reloads only the people named there. NOTIFY is not delivered on a hot
// standby, so on a replica the poll alone carries changes; on a primary a
// LISTEN connection wakes the poll as soon as a change commits.
//
// The feed's seq is taken at insert time, not at commit, so a lower seq can
// become visible after a higher one and "seq > last seen" would miss it.
// Each feed row carries its transaction's id instead. After each read the
// copy remembers the xmin of the snapshot it read at: every transaction with
// a smaller id had ended by then, so its rows were either visible to that
// read or never will be. The next read asks for all rows with xid >= that
// xmin (rows already applied are skipped by seq). By induction every row
// visible to read n has been applied after read n, in any commit order. A
// standby's snapshot has the same xmin guarantee (its list of running xids
// is not exposed by pg_current_snapshot there, which is why the xmin, not
// that list, is used). The cost: while some transaction anywhere in the
// cluster holds an xid for a long time, each poll re-reads the feed rows
// written since it began.
//
// # Staleness and the fail-secure rule
//
// The copy is "fresh as of" the last time it synced with the database: the
// start of the last successful read from a primary; from a streaming replica,
// the node's own heartbeat (written to the primary every second, read back
// from the replica) bounds how far the replica lags, so a replica cut off
// from its primary, which keeps answering with old data, does not count as
// fresh.
//
// Rule: while now − freshAsOf ≤ MaxStaleness (default 5 min) the node decides
// from its copy as if the database were there. Beyond that every search
// returns a *StaleError (errors.Is(err, ErrStale)) and the pipeline denies
// everyone with reason gallery_stale until a sync succeeds. Why deny rather
// than "open only for people not revoked since": during an outage the node
// cannot learn of revocations at all, so it has no way to tell who was
// revoked since; every open after the bound could be for someone revoked
// minutes ago. Within the bound the node accepts a known, configured risk
// (a revocation can take up to MaxStaleness to reach a disconnected gate),
// which keeps the gate working through short outages and database
// failovers; beyond it the gate fails closed and says why.
//
// # Snapshot file
//
// With Config.SnapshotPath set, the copy is written to that file (mode 0600,
// write to a temporary file, fsync, atomic rename) after changes, and its
// freshness to a small side file every few seconds. When the database is
// unreachable at start the copy is loaded from the file, so a node restarted
// during an outage can decide until the bound runs out. The file holds face
// templates (biometric data) of everyone registered for the node's scope:
// keep it on an encrypted, node-local disk readable only by the service.
package localgallery
