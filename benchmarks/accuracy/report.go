package accuracy

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Machine describes where a benchmark ran.
type Machine struct {
	CPU string
	// Cores is what the Go runtime sees (the machine may be shared).
	Cores int
	// BLAS is the BLAS library mapped into this process (dlib links it),
	// and BLASAlternative where Debian's libblas.so.3 alternative points.
	BLAS, BLASAlternative string
	GoVersion             string
	Commit                string
	Dirty                 bool
	Date                  time.Time
}

// DescribeMachine reads /proc/cpuinfo, this process's memory map, Debian's
// BLAS alternative and the git state of the working directory.
func DescribeMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), Date: time.Now().UTC()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	m.BLAS = blasInProcess()
	if p, err := filepath.EvalSymlinks("/etc/alternatives/libblas.so.3-x86_64-linux-gnu"); err == nil {
		m.BLASAlternative = p
	}
	if out, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
		m.Dirty = len(strings.TrimSpace(string(out))) > 0
	}
	return m
}

// blasInProcess lists the BLAS/LAPACK shared objects mapped into this process.
func blasInProcess() string {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	seen := map[string]bool{}
	var libs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		p := fields[len(fields)-1]
		base := strings.ToLower(filepath.Base(p))
		if (strings.Contains(base, "blas") || strings.Contains(base, "atlas") || strings.Contains(base, "mkl")) && !seen[p] {
			seen[p] = true
			libs = append(libs, p)
		}
	}
	if len(libs) == 0 {
		return "none mapped"
	}
	return strings.Join(libs, ", ")
}

// Markdown renders the machine section of a report.
func (m Machine) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "- Machine: %s, %d cores visible to Go (shared with other jobs during the run, so no speed figure here is a benchmark)\n", m.CPU, m.Cores)
	fmt.Fprintf(&b, "- BLAS mapped into the benchmark process: %s (Debian alternative libblas.so.3 → %s)\n", m.BLAS, m.BLASAlternative)
	dirty := ""
	if m.Dirty {
		dirty = " with uncommitted changes in the working tree"
	}
	fmt.Fprintf(&b, "- Code: git commit %s%s, %s\n", short(m.Commit), dirty, m.GoVersion)
	fmt.Fprintf(&b, "- Run: %s\n", m.Date.Format(time.RFC3339))
	return b.String()
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	if commit == "" {
		return "unknown"
	}
	return commit
}

// pct formats a rate as a percentage.
func pct(x float64) string {
	if math.IsNaN(x) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f%%", 100*x)
}

// pctCI formats k/n as a percentage with its 95% Clopper-Pearson interval.
func pctCI(k, n int) string {
	if n == 0 {
		return "n/a"
	}
	lo, hi := ClopperPearson(k, n, 0.95)
	return fmt.Sprintf("%.2f%% (%d/%d; 95%% CI %.2f–%.2f%%)", 100*float64(k)/float64(n), k, n, 100*lo, 100*hi)
}

// thr formats a distance threshold.
func thr(t float64) string {
	if math.IsInf(t, 1) {
		return "any"
	}
	if math.IsNaN(t) {
		return "n/a"
	}
	return fmt.Sprintf("%.4f", t)
}

// table renders a Markdown table.
func table(head []string, rows [][]string) string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(head, " | ") + " |\n|")
	for range head {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

// writeReport writes a Markdown file into the output directory.
func writeReport(dir, name, text string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		return fmt.Errorf("accuracy: write report: %w", err)
	}
	return nil
}
