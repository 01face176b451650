package sink

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/loopgate/loopgate/engine/decision"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/internal/testenv"
)

// openAuditDB returns a migrated test schema's URL and a pool on it.
func openAuditDB(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	dbURL := testenv.DatabaseURL(t)
	g, _, err := gallery.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return dbURL, g.Pool()
}

func addPerson(t *testing.T, pool *pgxpool.Pool, externalID, name string) int64 {
	t.Helper()
	var id int64
	if err := pool.QueryRow(context.Background(),
		`INSERT INTO people (external_id, name) VALUES ($1, $2) RETURNING id`, externalID, name).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func rowsFor(t *testing.T, pool *pgxpool.Pool, eventID string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM decisions WHERE event_id = $1`, eventID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAuditWritesDecisionsOnce(t *testing.T) {
	sch := eventSchema(t)
	_, pool := openAuditDB(t)
	ada := addPerson(t, pool, "E100", "Ada Lovelace")

	m := newTestMetrics(t)
	a, err := NewAudit(pool, AuditConfig{Metrics: m, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	open := testEvent(0)
	open.Person.ID = ada
	deny := testEvent(1)
	gone := testEvent(2) // matched a person deleted since: kept, person_id NULL
	gone.Person.ID = ada + 1000
	bad := testEvent(3) // the table's CHECK refuses it: counted, never retried forever
	bad.Decision = "maybe"
	a.Send(open)
	a.Send(deny)
	a.Send(open) // a duplicate in the same run
	a.Send(gone)
	a.Send(bad)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// A second writer (a restarted node re-sending) must not add rows.
	a2, err := NewAudit(pool, AuditConfig{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	a2.Send(open)
	if err := a2.Close(); err != nil {
		t.Fatal(err)
	}

	for _, e := range []decision.Event{open, deny, gone} {
		if n := rowsFor(t, pool, e.ID); n != 1 {
			t.Errorf("event %s stored %d times, want 1", e.ID, n)
		}
	}
	if n := rowsFor(t, pool, bad.ID); n != 0 {
		t.Errorf("refused event stored %d times", n)
	}
	if got := counter(m.Delivered.WithLabelValues("audit")); got != 4 { // open twice (once a no-op), deny, gone
		t.Errorf("delivered = %v, want 4", got)
	}
	if got := counter(m.Failed.WithLabelValues("audit", FailRejected)); got != 1 {
		t.Errorf("failed(rejected) = %v, want 1", got)
	}
	if got := counter(m.Failed.WithLabelValues("audit", FailPersonGone)); got != 1 {
		t.Errorf("failed(person_gone) = %v, want 1", got)
	}

	var (
		personID          *int64
		decisionCol, rsn  string
		dist, margin, thr *float64
		framesUsed        int
		decidedAt         time.Time
		eventJSON         string
	)
	err = pool.QueryRow(context.Background(), `
		SELECT person_id, decision, reason, distance, margin, threshold, frames_used, decided_at, event::text
		FROM decisions WHERE event_id = $1`, open.ID).
		Scan(&personID, &decisionCol, &rsn, &dist, &margin, &thr, &framesUsed, &decidedAt, &eventJSON)
	if err != nil {
		t.Fatal(err)
	}
	if personID == nil || *personID != ada || decisionCol != "open" || rsn != "matched" ||
		*dist != *open.Distance || *margin != *open.Margin || *thr != 0.6 || framesUsed != open.FramesUsed ||
		!decidedAt.Equal(open.DecidedAt) {
		t.Errorf("stored row differs from the event: person %v %s %s %v %v %v %d %v", personID, decisionCol, rsn, *dist, *margin, *thr, framesUsed, decidedAt)
	}
	validateEvent(t, sch, []byte(eventJSON))
	if !strings.Contains(eventJSON, `"external_id": "E000"`) {
		t.Errorf("event column lacks the person: %s", eventJSON)
	}
	var goneMargin *float64
	if err := pool.QueryRow(context.Background(), `SELECT person_id, margin FROM decisions WHERE event_id = $1`, gone.ID).Scan(&personID, &goneMargin); err != nil {
		t.Fatal(err)
	}
	if personID != nil {
		t.Errorf("decision for a deleted person stored with person_id %d, want NULL", *personID)
	}
	if err := pool.QueryRow(context.Background(), `SELECT margin FROM decisions WHERE event_id = $1`, deny.ID).Scan(&goneMargin); err != nil || goneMargin != nil {
		t.Errorf("deny without a second candidate: margin %v (err %v), want NULL", goneMargin, err)
	}
}

// tcpProxy stands between the audit pool and PostgreSQL so the test can cut
// the database off (every connection reset, new ones refused) and restore it.
type tcpProxy struct {
	ln     net.Listener
	dial   func() (net.Conn, error)
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
	closed bool
}

func startProxy(t *testing.T, dial func() (net.Conn, error)) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, dial: dial, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() {
		p.setDown(true)
		ln.Close()
	})
	return p
}

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		up, err := p.dial()
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *tcpProxy) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

func (p *tcpProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
	}
}

// proxiedURL points dbURL at the proxy; dial reaches the real server.
func proxied(t *testing.T, dbURL string) (dial func() (net.Conn, error), rewrite func(addr string) string) {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	network, address := "tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	if strings.HasPrefix(cfg.Host, "/") {
		network, address = "unix", cfg.Host+"/.s.PGSQL."+strconv.Itoa(int(cfg.Port))
	}
	dial = func() (net.Conn, error) { return net.Dial(network, address) }
	rewrite = func(addr string) string {
		u, err := url.Parse(dbURL)
		if err != nil {
			t.Fatal(err)
		}
		host, port, _ := net.SplitHostPort(addr)
		q := u.Query()
		q.Del("host")
		q.Del("port")
		q.Set("connect_timeout", "2")
		u.Host = net.JoinHostPort(host, port)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dial, rewrite
}

func TestAuditRetriesThroughADatabaseOutage(t *testing.T) {
	dbURL, direct := openAuditDB(t)
	dial, rewrite := proxied(t, dbURL)
	proxy := startProxy(t, dial)
	pool, err := pgxpool.New(context.Background(), rewrite(proxy.ln.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	const queueSize = 2
	m := newTestMetrics(t)
	a, err := NewAudit(pool, AuditConfig{QueueSize: queueSize, MinBackoff: 5 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond, WriteTimeout: 3 * time.Second, Metrics: m, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	events := make([]decision.Event, 7)
	for i := range events {
		events[i] = testEvent(2*i + 1) // denies: no person rows needed
	}

	a.Send(events[0])
	waitFor(t, "the first write", func() bool { return rowsFor(t, direct, events[0].ID) == 1 })

	proxy.setDown(true)
	a.Send(events[1])
	// The writer now holds events[1] and keeps failing on it.
	waitFor(t, "retries during the outage", func() bool { return counter(m.Retried.WithLabelValues("audit")) >= 2 })
	for _, e := range events[2:] {
		a.Send(e) // the queue keeps the newest two: events[5], events[6]
	}
	if got := counter(m.QueueLength.WithLabelValues("audit")); got != queueSize {
		t.Errorf("backlog gauge = %v during the outage, want %d", got, queueSize)
	}
	if got := counter(m.Dropped.WithLabelValues("audit", DropQueueFull)); got != 3 {
		t.Errorf("dropped(queue_full) = %v, want 3", got)
	}
	if counter(m.Failed.WithLabelValues("audit", FailDatabase)) < 2 {
		t.Error("failed writes not counted")
	}
	if n := rowsFor(t, direct, events[1].ID); n != 0 {
		t.Fatalf("written during the outage?")
	}

	proxy.setDown(false)
	waitFor(t, "the backlog after the outage", func() bool {
		return counter(m.QueueLength.WithLabelValues("audit")) == 0 && rowsFor(t, direct, events[6].ID) == 1
	})
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	for i, e := range events {
		want := 1
		if i >= 2 && i <= 4 {
			want = 0 // dropped on overflow, and counted
		}
		if n := rowsFor(t, direct, e.ID); n != want {
			t.Errorf("event %d stored %d times, want %d", i, n, want)
		}
	}
	if got := counter(m.Delivered.WithLabelValues("audit")); got != 4 {
		t.Errorf("delivered = %v, want 4", got)
	}
	t.Logf("outage: %v retries, %v failed writes", counter(m.Retried.WithLabelValues("audit")), counter(m.Failed.WithLabelValues("audit", FailDatabase)))
}

// Close writes the whole backlog when the database is there.
func TestAuditCloseFlushesBacklog(t *testing.T) {
	_, pool := openAuditDB(t)
	a, err := NewAudit(pool, AuditConfig{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := range n {
		a.Send(testEvent(2*i + 1))
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	var stored int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM decisions`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != n {
		t.Errorf("%d rows after Close, want %d", stored, n)
	}
}

func TestAuditCloseDeadlineWhileDatabaseDown(t *testing.T) {
	dbURL, _ := openAuditDB(t)
	dial, rewrite := proxied(t, dbURL)
	proxy := startProxy(t, dial)
	proxy.setDown(true)
	pool, err := pgxpool.New(context.Background(), rewrite(proxy.ln.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	m := newTestMetrics(t)
	a, err := NewAudit(pool, AuditConfig{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		FlushTimeout: 300 * time.Millisecond, Metrics: m, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	a.Send(testEvent(1))
	a.Send(testEvent(3))
	if err := a.Close(); !errors.Is(err, ErrUnflushed) {
		t.Fatalf("Close = %v, want ErrUnflushed", err)
	}
	if got := counter(m.Dropped.WithLabelValues("audit", DropShutdown)); got != 2 {
		t.Errorf("dropped(shutdown) = %v, want 2", got)
	}
}
