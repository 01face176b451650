package sink

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/loopgate/loopgate/engine/decision"
)

func TestJSONLinesFileRoundTrip(t *testing.T) {
	sch := eventSchema(t)
	path := filepath.Join(t.TempDir(), "decisions.jsonl")
	m := newTestMetrics(t)

	var sent []decision.Event
	for round := range 2 { // the second OpenFile must append, not truncate
		j, err := OpenFile(path, JSONLOptions{Metrics: m, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			e := testEvent(round*3 + i)
			sent = append(sent, e)
			j.Send(e)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		if err := j.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
	if got := counter(m.Delivered.WithLabelValues("jsonl")); got != 6 {
		t.Errorf("delivered = %v, want 6", got)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("decisions file mode %v, want 0600 (it names people)", st.Mode().Perm())
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for ; sc.Scan(); n++ {
		line := sc.Bytes()
		validateEvent(t, sch, line)
		var got decision.Event
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		if n >= len(sent) {
			t.Fatalf("more lines than events sent")
		}
		want, _ := json.Marshal(sent[n])
		again, _ := json.Marshal(got)
		if !bytes.Equal(want, again) {
			t.Errorf("line %d does not round-trip:\n got %s\nwant %s", n, again, want)
		}
		if !got.DecidedAt.Equal(sent[n].DecidedAt) || *got.Distance != *sent[n].Distance {
			t.Errorf("line %d: fields differ after decoding", n)
		}
	}
	if n != len(sent) {
		t.Errorf("%d lines, want %d", n, len(sent))
	}
}

// A writer that never returns (stdout piped into a stalled reader) must not
// stall Send; the overflow is counted, and every event is either written or
// counted as dropped.
func TestJSONLinesStalledWriterNeverBlocksSend(t *testing.T) {
	const total = 5000 // ~2 MB: far more than the 64 KiB write buffer holds
	pr, pw := io.Pipe()
	m := newTestMetrics(t)
	j := JSONLines(pw, JSONLOptions{QueueSize: 2, Metrics: m, Logger: testLogger(t)})
	sendAll := make(chan struct{})
	go func() {
		for i := range total {
			j.Send(testEvent(i))
		}
		close(sendAll)
	}()
	select {
	case <-sendAll:
	case <-time.After(10 * time.Second):
		t.Fatal("Send blocked on a stalled writer")
	}
	dropped := counter(m.Dropped.WithLabelValues("jsonl", DropQueueFull))
	if dropped == 0 {
		t.Fatal("nothing dropped although the writer never drained")
	}
	// Now drain the pipe: everything not dropped must arrive whole.
	lines := make(chan int)
	go func() {
		n := 0
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var e decision.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("line %d: %v", n, err)
			}
			n++
		}
		lines <- n
	}()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	_ = pw.Close()
	n := <-lines
	delivered := counter(m.Delivered.WithLabelValues("jsonl"))
	if float64(n) != delivered || delivered+dropped != total {
		t.Errorf("lines %d, delivered %v, dropped %v: want lines = delivered and delivered + dropped = %d", n, delivered, dropped, total)
	}
	t.Logf("stalled writer: %v of %d dropped, %v written after it resumed", dropped, total, delivered)
}

// Close must return within its deadline even when the writer never does.
func TestJSONLinesCloseDoesNotHangOnAStalledWriter(t *testing.T) {
	_, pw := io.Pipe() // nobody ever reads
	m := newTestMetrics(t)
	// The stuck write fails and logs after the test has ended (when the
	// pipe is closed below): that log must not go to t.
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	j := JSONLines(pw, JSONLOptions{QueueSize: 4, FlushTimeout: 100 * time.Millisecond, Metrics: m, Logger: quiet})
	// The first event blocks the worker in its flush into the pipe; the
	// rest then pile up in the queue, so some are certainly left at close.
	j.Send(testEvent(0))
	deadline := time.Now().Add(5 * time.Second)
	for j.p.q.len() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // popped; now inside the blocking flush
	for i := 1; i < 5000; i++ {
		j.Send(testEvent(i))
	}
	closed := make(chan error)
	go func() { closed <- j.Close() }()
	select {
	case err := <-closed:
		if !errors.Is(err, ErrUnflushed) {
			t.Errorf("Close = %v, want ErrUnflushed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung on a stalled writer")
	}
	if counter(m.Dropped.WithLabelValues("jsonl", DropShutdown)) == 0 {
		t.Errorf("events left at close not counted (queue-full drops %v, delivered %v)",
			counter(m.Dropped.WithLabelValues("jsonl", DropQueueFull)), counter(m.Delivered.WithLabelValues("jsonl")))
	}
	_ = pw.Close() // frees the stuck writer goroutine
}
