package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/loopgate/loopgate/engine/decision"
)

// spoolFailureReminder spaces the reminders while the spool keeps failing.
const spoolFailureReminder = time.Minute

// spooledPump is pump with an on-disk spool in front: send writes the event
// to the spool and fsyncs it before returning, the worker delivers from the
// spool and acknowledges each event once delivered.
//
// When the spool cannot take an event (full disk, SpoolMaxBytes reached, an
// I/O error) the event goes to a bounded memory queue instead, and the
// pipeline goes on. Those events are delivered first (a crash would lose
// them), and the next event the spool takes again brings them to disk too.
// Only overflow of that memory queue loses decisions, each logged whole.
type spooledPump struct {
	name         string
	sp           *spool
	mem          *queue
	m            *Metrics
	log          *slog.Logger
	flushTimeout time.Duration
	deliver      func(ctx context.Context, e decision.Event) (done bool)

	wake    chan struct{} // an event arrived
	closing chan struct{} // closed when shutdown begins; no send after
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}

	sendMu sync.Mutex // serialises send: spool order, fallback, burst state
	closed bool
	burst  spoolBurst

	// countMu makes taking a memory event and counting it as busy one
	// step, and keeps the gauges' last update the latest state.
	countMu sync.Mutex
	memBusy int // memory events being delivered

	closeOnce sync.Once
	closeErr  error
	abandoned []decision.Event // a memory event in flight when ctx ended; read after done
}

// spoolBurst is one stretch of spool failures, logged at its start, every
// spoolFailureReminder while it lasts, and at its end.
type spoolBurst struct {
	failing  bool
	since    time.Time
	lastLog  time.Time
	failures int
}

func newSpooledPump(sp *spool, memSize int, name string, m *Metrics, log *slog.Logger,
	flushTimeout time.Duration, deliver func(context.Context, decision.Event) bool) *spooledPump {
	p := &spooledPump{
		name: name, sp: sp, mem: newQueue(memSize), m: m, log: log, flushTimeout: flushTimeout, deliver: deliver,
		wake: make(chan struct{}, 1), closing: make(chan struct{}), done: make(chan struct{}),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

func (p *spooledPump) start() {
	p.gauges()
	go p.run()
}

// send stores e on disk (or, failing that, in memory); it never waits for
// the delivery.
func (p *spooledPump) send(e decision.Event) {
	raw, err := json.Marshal(e)
	if err != nil {
		p.m.failed(p.name, FailMarshal)
		p.log.Error("AUDIT: decision not recorded: cannot encode it", "sink", p.name, "event_id", e.ID, "err", err)
		return
	}
	p.sendMu.Lock()
	if p.closed {
		p.sendMu.Unlock()
		p.m.dropped(p.name, DropClosed, 1)
		p.log.Error("sink closed: decision dropped", "sink", p.name, "event_id", e.ID, "event", string(raw))
		return
	}
	if err := p.sp.append(raw); err != nil {
		p.spoolFailed(e.ID, err)
		p.pushMem(e)
	} else {
		p.spoolRecovered()
		p.rescue()
	}
	p.gauges()
	p.sendMu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// pushMem queues e in memory; when full, the oldest goes, logged whole.
func (p *spooledPump) pushMem(e decision.Event) {
	evicted, didEvict, _ := p.mem.push(e)
	if didEvict {
		p.m.dropped(p.name, DropQueueFull, 1)
		p.log.Error("AUDIT: spool failing and memory queue full: oldest decision dropped, NOT RECORDED",
			"sink", p.name, "dropped_event_id", evicted.ID, "queue_size", len(p.mem.buf), "dropped_event", eventJSON(evicted))
	}
}

// rescue moves what waits in memory to the spool, now that it takes
// events again. Called with sendMu held.
func (p *spooledPump) rescue() {
	if p.mem.len() == 0 {
		return
	}
	events := p.mem.drain()
	raws := make([][]byte, 0, len(events))
	for _, e := range events {
		raw, err := json.Marshal(e)
		if err != nil { // cannot happen: each was encoded once by send
			raw = []byte(eventJSON(e))
		}
		raws = append(raws, raw)
	}
	const chunk = 256
	moved := 0
	for moved < len(events) {
		n := min(chunk, len(events)-moved)
		if err := p.sp.append(raws[moved : moved+n]...); err != nil {
			p.spoolFailed(events[moved].ID, err)
			break
		}
		moved += n
	}
	for _, e := range events[moved:] {
		p.pushMem(e) // no eviction: sends are held off, the worker only takes
	}
	if moved > 0 {
		p.log.Info("spool: decisions held in memory moved to disk", "sink", p.name, "count", moved,
			"still_in_memory", len(events)-moved)
	}
}

func (p *spooledPump) spoolFailed(eventID string, err error) {
	reason := SpoolErrIO
	switch {
	case errors.Is(err, ErrSpoolFull):
		reason = SpoolErrLimit
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		reason = SpoolErrDiskFull
	}
	p.m.spoolError(p.name, reason)
	b := &p.burst
	b.failures++
	now := time.Now()
	switch {
	case !b.failing:
		b.failing, b.since, b.lastLog = true, now, now
		p.log.Error("AUDIT spool cannot take decisions: holding them in memory, where a crash loses them, until it can",
			"sink", p.name, "event_id", eventID, "reason", reason, "err", err, "spool_dir", p.sp.dir,
			"memory_room", len(p.mem.buf)-p.mem.len())
	case now.Sub(b.lastLog) >= spoolFailureReminder:
		b.lastLog = now
		p.log.Error("AUDIT spool still cannot take decisions", "sink", p.name, "event_id", eventID, "reason", reason,
			"err", err, "failed_since", b.since, "failures", b.failures, "in_memory", p.mem.len(),
			"memory_room", len(p.mem.buf)-p.mem.len())
	}
}

func (p *spooledPump) spoolRecovered() {
	if b := &p.burst; b.failing {
		p.log.Warn("audit spool takes decisions again", "sink", p.name, "failures", b.failures,
			"failed_for", time.Since(b.since).Round(time.Millisecond))
		*b = spoolBurst{}
	}
}

func (p *spooledPump) run() {
	defer close(p.done)
	closing := false
	for {
		if p.ctx.Err() != nil {
			return
		}
		// Memory first: those are the events a crash would lose.
		if e, ok := p.popMem(); ok {
			done := p.deliver(p.ctx, e)
			p.countMu.Lock()
			p.memBusy--
			p.countMu.Unlock()
			if !done {
				p.abandoned = append(p.abandoned, e)
				return
			}
			p.gauges()
			continue
		}
		if raw, ok := p.sp.next(); ok {
			var e decision.Event
			if err := json.Unmarshal(raw, &e); err != nil {
				// Its checksum held, so it was written like this.
				p.m.failed(p.name, FailMarshal)
				p.log.Error("AUDIT: spooled decision cannot be decoded; NOT RECORDED", "sink", p.name,
					"err", err, "record", string(raw))
				p.sp.ack()
				continue
			}
			if !p.deliver(p.ctx, e) {
				return // not acknowledged: it stays in the spool
			}
			p.sp.ack()
			p.gauges()
			continue
		}
		p.sp.checkpoint()
		if closing {
			return // a whole pass after the last send found nothing
		}
		select {
		case <-p.wake:
		case <-p.closing:
			closing = true
		case <-p.ctx.Done():
			return
		}
	}
}

func (p *spooledPump) popMem() (decision.Event, bool) {
	p.countMu.Lock()
	defer p.countMu.Unlock()
	e, ok := p.mem.tryPop()
	if ok {
		p.memBusy++
	}
	return e, ok
}

// closingNow reports whether shutdown has begun: a failed write then ends
// the delivery instead of retrying, since the spool keeps the event.
func (p *spooledPump) closingNow() bool {
	select {
	case <-p.closing:
		return true
	default:
		return false
	}
}

func (p *spooledPump) backlog() int {
	p.countMu.Lock()
	defer p.countMu.Unlock()
	return p.sp.pendingCount() + p.mem.len() + p.memBusy
}

func (p *spooledPump) gauges() {
	p.countMu.Lock()
	defer p.countMu.Unlock()
	inMemory := p.mem.len() + p.memBusy
	p.m.queueLength(p.name, p.sp.pendingCount()+inMemory)
	p.m.spoolFallback(p.name, inMemory)
}

// shutdown stops taking events and delivers until ctx ends or a write
// fails (a database outage is not waited out: the spool keeps the events).
// What is left in the spool stays there for the next start; what is left in
// memory goes to the spool if it can, else it is dropped, counted and
// logged whole.
func (p *spooledPump) shutdown(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.sendMu.Lock()
		p.closed = true
		p.sendMu.Unlock()
		close(p.closing)
		stuck := awaitWorker(ctx, p.done, p.cancel)
		var errs []error
		var left []decision.Event
		if stuck {
			// Its event is unacknowledged in the spool (delivered again
			// at the next start) or, rarely, a memory one: reported here.
			p.log.Error("sink delivery stuck at close; abandoning it", "sink", p.name)
			errs = append(errs, fmt.Errorf("%w: %s: delivery stuck", ErrUnflushed, p.name))
		} else {
			left = p.abandoned
		}
		left = append(left, p.mem.drain()...)
		if len(left) > 0 {
			raws := make([][]byte, len(left))
			for i, e := range left {
				raws[i] = []byte(eventJSON(e))
			}
			if err := p.sp.append(raws...); err == nil {
				p.log.Warn("decisions held in memory written to the spool at close", "sink", p.name, "count", len(left))
				left = nil
			} else {
				p.spoolFailed(left[0].ID, err)
			}
		}
		spooled := p.sp.pendingCount()
		if err := p.sp.close(); err != nil {
			errs = append(errs, fmt.Errorf("sink: %s: close spool: %w", p.name, err))
		}
		if spooled > 0 {
			p.log.Warn("decisions left in the spool; they are written at the next start", "sink", p.name,
				"count", spooled, "spool_dir", p.sp.dir)
		}
		p.m.queueLength(p.name, 0)
		p.m.spoolFallback(p.name, 0)
		if len(left) > 0 {
			p.m.dropped(p.name, DropShutdown, len(left))
			ids := make([]string, len(left))
			events := make([]string, len(left))
			for i, e := range left {
				ids[i], events[i] = e.ID, eventJSON(e)
			}
			p.log.Error("sink closed with decisions neither delivered nor spooled: dropped", "sink", p.name,
				"count", len(left), "event_ids", ids, "dropped_events", events)
			errs = append(errs, fmt.Errorf("%w: %s: %d events", ErrUnflushed, p.name, len(left)))
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}
