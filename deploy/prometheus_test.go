package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.yaml.in/yaml/v3"

	"github.com/loopgate/loopgate/camera"
	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/localgallery"
	"github.com/loopgate/loopgate/engine/pipeline"
	"github.com/loopgate/loopgate/engine/quality"
	"github.com/loopgate/loopgate/enroll/api"
	"github.com/loopgate/loopgate/server"
	"github.com/loopgate/loopgate/sink"
)

// promtool finds promtool (Debian package prometheus).
func promtool(t *testing.T) string {
	return tool(t, "promtool", "Debian package prometheus; deploy/install-deps.sh installs it")
}

func TestPromtoolCheckConfig(t *testing.T) {
	out := runTool(t, deployFile(t, "prometheus"), time.Minute, promtool(t), "check", "config", "prometheus.yml")
	t.Log(strings.TrimSpace(out))
}

func TestPromtoolCheckRules(t *testing.T) {
	out := runTool(t, deployFile(t, "prometheus"), time.Minute, promtool(t), "check", "rules", "alerts.yml")
	t.Log(strings.TrimSpace(out))
}

// TestPromtoolTestRules runs the rule unit tests, and checks that every
// alert has a case where it fires and a case where it stays silent.
func TestPromtoolTestRules(t *testing.T) {
	out := runTool(t, deployFile(t, "prometheus"), 2*time.Minute, promtool(t), "test", "rules", "alerts_test.yml")
	t.Log(strings.TrimSpace(out))

	var tests struct {
		Tests []struct {
			Name  string `yaml:"name"`
			Cases []struct {
				Alert     string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(readFile(t, deployFile(t, "prometheus/alerts_test.yml")), &tests); err != nil {
		t.Fatal(err)
	}
	fires, silent := map[string]int{}, map[string]int{}
	for _, tc := range tests.Tests {
		for _, c := range tc.Cases {
			if len(c.ExpAlerts) > 0 {
				fires[c.Alert]++
			} else {
				silent[c.Alert]++
			}
		}
	}
	alerts := alertRules(t)
	for _, a := range alerts {
		if fires[a.Alert] == 0 || silent[a.Alert] == 0 {
			t.Errorf("alert %s: %d firing and %d silent test cases in alerts_test.yml; want at least one of each", a.Alert, fires[a.Alert], silent[a.Alert])
		}
	}
	t.Logf("%d alerts, each with a firing and a silent case", len(alerts))
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func alertRules(t *testing.T) []alertRule {
	t.Helper()
	var f struct {
		Groups []struct {
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(readFile(t, deployFile(t, "prometheus/alerts.yml")), &f); err != nil {
		t.Fatal(err)
	}
	var out []alertRule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// TestAlertAnnotations: every alert says how bad it is and what happened;
// the latency alerts name their budget.
func TestAlertAnnotations(t *testing.T) {
	for _, a := range alertRules(t) {
		if s := a.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("%s: severity %q, want critical or warning", a.Alert, s)
		}
		if a.Annotations["summary"] == "" || a.Annotations["description"] == "" {
			t.Errorf("%s: needs a summary and a description", a.Alert)
		}
		if strings.Contains(a.Expr, "capture_to_decision") || strings.Contains(a.Expr, "first_quality_to_decision") {
			if a.Labels["budget"] == "" || !strings.Contains(a.Annotations["description"], "Budget") || !strings.Contains(a.Annotations["description"], "1.4 m/s") {
				t.Errorf("%s: a latency alert names its budget (label budget) and justifies it in the description", a.Alert)
			}
		}
	}
}

// captureRegisterer keeps the collectors a component registers, so their
// descriptors (names, labels) can be listed even before any series exists.
type captureRegisterer struct{ cs []prometheus.Collector }

func (c *captureRegisterer) Register(col prometheus.Collector) error {
	c.cs = append(c.cs, col)
	return nil
}
func (c *captureRegisterer) MustRegister(cols ...prometheus.Collector) { c.cs = append(c.cs, cols...) }
func (c *captureRegisterer) Unregister(prometheus.Collector) bool      { return false }

// knownMetrics lists every metric family loopgate's components define, with
// their label names, from the components' own metric constructors (and
// Prometheus's own up and the Go/process collectors).
func knownMetrics(t *testing.T) map[string][]string {
	t.Helper()
	reg := &captureRegisterer{}
	camera.NewMetrics(reg)
	pipeline.NewMetrics(reg)
	sink.NewMetrics(reg)
	server.NewMetrics(reg)
	facerec.NewPoolMetrics(reg)
	localgallery.NewMetrics(reg)
	engine.NewMetrics(reg)
	quality.NewMetrics(reg)
	api.NewMetrics(reg)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	descRE := regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)
	out := map[string][]string{"up": nil}
	for _, c := range reg.cs {
		ch := make(chan *prometheus.Desc, 64)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := descRE.FindStringSubmatch(d.String())
			if m == nil {
				continue
			}
			var labels []string
			for _, l := range strings.Split(m[2], ",") {
				l = strings.TrimSpace(l)
				if strings.HasPrefix(l, "c(") { // a constrained label prints as c(name)
					l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")")
				}
				if l != "" {
					labels = append(labels, l)
				}
			}
			out[m[1]] = labels
			// Histograms and summaries expose these series too.
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				out[m[1]+suffix] = append(slices.Clone(labels), "le")
			}
		}
	}
	return out
}

// targetLabels are added by Prometheus (job, instance) and by the targets
// files (park, gate).
var targetLabels = []string{"job", "instance", "park", "gate"}

var (
	selectorRE = regexp.MustCompile(`\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	byRE       = regexp.MustCompile(`\b(?:by|on|without|ignoring)\s*\(([^)]*)\)`)
	metricRE   = regexp.MustCompile(`\b(loopgate_[a-z0-9_]+|process_[a-z0-9_]+|go_[a-z0-9_]+|up)\b`)
)

// checkExprNames reports metric names an expression uses that no component
// defines, and label names in matchers or by/on clauses that none of its
// metrics (nor the target labels) carry.
func checkExprNames(expr string, known map[string][]string) []string {
	var problems []string
	labelsOf := map[string]bool{}
	for _, l := range targetLabels {
		labelsOf[l] = true
	}
	for _, m := range metricRE.FindAllString(expr, -1) {
		labels, ok := known[m]
		if !ok {
			problems = append(problems, "unknown metric "+m)
			continue
		}
		for _, l := range labels {
			labelsOf[l] = true
		}
	}
	for _, sel := range selectorRE.FindAllStringSubmatch(expr, -1) {
		name, body := sel[1], sel[2]
		labels, ok := known[name]
		if !ok {
			continue
		}
		allowed := slices.Concat(labels, targetLabels)
		for _, mm := range matcherRE.FindAllStringSubmatch(body, -1) {
			if !slices.Contains(allowed, mm[1]) {
				problems = append(problems, fmt.Sprintf("%s has no label %q", name, mm[1]))
			}
		}
	}
	for _, by := range byRE.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(by[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !labelsOf[l] && l != "le" {
				problems = append(problems, fmt.Sprintf("no metric in the expression has label %q", l))
			}
		}
	}
	return problems
}

// TestRuleAndPanelNamesExist: every metric and label an alert or a
// dashboard panel names is one a loopgate component defines.
func TestRuleAndPanelNamesExist(t *testing.T) {
	known := knownMetrics(t)
	if len(known) < 40 {
		t.Fatalf("only %d metric names found: the descriptor parsing is wrong", len(known))
	}
	for _, a := range alertRules(t) {
		for _, p := range checkExprNames(a.Expr, known) {
			t.Errorf("alert %s: %s", a.Alert, p)
		}
	}
	for _, q := range dashboardQueries(t) {
		for _, p := range checkExprNames(q.Expr, known) {
			t.Errorf("panel %q: %s", q.Panel, p)
		}
	}
	// A deliberate typo is caught.
	if p := checkExprNames(`rate(loopgate_camera_frame_total{camra="a"}[5m])`, known); len(p) == 0 {
		t.Error("checkExprNames accepted an unknown metric")
	}
	if p := checkExprNames(`rate(loopgate_camera_frames_total{camra="a"}[5m])`, known); len(p) == 0 {
		t.Error("checkExprNames accepted an unknown label")
	}
}

type dashboardQuery struct {
	Panel, Expr string
}

type dashboard struct {
	SchemaVersion int    `json:"schemaVersion"`
	UID           string `json:"uid"`
	Title         string `json:"title"`
	Templating    struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Query      any    `json:"query"`
			Definition string `json:"definition"`
			AllValue   string `json:"allValue"`
			IncludeAll bool   `json:"includeAll"`
		} `json:"list"`
	} `json:"templating"`
	Panels []dashboardPanel `json:"panels"`
}

type dashboardPanel struct {
	ID         int              `json:"id"`
	Type       string           `json:"type"`
	Title      string           `json:"title"`
	Datasource map[string]any   `json:"datasource"`
	Panels     []dashboardPanel `json:"panels"`
	Targets    []struct {
		Expr       string         `json:"expr"`
		Datasource map[string]any `json:"datasource"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(readFile(t, deployFile(t, "grafana/loopgate.json")), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func dashboardQueries(t *testing.T) []dashboardQuery {
	t.Helper()
	var out []dashboardQuery
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out = append(out, dashboardQuery{Panel: p.Title, Expr: tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(loadDashboard(t).Panels)
	return out
}

// TestDashboardStructure: a current schema, a datasource variable every
// panel and query uses, unique panel ids, and the panels the operators
// need.
func TestDashboardStructure(t *testing.T) {
	d := loadDashboard(t)
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d, want at least 36", d.SchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Error("dashboard needs a uid and a title")
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "query" && (!v.IncludeAll || v.AllValue == "") {
			t.Errorf("variable %s: includeAll with an allValue, so 'All' is a regex the queries can use", v.Name)
		}
	}
	if vars["datasource"] != "datasource" {
		t.Errorf("no datasource variable: %v", vars)
	}
	ids := map[int]bool{}
	var panels, queries int
	var titles []string
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d twice", p.ID)
			}
			ids[p.ID] = true
			if p.Type != "row" {
				panels++
				titles = append(titles, p.Title)
				if uid, _ := p.Datasource["uid"].(string); uid != "${datasource}" {
					t.Errorf("panel %q: datasource %v, want the ${datasource} variable", p.Title, p.Datasource)
				}
				if len(p.Targets) == 0 {
					t.Errorf("panel %q has no query", p.Title)
				}
			}
			for _, tg := range p.Targets {
				queries++
				if uid, _ := tg.Datasource["uid"].(string); uid != "${datasource}" {
					t.Errorf("panel %q: a query's datasource %v, want ${datasource}", p.Title, tg.Datasource)
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	all := strings.Join(dashboardQueriesText(t), "\n")
	for _, need := range []string{
		"loopgate_pipeline_stage_seconds_bucket", "loopgate_decisions_total", "loopgate_camera_frames_total",
		"loopgate_camera_frames_dropped_total", "loopgate_camera_reconnects_total", "loopgate_recognizers_busy",
		"loopgate_sink_queue_length", "loopgate_sink_spool_bytes", "loopgate_gallery_copy_age_seconds",
		"loopgate_http_requests_total", "histogram_quantile",
	} {
		if !strings.Contains(all, need) {
			t.Errorf("no panel queries %s", need)
		}
	}
	sort.Strings(titles)
	t.Logf("%d panels, %d queries, variables %v", panels, queries, vars)
}

func dashboardQueriesText(t *testing.T) []string {
	var out []string
	for _, q := range dashboardQueries(t) {
		out = append(out, q.Expr)
	}
	return out
}

// grafanaVars substitutes the dashboard's variables as Grafana would with
// "All" selected and a 15 s scrape interval: the template variables become
// their allValue regexes, $__rate_interval 1m.
func grafanaVars(t *testing.T, expr string) string {
	t.Helper()
	d := loadDashboard(t)
	repl := []string{"$__rate_interval", "1m", "$__interval", "15s", "$__range", "5m"}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			repl = append(repl, "${"+v.Name+"}", v.AllValue, "$"+v.Name, v.AllValue)
		}
	}
	out := strings.NewReplacer(repl...).Replace(expr)
	if strings.Contains(out, "$") {
		t.Errorf("unsubstituted variable in %s", out)
	}
	return out
}

// dashboardVariableQueries returns the label_values(selector, label)
// queries of the dashboard's template variables.
func dashboardVariableQueries(t *testing.T) map[string][2]string {
	t.Helper()
	out := map[string][2]string{}
	re := regexp.MustCompile(`^label_values\((.+),\s*([a-z_]+)\)$`)
	for _, v := range loadDashboard(t).Templating.List {
		if v.Type != "query" {
			continue
		}
		m := re.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: definition %q is not label_values(selector, label)", v.Name, v.Definition)
			continue
		}
		out[v.Name] = [2]string{grafanaVars(t, m[1]), m[2]}
	}
	return out
}

// writeFile writes a file or fails the test.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
