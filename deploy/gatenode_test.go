package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.yaml.in/yaml/v3"

	"github.com/loopgate/loopgate/camera/synth"
	"github.com/loopgate/loopgate/engine/decision"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/enroll"
	"github.com/loopgate/loopgate/enroll/service"
	"github.com/loopgate/loopgate/internal/testenv"
	"github.com/loopgate/loopgate/internal/walkfixture"
	"github.com/loopgate/loopgate/node"
	"github.com/loopgate/loopgate/server"
)

// TestGateNodeObservability runs a REAL gate node on a SYNTHETIC looping
// clip (one enrolled walker, one stranger) against the real database, and
// the real enrolment service (as a loopgate_enrolment login of roles.sql),
// scraped every second by the real Prometheus with deploy/prometheus's
// configuration and alert rules. It then:
//
//   - triggers what a short healthy run does not show: a camera that never
//     connects, a gate controller answering 503 with a queue of one, failed
//     logins, /readyz polled, and a database outage (tables renamed away for
//     a few seconds, so the gallery copy goes stale, searches fail, audit
//     writes fail and the enrolment API answers 5xx);
//   - asserts the expected series, which alerts are active and which are not;
//   - executes every query of every panel of deploy/grafana/loopgate.json
//     (variables as Grafana substitutes them with "All") and every variable
//     query, and asserts each returns data with a finite value;
//   - asserts no enrolled person's name or id appears in /metrics or in any
//     label value Prometheus stored.
//
// Subtests run the same node under the gate unit's emulated seccomp policy
// and as a loopgate_gate login.
func TestGateNodeObservability(t *testing.T) {
	promBin := tool(t, "prometheus", "Debian package prometheus; deploy/install-deps.sh installs it")
	modelDir := testenv.ModelDir(t)
	clip := synth.DefaultConfig()
	clip.Seed = 31
	walkers := walkfixture.Vetted(t, 1, 1, clip.Seed, node.DefaultFusion.Threshold-0.05)
	fx := walkfixture.New(t, clip, walkers, 0)
	var people []string // what must never appear in metrics
	for _, w := range fx.Manifest.Walkers {
		people = append(people, w.Name, strings.ReplaceAll(w.Name, "_", " "), walkfixture.WalkerID(w))
	}
	t.Logf("clip %s: %d walkers, %d frames at %v fps", filepath.Base(fx.Clip), len(fx.Manifest.Walkers), fx.Manifest.Frames, fx.Manifest.FPS)

	t.Run("sandbox", func(t *testing.T) { sandboxSubtest(t, fx.DBURL, modelDir, fx.Clip, len(fx.Manifest.Walkers)) })
	t.Run("prometheus", func(t *testing.T) { prometheusSubtest(t, promBin, modelDir, fx, people) })
	t.Run("as a loopgate_gate login", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		admin := connect(t, ctx, fx.DBURL)
		mustExec(t, ctx, admin, string(readFile(t, deployFile(t, "roles.sql"))))
		gateURL, _ := loginURL(t, ctx, admin, fx.DBURL, "loopgate_gate")
		cfg := node.Defaults()
		cfg.Gate, cfg.Zones = walkfixture.Gate, []string{"bridge1"}
		cfg.Database.URL = gateURL
		noMigrate := false
		cfg.Database.Migrate = &noMigrate // the role may not change the schema: the owner migrated it
		cfg.Models.Dir = modelDir
		cfg.Cameras = []node.CameraConfig{{Name: "lane-a", URI: fx.Clip, Lane: "a", Fast: true}}
		cfg.Sinks.Stdout = false
		// Migrating needs the owner: as loopgate_gate it is refused.
		if g, _, err := gallery.Open(ctx, gateURL); err == nil {
			g.Close()
			t.Fatal("loopgate_gate could run migrations")
		}
		n, err := newNode(ctx, cfg, node.Options{Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
		if err != nil {
			t.Fatalf("a gate node cannot start as a loopgate_gate login (deploy/roles.sql's least privilege): %v", err)
		}
		defer n.Close()
		if err := n.Run(ctx); err != nil {
			t.Fatalf("run as loopgate_gate: %v", err)
		}
		st := n.GalleryCopy().Status()
		t.Logf("node as loopgate_gate: gallery copy from %s, %d people", st.Source, st.People)
	})
}

// newNode is node.New, with a panic turned into an error: node.New's
// clean-up on failure calls Close on the nil *Node it returns (the deferred
// n.Close() sees the named result after `return nil, err`).
func newNode(ctx context.Context, cfg node.Config, opts node.Options) (n *node.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			n, err = nil, fmt.Errorf("node.New failed and then panicked in its clean-up: %v", r)
		}
	}()
	return node.New(ctx, cfg, opts)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// eventCollector keeps every decision.
type eventCollector struct {
	mu     sync.Mutex
	events []decision.Event
}

func (c *eventCollector) Name() string { return "test" }
func (c *eventCollector) Send(e decision.Event) {
	c.mu.Lock()
	c.events = append(c.events, e)
	c.mu.Unlock()
}
func (c *eventCollector) Close() error { return nil }
func (c *eventCollector) all() []decision.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func prometheusSubtest(t *testing.T, promBin, modelDir string, fx *walkfixture.Fixture, people []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	admin := connect(t, ctx, fx.DBURL)
	mustExec(t, ctx, admin, string(readFile(t, deployFile(t, "roles.sql"))))
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// A gate controller in trouble: every POST answers 503.
	var controllerPosts int64
	var cmu sync.Mutex
	controller := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cmu.Lock()
		controllerPosts++
		cmu.Unlock()
		http.Error(w, "controller overloaded", http.StatusServiceUnavailable)
	}))
	defer controller.Close()
	offlineCamera := "http://" + freePort(t) + "/video.mjpg" // nothing listens there

	_, hash, err := server.NewTokenSecret()
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.Defaults()
	cfg.Gate, cfg.Zones = walkfixture.Gate, []string{"bridge1"}
	cfg.Database.URL = fx.DBURL
	cfg.Models.Dir = modelDir
	cfg.Cameras = []node.CameraConfig{
		{Name: "lane-a", URI: fx.Clip, Lane: "a", Loop: true},
		{Name: "lane-b-offline", URI: offlineCamera, Lane: "b"},
	}
	cfg.Gallery.MaxStaleness = 3 * time.Second // so a short outage makes the copy stale
	cfg.Sinks.Stdout = false
	cfg.Sinks.Webhook = &node.WebhookConfig{URL: controller.URL + "/decisions", Timeout: 500 * time.Millisecond, QueueSize: 1}
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.HTTP.Tokens = []node.TokenConfig{{Name: "desk", SHA256: hash, Roles: []string{"operator"}}}
	cfg.Sinks.AuditSpool.Dir = filepath.Join(t.TempDir(), "audit-spool")
	col := &eventCollector{}
	n, err := newNode(ctx, cfg, node.Options{Sinks: []decision.Sink{col}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	nodeCtx, stopNode := context.WithCancel(ctx)
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- n.Run(nodeCtx) }()
	defer func() {
		stopNode()
		if err := <-nodeDone; err != nil {
			t.Errorf("node run: %v", err)
		}
		n.Close()
	}()
	nodeURL := "http://" + n.Addr()

	// The enrolment service as a loopgate_enrolment login, no migrations.
	enrolURL, _ := loginURL(t, ctx, admin, fx.DBURL, "loopgate_enrolment")
	var ecfg service.Config
	ecfg.Database.URL = enrolURL
	no := false
	ecfg.Database.Migrate = &no
	ecfg.Models.Dir = modelDir
	ecfg.HTTP.Addr = freePort(t)
	svc, err := service.New(ctx, ecfg, service.Options{Logger: log})
	if err != nil {
		t.Fatalf("enrolment service as a loopgate_enrolment login: %v", err)
	}
	svcCtx, stopSvc := context.WithCancel(ctx)
	svcDone := make(chan error, 1)
	go func() { svcDone <- svc.Run(svcCtx) }()
	defer func() {
		stopSvc()
		<-svcDone
		svc.Close()
	}()
	enrolBase := "http://" + ecfg.HTTP.Addr
	apiToken, _, err := svc.Accounts().CreateToken(ctx, enroll.Actor{Name: "deploy-test", Kind: "cli"}, "deploy-test", enroll.RoleOfficer)
	if err != nil {
		t.Fatalf("create an API token as loopgate_enrolment: %v", err)
	}

	// Prometheus with deploy/prometheus's configuration: every setting and
	// the alert rules as shipped; targets this node and this service; 1 s
	// scrapes and evaluations so the test is short.
	promAddr := freePort(t)
	promDir := t.TempDir()
	promCfg := testPrometheusConfig(t, map[string]string{
		"loopgate-gate": n.Addr(), "loopgate-enrolment": ecfg.HTTP.Addr, "prometheus": promAddr,
	})
	writeFile(t, filepath.Join(promDir, "prometheus.yml"), promCfg)
	runTool(t, promDir, time.Minute, promtool(t), "check", "config", "prometheus.yml")
	startPrometheus(t, promBin, promDir, promAddr)
	api := promAPI{t: t, base: "http://" + promAddr}

	client := &http.Client{Timeout: 5 * time.Second}
	get := func(u string, hdr ...string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Background traffic: a load balancer polling /readyz, officers'
	// requests on the enrolment API.
	var readyMu sync.Mutex
	readyCodes := map[int]int{}
	enrolCodes := map[int]int{}
	trafficCtx, stopTraffic := context.WithCancel(ctx)
	var traffic sync.WaitGroup
	traffic.Add(1)
	go func() {
		defer traffic.Done()
		for trafficCtx.Err() == nil {
			c, _ := get(nodeURL + "/readyz")
			e, _ := get(enrolBase+"/api/v1/people", "Authorization", "Bearer "+apiToken)
			readyMu.Lock()
			readyCodes[c]++
			enrolCodes[e]++
			readyMu.Unlock()
			select {
			case <-trafficCtx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	defer func() { stopTraffic(); traffic.Wait() }()
	api.waitTargetsUp(3, 90*time.Second)
	// Failed logins on the gate node (no CSRF token) and on the enrolment
	// API, a scrape apart: a counter appears at its first increment, so
	// rate() sees only the increments after a scrape has seen it.
	for i := range 3 {
		if i > 0 {
			time.Sleep(1500 * time.Millisecond)
		}
		resp, err := client.PostForm(nodeURL+"/login", url.Values{"token": {"not-the-token"}})
		if err == nil {
			resp.Body.Close()
		}
		req, _ := http.NewRequest(http.MethodPost, enrolBase+"/api/v1/login", strings.NewReader(`{"username":"nobody","password":"wrong-password-1"}`))
		req.Header.Set("Content-Type", "application/json")
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}

	nodeMetric := func(name string, labels ...string) float64 {
		return scrapeValue(t, nodeURL+"/metrics", name, labels...)
	}
	waitFor(t, 3*time.Minute, "an open and a deny from the clip", func() bool {
		var open, deny bool
		for _, e := range col.all() {
			open = open || e.Decision == decision.Open
			deny = deny || e.Decision == decision.Deny
		}
		return open && deny
	})

	// The database outage: the gallery feed, the people and the decisions
	// tables disappear (renamed) until the node and the service have shown
	// every symptom, or 60 s.
	outageStart := time.Now()
	renameTables(t, ctx, admin, "", "_outage")
	restored := false
	restore := func() {
		if !restored {
			renameTables(t, ctx, admin, "_outage", "")
			restored = true
		}
	}
	defer restore()
	symptoms := map[string]func() bool{
		"gallery refresh errors":         func() bool { return nodeMetric("loopgate_gallery_refresh_total", "result", "error") > 0 },
		"two gallery_stale denies":       func() bool { return nodeMetric("loopgate_decisions_total", "reason", "gallery_stale") >= 2 },
		"two search errors (stale copy)": func() bool { return nodeMetric("loopgate_pipeline_errors_total", "stage", "search") >= 2 },
		"audit write failures": func() bool {
			return nodeMetric("loopgate_sink_failed_total", "sink", "audit", "reason", "database") > 0
		},
		"enrolment API 5xx":             func() bool { readyMu.Lock(); defer readyMu.Unlock(); return enrolCodes[500]+enrolCodes[503] > 0 },
		"decisions in the audit spool":  func() bool { return nodeMetric("loopgate_sink_spool_bytes", "sink", "audit") > 0 },
		"webhook drops (queue of one)":  func() bool { return nodeMetric("loopgate_sink_dropped_total", "sink", "webhook") >= 2 },
		"two scrapes during the outage": func() bool { return time.Since(outageStart) > 3*time.Second },
	}
	waitFor(t, 60*time.Second, "every outage symptom", func() bool {
		for _, ok := range symptoms {
			if !ok() {
				return false
			}
		}
		return true
	})
	for name, ok := range symptoms {
		if !ok() {
			t.Errorf("during the outage: no %s", name)
		}
	}
	outage := time.Since(outageStart)
	ageAtEnd := nodeMetric("loopgate_gallery_copy_age_seconds")
	backlog := nodeMetric("loopgate_sink_queue_length", "sink", "audit")
	spooled := nodeMetric("loopgate_sink_spool_bytes", "sink", "audit")
	restore()
	t.Logf("outage of %s: copy age %.1f s, audit backlog %.0f (%.0f bytes spooled), stale denies %.0f, search errors %.0f",
		outage.Round(100*time.Millisecond), ageAtEnd, backlog, spooled, nodeMetric("loopgate_decisions_total", "reason", "gallery_stale"),
		nodeMetric("loopgate_pipeline_errors_total", "stage", "search"))
	waitFor(t, 90*time.Second, "recovery: audit backlog and spool drained, copy fresh", func() bool {
		return nodeMetric("loopgate_sink_queue_length", "sink", "audit") == 0 && nodeMetric("loopgate_gallery_copy_age_seconds") < 3 &&
			nodeMetric("loopgate_sink_spool_fallback_length", "sink", "audit") == 0
	})
	// Every decision emitted, through the outage too, reaches the table.
	var ids []string
	for _, e := range col.all() {
		ids = append(ids, e.ID)
	}
	var rows int
	waitFor(t, 60*time.Second, "every emitted decision in the decisions table", func() bool {
		return admin.QueryRow(ctx, `SELECT count(*) FROM decisions WHERE event_id = ANY($1)`, ids).Scan(&rows) == nil && rows == len(ids)
	})
	t.Logf("after recovery: %d of the %d decisions emitted are rows of the decisions table", rows, len(ids))
	time.Sleep(4 * time.Second) // a few scrapes of the recovered state

	t.Run("series", func(t *testing.T) {
		for _, q := range []struct {
			query string
			check func(float64) bool
			what  string
		}{
			{`loopgate_camera_up{camera="lane-a"}`, func(v float64) bool { return v == 1 }, "1"},
			{`loopgate_camera_up{camera="lane-b-offline"}`, func(v float64) bool { return v == 0 }, "0"},
			{`loopgate_camera_reconnects_total{camera="lane-b-offline"}`, func(v float64) bool { return v >= 1 }, "≥ 1"},
			{`loopgate_camera_frames_total{camera="lane-a"}`, func(v float64) bool { return v > 0 }, "> 0"},
			{`sum(loopgate_decisions_total{decision="open",reason="matched"})`, func(v float64) bool { return v >= 1 }, "≥ 1"},
			{`sum(loopgate_decisions_total{decision="deny",reason="unknown_face"})`, func(v float64) bool { return v >= 1 }, "≥ 1"},
			{`sum(loopgate_decisions_total{decision="deny",reason="gallery_stale"})`, func(v float64) bool { return v >= 1 }, "≥ 1"},
			{`loopgate_pipeline_stage_seconds_count{stage="capture_to_decision"}`, func(v float64) bool { return v >= 2 }, "≥ 2"},
			{`loopgate_sink_delivered_total{sink="audit"}`, func(v float64) bool { return v >= 1 }, "≥ 1"},
			{`loopgate_sink_spool_bytes{sink="audit"}`, func(v float64) bool { return v >= 0 }, "present"},
			{`max_over_time(loopgate_sink_spool_bytes{sink="audit"}[5m])`, func(v float64) bool { return v > 0 }, "> 0 (the outage)"},
			{`loopgate_sink_failed_total{sink="webhook",reason="http_5xx"}`, func(v float64) bool { return v >= 1 }, "≥ 1"},
			{`loopgate_gallery_copy_people`, func(v float64) bool { return v == 1 }, "1 (the enrolled walker)"},
			{`loopgate_recognizers`, func(v float64) bool { return v >= 1 }, "≥ 1"},
			{`loopgate_http_requests_total{route="GET /readyz",code="503"}`, func(v float64) bool { return v >= 1 }, "≥ 1"},
			{`loopgate_http_requests_total{route="GET /metrics",code="200"}`, func(v float64) bool { return v >= 5 }, "≥ 5"},
			{`loopgate_enrol_api_requests_total`, func(v float64) bool { return v >= 1 }, "≥ 1"},
			{`up{job="loopgate-gate"}`, func(v float64) bool { return v == 1 }, "1"},
			{`up{job="loopgate-enrolment"}`, func(v float64) bool { return v == 1 }, "1"},
		} {
			res := api.query(q.query)
			if len(res) == 0 {
				t.Errorf("%s: no series in Prometheus", q.query)
				continue
			}
			for _, s := range res {
				if !q.check(s.value) {
					t.Errorf("%s%v = %v, want %s", q.query, s.labels, s.value, q.what)
				}
			}
		}
	})

	t.Run("alerts", func(t *testing.T) {
		active := api.alerts()
		var summary []string
		for _, a := range active {
			summary = append(summary, fmt.Sprintf("%s{camera=%q,sink=%q,reason=%q} %s", a.name, a.labels["camera"], a.labels["sink"], a.labels["reason"], a.state))
		}
		sort.Strings(summary)
		t.Logf("active alerts:\n  %s", strings.Join(summary, "\n  "))
		has := func(name string, labels ...string) bool {
			for _, a := range active {
				if a.name != name {
					continue
				}
				ok := true
				for i := 0; i+1 < len(labels); i += 2 {
					ok = ok && a.labels[labels[i]] == labels[i+1]
				}
				if ok {
					return true
				}
			}
			return false
		}
		for _, want := range [][]string{
			{"LoopgateCameraDown", "camera", "lane-b-offline"},
			{"LoopgateDenyingGalleryStale", "job", "loopgate-gate"},
			{"LoopgateGallerySearchFailing", "camera", "lane-a"},
			{"LoopgateGalleryRefreshFailing", "job", "loopgate-gate"},
			{"LoopgateAuditWriteFailing", "job", "loopgate-gate"},
			{"LoopgateSinkFailing", "sink", "webhook"},
			{"LoopgateDecisionsLost", "sink", "webhook"},
			{"LoopgateNotReady", "job", "loopgate-gate"},
		} {
			if !has(want[0], want[1:]...) {
				t.Errorf("alert %s %v not active on the real node's series", want[0], want[1:])
			}
		}
		for _, not := range [][]string{
			{"LoopgateTargetDown"},
			{"LoopgateCameraDown", "camera", "lane-a"},
			{"LoopgateCameraNoFrames", "camera", "lane-a"},
			{"LoopgatePipelineStalled", "camera", "lane-a"},
			{"LoopgateGalleryCopyNearlyStale"},
		} {
			if has(not[0], not[1:]...) {
				t.Errorf("alert %s %v active on a healthy part of the node", not[0], not[1:])
			}
		}
	})

	t.Run("dashboard", func(t *testing.T) {
		for name, v := range dashboardVariableQueries(t) {
			values := api.labelValues(v[0], v[1])
			t.Logf("variable %s = label_values(%s, %s): %v", name, v[0], v[1], values)
			if len(values) == 0 {
				t.Errorf("variable %s: label_values(%s, %s) is empty", name, v[0], v[1])
			}
		}
		queries := dashboardQueries(t)
		var empty []string
		for _, q := range queries {
			expr := grafanaVars(t, q.Expr)
			res := api.query(expr)
			finite := 0
			for _, s := range res {
				if !math.IsNaN(s.value) && !math.IsInf(s.value, 0) {
					finite++
				}
			}
			if len(res) == 0 || finite == 0 {
				empty = append(empty, q.Panel)
				t.Errorf("panel %q: %s returned %d series, %d finite", q.Panel, expr, len(res), finite)
				continue
			}
			t.Logf("panel %q: %d series (%d finite), e.g. %v = %.4g", q.Panel, len(res), finite, res[0].labels, res[0].value)
		}
		t.Logf("%d panel queries executed, %d without data", len(queries), len(empty))
	})

	t.Run("no personal data", func(t *testing.T) {
		var named bool
		for _, e := range col.all() {
			named = named || (e.Person != nil && slices.Contains(people, e.Person.ExternalID))
		}
		if !named {
			t.Fatal("no decision named an enrolled walker: the check below would be vacuous")
		}
		_, nodeMetrics := get(nodeURL + "/metrics")
		_, enrolMetrics := get(enrolBase + "/metrics")
		stored := strings.Join(api.allLabelValues(), "\n")
		for where, text := range map[string]string{"node /metrics": nodeMetrics, "enrolment /metrics": enrolMetrics, "Prometheus label values": stored} {
			if len(text) < 1000 && where != "Prometheus label values" {
				t.Errorf("%s: only %d bytes", where, len(text))
			}
			for _, p := range people {
				if strings.Contains(strings.ToLower(text), strings.ToLower(p)) {
					t.Errorf("%s contains %q", where, p)
				}
			}
			t.Logf("%s: %d bytes, none of %d names and ids", where, len(text), len(people))
		}
	})

	readyMu.Lock()
	t.Logf("/readyz answers %v; enrolment API answers %v; gate controller got %d POSTs", readyCodes, enrolCodes, controllerPosts)
	readyMu.Unlock()
}

// renameTables renames the tables a database outage takes away.
func renameTables(t *testing.T, ctx context.Context, admin *pgx.Conn, from, to string) {
	t.Helper()
	for _, tbl := range []string{"gallery_changes", "people", "decisions"} {
		mustExec(t, ctx, admin, fmt.Sprintf(`ALTER TABLE %s%s RENAME TO %s%s`, tbl, from, tbl, to))
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("timed out after %s waiting for %s", timeout, what)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// scrapeValue reads one sample (summed over the series whose labels match)
// from a /metrics text exposition.
func scrapeValue(t *testing.T, metricsURL, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get(metricsURL)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			ok = ok && strings.Contains(line, labels[i]+`="`+labels[i+1]+`"`)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// testPrometheusConfig is deploy/prometheus/prometheus.yml with the test's
// targets (static, labelled like targets/*.yml), 1 s intervals, the rule
// file by absolute path and no Alertmanager.
func testPrometheusConfig(t *testing.T, targets map[string]string) []byte {
	t.Helper()
	var cfg map[string]any
	if err := yaml.Unmarshal(readFile(t, deployFile(t, "prometheus/prometheus.yml")), &cfg); err != nil {
		t.Fatal(err)
	}
	global := cfg["global"].(map[string]any)
	global["scrape_interval"], global["evaluation_interval"], global["scrape_timeout"] = "1s", "1s", "1s"
	rules := cfg["rule_files"].([]any)
	for i, r := range rules {
		rules[i] = deployFile(t, "prometheus/"+r.(string))
	}
	delete(cfg, "alerting")
	jobs := cfg["scrape_configs"].([]any)
	for _, j := range jobs {
		job := j.(map[string]any)
		name := job["job_name"].(string)
		addr, ok := targets[name]
		if !ok {
			t.Fatalf("deploy/prometheus/prometheus.yml has job %s the test has no target for", name)
		}
		delete(job, "file_sd_configs")
		labels := map[string]string{"park": "test"}
		if name == "loopgate-gate" {
			labels["gate"] = walkfixture.Gate
		}
		job["static_configs"] = []any{map[string]any{"targets": []string{addr}, "labels": labels}}
		delete(targets, name)
	}
	if len(targets) != 0 {
		t.Fatalf("deploy/prometheus/prometheus.yml has no job for %v", targets)
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// startPrometheus runs the real Prometheus with its own TSDB in dir.
func startPrometheus(t *testing.T, bin, dir, addr string) {
	t.Helper()
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs.String())
		}
	})
}

// promAPI is a small client of Prometheus's HTTP API.
type promAPI struct {
	t    *testing.T
	base string
}

type promSample struct {
	labels map[string]string
	value  float64
}

func (p promAPI) get(path string, params url.Values, into any) {
	p.t.Helper()
	resp, err := http.Get(p.base + path + "?" + params.Encode())
	if err != nil {
		p.t.Fatalf("prometheus %s: %v", path, err)
	}
	defer resp.Body.Close()
	var env struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		p.t.Fatalf("prometheus %s: %v", path, err)
	}
	if env.Status != "success" {
		p.t.Errorf("prometheus %s %v: %s", path, params, env.Error)
		return
	}
	if err := json.Unmarshal(env.Data, into); err != nil {
		p.t.Fatalf("prometheus %s: %v", path, err)
	}
}

func (p promAPI) query(q string) []promSample {
	p.t.Helper()
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	p.get("/api/v1/query", url.Values{"query": {q}}, &data)
	var out []promSample
	for _, r := range data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			v = math.NaN()
		}
		out = append(out, promSample{labels: r.Metric, value: v})
	}
	return out
}

func (p promAPI) labelValues(selector, label string) []string {
	p.t.Helper()
	var series []map[string]string
	p.get("/api/v1/series", url.Values{"match[]": {selector}}, &series)
	set := map[string]bool{}
	for _, s := range series {
		if v := s[label]; v != "" {
			set[v] = true
		}
	}
	var out []string
	for v := range set {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

func (p promAPI) allLabelValues() []string {
	p.t.Helper()
	var names, out []string
	p.get("/api/v1/labels", url.Values{}, &names)
	for _, n := range names {
		var values []string
		p.get("/api/v1/label/"+n+"/values", url.Values{}, &values)
		out = append(out, values...)
	}
	return out
}

type promAlert struct {
	name, state string
	labels      map[string]string
}

func (p promAPI) alerts() []promAlert {
	p.t.Helper()
	var data struct {
		Alerts []struct {
			Labels map[string]string `json:"labels"`
			State  string            `json:"state"`
		} `json:"alerts"`
	}
	p.get("/api/v1/alerts", url.Values{}, &data)
	var out []promAlert
	for _, a := range data.Alerts {
		out = append(out, promAlert{name: a.Labels["alertname"], state: a.State, labels: a.Labels})
	}
	return out
}

// waitTargetsUp waits until n targets have been scraped successfully.
func (p promAPI) waitTargetsUp(n int, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var data struct {
			ActiveTargets []struct {
				Health    string `json:"health"`
				ScrapeURL string `json:"scrapeUrl"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		}
		resp, err := http.Get(p.base + "/api/v1/targets")
		if err == nil {
			var env struct {
				Data json.RawMessage `json:"data"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&env)
			resp.Body.Close()
			_ = json.Unmarshal(env.Data, &data)
			up := 0
			var state []string
			for _, tg := range data.ActiveTargets {
				state = append(state, tg.ScrapeURL+" "+tg.Health+" "+tg.LastError)
				if tg.Health == "up" {
					up++
				}
			}
			if up >= n {
				p.t.Logf("prometheus scrapes %d targets: %v", up, state)
				return
			}
			if time.Now().After(deadline) {
				p.t.Fatalf("prometheus targets not up after %s: %v", timeout, state)
			}
		} else if time.Now().After(deadline) {
			p.t.Fatalf("prometheus not answering after %s: %v", timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
