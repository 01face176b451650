package server

import (
	"sync"

	"github.com/loopgate/loopgate/engine/decision"
)

// BroadcasterOptions tune a Broadcaster; the zero value is usable.
type BroadcasterOptions struct {
	// Buffer is each subscriber's queue; a subscriber that falls this far
	// behind is dropped (its stream ends; EventSource reconnects and
	// resumes from the replay ring). Default 32.
	Buffer int
	// Recent is how many decisions are kept for replay to new or
	// reconnecting streams; default 200.
	Recent  int
	Metrics *Metrics
}

// Broadcaster is the decision sink behind /events and the live page. Send
// never blocks: every subscriber has a small buffer, and one that is full is
// dropped rather than waited for.
type Broadcaster struct {
	mu     sync.Mutex
	buffer int
	subs   map[*Subscription]struct{}
	recent []decision.Event // ring of the last len(recent) events
	next   int              // ring write position
	filled bool
	closed bool
	m      *Metrics
}

var _ decision.Sink = (*Broadcaster)(nil)

// NewBroadcaster returns an empty broadcaster.
func NewBroadcaster(o BroadcasterOptions) *Broadcaster {
	if o.Buffer <= 0 {
		o.Buffer = 32
	}
	if o.Recent <= 0 {
		o.Recent = 200
	}
	return &Broadcaster{buffer: o.Buffer, subs: map[*Subscription]struct{}{}, recent: make([]decision.Event, o.Recent), m: o.Metrics}
}

// useMetrics sets the metrics when the broadcaster was built without any
// (New passes Deps.Metrics), so the stream's figures are never silently lost.
func (b *Broadcaster) useMetrics(m *Metrics) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = m
		b.m.subscribers(float64(len(b.subs)))
	}
}

// Subscription is one listener. C is closed when the subscription ends:
// Close, the broadcaster closing, or being dropped for falling behind.
type Subscription struct {
	C       <-chan decision.Event
	c       chan decision.Event
	b       *Broadcaster
	dropped bool // guarded by b.mu
}

// Name is "sse".
func (b *Broadcaster) Name() string { return "sse" }

// Send hands e to every subscriber that has room and drops the ones that
// have none.
func (b *Broadcaster) Send(e decision.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.m.broadcast()
	b.recent[b.next] = e
	b.next = (b.next + 1) % len(b.recent)
	if b.next == 0 {
		b.filled = true
	}
	for s := range b.subs {
		select {
		case s.c <- e:
		default:
			s.dropped = true
			b.removeLocked(s)
			b.m.slowDropped()
		}
	}
}

// Subscribe starts a subscription. It also returns the decisions to replay
// first, atomically with subscribing so none is missed or repeated: those
// after lastID when lastID is still in the ring, otherwise up to the last
// `recent` decisions (0 for none).
func (b *Broadcaster) Subscribe(lastID string, recent int) ([]decision.Event, *Subscription) {
	c := make(chan decision.Event, b.buffer)
	s := &Subscription{C: c, c: c, b: b}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		close(c)
		return nil, s
	}
	ring := b.snapshotLocked()
	var replay []decision.Event
	found := false
	if lastID != "" {
		for i := len(ring) - 1; i >= 0; i-- {
			if ring[i].ID == lastID {
				replay, found = ring[i+1:], true
				break
			}
		}
	}
	if !found && recent > 0 {
		replay = ring[max(0, len(ring)-recent):]
	}
	b.subs[s] = struct{}{}
	b.m.subscribers(1)
	return replay, s
}

// Recent returns up to n of the latest decisions, oldest first.
func (b *Broadcaster) Recent(n int) []decision.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	ring := b.snapshotLocked()
	return ring[max(0, len(ring)-n):]
}

func (b *Broadcaster) snapshotLocked() []decision.Event {
	if !b.filled {
		return append([]decision.Event(nil), b.recent[:b.next]...)
	}
	return append(append([]decision.Event(nil), b.recent[b.next:]...), b.recent[:b.next]...)
}

func (b *Broadcaster) removeLocked(s *Subscription) {
	if _, ok := b.subs[s]; ok {
		delete(b.subs, s)
		close(s.c)
		b.m.subscribers(-1)
	}
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.removeLocked(s)
}

// Dropped reports whether the subscription ended because it fell behind.
func (s *Subscription) Dropped() bool {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.dropped
}

// Subscribers is the number of live subscriptions.
func (b *Broadcaster) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Close ends every subscription; later Sends are ignored.
func (b *Broadcaster) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		b.removeLocked(s)
	}
	return nil
}
