package sink

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/loopgate/loopgate/engine/decision"
)

// Fanout sends every event to each of its sinks, in order. It adds no queue
// of its own: each sink's Send is non-blocking by contract, so Fanout's is
// too. A sink that panics is logged and skipped for that event; the others
// still get it.
type Fanout struct {
	sinks []decision.Sink
	log   *slog.Logger
}

var _ decision.Sink = (*Fanout)(nil)

// NewFanout returns a sink that forwards to sinks (nil entries are ignored).
func NewFanout(log *slog.Logger, sinks ...decision.Sink) *Fanout {
	f := &Fanout{log: orDefaultLogger(log)}
	for _, s := range sinks {
		if s != nil {
			f.sinks = append(f.sinks, s)
		}
	}
	return f
}

// Name is "fanout".
func (f *Fanout) Name() string { return "fanout" }

// Sinks returns the sinks events go to.
func (f *Fanout) Sinks() []decision.Sink { return append([]decision.Sink(nil), f.sinks...) }

// Send hands e to every sink.
func (f *Fanout) Send(e decision.Event) {
	for _, s := range f.sinks {
		f.sendOne(s, e)
	}
}

func (f *Fanout) sendOne(s decision.Sink, e decision.Event) {
	defer func() {
		if r := recover(); r != nil {
			f.log.Error("sink panicked on Send; decision not delivered to it", "sink", s.Name(), "event_id", e.ID, "panic", r)
		}
	}()
	s.Send(e)
}

// Close closes every sink at once (each flushes within its own deadline, so
// shutdown takes the longest of them, not the sum) and joins their errors.
func (f *Fanout) Close() error {
	errs := make([]error, len(f.sinks))
	var wg sync.WaitGroup
	for i, s := range f.sinks {
		wg.Go(func() {
			if err := s.Close(); err != nil {
				errs[i] = fmt.Errorf("%s: %w", s.Name(), err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func orDefaultLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}
