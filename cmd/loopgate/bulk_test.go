package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/loopgate/loopgate/internal/testenv"
)

// cliHarness runs the built loopgate binary against one fresh schema.
type cliHarness struct {
	bin string
	env []string
	db  string
}

func newCLIHarness(t *testing.T, withModels bool) *cliHarness {
	t.Helper()
	db := testenv.DatabaseURL(t)
	env := append(os.Environ(), "LOOPGATE_DATABASE_URL="+db, "LOOPGATE_PASSWORD=")
	if withModels {
		env = append(env, "LOOPGATE_MODEL_DIR="+testenv.ModelDir(t))
	}
	bin := filepath.Join(t.TempDir(), "loopgate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return &cliHarness{bin: bin, env: env, db: db}
}

type cliResult struct {
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// run runs loopgate with args (and extra environment) and checks its exit code.
func (h *cliHarness) run(t *testing.T, wantCode int, extraEnv []string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(h.bin, args...)
	cmd.Env = append(slices.Clone(h.env), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if res.code != wantCode {
		t.Fatalf("loopgate %s: exit %d, want %d\n%s", strings.Join(args, " "), res.code, wantCode, res)
	}
	return res
}

func (h *cliHarness) conn(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, h.db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

type storedPerson struct {
	Name, Organisation, HomePark string
	Gates                        []string
	Templates                    int
	ValidUntil                   *time.Time
}

// stored reads every person the database holds.
func (h *cliHarness) stored(t *testing.T) map[string]storedPerson {
	t.Helper()
	rows, err := h.conn(t).Query(context.Background(), `SELECT p.external_id, p.name, p.organisation, coalesce(p.home_park, ''),
		coalesce((SELECT array_agg(g.gate ORDER BY g.gate) FROM person_gates g WHERE g.person_id = p.id), '{}'),
		(SELECT count(*) FROM face_templates t WHERE t.person_id = p.id), p.valid_until FROM people p`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]storedPerson{}
	for rows.Next() {
		var id string
		var p storedPerson
		if err := rows.Scan(&id, &p.Name, &p.Organisation, &p.HomePark, &p.Gates, &p.Templates, &p.ValidUntil); err != nil {
			t.Fatal(err)
		}
		out[id] = p
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func templateCounts(people map[string]storedPerson) map[string]int {
	out := map[string]int{}
	for id, p := range people {
		out[id] = p.Templates
	}
	return out
}

func sameCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func readReport(t *testing.T, path string) bulkSummary {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s bulkSummary
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("report %s: %v", path, err)
	}
	return s
}

func outcomeOf(t *testing.T, s bulkSummary, id string) bulkOutcome {
	t.Helper()
	for _, o := range s.People {
		if o.ExternalID == id {
			return o
		}
	}
	t.Fatalf("report has no person %q", id)
	return bulkOutcome{}
}

func lfwPhoto(shared, name string, n int) string {
	return filepath.Join(shared, "datasets", "lfw", "images", name, fmt.Sprintf("%s_%04d.jpg", name, n))
}

func link(t *testing.T, target, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(target))
	if err := os.Symlink(target, dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// requirePassing fails the test if a fixture photo no longer passes the
// enrolment checks on its own (the dry run says so), so a later failure
// cannot be blamed on the fixture.
func requirePassing(t *testing.T, s bulkSummary, paths ...string) {
	t.Helper()
	passed := map[string]bool{}
	for _, o := range s.People {
		for _, p := range o.Photos {
			passed[p.Path] = p.Passed
		}
	}
	for _, p := range paths {
		if !passed[p] {
			t.Fatalf("fixture photo %s does not pass the enrolment checks in the dry run: pick another", p)
		}
	}
}

// TestBulkEnrolFromDir enrols LFW people from a folder per person: one
// person with a two-face photo and one enrolled twice under two ids are
// refused whole, the rest are stored, and a re-run is idempotent.
func TestBulkEnrolFromDir(t *testing.T) {
	shared := testenv.SharedDir(t)
	h := newCLIHarness(t, true)
	dir := filepath.Join(t.TempDir(), "people")
	powell := []string{link(t, lfwPhoto(shared, "Colin_Powell", 2), filepath.Join(dir, "Colin_Powell")),
		link(t, lfwPhoto(shared, "Colin_Powell", 3), filepath.Join(dir, "Colin_Powell"))}
	// The same man again under another id, from a photo not used above.
	powellAgain := link(t, lfwPhoto(shared, "Colin_Powell", 4), filepath.Join(dir, "Colin_Powell_dup"))
	var schroeder, chretien []string
	for _, n := range []int{1, 2, 4} {
		schroeder = append(schroeder, link(t, lfwPhoto(shared, "Gerhard_Schroeder", n), filepath.Join(dir, "Gerhard_Schroeder")))
	}
	for _, n := range []int{1, 2, 3} {
		chretien = append(chretien, link(t, lfwPhoto(shared, "Jean_Chretien", n), filepath.Join(dir, "Jean_Chretien")))
	}
	writeFile(t, filepath.Join(dir, "Jean_Chretien", "person.yaml"), "name: Jean Chrétien\nhome_park: sz\ngates: [east-gate]\n")
	hu := []string{link(t, lfwPhoto(shared, "Hu_Jintao", 1), filepath.Join(dir, "Hu_Jintao")),
		link(t, lfwPhoto(shared, "Hu_Jintao", 2), filepath.Join(dir, "Hu_Jintao"))}
	twoPeople := link(t, filepath.Join(shared, "media", "two_people.jpg"), filepath.Join(dir, "Hu_Jintao"))
	notes := filepath.Join(dir, "Hu_Jintao", "notes.txt")
	writeFile(t, notes, "not a photo")
	if err := os.MkdirAll(filepath.Join(dir, "Nobody"), 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"enroll", "--from-dir", dir, "--park", "hk", "--gate", "lane-a"}

	// Dry run: photo checks only, nothing stored.
	report := filepath.Join(t.TempDir(), "dry.json")
	res := h.run(t, exitBulkRefused, nil, append(args, "--dry-run", "--report", report)...)
	dry := readReport(t, report)
	requirePassing(t, dry, slices.Concat(powell, []string{powellAgain}, schroeder, chretien, hu)...)
	if o := outcomeOf(t, dry, "Hu_Jintao"); o.Status != bulkRefused || o.Photos[2].Path != twoPeople || o.Photos[2].Reasons[0].Code != "multiple_faces" {
		t.Fatalf("dry run, Hu_Jintao: %+v", o)
	}
	if !strings.Contains(res.stdout, "DRY RUN: nothing stored") || len(h.stored(t)) != 0 {
		t.Fatalf("dry run stored something or did not say so:\n%s", res)
	}

	report = filepath.Join(t.TempDir(), "run.json")
	res = h.run(t, exitBulkRefused, nil, append(args, "--report", report)...)
	out := res.stdout
	for _, want := range []string{
		"people:  3 created, 0 updated, 0 unchanged, 2 refused, 1 invalid",
		"photos:  8 stored, 2 rejected, 2 passed but not stored (another photo refused the person), 0 already enrolled (skipped)",
		"REJECTED " + twoPeople + "\n      multiple_faces: ",
		"passed   " + hu[0] + " (not stored)",
		"REJECTED " + powellAgain + "\n      duplicate_identity: this face matches Colin Powell (Colin_Powell)",
		`(the other person: Colin_Powell "Colin Powell", distance `,
		"Nobody (" + filepath.Join(dir, "Nobody") + "): no photos in the folder",
		"ignored (not a photo or person folder): " + notes,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	if !strings.Contains(res.stderr, "progress: 6/6 people") || !strings.Contains(res.stderr, "2 people refused, 1 invalid, 2 photos rejected") {
		t.Errorf("stderr lacks the progress or the closing line")
	}
	if t.Failed() {
		t.Fatalf("%s", res)
	}
	sum := readReport(t, report)
	if sum.ByReason["multiple_faces"] != 1 || sum.ByReason["duplicate_identity"] != 1 || sum.Rejected != 2 {
		t.Fatalf("rejections by reason: %v", sum.ByReason)
	}
	if d := outcomeOf(t, sum, "Colin_Powell_dup").Photos[0].Duplicate; d == nil || d.ExternalID != "Colin_Powell" {
		t.Fatalf("duplicate does not name the other id: %+v", d)
	}

	// The database holds exactly the accepted people, each whole.
	want := map[string]int{"Colin_Powell": 2, "Gerhard_Schroeder": 3, "Jean_Chretien": 3}
	people := h.stored(t)
	if got := templateCounts(people); !sameCounts(got, want) {
		t.Fatalf("stored %v, want %v", got, want)
	}
	if p := people["Jean_Chretien"]; p.Name != "Jean Chrétien" || p.HomePark != "sz" || strings.Join(p.Gates, ",") != "east-gate" {
		t.Fatalf("person.yaml not applied: %+v", p)
	}
	if p := people["Gerhard_Schroeder"]; p.Name != "Gerhard Schroeder" || p.HomePark != "hk" || strings.Join(p.Gates, ",") != "lane-a" {
		t.Fatalf("folder defaults not applied: %+v", p)
	}
	var kinds, roles string
	if err := h.conn(t).QueryRow(context.Background(), `SELECT string_agg(DISTINCT actor_kind, ','), string_agg(DISTINCT actor_role, ',')
		FROM enrolment_audit`).Scan(&kinds, &roles); err != nil || kinds != "cli" || roles != "officer" {
		t.Fatalf("audit actors: kinds %q roles %q (%v)", kinds, roles, err)
	}

	// A re-run stores nothing new: enrolled photos are skipped, not refused.
	res = h.run(t, exitBulkRefused, nil, args...)
	if !strings.Contains(res.stdout, "people:  0 created, 0 updated, 3 unchanged, 2 refused, 1 invalid") ||
		!strings.Contains(res.stdout, "8 already enrolled (skipped)") {
		t.Fatalf("re-run:\n%s", res)
	}
	if got := templateCounts(h.stored(t)); !sameCounts(got, want) {
		t.Fatalf("re-run changed the database: %v", got)
	}

	// Fix the input: the duplicate's photo joins the right person, the
	// two-face photo and the empty folder go. Everything passes: exit 0.
	for _, p := range []string{powellAgain, twoPeople, filepath.Join(dir, "Nobody"), filepath.Join(dir, "Colin_Powell_dup")} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	link(t, lfwPhoto(shared, "Colin_Powell", 4), filepath.Join(dir, "Colin_Powell"))
	res = h.run(t, 0, nil, args...)
	if !strings.Contains(res.stdout, "people:  1 created, 1 updated, 2 unchanged, 0 refused, 0 invalid") ||
		!strings.Contains(res.stdout, "photos:  3 stored, 0 rejected") || strings.Contains(res.stdout, "REJECTED") {
		t.Fatalf("fixed input:\n%s", res)
	}
	want["Colin_Powell"], want["Hu_Jintao"] = 3, 2
	if got := templateCounts(h.stored(t)); !sameCounts(got, want) {
		t.Fatalf("stored %v, want %v", got, want)
	}

	// Input that cannot be used is refused before anything is loaded.
	res = h.run(t, 1, nil, "enroll", "--from-dir", filepath.Join(dir, "missing"), "--park", "hk")
	if !strings.Contains(res.stderr, "--from-dir: stat "+filepath.Join(dir, "missing")+": no such file or directory") {
		t.Fatalf("missing dir:\n%s", res)
	}
	res = h.run(t, 2, nil, "enroll", "--from-dir", dir)
	if !strings.Contains(res.stderr, "have no home park") {
		t.Fatalf("no --park:\n%s", res)
	}
	h.run(t, 2, nil, "enroll", "--from-dir", dir, "--from-csv", "x.csv", "--park", "hk")
	h.run(t, 2, nil, "enroll", "--from-dir", dir, "--park", "mo")
}

// TestBulkEnrolFromCSV reads people from a CSV: bad rows are listed and
// store nothing, good rows are stored with their columns.
func TestBulkEnrolFromCSV(t *testing.T) {
	shared := testenv.SharedDir(t)
	h := newCLIHarness(t, true)
	dir := t.TempDir()
	copyFile(t, lfwPhoto(shared, "Gerhard_Schroeder", 1), filepath.Join(dir, "photos", "gs1.jpg"))
	copyFile(t, lfwPhoto(shared, "Gerhard_Schroeder", 2), filepath.Join(dir, "photos", "gs2.jpg"))
	copyFile(t, lfwPhoto(shared, "Hu_Jintao", 1), filepath.Join(dir, "photos", "hu1.jpg"))
	copyFile(t, filepath.Join(shared, "media", "two_people.jpg"), filepath.Join(dir, "photos", "two.jpg"))
	copyFile(t, lfwPhoto(shared, "Colin_Powell", 2), filepath.Join(dir, "cp2.jpg"))
	copyFile(t, lfwPhoto(shared, "Colin_Powell", 3), filepath.Join(t.TempDir(), "outside.jpg"))
	if err := os.Symlink(lfwPhoto(shared, "Jean_Chretien", 1), filepath.Join(dir, "photos", "link.jpg")); err != nil {
		t.Fatal(err)
	}
	csvPath := filepath.Join(dir, "people.csv")
	// Columns in another order than documented, with a byte-order mark.
	writeFile(t, csvPath, "\ufeffid,photo_paths,name,organisation,home_park,gates,valid_until\n"+
		"C1,photos/gs1.jpg; photos/gs2.jpg,Gerhard Schroeder,Acme,sz,a;b,2030-01-01T00:00:00+08:00\n"+
		"C2,photos/hu1.jpg;photos/two.jpg,Hu Jintao,,,,\n"+
		"C3,../outside.jpg,Escaper,,,,\n"+
		"C4,photos/missing.jpg,Missing,,,,\n"+
		"C5,photos/link.jpg,Linker,,,,\n"+
		"C6,cp2.jpg,Bad Date,,,,tomorrow\n"+
		"C7,cp2.jpg\n"+
		"C8,cp2.jpg,Colin Powell,,,,\n")
	report := filepath.Join(t.TempDir(), "csv.json")
	res := h.run(t, exitBulkRefused, nil, "enroll", "--from-csv", csvPath, "--park", "hk", "--report", report)
	for _, want := range []string{
		"people:  2 created, 0 updated, 0 unchanged, 1 refused, 5 invalid",
		"photos:  3 stored, 1 rejected, 1 passed but not stored",
		"REJECTED photos/two.jpg\n      multiple_faces: ",
		"C3 (" + csvPath + `:4): photo path "../outside.jpg" escapes the CSV's folder`,
		"C4 (" + csvPath + ":5): photo photos/missing.jpg: ",
		"C5 (" + csvPath + ":6): photo photos/link.jpg: a symbolic link leads outside the CSV's folder",
		"C6 (" + csvPath + `:7): valid_until "tomorrow": want RFC 3339`,
		"C7 (" + csvPath + ":8): the row has 2 fields, the header 7",
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	if t.Failed() {
		t.Fatalf("%s", res)
	}
	if o := outcomeOf(t, readReport(t, report), "C2"); o.Status != bulkRefused || o.Photos[1].Reasons[0].Code != "multiple_faces" {
		t.Fatalf("C2: %+v", o)
	}
	people := h.stored(t)
	if got := templateCounts(people); !sameCounts(got, map[string]int{"C1": 2, "C8": 1}) {
		t.Fatalf("stored %v, want C1:2 C8:1", got)
	}
	until := time.Date(2030, 1, 1, 0, 0, 0, 0, time.FixedZone("", 8*3600))
	if p := people["C1"]; p.Name != "Gerhard Schroeder" || p.Organisation != "Acme" || p.HomePark != "sz" ||
		strings.Join(p.Gates, ",") != "a,b" || p.ValidUntil == nil || !p.ValidUntil.Equal(until) {
		t.Fatalf("C1 columns: %+v", p)
	}
	if p := people["C8"]; p.HomePark != "hk" || p.Organisation != "" {
		t.Fatalf("C8 defaults: %+v", p)
	}

	// A file with the wrong columns, or none, is refused whole.
	bad := filepath.Join(dir, "bad.csv")
	writeFile(t, bad, "id,name,photos\nX,Y,cp2.jpg\n")
	res = h.run(t, 1, nil, "enroll", "--from-csv", bad, "--park", "hk")
	if !strings.Contains(res.stderr, `unknown column "photos"`) {
		t.Fatalf("wrong columns:\n%s", res)
	}
	writeFile(t, bad, "id,photo_paths\nX,cp2.jpg\n")
	res = h.run(t, 1, nil, "enroll", "--from-csv", bad, "--park", "hk")
	if !strings.Contains(res.stderr, `the header has no "name" column`) {
		t.Fatalf("missing column:\n%s", res)
	}
	writeFile(t, bad, "")
	h.run(t, 1, nil, "enroll", "--from-csv", bad, "--park", "hk")
	h.run(t, 1, nil, "enroll", "--from-csv", filepath.Join(dir, "nope.csv"), "--park", "hk")
	if got := templateCounts(h.stored(t)); !sameCounts(got, map[string]int{"C1": 2, "C8": 1}) {
		t.Fatalf("bad files changed the database: %v", got)
	}
}

// TestBulkEnrolInterrupt: SIGINT stops the run after the person in
// progress; every person stored is whole and the summary says what is left.
func TestBulkEnrolInterrupt(t *testing.T) {
	shared := testenv.SharedDir(t)
	h := newCLIHarness(t, true)
	dir := t.TempDir()
	names := []string{"Colin_Powell", "Gerhard_Schroeder", "Jean_Chretien", "Hu_Jintao", "Tony_Blair",
		"George_W_Bush", "Donald_Rumsfeld", "Ariel_Sharon", "John_Ashcroft", "Junichiro_Koizumi"}
	for _, n := range names {
		for i := 1; i <= 3; i++ {
			link(t, lfwPhoto(shared, n, i), filepath.Join(dir, n))
		}
	}
	report := filepath.Join(t.TempDir(), "int.json")
	cmd := exec.Command(h.bin, "enroll", "--from-dir", dir, "--park", "hk", "--report", report)
	cmd.Env = h.env
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	sc := bufio.NewScanner(stderrPipe)
	signalled := false
	for sc.Scan() {
		stderr.WriteString(sc.Text() + "\n")
		if !signalled && strings.HasPrefix(sc.Text(), "progress: 1/") {
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			signalled = true
		}
	}
	err = cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != exitBulkInterrupted {
		t.Fatalf("exit: %v, want %d\n--- stdout\n%s--- stderr\n%s", err, exitBulkInterrupted, stdout.String(), stderr.String())
	}
	sum := readReport(t, report)
	t.Logf("interrupted after %d of %d people", sum.Processed, len(names))
	if !sum.Interrupted || sum.Processed < 1 || sum.Processed >= len(names) {
		t.Fatalf("processed %d of %d, interrupted %v", sum.Processed, len(names), sum.Interrupted)
	}
	if !strings.Contains(stdout.String(), fmt.Sprintf("INTERRUPTED: %d people not processed", len(names)-sum.Processed)) ||
		!strings.Contains(stderr.String(), "finishing the current person") {
		t.Fatalf("interrupt not reported:\n--- stdout\n%s--- stderr\n%s", stdout.String(), stderr.String())
	}
	// Every person the report calls created is stored whole; nobody else is.
	want := map[string]int{}
	for _, o := range sum.People {
		if o.Status == bulkCreated {
			want[o.ExternalID] = len(o.Photos)
		}
	}
	if got := templateCounts(h.stored(t)); !sameCounts(got, want) {
		t.Fatalf("stored %v, report says %v", got, want)
	}
}
