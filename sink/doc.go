// Package sink holds the decision sinks of a gate node: a fan-out, JSON
// lines to stdout or a file, a webhook to the gate controller, and the
// Postgres audit table. Every sink implements decision.Sink: Send never
// blocks the pipeline; each sink queues (bounded) in memory, works in its own
// goroutine, and counts what it delivers, retries, drops and fails.
package sink
