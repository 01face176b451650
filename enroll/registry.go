package enroll

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgvector/pgvector-go"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/engine/quality"
)

// Roles of officers' accounts and API tokens. An admin may do everything
// an officer may.
const (
	RoleOfficer = "officer"
	RoleAdmin   = "admin"
)

// Home parks: which jurisdiction holds a person's record.
const (
	ParkHongKong = "hk"
	ParkShenzhen = "sz"
)

// SamePersonThreshold bounds how far a new photo may lie from the person's
// own templates before it is refused as "not the same person". It is looser
// than the match threshold on purpose: at 0.47 a genuine re-enrolment photo
// of an LFW person is refused 22.8% of the time (FNMR), at 0.6 about 1.2%
// (LFW View 2 accuracy 98.8% at 0.6, benchmarks/results/lfw.md).
const SamePersonThreshold = 0.6

// Actor is who does something; it goes into the audit table.
type Actor struct {
	Name       string // account username, token name, or the OS user for the CLI
	Kind       string // "account", "token", "cli", "system"
	Role       string // RoleOfficer or RoleAdmin
	RemoteAddr string
}

func (a Actor) isAdmin() bool { return a.Role == RoleAdmin }

// Person is a registration as the API shows it. Templates is a count:
// templates never leave the registry.
type Person struct {
	ExternalID    string     `json:"external_id"`
	Name          string     `json:"name"`
	Organisation  string     `json:"organisation"`
	HomePark      string     `json:"home_park"`
	Gates         []string   `json:"gates"`
	ValidFrom     *time.Time `json:"valid_from"`
	ValidUntil    *time.Time `json:"valid_until"`
	Status        string     `json:"status"`
	RevokedAt     *time.Time `json:"revoked_at"`
	RevokedReason string     `json:"revoked_reason"`
	Templates     int        `json:"templates"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`

	id int64
}

// PersonInput creates a registration.
type PersonInput struct {
	ExternalID   string
	Name         string
	Organisation string
	HomePark     string
	Gates        []string
	ValidFrom    *time.Time
	ValidUntil   *time.Time
}

// Optional is one field of a patch: only Set fields change.
type Optional[T any] struct {
	Set   bool
	Value T
}

// Some is a set Optional.
func Some[T any](v T) Optional[T] { return Optional[T]{Set: true, Value: v} }

// PersonPatch updates a registration. ValidFrom/ValidUntil set to nil clear
// the bound.
type PersonPatch struct {
	Name, Organisation, HomePark Optional[string]
	Gates                        Optional[[]string]
	ValidFrom, ValidUntil        Optional[*time.Time]
}

// PhotoOptions tune how photos are added.
type PhotoOptions struct {
	// Replace deletes the person's current templates (their history rows
	// stay) and stores the new ones.
	Replace bool
	// OverrideDuplicate is an admin's reason to store a face that matches
	// another person, or does not match this person's templates. It is
	// audited. Anyone else giving it gets ErrForbidden.
	OverrideDuplicate string
	// StoreGood stores the photos that pass when others of the request
	// fail their checks (bulk imports of uneven photos); at least one must
	// pass. The identity checks still refuse the whole request.
	StoreGood bool
}

// Box is a face box in the photo's pixels.
type Box struct {
	X int `json:"x"`
	Y int `json:"y"`
	W int `json:"w"`
	H int `json:"h"`
}

// Reason is one reason a photo was refused.
type Reason struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Value   float64 `json:"value"`
	Limit   float64 `json:"limit"`
}

// MarshalJSON writes a NaN figure (the pose of degenerate landmarks) as
// null: JSON has no NaN.
func (r Reason) MarshalJSON() ([]byte, error) {
	num := func(v float64) *float64 {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return &v
	}
	return json.Marshal(struct {
		Code    string   `json:"code"`
		Message string   `json:"message"`
		Value   *float64 `json:"value"`
		Limit   *float64 `json:"limit"`
	}{r.Code, r.Message, num(r.Value), num(r.Limit)})
}

// UnmarshalJSON reads null figures back as 0 (clients, tests).
func (r *Reason) UnmarshalJSON(b []byte) error {
	var v struct {
		Code    string   `json:"code"`
		Message string   `json:"message"`
		Value   *float64 `json:"value"`
		Limit   *float64 `json:"limit"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*r = Reason{Code: v.Code, Message: v.Message}
	if v.Value != nil {
		r.Value = *v.Value
	}
	if v.Limit != nil {
		r.Limit = *v.Limit
	}
	return nil
}

// Reason codes.
const (
	ReasonTooLarge          = "too_large"
	ReasonUnsupportedFormat = "unsupported_format"
	ReasonDecodeFailed      = "decode_failed"
	ReasonNoFace            = "no_face"
	ReasonMultipleFaces     = "multiple_faces"
	ReasonFaceTooSmall      = "face_too_small"
	ReasonNotEmbedded       = "not_embedded"
	ReasonDuplicateIdentity = "duplicate_identity"
	ReasonNotSamePerson     = "not_same_person"
	ReasonAlreadyEnrolled   = "already_enrolled"
	// Quality failures are "quality:" + the engine/quality check code.
	ReasonQualityPrefix = "quality:"
)

// DuplicateMatch is the other person a face matched.
type DuplicateMatch struct {
	ExternalID string  `json:"external_id"`
	Name       string  `json:"name"`
	Distance   float64 `json:"distance"`
}

// PhotoReport is the verdict on one photo: every failing reason with its
// threshold, the quality measures, and where the face is.
type PhotoReport struct {
	Name      string          `json:"name"`
	Accepted  bool            `json:"accepted"`
	Reasons   []Reason        `json:"reasons"`
	Faces     int             `json:"faces"`
	Width     int             `json:"width"`
	Height    int             `json:"height"`
	FaceBox   *Box            `json:"face_box"`
	Quality   quality.Report  `json:"quality"`
	Duplicate *DuplicateMatch `json:"duplicate,omitempty"`
	SHA256    string          `json:"sha256"`

	embedding engine.Embedding
	result    PhotoResult
	data      []byte
}

func (r PhotoReport) photo() []byte { return r.data }

// ListQuery filters and pages the people list.
type ListQuery struct {
	// Search matches the start of the external id or any part of the name,
	// case-insensitively.
	Search string
	Status string // "", "active" or "revoked"
	Gate   string
	// Limit defaults to 50 and is capped at 200.
	Limit int
	// After is the cursor: the Next of the previous page.
	After string
}

// Page is one page of people, ordered by external id.
type Page struct {
	People []Person `json:"people"`
	Next   string   `json:"next"`
}

// TemplateInfo describes a stored template without its embedding.
type TemplateInfo struct {
	ID          int64     `json:"id"`
	CreatedAt   time.Time `json:"created_at"`
	PhotoSHA256 string    `json:"photo_sha256"`
	FaceBox     Box       `json:"face_box"`
	Source      string    `json:"source"`
	Operator    string    `json:"operator"`
	PhotoKept   bool      `json:"photo_kept"`
}

// AddResult says what Create or AddPhotos stored.
type AddResult struct {
	Person   Person        `json:"person"`
	Photos   []PhotoReport `json:"photos"`
	Added    int           `json:"added"`
	Replaced int           `json:"replaced"`
}

// RegistryConfig builds a Registry.
type RegistryConfig struct {
	Pool *pgxpool.Pool
	// Checker decodes, detects, measures and embeds photos (a Service
	// with Stills set, so enrolment uses the gate's detector and quality
	// code).
	Checker *Service
	// DuplicateThreshold: a new face within this distance of another
	// person's template is refused as a duplicate identity. Default
	// engine.DefaultMatchThreshold.
	DuplicateThreshold float64
	// SamePersonThreshold defaults to SamePersonThreshold.
	SamePersonThreshold float64
	// Vault keeps sealed photos when retention is on; nil keeps templates only.
	Vault *PhotoVault
	// MaxConcurrentChecks bounds photo analyses running at once (decode,
	// detect, embed: up to ~100 MB and a core each); more requests wait.
	// Default: the number of cores.
	MaxConcurrentChecks int
	Logger              *slog.Logger
}

// Registry is the officers' side of the gallery: registrations with a
// lifecycle, their photos and templates, and the audit of every change.
type Registry struct {
	pool  *pgxpool.Pool
	check *Service
	dup   float64
	same  float64
	vault *PhotoVault
	slots chan struct{}
	log   *slog.Logger
}

// NewRegistry checks the configuration. The schema must be migrated.
func NewRegistry(cfg RegistryConfig) (*Registry, error) {
	if cfg.Pool == nil {
		return nil, errors.New("enroll: registry needs a database pool")
	}
	if cfg.Checker == nil || cfg.Checker.Stills == nil || cfg.Checker.Model == "" {
		return nil, errors.New("enroll: registry needs a Checker with Stills and Model")
	}
	r := &Registry{pool: cfg.Pool, check: cfg.Checker, dup: cfg.DuplicateThreshold, same: cfg.SamePersonThreshold, vault: cfg.Vault, log: cfg.Logger}
	if r.dup == 0 {
		r.dup = engine.DefaultMatchThreshold
	}
	if r.same == 0 {
		r.same = SamePersonThreshold
	}
	if r.dup < 0 || r.same < 0 {
		return nil, errors.New("enroll: thresholds must be positive")
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if cfg.MaxConcurrentChecks < 0 {
		return nil, errors.New("enroll: MaxConcurrentChecks must not be negative")
	}
	r.slots = make(chan struct{}, cmp.Or(cfg.MaxConcurrentChecks, runtime.NumCPU()))
	return r, nil
}

// CheckPhoto decodes, detects, measures and embeds one photo and reports
// every reason it would be refused. It stores nothing.
func (r *Registry) CheckPhoto(ctx context.Context, p Photo) PhotoReport {
	var pr PhotoResult
	select {
	case r.slots <- struct{}{}:
		pr = r.check.checkPhoto(ctx, p)
		<-r.slots
	case <-ctx.Done():
		pr = PhotoResult{Name: p.Name, Err: fmt.Errorf("waiting for a free analysis slot: %w", ctx.Err())}
	}
	sum := sha256.Sum256(p.Data)
	rep := PhotoReport{
		Name: p.Name, Faces: pr.Faces, Width: pr.Width, Height: pr.Height,
		Quality: pr.Quality, SHA256: hex.EncodeToString(sum[:]), result: pr, data: p.Data,
	}
	if b := pr.Box; !b.Empty() {
		rep.FaceBox = &Box{X: b.Min.X, Y: b.Min.Y, W: b.Dx(), H: b.Dy()}
	}
	rep.Reasons = reasonsOf(pr)
	rep.Accepted = len(rep.Reasons) == 0
	if rep.Accepted {
		rep.embedding = pr.Face.Embedding
	}
	if rep.Reasons == nil {
		rep.Reasons = []Reason{}
	}
	if rep.Quality.Failures == nil {
		rep.Quality.Failures = []quality.Failure{}
	}
	return rep
}

// reasonsOf turns a photo's errors into reason codes, one per code. Quality
// failures come first: they carry the measured value and the limit.
func reasonsOf(pr PhotoResult) []Reason {
	var out []Reason
	seen := map[string]bool{}
	add := func(r Reason) {
		if !seen[r.Code] {
			seen[r.Code] = true
			out = append(out, r)
		}
	}
	for _, f := range pr.Quality.Failures {
		code := ReasonQualityPrefix + f.Check
		switch f.Check {
		case quality.CheckFaceCount:
			if pr.Faces == 0 {
				code = ReasonNoFace
			} else {
				code = ReasonMultipleFaces
			}
		case quality.CheckFaceTooSmall:
			code = ReasonFaceTooSmall
		}
		add(Reason{Code: code, Message: f.Message, Value: f.Value, Limit: f.Limit})
	}
	var errs []error
	switch e := pr.Err.(type) {
	case nil:
	case photoErrors:
		errs = e
	default:
		errs = []error{e}
	}
	for _, err := range errs {
		var qe *QualityError
		switch {
		case errors.As(err, &qe):
			// Already listed above.
		case errors.Is(err, engine.ErrImageTooLarge):
			add(Reason{Code: ReasonTooLarge, Message: err.Error()})
		case errors.Is(err, engine.ErrUnsupportedFormat):
			add(Reason{Code: ReasonUnsupportedFormat, Message: err.Error()})
		case errors.Is(err, engine.ErrUndecodable):
			add(Reason{Code: ReasonDecodeFailed, Message: err.Error()})
		case errors.Is(err, engine.ErrMultipleFaces):
			add(Reason{Code: ReasonMultipleFaces, Message: err.Error(), Value: float64(pr.Faces), Limit: 1})
		case errors.Is(err, engine.ErrFaceTooSmall):
			add(Reason{Code: ReasonFaceTooSmall, Message: err.Error()})
		case errors.Is(err, engine.ErrNoFace) && pr.Faces == 0:
			add(Reason{Code: ReasonNoFace, Message: err.Error()})
		default:
			add(Reason{Code: ReasonNotEmbedded, Message: err.Error()})
		}
	}
	return out
}

var (
	externalIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	parks        = []string{ParkHongKong, ParkShenzhen}
)

func checkText(field, v string, min, max int) error {
	if !utf8.ValidString(v) || strings.ContainsAny(v, "\x00\r\n") {
		return invalid(field, "must be valid UTF-8 on one line")
	}
	if n := utf8.RuneCountInString(v); n < min || n > max {
		if min > 0 {
			return invalid(field, "must be %d to %d characters", min, max)
		}
		return invalid(field, "must be at most %d characters", max)
	}
	return nil
}

func checkGates(gates []string) error {
	if len(gates) > 64 {
		return invalid("gates", "at most 64 gates or zones")
	}
	for _, g := range gates {
		if !gallery.GateNamePattern.MatchString(g) {
			return invalid("gates", "%q: want 1-64 letters, digits, '.', '_' or '-'", g)
		}
	}
	return nil
}

func checkWindow(from, until *time.Time) error {
	if from != nil && until != nil && !from.Before(*until) {
		return invalid("valid_until", "must be after valid_from")
	}
	return nil
}

func (in *PersonInput) validate() error {
	in.ExternalID = strings.TrimSpace(in.ExternalID)
	in.Name = strings.TrimSpace(in.Name)
	in.Organisation = strings.TrimSpace(in.Organisation)
	if !externalIDRe.MatchString(in.ExternalID) {
		return invalid("external_id", "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if err := checkText("name", in.Name, 1, 200); err != nil {
		return err
	}
	if err := checkText("organisation", in.Organisation, 0, 200); err != nil {
		return err
	}
	if !slices.Contains(parks, in.HomePark) {
		return invalid("home_park", "must be %q or %q", ParkHongKong, ParkShenzhen)
	}
	in.Gates = dedupe(in.Gates)
	if err := checkGates(in.Gates); err != nil {
		return err
	}
	return checkWindow(in.ValidFrom, in.ValidUntil)
}

func dedupe(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

const personColumns = `p.id, p.external_id, p.name, p.organisation, coalesce(p.home_park, ''), p.status,
	p.revoked_at, coalesce(p.revoked_reason, ''), p.valid_from, p.valid_until, p.created_at, p.updated_at,
	coalesce((SELECT array_agg(g.gate ORDER BY g.gate) FROM person_gates g WHERE g.person_id = p.id), '{}'),
	(SELECT count(*) FROM face_templates t WHERE t.person_id = p.id)`

func scanPerson(row pgx.Row) (Person, error) {
	var p Person
	err := row.Scan(&p.id, &p.ExternalID, &p.Name, &p.Organisation, &p.HomePark, &p.Status,
		&p.RevokedAt, &p.RevokedReason, &p.ValidFrom, &p.ValidUntil, &p.CreatedAt, &p.UpdatedAt,
		&p.Gates, &p.Templates)
	return p, err
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func getPerson(ctx context.Context, q querier, externalID string, lock bool) (Person, error) {
	sql := `SELECT ` + personColumns + ` FROM people p WHERE p.external_id = $1`
	if lock {
		sql += ` FOR UPDATE OF p`
	}
	p, err := scanPerson(q.QueryRow(ctx, sql, externalID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Person{}, fmt.Errorf("person %q: %w", externalID, ErrNotFound)
	}
	if err != nil {
		return Person{}, fmt.Errorf("enroll: read person: %w", err)
	}
	return p, nil
}

// Get returns one registration.
func (r *Registry) Get(ctx context.Context, externalID string) (Person, error) {
	return getPerson(ctx, r.pool, externalID, false)
}

// List pages through registrations in external-id order. Page.People is
// never nil (an empty page is an empty JSON list).
func (r *Registry) List(ctx context.Context, q ListQuery) (Page, error) {
	switch {
	case q.Limit == 0:
		q.Limit = 50
	case q.Limit < 0 || q.Limit > 200:
		return Page{}, invalid("limit", "must be 1 to 200")
	}
	if q.Status != "" && q.Status != "active" && q.Status != "revoked" {
		return Page{}, invalid("status", "must be active or revoked")
	}
	if err := checkText("q", q.Search, 0, 100); err != nil {
		return Page{}, err
	}
	if q.Gate != "" && !gallery.GateNamePattern.MatchString(q.Gate) {
		return Page{}, invalid("gate", "not a gate name")
	}
	if len(q.After) > 64 {
		return Page{}, invalid("after", "not a cursor")
	}
	// LIKE metacharacters in the search are literal.
	pattern := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(strings.ToLower(strings.TrimSpace(q.Search)))
	rows, err := r.pool.Query(ctx, `SELECT `+personColumns+` FROM people p
		WHERE ($1 = '' OR lower(p.external_id) LIKE $1 || '%' OR lower(p.name) LIKE '%' || $1 || '%')
		  AND ($2 = '' OR p.status = $2)
		  AND ($3 = '' OR EXISTS (SELECT 1 FROM person_gates g WHERE g.person_id = p.id AND g.gate = $3))
		  AND p.external_id > $4
		ORDER BY p.external_id LIMIT $5`, pattern, q.Status, q.Gate, q.After, q.Limit+1)
	if err != nil {
		return Page{}, fmt.Errorf("enroll: list: %w", err)
	}
	people, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Person, error) { return scanPerson(row) })
	if err != nil {
		return Page{}, fmt.Errorf("enroll: list: %w", err)
	}
	page := Page{People: people}
	if len(people) > q.Limit {
		page.People = people[:q.Limit]
		page.Next = page.People[q.Limit-1].ExternalID
	}
	if page.People == nil {
		page.People = []Person{}
	}
	return page, nil
}

// audit appends one entry in the caller's transaction.
func audit(ctx context.Context, tx pgx.Tx, a Actor, action, subject string, personID int64, detail map[string]any) error {
	if detail == nil {
		detail = map[string]any{}
	}
	raw, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("enroll: audit detail: %w", err)
	}
	kind := a.Kind
	if kind == "" {
		kind = "system"
	}
	var pid *int64
	if personID != 0 {
		pid = &personID
	}
	if _, err := tx.Exec(ctx, `INSERT INTO enrolment_audit (actor, actor_kind, actor_role, remote_addr, action, subject, person_id, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, a.Name, kind, a.Role, a.RemoteAddr, action, subject, pid, raw); err != nil {
		return fmt.Errorf("enroll: audit: %w", err)
	}
	return nil
}

// Create registers a person, with templates from photos (which may be
// empty), in one transaction: the person and every template, or nothing.
func (r *Registry) Create(ctx context.Context, a Actor, in PersonInput, photos []Photo, opts PhotoOptions) (AddResult, error) {
	if err := in.validate(); err != nil {
		return AddResult{}, err
	}
	if opts.Replace {
		return AddResult{}, invalid("mode", "replace needs an existing person")
	}
	reports, err := r.checkPhotos(ctx, a, photos, opts)
	if err != nil {
		return AddResult{}, err
	}
	var res AddResult
	err = pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `INSERT INTO people (external_id, name, organisation, home_park, valid_from, valid_until)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
			in.ExternalID, in.Name, in.Organisation, in.HomePark, in.ValidFrom, in.ValidUntil).Scan(&id)
		if isUniqueViolation(err) {
			return fmt.Errorf("person %q: %w", in.ExternalID, ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("enroll: insert person: %w", err)
		}
		if len(in.Gates) > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO person_gates (person_id, gate) SELECT $1, unnest($2::text[])`, id, in.Gates); err != nil {
				return fmt.Errorf("enroll: insert gates: %w", err)
			}
		}
		if err := audit(ctx, tx, a, "person.created", in.ExternalID, id, map[string]any{
			"name": in.Name, "organisation": in.Organisation, "home_park": in.HomePark, "gates": in.Gates,
			"valid_from": in.ValidFrom, "valid_until": in.ValidUntil,
		}); err != nil {
			return err
		}
		p := Person{id: id, ExternalID: in.ExternalID}
		res, err = r.storePhotos(ctx, tx, a, p, reports, opts)
		if err != nil {
			return err
		}
		res.Person, err = getPerson(ctx, tx, in.ExternalID, false)
		return err
	})
	if err != nil {
		return AddResult{Photos: reports}, err
	}
	return res, nil
}

// AddPhotos adds (or, with Replace, replaces) a person's templates. Every
// photo must pass, or nothing is stored.
func (r *Registry) AddPhotos(ctx context.Context, a Actor, externalID string, photos []Photo, opts PhotoOptions) (AddResult, error) {
	if len(photos) == 0 {
		return AddResult{}, invalid("photo", "no photos")
	}
	if _, err := r.Get(ctx, externalID); err != nil {
		return AddResult{}, err
	}
	reports, err := r.checkPhotos(ctx, a, photos, opts)
	if err != nil {
		return AddResult{}, err
	}
	var res AddResult
	err = pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		p, err := getPerson(ctx, tx, externalID, true)
		if err != nil {
			return err
		}
		res, err = r.storePhotos(ctx, tx, a, p, reports, opts)
		if err != nil {
			return err
		}
		res.Person, err = getPerson(ctx, tx, externalID, false)
		return err
	})
	if err != nil {
		return AddResult{Photos: reports}, err
	}
	return res, nil
}

// checkPhotos runs every photo through the checks (the slow part, outside
// any transaction) and refuses the request if any fails.
func (r *Registry) checkPhotos(ctx context.Context, a Actor, photos []Photo, opts PhotoOptions) ([]PhotoReport, error) {
	if opts.OverrideDuplicate != "" {
		if !a.isAdmin() {
			return nil, fmt.Errorf("overriding a duplicate-identity check: %w", ErrForbidden)
		}
		if err := checkText("override_duplicate", strings.TrimSpace(opts.OverrideDuplicate), 3, 500); err != nil {
			return nil, err
		}
	}
	reports := make([]PhotoReport, len(photos))
	rejected := false
	seen := map[string]bool{}
	for i, p := range photos {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		reports[i] = r.CheckPhoto(ctx, p)
		if seen[reports[i].SHA256] && reports[i].Accepted {
			reports[i].Accepted = false
			reports[i].Reasons = append(reports[i].Reasons, Reason{Code: ReasonAlreadyEnrolled, Message: "the same photo is in this request twice"})
		}
		seen[reports[i].SHA256] = true
		rejected = rejected || !reports[i].Accepted
	}
	if rejected && !(opts.StoreGood && slices.ContainsFunc(reports, func(r PhotoReport) bool { return r.Accepted })) {
		return reports, &PhotosError{kind: ErrRejected, Photos: reports}
	}
	return reports, nil
}

// duplicateCheckLock serialises the duplicate-identity check and the
// insert across enrolment services: two officers enrolling one face under
// two ids at the same moment must not both pass.
const duplicateCheckLock = 0x6c6f6f7067617465 // "loopgate"

// storePhotos runs the identity checks against the database and stores the
// templates, inside tx. reports are all accepted.
func (r *Registry) storePhotos(ctx context.Context, tx pgx.Tx, a Actor, p Person, reports []PhotoReport, opts PhotoOptions) (AddResult, error) {
	if reports == nil {
		reports = []PhotoReport{}
	}
	res := AddResult{Photos: reports}
	// With StoreGood, photos refused by their own checks are reported and
	// left out; only the accepted ones go on.
	var use []int
	for i, rep := range reports {
		if rep.Accepted {
			use = append(use, i)
		}
	}
	if len(use) == 0 {
		return res, nil
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(duplicateCheckLock)); err != nil {
		return res, fmt.Errorf("enroll: lock: %w", err)
	}
	model := r.check.Model
	flagged := false
	for _, i := range use {
		rep := &reports[i]
		vec := pgvector.NewVector(rep.embedding[:])
		// One face, one identity: the nearest other person.
		var other DuplicateMatch
		err := tx.QueryRow(ctx, `SELECT p.external_id, p.name, min(t.embedding <-> $1)
			FROM face_templates t JOIN people p ON p.id = t.person_id
			WHERE t.model = $2 AND t.person_id <> $3
			GROUP BY p.id ORDER BY 3 LIMIT 1`, vec, model, p.id).Scan(&other.ExternalID, &other.Name, &other.Distance)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return res, fmt.Errorf("enroll: duplicate check: %w", err)
		case other.Distance <= r.dup:
			rep.Duplicate = &other
			rep.Reasons = append(rep.Reasons, Reason{Code: ReasonDuplicateIdentity, Value: other.Distance, Limit: r.dup,
				Message: fmt.Sprintf("this face matches %s (%s) at distance %.3f, within the match threshold %.2f: one face cannot hold two identities",
					other.Name, other.ExternalID, other.Distance, r.dup)})
		}
		// Same person: a new photo must resemble the templates it joins
		// (unless they are being replaced).
		if !opts.Replace && p.Templates > 0 {
			var own float64
			if err := tx.QueryRow(ctx, `SELECT min(embedding <-> $1) FROM face_templates WHERE person_id = $2 AND model = $3`,
				vec, p.id, model).Scan(&own); err == nil && own > r.same {
				rep.Reasons = append(rep.Reasons, Reason{Code: ReasonNotSamePerson, Value: own, Limit: r.same,
					Message: fmt.Sprintf("this face is %.3f from the person's enrolled templates (limit %.2f): it does not look like the same person", own, r.same)})
			}
		}
		var dupRow int
		err = tx.QueryRow(ctx, `SELECT 1 FROM face_templates WHERE person_id = $1 AND photo_sha256 = $2`, p.id, sha(rep.SHA256)).Scan(&dupRow)
		if err == nil && !opts.Replace {
			rep.Reasons = append(rep.Reasons, Reason{Code: ReasonAlreadyEnrolled, Message: "this photo is already enrolled for the person"})
		}
		if len(rep.Reasons) > 0 {
			rep.Accepted = false
			flagged = true
		}
	}
	if flagged {
		overridable := true
		for _, i := range use {
			for _, reason := range reports[i].Reasons {
				if reason.Code == ReasonAlreadyEnrolled {
					overridable = false
				}
			}
		}
		if opts.OverrideDuplicate == "" || !overridable {
			return res, &PhotosError{kind: ErrDuplicateIdentity, Photos: reports}
		}
		var overridden []map[string]any
		for _, i := range use {
			if len(reports[i].Reasons) == 0 {
				continue
			}
			entry := map[string]any{"photo_sha256": reports[i].SHA256, "reasons": reports[i].Reasons}
			overridden = append(overridden, entry)
			reports[i].Accepted = true
		}
		if err := audit(ctx, tx, a, "identity_check.overridden", p.ExternalID, p.id, map[string]any{
			"reason": strings.TrimSpace(opts.OverrideDuplicate), "photos": overridden,
		}); err != nil {
			return res, err
		}
	}
	if opts.Replace {
		rows, err := tx.Query(ctx, `DELETE FROM face_templates WHERE person_id = $1 RETURNING id`, p.id)
		if err != nil {
			return res, fmt.Errorf("enroll: replace templates: %w", err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return res, fmt.Errorf("enroll: replace templates: %w", err)
		}
		for _, id := range ids {
			if _, err := tx.Exec(ctx, `INSERT INTO template_history (person_id, template_id, event, actor) VALUES ($1, $2, 'replaced', $3)`,
				p.id, id, a.Name); err != nil {
				return res, fmt.Errorf("enroll: template history: %w", err)
			}
		}
		res.Replaced = len(ids)
	}
	var enrolmentID int64
	source := a.Kind
	if source == "" {
		source = "system"
	}
	if err := tx.QueryRow(ctx, `INSERT INTO enrolments (person_id, source, operator) VALUES ($1, $2, $3) RETURNING id`,
		p.id, source, a.Name).Scan(&enrolmentID); err != nil {
		return res, fmt.Errorf("enroll: insert enrolment: %w", err)
	}
	var summaries []map[string]any
	for _, i := range use {
		rep := reports[i]
		pr := rep.result
		b := pr.Face.Box
		var templateID int64
		if err := tx.QueryRow(ctx, `INSERT INTO face_templates
			(person_id, enrolment_id, embedding, model, photo_sha256, face_box, image_width, image_height)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
			p.id, enrolmentID, pgvector.NewVector(rep.embedding[:]), model, sha(rep.SHA256),
			[]int32{int32(b.Min.X), int32(b.Min.Y), int32(b.Max.X), int32(b.Max.Y)}, pr.Width, pr.Height).Scan(&templateID); err != nil {
			return res, fmt.Errorf("enroll: insert template: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO template_history (person_id, template_id, enrolment_id, event, actor) VALUES ($1, $2, $3, 'added', $4)`,
			p.id, templateID, enrolmentID, a.Name); err != nil {
			return res, fmt.Errorf("enroll: template history: %w", err)
		}
		if r.vault != nil {
			if err := r.vault.store(ctx, tx, p.id, templateID, rep.SHA256, rep.photo()); err != nil {
				return res, err
			}
		}
		res.Added++
		summaries = append(summaries, map[string]any{
			"photo_sha256": rep.SHA256, "inter_eye_px": round1(rep.Quality.Measures.InterEyePx),
			"sharpness": round1(rep.Quality.Measures.SharpnessVar), "yaw_deg": round1(rep.Quality.Measures.YawDeg),
		})
	}
	action := "templates.added"
	if opts.Replace {
		action = "templates.replaced"
	}
	if err := audit(ctx, tx, a, action, p.ExternalID, p.id, map[string]any{
		"added": res.Added, "replaced": res.Replaced, "photos": summaries, "photos_kept": r.vault != nil,
	}); err != nil {
		return res, err
	}
	_, err := tx.Exec(ctx, `UPDATE people SET updated_at = now() WHERE id = $1`, p.id)
	return res, err
}

func round1(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }

func sha(hexSum string) []byte {
	b, _ := hex.DecodeString(hexSum)
	return b
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// Update changes a registration's details.
func (r *Registry) Update(ctx context.Context, a Actor, externalID string, patch PersonPatch) (Person, error) {
	sets := []string{}
	args := []any{}
	detail := map[string]any{}
	arg := func(col string, v any) {
		args = append(args, v)
		sets = append(sets, fmt.Sprintf("%s = $%d", col, len(args)))
		detail[col] = v
	}
	if patch.Name.Set {
		v := strings.TrimSpace(patch.Name.Value)
		if err := checkText("name", v, 1, 200); err != nil {
			return Person{}, err
		}
		arg("name", v)
	}
	if patch.Organisation.Set {
		v := strings.TrimSpace(patch.Organisation.Value)
		if err := checkText("organisation", v, 0, 200); err != nil {
			return Person{}, err
		}
		arg("organisation", v)
	}
	if patch.HomePark.Set {
		if !slices.Contains(parks, patch.HomePark.Value) {
			return Person{}, invalid("home_park", "must be %q or %q", ParkHongKong, ParkShenzhen)
		}
		arg("home_park", patch.HomePark.Value)
	}
	if patch.ValidFrom.Set {
		arg("valid_from", patch.ValidFrom.Value)
	}
	if patch.ValidUntil.Set {
		arg("valid_until", patch.ValidUntil.Value)
	}
	var gates []string
	if patch.Gates.Set {
		gates = dedupe(patch.Gates.Value)
		if err := checkGates(gates); err != nil {
			return Person{}, err
		}
		detail["gates"] = gates
	}
	if len(detail) == 0 {
		return Person{}, invalid("body", "nothing to update")
	}
	var out Person
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		p, err := getPerson(ctx, tx, externalID, true)
		if err != nil {
			return err
		}
		from, until := p.ValidFrom, p.ValidUntil
		if patch.ValidFrom.Set {
			from = patch.ValidFrom.Value
		}
		if patch.ValidUntil.Set {
			until = patch.ValidUntil.Value
		}
		if err := checkWindow(from, until); err != nil {
			return err
		}
		if len(sets) > 0 {
			args = append(args, p.id)
			// Column names come from the fixed list above, values are parameters.
			if _, err := tx.Exec(ctx, `UPDATE people SET `+strings.Join(sets, ", ")+`, updated_at = now() WHERE id = $`+fmt.Sprint(len(args)), args...); err != nil {
				return fmt.Errorf("enroll: update person: %w", err)
			}
		}
		if patch.Gates.Set {
			if _, err := tx.Exec(ctx, `DELETE FROM person_gates WHERE person_id = $1 AND gate <> ALL($2::text[])`, p.id, gates); err != nil {
				return fmt.Errorf("enroll: update gates: %w", err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO person_gates (person_id, gate) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING`, p.id, gates); err != nil {
				return fmt.Errorf("enroll: update gates: %w", err)
			}
			if len(sets) == 0 { // otherwise the UPDATE above already set updated_at
				if _, err := tx.Exec(ctx, `UPDATE people SET updated_at = now() WHERE id = $1`, p.id); err != nil {
					return err
				}
			}
		}
		if err := audit(ctx, tx, a, "person.updated", externalID, p.id, detail); err != nil {
			return err
		}
		out, err = getPerson(ctx, tx, externalID, false)
		return err
	})
	return out, err
}

// Revoke stops a registration from ever opening a gate.
func (r *Registry) Revoke(ctx context.Context, a Actor, externalID, reason string) (Person, error) {
	reason = strings.TrimSpace(reason)
	if err := checkText("reason", reason, 3, 500); err != nil {
		return Person{}, err
	}
	return r.setStatus(ctx, a, externalID, "person.revoked", map[string]any{"reason": reason}, func(tx pgx.Tx, p Person) error {
		if p.Status == "revoked" {
			return fmt.Errorf("person %q: %w", externalID, ErrAlreadyRevoked)
		}
		_, err := tx.Exec(ctx, `UPDATE people SET status = 'revoked', revoked_at = now(), revoked_reason = $2, updated_at = now() WHERE id = $1`, p.id, reason)
		return err
	})
}

// Reinstate makes a revoked registration active again.
func (r *Registry) Reinstate(ctx context.Context, a Actor, externalID string) (Person, error) {
	return r.setStatus(ctx, a, externalID, "person.reinstated", nil, func(tx pgx.Tx, p Person) error {
		if p.Status != "revoked" {
			return fmt.Errorf("person %q: %w", externalID, ErrNotRevoked)
		}
		_, err := tx.Exec(ctx, `UPDATE people SET status = 'active', revoked_at = NULL, revoked_reason = NULL, updated_at = now() WHERE id = $1`, p.id)
		return err
	})
}

func (r *Registry) setStatus(ctx context.Context, a Actor, externalID, action string, detail map[string]any, change func(pgx.Tx, Person) error) (Person, error) {
	var out Person
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		p, err := getPerson(ctx, tx, externalID, true)
		if err != nil {
			return err
		}
		if err := change(tx, p); err != nil {
			return err
		}
		if err := audit(ctx, tx, a, action, externalID, p.id, detail); err != nil {
			return err
		}
		out, err = getPerson(ctx, tx, externalID, false)
		return err
	})
	return out, err
}

// Delete removes a person with every template, photo, gate and history
// row in one transaction, and leaves an audit entry without biometric
// data. Admins only. Gate decisions already recorded keep their row with
// the person unlinked (the decisions table is the gates' own audit trail).
func (r *Registry) Delete(ctx context.Context, a Actor, externalID, reason string) error {
	if !a.isAdmin() {
		return fmt.Errorf("deleting a person: %w", ErrForbidden)
	}
	reason = strings.TrimSpace(reason)
	if err := checkText("reason", reason, 3, 500); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		p, err := getPerson(ctx, tx, externalID, true)
		if err != nil {
			return err
		}
		var photos int64
		if err := tx.QueryRow(ctx, `WITH d AS (DELETE FROM photos WHERE person_id = $1 RETURNING 1) SELECT count(*) FROM d`, p.id).Scan(&photos); err != nil {
			return fmt.Errorf("enroll: delete photos: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM people WHERE id = $1`, p.id); err != nil {
			return fmt.Errorf("enroll: delete person: %w", err)
		}
		return audit(ctx, tx, a, "person.deleted", externalID, p.id, map[string]any{
			"reason": reason, "templates_deleted": p.Templates, "photos_deleted": photos,
		})
	})
}

// Templates lists a person's templates without their embeddings (never a
// nil slice).
func (r *Registry) Templates(ctx context.Context, externalID string) ([]TemplateInfo, error) {
	p, err := r.Get(ctx, externalID)
	if err != nil {
		return nil, err
	}
	rows, err := r.pool.Query(ctx, `SELECT t.id, t.created_at, t.photo_sha256, t.face_box, e.source, e.operator,
			EXISTS (SELECT 1 FROM photos ph WHERE ph.template_id = t.id)
		FROM face_templates t JOIN enrolments e ON e.id = t.enrolment_id
		WHERE t.person_id = $1 ORDER BY t.id`, p.id)
	if err != nil {
		return nil, fmt.Errorf("enroll: templates: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (TemplateInfo, error) {
		var ti TemplateInfo
		var sum []byte
		var box []int32
		if err := row.Scan(&ti.ID, &ti.CreatedAt, &sum, &box, &ti.Source, &ti.Operator, &ti.PhotoKept); err != nil {
			return ti, err
		}
		ti.PhotoSHA256 = hex.EncodeToString(sum)
		if len(box) == 4 {
			ti.FaceBox = Box{X: int(box[0]), Y: int(box[1]), W: int(box[2] - box[0]), H: int(box[3] - box[1])}
		}
		return ti, nil
	})
	if err != nil {
		return nil, fmt.Errorf("enroll: templates: %w", err)
	}
	if out == nil {
		out = []TemplateInfo{}
	}
	return out, nil
}

// AuditEntry is one row of the enrolment audit.
type AuditEntry struct {
	ID         int64           `json:"id"`
	At         time.Time       `json:"at"`
	Actor      string          `json:"actor"`
	ActorKind  string          `json:"actor_kind"`
	ActorRole  string          `json:"actor_role"`
	RemoteAddr string          `json:"remote_addr"`
	Action     string          `json:"action"`
	Subject    string          `json:"subject"`
	Detail     json.RawMessage `json:"detail"`
}

// AuditQuery filters the audit log, newest first.
type AuditQuery struct {
	Subject string
	Action  string
	// Limit defaults to 100, capped at 1000. Before pages: entries with a
	// smaller id.
	Limit  int
	Before int64
}

// AuditLog reads the enrolment audit (never a nil slice).
func (r *Registry) AuditLog(ctx context.Context, q AuditQuery) ([]AuditEntry, error) {
	switch {
	case q.Limit == 0:
		q.Limit = 100
	case q.Limit < 0 || q.Limit > 1000:
		return nil, invalid("limit", "must be 1 to 1000")
	}
	if q.Before <= 0 {
		q.Before = 1 << 62
	}
	rows, err := r.pool.Query(ctx, `SELECT id, at, actor, actor_kind, actor_role, remote_addr, action, subject, detail
		FROM enrolment_audit WHERE ($1 = '' OR subject = $1) AND ($2 = '' OR action = $2) AND id < $3
		ORDER BY id DESC LIMIT $4`, q.Subject, q.Action, q.Before, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("enroll: audit log: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[AuditEntry])
	if err != nil {
		return nil, fmt.Errorf("enroll: audit log: %w", err)
	}
	if out == nil {
		out = []AuditEntry{}
	}
	return out, nil
}
