// Package sink holds the decision sinks of a gate node: a fan-out, JSON
// lines to stdout or a file, a webhook to the gate controller, and the
// Postgres audit table. Every sink implements decision.Sink: Send never
// blocks on the receiver; each sink queues (bounded) in memory, works in its
// own goroutine, and counts what it delivers, retries, drops and fails. The
// audit sink can put a durable spool on local disk in front of its queue
// (AuditConfig.SpoolDir): Send then returns once the decision is fsynced,
// and a crash or a database outage loses nothing.
package sink
