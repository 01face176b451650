package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/loopgate/loopgate/engine/decision"
)

// stuckGrace is how long Close waits for a cancelled delivery to return.
const stuckGrace = time.Second

// ErrUnflushed means Close's deadline passed with events still queued; they
// were dropped and counted (dropped_total{reason="shutdown"}).
var ErrUnflushed = errors.New("sink: events left unflushed at close")

// queue is a bounded FIFO of events for one consumer. When full, push evicts
// the oldest event: every sink here prefers the newest decisions (see
// WebhookConfig and AuditConfig for why).
type queue struct {
	mu     sync.Mutex
	buf    []decision.Event
	head   int
	n      int
	closed bool
	ready  chan struct{} // signalled on push; closed on close
}

func newQueue(size int) *queue {
	return &queue{buf: make([]decision.Event, size), ready: make(chan struct{}, 1)}
}

// push appends e. It reports the evicted event when the queue was full, and
// ok=false (e not queued) once the queue is closed.
func (q *queue) push(e decision.Event) (evicted decision.Event, didEvict, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return decision.Event{}, false, false
	}
	if q.n == len(q.buf) {
		evicted, didEvict = q.buf[q.head], true
		q.buf[q.head] = decision.Event{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
	}
	q.buf[(q.head+q.n)%len(q.buf)] = e
	q.n++
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return evicted, didEvict, true
}

// pop waits for the next event. It returns false when the queue is closed
// and empty, or when ctx ends.
func (q *queue) pop(ctx context.Context) (decision.Event, bool) {
	for {
		if ctx.Err() != nil {
			return decision.Event{}, false
		}
		q.mu.Lock()
		if q.n > 0 {
			e := q.buf[q.head]
			q.buf[q.head] = decision.Event{}
			q.head = (q.head + 1) % len(q.buf)
			q.n--
			q.mu.Unlock()
			return e, true
		}
		if q.closed {
			q.mu.Unlock()
			return decision.Event{}, false
		}
		q.mu.Unlock()
		select {
		case <-q.ready:
		case <-ctx.Done():
			return decision.Event{}, false
		}
	}
}

// tryPop takes the next event without waiting.
func (q *queue) tryPop() (decision.Event, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return decision.Event{}, false
	}
	e := q.buf[q.head]
	q.buf[q.head] = decision.Event{}
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return e, true
}

func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.ready)
	}
}

// drain removes and returns everything still queued.
func (q *queue) drain() []decision.Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]decision.Event, 0, q.n)
	for q.n > 0 {
		out = append(out, q.buf[q.head])
		q.buf[q.head] = decision.Event{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
	}
	return out
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// pump is the queue-plus-goroutine every asynchronous sink is built on.
type pump struct {
	name         string
	logEvents    bool // drop logs carry the whole event, so it can be recovered from the log
	q            *queue
	m            *Metrics
	log          *slog.Logger
	flushTimeout time.Duration
	// deliver handles one event, retrying as its sink sees fit. It must
	// return promptly once ctx ends, reporting done=false when it gave the
	// event up unfinished because of that.
	deliver func(ctx context.Context, e decision.Event) (done bool)

	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	abandoned []decision.Event // in flight when ctx ended; read after done
	stuck     bool             // the worker did not stop at close; set by shutdown

	dropLogMu     sync.Mutex
	lastDropLog   time.Time
	dropsSinceLog int
}

// logOverflow logs a queue-full drop. With logEvents every event is logged
// whole (the log is its last copy); otherwise at most one line a second
// says how many went, so an overload does not also flood the log.
func (p *pump) logOverflow(evicted decision.Event) {
	attrs := []any{"sink", p.name, "dropped_event_id", evicted.ID, "dropped_decided_at", evicted.DecidedAt,
		"queue_size", len(p.q.buf)}
	if p.logEvents {
		p.log.Error("sink queue full: oldest decision dropped to keep the newest",
			append(attrs, "dropped_event", eventJSON(evicted))...)
		return
	}
	p.dropLogMu.Lock()
	p.dropsSinceLog++
	now := time.Now()
	if now.Sub(p.lastDropLog) < time.Second {
		p.dropLogMu.Unlock()
		return
	}
	n := p.dropsSinceLog
	p.dropsSinceLog, p.lastDropLog = 0, now
	p.dropLogMu.Unlock()
	p.log.Error("sink queue full: oldest decisions dropped to keep the newest",
		append(attrs, "dropped_since_last_log", n)...)
}

func (p *pump) start() {
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.done = make(chan struct{})
	p.m.queueLength(p.name, 0)
	go func() {
		defer close(p.done)
		for {
			e, ok := p.q.pop(p.ctx)
			if !ok {
				return
			}
			// The event being delivered (and perhaps retried for a
			// while) still counts as backlog: an outage with one
			// decision pending must not read 0.
			p.m.queueLength(p.name, p.q.len()+1)
			if !p.deliver(p.ctx, e) {
				p.abandoned = append(p.abandoned, e)
			}
			p.m.queueLength(p.name, p.q.len())
		}
	}()
}

// backlog is the number of events queued.
func (p *pump) backlog() int { return p.q.len() }

// send queues e without blocking.
func (p *pump) send(e decision.Event) {
	evicted, didEvict, ok := p.q.push(e)
	if !ok {
		p.m.dropped(p.name, DropClosed, 1)
		p.log.Error("sink closed: decision dropped", "sink", p.name, "event_id", e.ID)
		return
	}
	if didEvict {
		p.m.dropped(p.name, DropQueueFull, 1)
		p.logOverflow(evicted)
	}
	p.m.queueLength(p.name, p.q.len())
}

// shutdown stops accepting events, lets the worker deliver what is queued
// until ctx ends, then abandons the rest (counted and logged).
func (p *pump) shutdown(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.q.close()
		p.stuck = awaitWorker(ctx, p.done, p.cancel)
		var left []decision.Event
		if !p.stuck {
			left = p.abandoned
		}
		left = append(left, p.q.drain()...)
		if p.stuck {
			p.log.Error("sink delivery stuck at close; abandoning it", "sink", p.name)
			p.closeErr = fmt.Errorf("%w: %s: delivery stuck", ErrUnflushed, p.name)
		}
		p.m.queueLength(p.name, 0)
		if len(left) > 0 {
			p.m.dropped(p.name, DropShutdown, len(left))
			ids := make([]string, len(left))
			for i, e := range left {
				ids[i] = e.ID
			}
			attrs := []any{"sink", p.name, "count", len(left), "event_ids", ids}
			if p.logEvents {
				events := make([]string, len(left))
				for i, e := range left {
					events[i] = eventJSON(e)
				}
				attrs = append(attrs, "dropped_events", events)
			}
			p.log.Error("sink closed before flushing: decisions dropped", attrs...)
			p.closeErr = errors.Join(p.closeErr, fmt.Errorf("%w: %s: %d events", ErrUnflushed, p.name, len(left)))
		}
	})
	return p.closeErr
}

// awaitWorker waits for a sink's worker to finish (done) until ctx ends,
// then cancels it and gives it stuckGrace more. It reports stuck when the
// worker ignored the cancellation (a write into a stalled pipe): the caller
// leaves it behind rather than hang Close. cancel has run on return.
func awaitWorker(ctx context.Context, done <-chan struct{}, cancel context.CancelFunc) (stuck bool) {
	defer cancel()
	select {
	case <-done:
		return false
	case <-ctx.Done():
	}
	cancel()
	select {
	case <-done:
		return false
	case <-time.After(stuckGrace):
		return true
	}
}

func (p *pump) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), p.flushTimeout)
	defer cancel()
	return p.shutdown(ctx)
}

// backoff is capped exponential backoff with jitter: attempt n (from 0)
// waits a random time in [d/2, d], d = min(Min·2ⁿ, Max). Jitter keeps many
// gate nodes from retrying against a recovering receiver in lockstep.
type backoff struct{ min, max time.Duration }

func (b backoff) delay(attempt int) time.Duration {
	d := b.min
	for i := 0; i < attempt && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	half := d / 2
	return half + rand.N(half+1)
}

// sleep waits d or until ctx ends; it reports whether the full wait passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func eventJSON(e decision.Event) string {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Sprintf("unencodable event %s: %v", e.ID, err)
	}
	return string(b)
}
