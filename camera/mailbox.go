package camera

import (
	"context"
	"sync"

	"github.com/loopgate/loopgate/engine/vision"
)

// mailbox is a one-slot, newest-wins hand-over between the reading
// goroutine and the consumer: a new frame replaces one not yet taken, so
// memory stays flat however slow the consumer is.
type mailbox struct {
	mu   sync.Mutex
	slot vision.Frame
	full bool
	// err, once set, is what take returns after the slot is empty: io.EOF,
	// ErrClosed or the error Run ended with. No frame is put after it.
	err error
	// wake is closed and replaced on every change, so any number of
	// waiters can select on it together with their context.
	wake chan struct{}
}

func newMailbox() *mailbox { return &mailbox{wake: make(chan struct{})} }

func (b *mailbox) signal() {
	close(b.wake)
	b.wake = make(chan struct{})
}

// put leaves f in the slot. It returns the frame f replaced (dropped, now
// owned by the caller again) and ok=false if the mailbox is finished, in
// which case f stays with the caller.
func (b *mailbox) put(f vision.Frame) (old vision.Frame, dropped, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return vision.Frame{}, false, false
	}
	old, dropped = b.slot, b.full
	b.slot, b.full = f, true
	b.signal()
	return old, dropped, true
}

// waitEmpty blocks until the slot is empty (the engine took the frame) or
// the mailbox is finished: the lossless hand-over of Fast file reading.
func (b *mailbox) waitEmpty(ctx context.Context) {
	for {
		b.mu.Lock()
		if !b.full || b.err != nil {
			b.mu.Unlock()
			return
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return
		}
	}
}

// take returns the frame in the slot, waiting for one; once the mailbox is
// finished and empty it returns the finishing error.
func (b *mailbox) take(ctx context.Context) (vision.Frame, error) {
	for {
		if err := ctx.Err(); err != nil {
			return vision.Frame{}, err
		}
		b.mu.Lock()
		if b.full {
			f := b.slot
			b.slot, b.full = vision.Frame{}, false
			b.signal() // a lossless writer waits for the slot to empty
			b.mu.Unlock()
			return f, nil
		}
		if b.err != nil {
			err := b.err
			b.mu.Unlock()
			return vision.Frame{}, err
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return vision.Frame{}, ctx.Err()
		}
	}
}

// finish stops the mailbox with err. With keep, a frame still in the slot
// is handed out before err (the last frame of a file), and a mailbox
// already finished stays as it is. Without keep, err replaces any earlier
// one and a frame left in the slot is returned to the caller to close.
func (b *mailbox) finish(err error, keep bool) (left vision.Frame, hasLeft bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if keep && b.err != nil {
		return vision.Frame{}, false
	}
	b.err = err
	if !keep && b.full {
		left, hasLeft = b.slot, true
		b.slot, b.full = vision.Frame{}, false
	}
	b.signal()
	return left, hasLeft
}
