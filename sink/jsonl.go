package sink

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/loopgate/loopgate/engine/decision"
)

// JSONLOptions tune a JSON-lines sink; the zero value is usable.
type JSONLOptions struct {
	Name         string        // metrics label; default "jsonl"
	QueueSize    int           // default 1024
	FlushTimeout time.Duration // how long Close may take to write the backlog; default 5 s
	Metrics      *Metrics
	Logger       *slog.Logger
}

// JSONL writes one JSON object per line. The writes happen on its own
// goroutine, so a stalled stdout pipe never stalls the pipeline. Lines go
// out as soon as the queue is empty (tail -f sees them at once).
type JSONL struct {
	p       pump
	bw      *bufio.Writer
	w       io.Writer
	file    *os.File // set by OpenFile: synced and closed by Close
	damaged bool     // a write failed part-way: start the next line afresh

	closeOnce sync.Once
	closeErr  error
}

var _ decision.Sink = (*JSONL)(nil)

// JSONLines writes events to w (os.Stdout, a pipe, a file the caller owns).
// Close flushes but does not close w.
func JSONLines(w io.Writer, o JSONLOptions) *JSONL {
	j := &JSONL{w: w, bw: bufio.NewWriterSize(w, 64<<10)}
	j.p = pump{
		name:         orDefault(o.Name, "jsonl"),
		q:            newQueue(orDefault(o.QueueSize, 1024)),
		m:            o.Metrics,
		log:          orDefaultLogger(o.Logger),
		flushTimeout: orDefault(o.FlushTimeout, 5*time.Second),
		deliver:      j.write,
	}
	j.p.start()
	return j
}

// OpenFile appends events to the file at path (created 0600: decisions name
// people). Close flushes, fsyncs and closes it.
func OpenFile(path string, o JSONLOptions) (*JSONL, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sink: open decisions file: %w", err)
	}
	j := JSONLines(f, o)
	j.file = f
	return j, nil
}

// Name is the metrics label ("jsonl" unless configured).
func (j *JSONL) Name() string { return j.p.name }

// Send queues e; never blocks.
func (j *JSONL) Send(e decision.Event) { j.p.send(e) }

func (j *JSONL) write(_ context.Context, e decision.Event) bool {
	line, err := json.Marshal(e)
	if err != nil {
		j.p.m.failed(j.p.name, FailMarshal)
		j.p.log.Error("decision not written: cannot encode it", "sink", j.p.name, "event_id", e.ID, "err", err)
		return true
	}
	if j.damaged {
		// The last write may have left half a line: end it so this one
		// parses on its own.
		line = append([]byte{'\n'}, line...)
	}
	line = append(line, '\n')
	_, err = j.bw.Write(line)
	if err == nil && j.p.q.len() == 0 {
		err = j.bw.Flush()
	}
	if err != nil {
		j.p.m.failed(j.p.name, FailWrite)
		j.p.log.Error("decision not written", "sink", j.p.name, "event_id", e.ID, "err", err)
		// bufio keeps its first error forever; start over so the next
		// event gets its own chance.
		j.bw.Reset(j.w)
		j.damaged = true
		return true
	}
	j.damaged = false
	j.p.m.delivered(j.p.name)
	return true
}

// Close writes what is queued (within FlushTimeout), flushes, and for a file
// opened with OpenFile fsyncs and closes it.
func (j *JSONL) Close() error { return j.Shutdown(context.Background()) }

// Shutdown is Close with the caller's deadline as well as FlushTimeout.
func (j *JSONL) Shutdown(ctx context.Context) error {
	j.closeOnce.Do(func() { j.closeErr = j.shutdown(ctx) })
	return j.closeErr
}

func (j *JSONL) shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, j.p.flushTimeout)
	defer cancel()
	errs := []error{j.p.shutdown(ctx)}
	if j.p.stuck {
		// The writer goroutine still owns the buffer: closing the file
		// makes its write fail; there is nothing left to flush safely.
		if j.file != nil {
			errs = append(errs, j.file.Close())
		}
		return errors.Join(errs...)
	}
	if err := j.bw.Flush(); err != nil {
		errs = append(errs, fmt.Errorf("sink: flush decisions: %w", err))
	}
	if j.file != nil {
		if err := j.file.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("sink: fsync decisions file: %w", err))
		}
		if err := j.file.Close(); err != nil {
			errs = append(errs, fmt.Errorf("sink: close decisions file: %w", err))
		}
	}
	return errors.Join(errs...)
}
