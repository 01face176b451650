package sink

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/loopgate/loopgate/engine/decision"
	"github.com/loopgate/loopgate/internal/testenv"
)

// The SIGKILL tests run this test binary again as the process to kill; with
// childEnv set, TestMain runs spoolChild instead of the tests.
const (
	childEnv       = "LOOPGATE_SINK_SPOOL_CHILD"
	childDirEnv    = "LOOPGATE_SINK_SPOOL_CHILD_DIR"
	childDBEnv     = "LOOPGATE_SINK_SPOOL_CHILD_DB"
	childCountEnv  = "LOOPGATE_SINK_SPOOL_CHILD_N"
	childPrefixEnv = "LOOPGATE_SINK_SPOOL_CHILD_PREFIX"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(spoolChild())
	}
	os.Exit(m.Run())
}

// spoolChild is a gate node's audit sink: it sends the events, printing
// "sent i" as each Send returns and "all sent" at the end, then waits to be
// killed.
func spoolChild() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	n, err := strconv.Atoi(os.Getenv(childCountEnv))
	if err != nil {
		log.Error("child: bad count", "err", err)
		return 2
	}
	pool, err := pgxpool.New(context.Background(), os.Getenv(childDBEnv))
	if err != nil {
		log.Error("child: pool", "err", err)
		return 2
	}
	a, err := NewAudit(pool, AuditConfig{SpoolDir: os.Getenv(childDirEnv), MinBackoff: 5 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond, WriteTimeout: 2 * time.Second, Logger: log})
	if err != nil {
		log.Error("child: audit", "err", err)
		return 2
	}
	prefix := os.Getenv(childPrefixEnv)
	for i := range n {
		a.Send(childEvent(prefix, i))
		fmt.Printf("sent %d\n", i)
	}
	fmt.Println("all sent")
	time.Sleep(time.Hour) // until SIGKILL; never Close
	return 1
}

func childEvent(prefix string, i int) decision.Event {
	e := testEvent(2*i + 1) // denies: no person rows needed
	e.ID = fmt.Sprintf("%s/%05d", prefix, i)
	return e
}

type spoolChildProc struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	sent    int // "sent i" lines read, in order
	allSent chan struct{}
	eof     chan struct{}
}

func startSpoolChild(t *testing.T, dir, dbURL string, n int, prefix string) *spoolChildProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", childDirEnv+"="+dir, childDBEnv+"="+dbURL,
		childCountEnv+"="+strconv.Itoa(n), childPrefixEnv+"="+prefix)
	cmd.Stderr = t.Output()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &spoolChildProc{cmd: cmd, allSent: make(chan struct{}), eof: make(chan struct{})}
	go func() {
		defer close(c.eof)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if line == "all sent" {
				close(c.allSent)
				continue
			}
			if i, ok := strings.CutPrefix(line, "sent "); ok {
				c.mu.Lock()
				if n, _ := strconv.Atoi(i); n == c.sent {
					c.sent++
				}
				c.mu.Unlock()
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.eof
		_ = cmd.Wait()
	})
	return c
}

// kill SIGKILLs the child and returns how many Sends it saw return.
func (c *spoolChildProc) kill(t *testing.T) int {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.eof
	err := c.cmd.Wait()
	ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent
}

// deadURL points dbURL at a TCP port nobody listens on: the database is
// down for whoever uses it.
func deadURL(t *testing.T, dbURL string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, rewrite := proxied(t, dbURL)
	return rewrite(addr)
}

func newPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// logBuffer keeps a test's log lines (and shows them in its output).
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	out io.Writer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf.Write(p)
	l.mu.Unlock()
	return l.out.Write(p)
}

func (l *logBuffer) lines(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.Lines(l.buf.String()) {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

func capturedLogger(t *testing.T) (*slog.Logger, *logBuffer) {
	lb := &logBuffer{out: t.Output()}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// recoveredCount is the count of the spool's "from a previous run" log line.
func recoveredCount(t *testing.T, logs *logBuffer) int {
	t.Helper()
	lines := logs.lines("decisions from a previous run")
	if len(lines) != 1 {
		t.Fatalf("want one log line about the previous run's decisions, got %q", lines)
	}
	_, after, _ := strings.Cut(lines[0], " count=")
	n, err := strconv.Atoi(strings.Fields(after)[0])
	if err != nil {
		t.Fatalf("no count in %q", lines[0])
	}
	return n
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, segPrefix+"*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

func spoolConfig(dir string, m *Metrics, log *slog.Logger) AuditConfig {
	return AuditConfig{SpoolDir: dir, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		WriteTimeout: 3 * time.Second, Metrics: m, Logger: log}
}

func tableRows(t *testing.T, pool *pgxpool.Pool) (rows, distinct int) {
	t.Helper()
	if err := pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT event_id) FROM decisions`).
		Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	return rows, distinct
}

// checkStoredOnce checks that the table holds exactly events, each once.
func checkStoredOnce(t *testing.T, pool *pgxpool.Pool, events []decision.Event) {
	t.Helper()
	for _, e := range events {
		if n := rowsFor(t, pool, e.ID); n != 1 {
			t.Errorf("event %s stored %d times, want 1", e.ID, n)
		}
	}
	if rows, distinct := tableRows(t, pool); rows != len(events) || distinct != len(events) {
		t.Errorf("%d rows (%d distinct event_ids), want %d", rows, distinct, len(events))
	}
}

func testEvents(n int) []decision.Event {
	events := make([]decision.Event, n)
	for i := range events {
		events[i] = testEvent(2*i + 1)
	}
	return events
}

// Database down: decisions go to the spool. The process stops; the next
// one, with the database back, writes them all, once.
func TestAuditSpoolKeepsDecisionsAcrossOutageAndRestart(t *testing.T) {
	dbURL, direct := openAuditDB(t)
	dir := filepath.Join(t.TempDir(), "spool")
	m1 := newTestMetrics(t)
	cfg := spoolConfig(dir, m1, testLogger(t))
	cfg.SpoolMaxBytes = 256 << 10 // 32 KiB segments: several of them
	down, err := NewAudit(newPool(t, deadURL(t, dbURL)), cfg)
	if err != nil {
		t.Fatal(err)
	}
	events := testEvents(100)
	for _, e := range events {
		down.Send(e)
	}
	// Send returns with the event on disk: nothing to wait for.
	if got := down.Backlog(); got != len(events) {
		t.Errorf("backlog %d, want %d", got, len(events))
	}
	if got := counter(m1.QueueLength.WithLabelValues("audit")); got != float64(len(events)) {
		t.Errorf("queue_length %v, want %d", got, len(events))
	}
	if got := counter(m1.SpoolFallback.WithLabelValues("audit")); got != 0 {
		t.Errorf("spool_fallback_length %v with a healthy spool", got)
	}
	if got := counter(m1.SpoolBytes.WithLabelValues("audit")); got < float64(len(events)*300) {
		t.Errorf("spool_bytes %v for %d events", got, len(events))
	}
	waitFor(t, "write attempts against the dead database", func() bool {
		return counter(m1.Failed.WithLabelValues("audit", FailDatabase)) >= 2
	})
	if segs := segmentFiles(t, dir); len(segs) < 2 {
		t.Errorf("%d segment files, want several", len(segs))
	}
	if err := down.Close(); err != nil {
		t.Fatalf("Close with everything spooled: %v", err)
	}
	if rows, _ := tableRows(t, direct); rows != 0 {
		t.Fatalf("%d rows written with the database down?", rows)
	}

	m2 := newTestMetrics(t)
	cfg.Metrics = m2
	up, err := NewAudit(direct, cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the spooled decisions in the table", func() bool { r, _ := tableRows(t, direct); return r >= len(events) })
	if err := up.Close(); err != nil {
		t.Fatal(err)
	}
	checkStoredOnce(t, direct, events)
	if got := counter(m2.Delivered.WithLabelValues("audit")); got != float64(len(events)) {
		t.Errorf("delivered %v after restart, want %d", got, len(events))
	}
	if segs := segmentFiles(t, dir); len(segs) != 0 {
		t.Errorf("delivered segments not deleted: %v", segs)
	}
	if got := counter(m2.SpoolBytes.WithLabelValues("audit")); got != 0 {
		t.Errorf("spool_bytes %v after delivering everything", got)
	}
}

// The database goes away and comes back while the node runs.
func TestAuditSpoolDeliversWhenDatabaseReturns(t *testing.T) {
	dbURL, direct := openAuditDB(t)
	dial, rewrite := proxied(t, dbURL)
	proxy := startProxy(t, dial)
	dir := t.TempDir()
	m := newTestMetrics(t)
	cfg := spoolConfig(dir, m, testLogger(t))
	cfg.SpoolMaxBytes = 64 << 10 // 8 KiB segments
	a, err := NewAudit(newPool(t, rewrite(proxy.ln.Addr().String())), cfg)
	if err != nil {
		t.Fatal(err)
	}
	events := testEvents(60)
	a.Send(events[0])
	waitFor(t, "the first write", func() bool { return rowsFor(t, direct, events[0].ID) == 1 })
	proxy.setDown(true)
	for _, e := range events[1:] {
		a.Send(e)
	}
	waitFor(t, "retries during the outage", func() bool { return counter(m.Retried.WithLabelValues("audit")) >= 2 })
	if got := a.Backlog(); got != len(events)-1 {
		t.Errorf("backlog %d during the outage, want %d", got, len(events)-1)
	}
	proxy.setDown(false)
	waitFor(t, "the backlog after the outage", func() bool { return a.Backlog() == 0 })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	checkStoredOnce(t, direct, events)
	if segs := segmentFiles(t, dir); len(segs) != 0 {
		t.Errorf("delivered segments not deleted: %v", segs)
	}
	for _, reason := range []string{DropQueueFull, DropShutdown, DropSpoolDamaged} {
		if got := counter(m.Dropped.WithLabelValues("audit", reason)); got != 0 {
			t.Errorf("dropped(%s) = %v", reason, got)
		}
	}
}

// With the database there, delivered decisions do not pile up on disk: the
// segment being written is deleted once delivered and 64 KiB big.
func TestAuditSpoolDeletesDeliveredDecisions(t *testing.T) {
	_, pool := openAuditDB(t)
	dir := t.TempDir()
	m := newTestMetrics(t)
	a, err := NewAudit(pool, spoolConfig(dir, m, testLogger(t))) // default size: 8 MiB segments
	if err != nil {
		t.Fatal(err)
	}
	events := testEvents(400) // about 170 KiB
	for _, e := range events {
		a.Send(e)
	}
	waitFor(t, "delivery", func() bool { return a.Backlog() == 0 })
	if got := counter(m.SpoolBytes.WithLabelValues("audit")); got >= deliveredKeepBytes {
		t.Errorf("spool_bytes = %v with everything delivered, want under %d", got, deliveredKeepBytes)
	}
	if segs := segmentFiles(t, dir); len(segs) > 1 {
		t.Errorf("delivered segments kept: %v", segs)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	checkStoredOnce(t, pool, events)
	if segs := segmentFiles(t, dir); len(segs) != 0 {
		t.Errorf("segments left after Close: %v", segs)
	}
}

// A crash between the INSERT and the spool's acknowledgement: the next start
// sends the event again and the table still holds it once. The copy of the
// spool taken before delivery is exactly what such a crash leaves behind.
func TestAuditSpoolResendAfterCrashBeforeAckStoresOnce(t *testing.T) {
	dbURL, direct := openAuditDB(t)
	root := t.TempDir()
	dir, snapshot := filepath.Join(root, "spool"), filepath.Join(root, "snapshot")
	down, err := NewAudit(newPool(t, deadURL(t, dbURL)), spoolConfig(dir, nil, testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	events := testEvents(20)
	for _, e := range events {
		down.Send(e)
	}
	if err := down.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(snapshot, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}

	first, err := NewAudit(direct, spoolConfig(dir, nil, testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery", func() bool { return first.Backlog() == 0 })
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	checkStoredOnce(t, direct, events)

	m := newTestMetrics(t)
	again, err := NewAudit(direct, spoolConfig(snapshot, m, testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second delivery", func() bool { return again.Backlog() == 0 })
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
	if got := counter(m.Delivered.WithLabelValues("audit")); got != float64(len(events)) {
		t.Errorf("re-sent %v events, want %d (every one unacknowledged)", got, len(events))
	}
	checkStoredOnce(t, direct, events)
}

// Segment numbers never go back below the acknowledged position, even after
// every segment was delivered and deleted: the next start deletes the
// segments the ack has passed, and must not take new ones for old.
func TestAuditSpoolNumbersOutliveDeletedSegments(t *testing.T) {
	dbURL, direct := openAuditDB(t)
	root := t.TempDir()
	dir, crashed := filepath.Join(root, "spool"), filepath.Join(root, "crashed")
	events := testEvents(2)
	first, err := NewAudit(direct, spoolConfig(dir, nil, testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	first.Send(events[0])
	if err := first.Close(); err != nil { // delivered, its segment deleted
		t.Fatal(err)
	}
	if segs := segmentFiles(t, dir); len(segs) != 0 {
		t.Fatalf("segments left: %v", segs)
	}
	down, err := NewAudit(newPool(t, deadURL(t, dbURL)), spoolConfig(dir, nil, testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	down.Send(events[1])
	// The state a crash leaves now: the new segment, the old ack.
	if err := os.CopyFS(crashed, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	_ = down.Close()

	after, err := NewAudit(direct, spoolConfig(crashed, nil, testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery", func() bool { return after.Backlog() == 0 })
	if err := after.Close(); err != nil {
		t.Fatal(err)
	}
	checkStoredOnce(t, direct, events)
}

// SIGKILL right after the Sends returned, the database unreachable: the
// next start writes every one of them.
func TestAuditSpoolSurvivesSIGKILL(t *testing.T) {
	dbURL, direct := openAuditDB(t)
	dir := t.TempDir()
	const n = 200
	child := startSpoolChild(t, dir, deadURL(t, dbURL), n, "kill-a")
	select {
	case <-child.allSent:
	case <-child.eof:
		t.Fatal("child ended before sending")
	}
	if sent := child.kill(t); sent != n {
		t.Fatalf("child reported %d sends, want %d", sent, n)
	}

	m := newTestMetrics(t)
	log, logs := capturedLogger(t)
	a, err := NewAudit(direct, spoolConfig(dir, m, log))
	if err != nil {
		t.Fatal(err)
	}
	if got := recoveredCount(t, logs); got != n {
		t.Errorf("%d decisions found in the spool at restart, want %d", got, n)
	}
	waitFor(t, "the killed process's decisions", func() bool { return a.Backlog() == 0 })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	events := make([]decision.Event, n)
	for i := range events {
		events[i] = childEvent("kill-a", i)
	}
	checkStoredOnce(t, direct, events)
	if got := counter(m.Delivered.WithLabelValues("audit")); got != n {
		t.Errorf("delivered %v, want %d", got, n)
	}
}

// SIGKILL in the middle of delivery, the database reachable: what was
// written stays, what was not is written by the next start, and what was
// written but not yet acknowledged is sent again and stored once.
func TestAuditSpoolSIGKILLDuringDelivery(t *testing.T) {
	dbURL, direct := openAuditDB(t)
	dial, rewrite := proxied(t, dbURL)
	proxy := startProxy(t, dial)
	proxy.setDown(true) // until everything is spooled, so delivery is surely under way at the kill
	dir := t.TempDir()
	const n = 1000
	child := startSpoolChild(t, dir, rewrite(proxy.ln.Addr().String()), n, "kill-b")
	select {
	case <-child.allSent:
	case <-child.eof:
		t.Fatal("child ended before sending")
	}
	proxy.setDown(false)
	waitFor(t, "delivery to be under way", func() bool { r, _ := tableRows(t, direct); return r >= n/4 })
	if sent := child.kill(t); sent != n {
		t.Fatalf("child reported %d sends, want %d", sent, n)
	}
	atKill, _ := tableRows(t, direct)
	if atKill >= n {
		t.Fatalf("all %d rows were written before the kill: nothing was left mid-delivery", atKill)
	}

	proxy.setDown(true) // nothing more from the dead child's connections

	m := newTestMetrics(t)
	log, logs := capturedLogger(t)
	a, err := NewAudit(direct, spoolConfig(dir, m, log))
	if err != nil {
		t.Fatal(err)
	}
	replay := recoveredCount(t, logs)
	waitFor(t, "the rest after the restart", func() bool { return a.Backlog() == 0 })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	events := make([]decision.Event, n)
	for i := range events {
		events[i] = childEvent("kill-b", i)
	}
	checkStoredOnce(t, direct, events)
	delivered := int(counter(m.Delivered.WithLabelValues("audit")))
	if delivered != replay {
		t.Errorf("delivered %d after restart, want the %d replayed", delivered, replay)
	}
	// Approximate: an INSERT the server was still running at the kill can
	// commit after atKill was counted.
	t.Logf("killed with %d of %d rows written; the restart replayed %d, so about %d had been written but not acknowledged",
		atKill, n, replay, delivered-(n-atKill))
}

// A full disk under the spool: decisions are held in memory (counted,
// logged once), go to disk again when space returns, and all reach the table.
func TestAuditSpoolDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "the disk-full test mounts a tmpfs, which needs root")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=128k,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		testenv.Unavailable(t, "mount a 128 KiB tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	dbURL, direct := openAuditDB(t)
	dial, rewrite := proxied(t, dbURL)
	proxy := startProxy(t, dial)
	proxy.setDown(true)
	m := newTestMetrics(t)
	log, logs := capturedLogger(t)
	dir := filepath.Join(mnt, "spool")
	a, err := NewAudit(newPool(t, rewrite(proxy.ln.Addr().String())), spoolConfig(dir, m, log))
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() { // before the umount
		if !closed {
			_ = a.Close()
		}
	})

	filler := fillDisk(t, filepath.Join(mnt, "filler"))
	events := testEvents(40)
	full, later := events[:30], events[30:]
	for _, e := range full {
		a.Send(e)
	}
	if got := counter(m.SpoolErrors.WithLabelValues("audit", SpoolErrDiskFull)); got != float64(len(full)) {
		t.Errorf("spool_errors(disk_full) = %v, want %d", got, len(full))
	}
	if got := counter(m.SpoolFallback.WithLabelValues("audit")); got != float64(len(full)) {
		t.Errorf("spool_fallback_length = %v, want %d", got, len(full))
	}
	if got := a.Backlog(); got != len(full) {
		t.Errorf("backlog %d, want %d", got, len(full))
	}
	if lines := logs.lines("AUDIT spool cannot take decisions"); len(lines) != 1 || !strings.Contains(lines[0], full[0].ID) {
		t.Errorf("want one ERROR line naming the first event of the burst, got %q", lines)
	}
	if segs := segmentFiles(t, dir); len(segs) != 0 {
		t.Errorf("failed segments left behind: %v", segs)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for _, e := range later {
		a.Send(e)
	}
	if got := counter(m.SpoolErrors.WithLabelValues("audit", SpoolErrDiskFull)); got != float64(len(full)) {
		t.Errorf("spool_errors(disk_full) = %v after space returned, want still %d", got, len(full))
	}
	// What waited in memory went to disk with the next Send, except the
	// one the writer holds, retrying it against the absent database.
	if got := counter(m.SpoolFallback.WithLabelValues("audit")); got > 1 {
		t.Errorf("spool_fallback_length = %v after space returned, want at most the one being written", got)
	}
	if len(logs.lines("audit spool takes decisions again")) != 1 {
		t.Error("no log line when the spool recovered")
	}
	if len(logs.lines("decisions held in memory moved to disk")) != 1 {
		t.Error("no log line for the events moved from memory to disk")
	}
	if got := counter(m.SpoolBytes.WithLabelValues("audit")); got < float64(len(events)-1)*300 {
		t.Errorf("spool_bytes = %v, want the events on disk", got)
	}

	proxy.setDown(false)
	waitFor(t, "the backlog after the database returned", func() bool { return a.Backlog() == 0 })
	closed = true
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	checkStoredOnce(t, direct, events)
	for _, reason := range []string{DropQueueFull, DropShutdown, DropSpoolDamaged} {
		if got := counter(m.Dropped.WithLabelValues("audit", reason)); got != 0 {
			t.Errorf("dropped(%s) = %v", reason, got)
		}
	}
}

// fillDisk writes path until the file system is full.
func fillDisk(t *testing.T, path string) string {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 4096)
	for {
		if _, err := f.Write(block); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			return path
		}
	}
}

// SpoolMaxBytes reached: the rest waits in memory, and nothing is lost.
func TestAuditSpoolLimitFallsBackToMemory(t *testing.T) {
	dbURL, direct := openAuditDB(t)
	dial, rewrite := proxied(t, dbURL)
	proxy := startProxy(t, dial)
	proxy.setDown(true)
	dir := t.TempDir()
	m := newTestMetrics(t)
	cfg := spoolConfig(dir, m, testLogger(t))
	cfg.SpoolMaxBytes = minSpoolBytes
	a, err := NewAudit(newPool(t, rewrite(proxy.ln.Addr().String())), cfg)
	if err != nil {
		t.Fatal(err)
	}
	events := testEvents(45)
	for _, e := range events[:40] {
		a.Send(e)
	}
	limited := counter(m.SpoolErrors.WithLabelValues("audit", SpoolErrLimit))
	if limited == 0 || limited == 40 {
		t.Fatalf("spool_errors(limit) = %v: the limit did not cut in part-way", limited)
	}
	if got := counter(m.SpoolFallback.WithLabelValues("audit")); got != limited {
		t.Errorf("spool_fallback_length = %v, want %v", got, limited)
	}
	if got := counter(m.SpoolBytes.WithLabelValues("audit")); got > minSpoolBytes {
		t.Errorf("spool_bytes = %v over the limit %d", got, minSpoolBytes)
	}
	if got := a.Backlog(); got != 40 {
		t.Errorf("backlog %d, want 40", got)
	}
	proxy.setDown(false)
	waitFor(t, "the backlog", func() bool { return a.Backlog() == 0 })
	for _, e := range events[40:] { // room again: to disk
		a.Send(e)
	}
	if got := counter(m.SpoolErrors.WithLabelValues("audit", SpoolErrLimit)); got != limited {
		t.Errorf("spool_errors(limit) went from %v to %v with room on disk", limited, got)
	}
	waitFor(t, "the last events", func() bool { return a.Backlog() == 0 })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	checkStoredOnce(t, direct, events)
	if segs := segmentFiles(t, dir); len(segs) != 0 {
		t.Errorf("delivered segments not deleted: %v", segs)
	}
}

// A record cut short by a crash (or damaged) ends its segment: it is
// skipped with a log line, the records before it are delivered, and the
// spool goes on.
func TestAuditSpoolSkipsTornRecord(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, seg string)
		kept   int // of the 3 events written
	}{
		{"torn tail", func(t *testing.T, seg string) {
			// The header and the first 100 bytes of a 600-byte record.
			payload := bytes.Repeat([]byte{'x'}, 600)
			appendToFile(t, seg, appendFrame(nil, payload)[:frameHeaderLen+100])
		}, 3},
		{"checksum", func(t *testing.T, seg string) {
			b, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)-3] ^= 0x20 // inside the last record's JSON
			if err := os.WriteFile(seg, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, 2},
		{"zeroed tail", func(t *testing.T, seg string) {
			appendToFile(t, seg, make([]byte, 4096)) // a length of 0 is no record
		}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dbURL, direct := openAuditDB(t)
			dir := t.TempDir()
			down, err := NewAudit(newPool(t, deadURL(t, dbURL)), spoolConfig(dir, nil, testLogger(t)))
			if err != nil {
				t.Fatal(err)
			}
			events := testEvents(4)
			for _, e := range events[:3] {
				down.Send(e)
			}
			if err := down.Close(); err != nil {
				t.Fatal(err)
			}
			segs := segmentFiles(t, dir)
			if len(segs) != 1 {
				t.Fatalf("segments %v, want one", segs)
			}
			tc.damage(t, segs[0])
			// And a segment of garbage behind a valid header.
			junk := filepath.Join(dir, fmt.Sprintf("%s%020d%s", segPrefix, 99, segSuffix))
			if err := os.WriteFile(junk, append([]byte(spoolMagic), bytes.Repeat([]byte{0xa5, 0x17, 0x3c}, 300)...), 0o600); err != nil {
				t.Fatal(err)
			}

			m := newTestMetrics(t)
			log, logs := capturedLogger(t)
			a, err := NewAudit(direct, spoolConfig(dir, m, log))
			if err != nil {
				t.Fatal(err)
			}
			if got := counter(m.SpoolErrors.WithLabelValues("audit", SpoolErrCorrupt)); got != 2 {
				t.Errorf("spool_errors(corrupt) = %v, want 2 (the damaged record, the junk segment)", got)
			}
			if lines := logs.lines("torn or damaged record"); len(lines) != 2 || !strings.Contains(lines[0], segs[0]) {
				t.Errorf("want a log line for each damaged segment, got %q", lines)
			}
			a.Send(events[3]) // the spool goes on, in a new segment
			waitFor(t, "delivery", func() bool { return a.Backlog() == 0 })
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			want := append(append([]decision.Event(nil), events[:tc.kept]...), events[3])
			checkStoredOnce(t, direct, want)
			if segs := segmentFiles(t, dir); len(segs) != 0 {
				t.Errorf("segments left after delivery: %v", segs)
			}
		})
	}
}

func appendToFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

// Decisions carry names: the spool is private, and one process uses it.
func TestAuditSpoolPrivateAndLocked(t *testing.T) {
	dbURL, _ := openAuditDB(t)
	pool := newPool(t, deadURL(t, dbURL))
	dir := filepath.Join(t.TempDir(), "spool")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	a, err := NewAudit(pool, spoolConfig(dir, nil, testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewAudit(pool, spoolConfig(dir, nil, testLogger(t))); !errors.Is(err, ErrSpoolLocked) {
		t.Errorf("second sink on the same spool: %v, want ErrSpoolLocked", err)
	}
	a.Send(testEvent(1))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	checkMode(t, dir, 0o700|os.ModeDir)
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range files {
		names[f.Name()] = true
		checkMode(t, filepath.Join(dir, f.Name()), 0o600)
	}
	if !names[lockFileName] || !names[ackFileName] || len(segmentFiles(t, dir)) != 1 {
		t.Errorf("spool holds %v; want the lock, the ack and one segment", names)
	}
	// Closed, it can be opened again.
	b, err := NewAudit(pool, spoolConfig(dir, nil, testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Backlog(); got != 1 {
		t.Errorf("backlog %d after reopening, want 1", got)
	}
	_ = b.Close()
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (os.ModePerm | os.ModeDir); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}
