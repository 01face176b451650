package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"go.yaml.in/yaml/v3"
	"golang.org/x/term"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/enroll"
)

// Exit codes of bulk enrolment beyond 0 (all stored), 1 (error) and 2 (usage).
const (
	// exitBulkRefused: the run finished, but some people were refused or
	// some rows were invalid; the summary lists each one.
	exitBulkRefused = 3
	// exitBulkInterrupted: Ctrl-C or SIGTERM stopped the run after the
	// person in progress (128 + SIGINT, as shells report it).
	exitBulkInterrupted = 130
)

// exitError ends a command with its own exit code; the command has already
// printed its report, the message is the last line.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// Outcome of one person (one folder or CSV row).
const (
	bulkCreated     = "created"
	bulkUpdated     = "updated"
	bulkUnchanged   = "unchanged" // every photo was already enrolled for the person
	bulkRefused     = "refused"   // a photo failed its checks: nothing stored
	bulkInvalid     = "invalid"   // the input itself is wrong: nothing stored
	bulkWouldCreate = "would_create"
	bulkWouldUpdate = "would_update"
)

// photoExtensions are the files of a person's folder taken as photos
// (engine.SupportedFormats); other files are listed as ignored.
var photoExtensions = []string{".jpg", ".jpeg", ".png", ".webp", ".bmp"}

// personFileName in a person's folder overrides the name derived from the
// folder and the command-line defaults.
const personFileName = "person.yaml"

// csvColumns: the first three are required.
var csvColumns = []string{"id", "name", "photo_paths", "organisation", "home_park", "gates", "valid_from", "valid_until"}

type bulkOptions struct {
	fromDir, fromCSV   string
	park, organisation string
	gates              stringList
	dryRun             bool
	storeGood          bool
	report             string
}

// bulkEntry is one person to enrol: a folder or a CSV row.
type bulkEntry struct {
	Source  string // the folder, or "file.csv:LINE"
	Input   enroll.PersonInput
	Photos  []string // names read through bulkSource.read
	Ignored []string
	Err     error // bad input: nothing is stored for the entry
}

type bulkSource struct {
	label   string
	entries []bulkEntry
	stray   []string // files at the top of --from-dir, not folders
	read    func(name string) ([]byte, error)
	close   func() error
}

// bulkPhoto is one photo's verdict as the summary and the report show it.
type bulkPhoto struct {
	Path      string                 `json:"path"`
	Passed    bool                   `json:"passed"` // passed every check
	Stored    bool                   `json:"stored"`
	Reasons   []enroll.Reason        `json:"reasons"`
	Duplicate *enroll.DuplicateMatch `json:"duplicate,omitempty"`
}

type bulkOutcome struct {
	Source     string      `json:"source"`
	ExternalID string      `json:"external_id"`
	Name       string      `json:"name"`
	Status     string      `json:"status"`
	Error      string      `json:"error,omitempty"`
	Photos     []bulkPhoto `json:"photos"`
	Skipped    []string    `json:"already_enrolled,omitempty"`
	Ignored    []string    `json:"ignored_files,omitempty"`
}

// bulkSummary is what the run did; it is printed, and written as JSON with --report.
type bulkSummary struct {
	Source      string         `json:"source"`
	DryRun      bool           `json:"dry_run"`
	Interrupted bool           `json:"interrupted"`
	FatalError  string         `json:"fatal_error,omitempty"`
	Seconds     float64        `json:"seconds"`
	Total       int            `json:"people_total"`
	Processed   int            `json:"people_processed"`
	Created     int            `json:"people_created"`
	Updated     int            `json:"people_updated"`
	Unchanged   int            `json:"people_unchanged"`
	Refused     int            `json:"people_refused"`
	Invalid     int            `json:"people_invalid"`
	WouldCreate int            `json:"people_would_create,omitempty"`
	WouldUpdate int            `json:"people_would_update,omitempty"`
	Stored      int            `json:"photos_stored"`
	Passed      int            `json:"photos_passed"`
	Rejected    int            `json:"photos_rejected"`
	NotStored   int            `json:"photos_not_stored"` // passed, but another photo refused the person
	Skipped     int            `json:"photos_already_enrolled"`
	ByReason    map[string]int `json:"rejected_by_reason"`
	Stray       []string       `json:"ignored_top_level_files,omitempty"`
	People      []bulkOutcome  `json:"people"`
	started     time.Time
}

func (s *bulkSummary) add(o bulkOutcome) {
	s.Processed++
	s.People = append(s.People, o)
	switch o.Status {
	case bulkCreated:
		s.Created++
	case bulkUpdated:
		s.Updated++
	case bulkUnchanged:
		s.Unchanged++
	case bulkRefused:
		s.Refused++
	case bulkInvalid:
		s.Invalid++
	case bulkWouldCreate:
		s.WouldCreate++
	case bulkWouldUpdate:
		s.WouldUpdate++
	}
	s.Skipped += len(o.Skipped)
	for _, p := range o.Photos {
		switch {
		case p.Stored:
			s.Stored++
			s.Passed++
		case !p.Passed:
			s.Rejected++
			for _, r := range p.Reasons {
				s.ByReason[r.Code]++
			}
		default:
			s.Passed++
			if !s.DryRun {
				s.NotStored++
			}
		}
	}
}

// failed reports whether anything was refused or invalid.
func (s *bulkSummary) failed() bool { return s.Refused+s.Invalid+s.Rejected > 0 }

// bulkRequested reports whether enroll's arguments ask for bulk enrolment.
func bulkRequested(args []string) bool {
	for _, a := range args {
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "from-dir" || name == "from-csv" {
			return true
		}
	}
	return false
}

const bulkUsage = "enroll --from-dir DIR | --from-csv FILE [--park hk|sz] [--gate G]... [--organisation O] [--store-good] [--dry-run] [--report FILE.json]"

// runBulkEnroll enrols many people: one folder or CSV row per person, each
// person its own all-or-nothing request, as the CLI's operator with the
// officer role (duplicates are never overridden in bulk).
func runBulkEnroll(ctx context.Context, cfg Config, args []string) error {
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	var o bulkOptions
	fs.StringVar(&o.fromDir, "from-dir", "", "a folder with one sub-folder per person: folder name = external id, name = folder name with '_' as ' ' (a person.yaml in the folder may set name, organisation, home_park, gates, valid_from, valid_until)")
	fs.StringVar(&o.fromCSV, "from-csv", "", "a CSV file with a header row: id,name,photo_paths (';'-separated, relative to the CSV's folder) and optionally organisation,home_park,gates (';'-separated),valid_from,valid_until (RFC 3339)")
	fs.StringVar(&o.park, "park", "", "home park (hk or sz) for people whose row or person.yaml gives none")
	fs.StringVar(&o.organisation, "organisation", "", "organisation for people whose row or person.yaml gives none")
	fs.Var(&o.gates, "gate", "gate or zone for people whose row or person.yaml gives none (repeatable, or ':'-separated)")
	fs.BoolVar(&o.dryRun, "dry-run", false, "check every row and photo, store nothing (the duplicate-identity check runs only when storing)")
	fs.BoolVar(&o.storeGood, "store-good", false, "store a person's photos that pass even when others of theirs fail (at least one must pass; the identity checks still refuse the whole person); the failures are listed and the exit code is still 3")
	fs.StringVar(&o.report, "report", "", "also write the outcome of every person and photo as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("%w: bulk enrolment takes no photo arguments (got %q): %s", errUsage, fs.Arg(0), bulkUsage)
	case (o.fromDir == "") == (o.fromCSV == ""):
		return fmt.Errorf("%w: give exactly one of --from-dir and --from-csv: %s", errUsage, bulkUsage)
	case o.park != "" && o.park != enroll.ParkHongKong && o.park != enroll.ParkShenzhen:
		return fmt.Errorf("%w: --park %q: want %s or %s", errUsage, o.park, enroll.ParkHongKong, enroll.ParkShenzhen)
	}
	var src *bulkSource
	var err error
	if o.fromDir != "" {
		src, err = loadBulkDir(o.fromDir, o)
	} else {
		src, err = loadBulkCSV(o.fromCSV, o)
	}
	if err != nil {
		return err
	}
	defer src.close()
	// A missing home park would refuse every person one by one: say it once.
	var noPark []string
	for _, e := range src.entries {
		if e.Err == nil && e.Input.HomePark == "" {
			noPark = append(noPark, e.Input.ExternalID)
		}
	}
	if len(noPark) > 0 {
		return fmt.Errorf("%w: %d people have no home park (first: %s): pass --park hk|sz or set home_park per person", errUsage, len(noPark), noPark[0])
	}

	a, err := openApp(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	run := &bulkRun{
		reg:    a.registry,
		actor:  cliActor(enroll.RoleOfficer),
		dryRun: o.dryRun,
		opts:   enroll.PhotoOptions{StoreGood: o.storeGood},
		read:   src.read,
		prog:   newBulkProgress(os.Stderr, len(src.entries)),
	}
	sum, runErr := run.run(ctx, src)
	printBulkSummary(os.Stdout, sum)
	if o.report != "" {
		if err := writeBulkReport(o.report, sum); err != nil {
			return errors.Join(runErr, err)
		}
	}
	switch {
	case runErr != nil:
		return fmt.Errorf("stopped after %d of %d people: %w", sum.Processed, sum.Total, runErr)
	case sum.Interrupted:
		return &exitError{code: exitBulkInterrupted, msg: fmt.Sprintf("interrupted after %d of %d people; run the same command again to continue (people already enrolled are skipped)", sum.Processed, sum.Total)}
	case sum.failed():
		return &exitError{code: exitBulkRefused, msg: fmt.Sprintf("%d people refused, %d invalid, %d photos rejected (listed above)", sum.Refused, sum.Invalid, sum.Rejected)}
	}
	return nil
}

// cliActor is the operator running the CLI on the server.
func cliActor(role string) enroll.Actor {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if name == "" {
		name = "cli"
	}
	return enroll.Actor{Kind: "cli", Name: name, Role: role}
}

func isPhotoFile(name string) bool {
	return slices.Contains(photoExtensions, strings.ToLower(filepath.Ext(name)))
}

// personFile is the optional person.yaml of a folder.
type personFile struct {
	Name         *string    `yaml:"name"`
	Organisation *string    `yaml:"organisation"`
	HomePark     *string    `yaml:"home_park"`
	Gates        []string   `yaml:"gates"`
	ValidFrom    *time.Time `yaml:"valid_from"`
	ValidUntil   *time.Time `yaml:"valid_until"`
}

func (pf personFile) apply(in *enroll.PersonInput) {
	if pf.Name != nil {
		in.Name = *pf.Name
	}
	if pf.Organisation != nil {
		in.Organisation = *pf.Organisation
	}
	if pf.HomePark != nil {
		in.HomePark = *pf.HomePark
	}
	if pf.Gates != nil {
		in.Gates = pf.Gates
	}
	in.ValidFrom, in.ValidUntil = pf.ValidFrom, pf.ValidUntil
}

func readPersonFile(path string) (personFile, error) {
	var pf personFile
	data, err := readBounded(path, 64<<10)
	if err != nil {
		return pf, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&pf); err != nil && !errors.Is(err, io.EOF) {
		return pf, fmt.Errorf("%s: %w (fields: name, organisation, home_park, gates, valid_from, valid_until)", path, err)
	}
	return pf, nil
}

func bulkDefaults(id string, o bulkOptions) enroll.PersonInput {
	return enroll.PersonInput{
		ExternalID: id, Name: strings.ReplaceAll(id, "_", " "),
		Organisation: o.organisation, HomePark: o.park, Gates: slices.Clone([]string(o.gates)),
	}
}

// loadBulkDir lists DIR's person folders (symbolic links are followed).
func loadBulkDir(dir string, o bulkOptions) (*bulkSource, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("--from-dir: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("--from-dir %s: not a directory", dir)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("--from-dir: %w", err)
	}
	src := &bulkSource{
		label: dir,
		read:  func(name string) ([]byte, error) { return readBounded(name, int64(engine.DefaultImageLimits.MaxBytes)) },
		close: func() error { return nil },
	}
	for _, de := range des { // sorted by name
		if strings.HasPrefix(de.Name(), ".") {
			continue
		}
		folder := filepath.Join(dir, de.Name())
		st, err := os.Stat(folder)
		if err != nil {
			src.entries = append(src.entries, bulkEntry{Source: folder, Input: bulkDefaults(de.Name(), o), Err: err})
			continue
		}
		if !st.IsDir() {
			src.stray = append(src.stray, folder)
			continue
		}
		src.entries = append(src.entries, loadPersonFolder(folder, de.Name(), o))
	}
	if len(src.entries) == 0 {
		return nil, fmt.Errorf("--from-dir %s: no person folders in it (want one folder per person, named by external id)", dir)
	}
	return src, nil
}

func loadPersonFolder(folder, id string, o bulkOptions) bulkEntry {
	e := bulkEntry{Source: folder, Input: bulkDefaults(id, o)}
	files, err := os.ReadDir(folder)
	if err != nil {
		e.Err = err
		return e
	}
	for _, f := range files {
		name := f.Name()
		path := filepath.Join(folder, name)
		switch {
		case strings.HasPrefix(name, "."):
		case name == personFileName:
			pf, err := readPersonFile(path)
			if err != nil {
				e.Err = err
				return e
			}
			pf.apply(&e.Input)
		case isPhotoFile(name):
			e.Photos = append(e.Photos, path)
		default:
			e.Ignored = append(e.Ignored, path)
		}
	}
	if len(e.Photos) == 0 {
		e.Err = fmt.Errorf("no photos in the folder (want %s files)", strings.Join(photoExtensions, ", "))
	}
	return e
}

// loadBulkCSV reads the whole CSV up front: a file with wrong columns is
// refused before anything is stored; a bad row becomes an invalid entry.
// Photos are read through an os.Root on the CSV's folder, so neither ".."
// nor a symbolic link can reach outside it.
func loadBulkCSV(path string, o bulkOptions) (*bulkSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--from-csv: %w", err)
	}
	defer f.Close()
	dir := filepath.Dir(path)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("--from-csv: %w", err)
	}
	src := &bulkSource{
		label: path,
		read: func(name string) ([]byte, error) {
			f, err := root.Open(name)
			if err != nil {
				return nil, explainEscape(dir, name, err)
			}
			defer f.Close()
			return readBoundedFrom(f, name, int64(engine.DefaultImageLimits.MaxBytes))
		},
		close: root.Close,
	}
	r := csv.NewReader(f)
	r.TrimLeadingSpace = true
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		root.Close()
		return nil, fmt.Errorf("--from-csv %s: empty file: want a header row %s", path, strings.Join(csvColumns, ","))
	}
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("--from-csv %s: header: %w", path, err)
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if !slices.Contains(csvColumns, h) {
			root.Close()
			return nil, fmt.Errorf("--from-csv %s: unknown column %q in the header (columns: %s; the first three are required)", path, h, strings.Join(csvColumns, ","))
		}
		if _, dup := col[h]; dup {
			root.Close()
			return nil, fmt.Errorf("--from-csv %s: column %q appears twice in the header", path, h)
		}
		col[h] = i
	}
	for _, req := range csvColumns[:3] {
		if _, ok := col[req]; !ok {
			root.Close()
			return nil, fmt.Errorf("--from-csv %s: the header has no %q column (required: id,name,photo_paths)", path, req)
		}
	}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := r.FieldPos(0)
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			e := bulkEntry{Source: fmt.Sprintf("%s:%d", path, pe.Line), Err: pe.Err}
			if errors.Is(err, csv.ErrFieldCount) {
				e.Err = fmt.Errorf("the row has %d fields, the header %d", len(rec), len(header))
				if i := col["id"]; i < len(rec) {
					e.Input.ExternalID = strings.TrimSpace(rec[i])
				}
			}
			src.entries = append(src.entries, e)
			continue
		}
		if err != nil {
			root.Close()
			return nil, fmt.Errorf("--from-csv %s: %w", path, err)
		}
		src.entries = append(src.entries, csvEntry(fmt.Sprintf("%s:%d", path, line), rec, col, o))
	}
	if len(src.entries) == 0 {
		root.Close()
		return nil, fmt.Errorf("--from-csv %s: no rows after the header", path)
	}
	return src, nil
}

// explainEscape turns os.Root's refusal of a symbolic link that leads
// outside the CSV's folder into a message that says so.
func explainEscape(dir, name string, err error) error {
	real, rerr := filepath.EvalSymlinks(filepath.Join(dir, name))
	realDir, derr := filepath.EvalSymlinks(dir)
	if rerr == nil && derr == nil {
		if rel, relErr := filepath.Rel(realDir, real); relErr != nil || !filepath.IsLocal(rel) {
			return fmt.Errorf("a symbolic link leads outside the CSV's folder (to %s): %w", real, err)
		}
	}
	return err
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ";") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func csvEntry(source string, rec []string, col map[string]int, o bulkOptions) bulkEntry {
	get := func(name string) (string, bool) {
		i, ok := col[name]
		if !ok {
			return "", false
		}
		return strings.TrimSpace(rec[i]), true
	}
	id, _ := get("id")
	e := bulkEntry{Source: source, Input: bulkDefaults(id, o)}
	if id == "" {
		e.Err = errors.New("empty id")
		return e
	}
	e.Input.Name, _ = get("name")
	if v, ok := get("organisation"); ok && v != "" {
		e.Input.Organisation = v
	}
	if v, ok := get("home_park"); ok && v != "" {
		e.Input.HomePark = v
	}
	if v, ok := get("gates"); ok && v != "" {
		e.Input.Gates = splitList(v)
	}
	for _, bound := range []struct {
		column string
		dst    **time.Time
	}{{"valid_from", &e.Input.ValidFrom}, {"valid_until", &e.Input.ValidUntil}} {
		if v, ok := get(bound.column); ok && v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				e.Err = fmt.Errorf("%s %q: want RFC 3339 (2026-01-31T18:00:00+08:00)", bound.column, v)
				return e
			}
			*bound.dst = &t
		}
	}
	paths, _ := get("photo_paths")
	for _, p := range splitList(paths) {
		// Paths are relative to the CSV's folder and stay inside it.
		if filepath.IsAbs(p) || !filepath.IsLocal(p) {
			e.Err = fmt.Errorf("photo path %q escapes the CSV's folder (paths are relative to it and stay inside it)", p)
			return e
		}
		e.Photos = append(e.Photos, filepath.Clean(p))
	}
	if len(e.Photos) == 0 {
		e.Err = errors.New("no photo_paths")
	}
	return e
}

// readBoundedFrom reads r, refusing more than limit bytes.
func readBoundedFrom(r io.Reader, name string, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", name, engine.ErrImageTooLarge, limit)
	}
	return data, nil
}

// bulkRun enrols the entries one person at a time.
type bulkRun struct {
	reg    *enroll.Registry
	actor  enroll.Actor
	dryRun bool
	opts   enroll.PhotoOptions
	read   func(string) ([]byte, error)
	prog   bulkProgress
}

// run stops before the next person once ctx is cancelled (Ctrl-C); the
// person in progress finishes, so each person is stored whole or not at all.
// A second Ctrl-C kills the process (PostgreSQL rolls the open
// transaction back).
func (b *bulkRun) run(ctx context.Context, src *bulkSource) (*bulkSummary, error) {
	sum := &bulkSummary{Source: src.label, DryRun: b.dryRun, Total: len(src.entries), ByReason: map[string]int{}, Stray: src.stray, started: time.Now()}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			fmt.Fprintln(os.Stderr, "\nloopgate enroll: interrupted: finishing the current person, then stopping (Ctrl-C again aborts at once)")
			signal.Reset(os.Interrupt, syscall.SIGTERM)
		case <-done:
		}
	}()
	work := context.WithoutCancel(ctx)
	var err error
	for _, e := range src.entries {
		if ctx.Err() != nil {
			sum.Interrupted = true
			break
		}
		b.prog.begin(e.Input.ExternalID)
		var o bulkOutcome
		o, err = b.enrolOne(work, e)
		if err != nil {
			sum.FatalError = err.Error()
			break
		}
		sum.add(o)
		b.prog.done(sum)
	}
	b.prog.finish()
	sum.Seconds = time.Since(sum.started).Seconds()
	return sum, err
}

// personError: the error concerns this person's request only (the run goes on).
func personError(err error) bool {
	for _, target := range []error{enroll.ErrInvalid, enroll.ErrRejected, enroll.ErrDuplicateIdentity,
		enroll.ErrConflict, enroll.ErrNotFound, enroll.ErrForbidden, enroll.ErrAlreadyRevoked, enroll.ErrNotRevoked} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

func (b *bulkRun) enrolOne(ctx context.Context, e bulkEntry) (bulkOutcome, error) {
	o := bulkOutcome{Source: e.Source, ExternalID: e.Input.ExternalID, Name: e.Input.Name, Ignored: e.Ignored, Photos: []bulkPhoto{}}
	invalid := func(err error) (bulkOutcome, error) {
		o.Status, o.Error = bulkInvalid, err.Error()
		return o, nil
	}
	if e.Err != nil {
		return invalid(e.Err)
	}
	photos := make([]enroll.Photo, 0, len(e.Photos))
	for _, name := range e.Photos {
		data, err := b.read(name)
		if err != nil {
			return invalid(fmt.Errorf("photo %s: %w", name, err))
		}
		photos = append(photos, enroll.Photo{Name: name, Data: data})
	}
	_, err := b.reg.Get(ctx, e.Input.ExternalID)
	exists := err == nil
	if err != nil && !errors.Is(err, enroll.ErrNotFound) {
		return o, err
	}
	if exists {
		// Photos this person already has are skipped, so a run can be
		// repeated (after Ctrl-C, or with more photos) without refusals.
		if photos, o.Skipped, err = b.dropEnrolled(ctx, e.Input.ExternalID, photos); err != nil {
			return o, err
		}
		if len(photos) == 0 {
			o.Status = bulkUnchanged
			return o, nil
		}
	}
	if b.dryRun {
		o.Status = bulkWouldCreate
		if exists {
			o.Status = bulkWouldUpdate
		}
		for _, p := range photos {
			o.Photos = append(o.Photos, photoOf(b.reg.CheckPhoto(ctx, p), false))
			if !o.Photos[len(o.Photos)-1].Passed {
				o.Status = bulkRefused
			}
		}
		return o, nil
	}
	var res enroll.AddResult
	o.Status = bulkUpdated
	if !exists {
		o.Status = bulkCreated
		res, err = b.reg.Create(ctx, b.actor, e.Input, photos, b.opts)
		if errors.Is(err, enroll.ErrConflict) { // enrolled meanwhile by someone else
			o.Status = bulkUpdated
			exists = true
		}
	}
	if exists {
		res, err = b.reg.AddPhotos(ctx, b.actor, e.Input.ExternalID, photos, b.opts)
	}
	var pe *enroll.PhotosError
	switch {
	case err == nil:
		for _, r := range res.Photos {
			o.Photos = append(o.Photos, photoOf(r, true))
		}
	case errors.As(err, &pe):
		o.Status = bulkRefused
		for _, r := range pe.Photos {
			o.Photos = append(o.Photos, photoOf(r, false))
		}
	case personError(err):
		return invalid(err)
	default:
		return o, err
	}
	return o, nil
}

func photoOf(r enroll.PhotoReport, stored bool) bulkPhoto {
	return bulkPhoto{Path: r.Name, Passed: r.Accepted, Stored: stored && r.Accepted, Reasons: r.Reasons, Duplicate: r.Duplicate}
}

// dropEnrolled removes the photos whose bytes the person already has.
func (b *bulkRun) dropEnrolled(ctx context.Context, id string, photos []enroll.Photo) ([]enroll.Photo, []string, error) {
	tmpl, err := b.reg.Templates(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	have := map[string]bool{}
	for _, t := range tmpl {
		have[t.PhotoSHA256] = true
	}
	var keep []enroll.Photo
	var skipped []string
	for _, p := range photos {
		sum := sha256.Sum256(p.Data)
		if have[hex.EncodeToString(sum[:])] {
			skipped = append(skipped, p.Name)
		} else {
			keep = append(keep, p)
		}
	}
	return keep, skipped, nil
}

// bulkProgress shows the run's progress on stderr.
type bulkProgress interface {
	begin(id string)
	done(s *bulkSummary)
	finish()
}

func newBulkProgress(w *os.File, total int) bulkProgress {
	if term.IsTerminal(int(w.Fd())) {
		return &barProgress{bar: progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("enrolling"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetItsString("people"),
			progressbar.OptionShowIts(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionFullWidth(),
		)}
	}
	every := max(1, total/20)
	return &lineProgress{w: w, total: total, every: every, last: time.Now()}
}

type barProgress struct{ bar *progressbar.ProgressBar }

func (p *barProgress) begin(id string)     { p.bar.Describe("enrolling " + id) }
func (p *barProgress) done(s *bulkSummary) { _ = p.bar.Add(1) }
func (p *barProgress) finish() {
	_ = p.bar.Exit()
	fmt.Fprintln(os.Stderr)
}

// lineProgress prints a line every 5% of the people or every 10 s,
// whichever comes first (logs, pipes, CI).
type lineProgress struct {
	w     io.Writer
	total int
	every int
	last  time.Time
}

func (p *lineProgress) begin(string) {}
func (p *lineProgress) done(s *bulkSummary) {
	if s.Processed%p.every != 0 && s.Processed != p.total && time.Since(p.last) < 10*time.Second {
		return
	}
	p.last = time.Now()
	fmt.Fprintf(p.w, "progress: %d/%d people (%d created, %d updated, %d refused, %d invalid), %d photos stored, %d rejected, %s\n",
		s.Processed, p.total, s.Created, s.Updated, s.Refused, s.Invalid, s.Stored, s.Rejected,
		time.Since(s.started).Round(100*time.Millisecond))
}
func (p *lineProgress) finish() {}

func printBulkSummary(w io.Writer, s *bulkSummary) {
	fmt.Fprintf(w, "\nbulk enrolment from %s: %d of %d people in %.1fs\n", s.Source, s.Processed, s.Total, s.Seconds)
	if s.DryRun {
		fmt.Fprintln(w, "DRY RUN: nothing stored. Photos and input were checked; the duplicate-identity and same-person checks, and the person's fields, are checked only when storing.")
		fmt.Fprintf(w, "people:  %d would be created, %d would be updated, %d unchanged, %d would be refused, %d invalid\n",
			s.WouldCreate, s.WouldUpdate, s.Unchanged, s.Refused, s.Invalid)
		fmt.Fprintf(w, "photos:  %d pass, %d rejected, %d already enrolled (skipped)\n", s.Passed, s.Rejected, s.Skipped)
	} else {
		fmt.Fprintf(w, "people:  %d created, %d updated, %d unchanged, %d refused, %d invalid\n",
			s.Created, s.Updated, s.Unchanged, s.Refused, s.Invalid)
		fmt.Fprintf(w, "photos:  %d stored, %d rejected, %d passed but not stored (another photo refused the person), %d already enrolled (skipped)\n",
			s.Stored, s.Rejected, s.NotStored, s.Skipped)
	}
	if len(s.ByReason) > 0 {
		codes := make([]string, 0, len(s.ByReason))
		for c := range s.ByReason {
			codes = append(codes, c)
		}
		sort.Slice(codes, func(i, j int) bool {
			if s.ByReason[codes[i]] != s.ByReason[codes[j]] {
				return s.ByReason[codes[i]] > s.ByReason[codes[j]]
			}
			return codes[i] < codes[j]
		})
		fmt.Fprintln(w, "rejected photos by reason (a photo may have several):")
		for _, c := range codes {
			fmt.Fprintf(w, "  %-28s %d\n", c, s.ByReason[c])
		}
	}
	if s.Refused > 0 {
		fmt.Fprintln(w, "\nREFUSED: each person is one all-or-nothing request, so one rejected photo refuses the person and nothing of theirs is stored:")
		for _, o := range s.People {
			if o.Status != bulkRefused {
				continue
			}
			rejected := 0
			for _, p := range o.Photos {
				if !p.Passed {
					rejected++
				}
			}
			fmt.Fprintf(w, "  %s %q (%s): %d of %d photos rejected\n", o.ExternalID, o.Name, o.Source, rejected, len(o.Photos))
			for _, p := range o.Photos {
				if p.Passed {
					fmt.Fprintf(w, "    passed   %s (not stored)\n", p.Path)
					continue
				}
				fmt.Fprintf(w, "    REJECTED %s\n", p.Path)
				for _, r := range p.Reasons {
					fmt.Fprintf(w, "      %s: %s\n", r.Code, r.Message)
				}
				if d := p.Duplicate; d != nil {
					fmt.Fprintf(w, "      (the other person: %s %q, distance %.3f)\n", d.ExternalID, d.Name, d.Distance)
				}
			}
		}
	}
	// With --store-good a stored person may still have rejected photos.
	header := false
	for _, o := range s.People {
		if o.Status != bulkCreated && o.Status != bulkUpdated {
			continue
		}
		for _, p := range o.Photos {
			if p.Passed {
				continue
			}
			if !header {
				fmt.Fprintln(w, "\nREJECTED photos of people stored with their other photos (--store-good):")
				header = true
			}
			fmt.Fprintf(w, "  %s %s\n", o.ExternalID, p.Path)
			for _, r := range p.Reasons {
				fmt.Fprintf(w, "      %s: %s\n", r.Code, r.Message)
			}
		}
	}
	if s.Invalid > 0 {
		fmt.Fprintln(w, "\nINVALID input, nothing stored for these:")
		for _, o := range s.People {
			if o.Status == bulkInvalid {
				id := o.ExternalID
				if id == "" {
					id = "(no id)"
				}
				fmt.Fprintf(w, "  %s (%s): %s\n", id, o.Source, o.Error)
			}
		}
	}
	var ignored []string
	for _, o := range s.People {
		ignored = append(ignored, o.Ignored...)
	}
	ignored = append(ignored, s.Stray...)
	if len(ignored) > 0 {
		fmt.Fprintf(w, "\nignored (not a photo or person folder): %s\n", strings.Join(ignored, ", "))
	}
	if s.Interrupted {
		fmt.Fprintf(w, "\nINTERRUPTED: %d people not processed; running the same command again continues (people already enrolled are skipped)\n", s.Total-s.Processed)
	}
	if s.FatalError != "" {
		fmt.Fprintf(w, "\nSTOPPED by an error: %s\n", s.FatalError)
	}
}

// writeBulkReport writes the JSON report; it names people, so only the
// owner may read it.
func writeBulkReport(path string, s *bulkSummary) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("--report: %w", err)
	}
	return nil
}
