package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/loopgate/loopgate/enroll"
)

// ---- request helpers ----

// queryParams refuses parameters the route does not know and repeated
// ones, so a typo never silently widens a search.
func queryParams(r *http.Request, allowed ...string) (url.Values, *apiError) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, newError(http.StatusBadRequest, CodeInvalidParameter, "the query string cannot be parsed")
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(allowed, k) {
			msg := fmt.Sprintf("unknown query parameter %q", k)
			if len(allowed) > 0 {
				msg += " (known: " + strings.Join(allowed, ", ") + ")"
			}
			return nil, fieldError(http.StatusBadRequest, CodeUnknownParameter, k, msg)
		}
		if len(q[k]) > 1 {
			return nil, fieldError(http.StatusBadRequest, CodeInvalidParameter, k, fmt.Sprintf("query parameter %q given %d times", k, len(q[k])))
		}
	}
	return q, nil
}

func intParam(q url.Values, name string, bits int) (int64, *apiError) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, bits)
	if err != nil || n < 0 {
		return 0, fieldError(http.StatusBadRequest, CodeInvalidParameter, name, fmt.Sprintf("%s must be a non-negative integer", name))
	}
	return n, nil
}

// queryFieldError turns a domain FieldError about a query parameter into a
// 400 naming the parameter.
func queryFieldError(err error) *apiError {
	var fe *enroll.FieldError
	if errors.As(err, &fe) {
		return fieldError(http.StatusBadRequest, CodeInvalidParameter, fe.Field, fe.Error())
	}
	return domainError(err)
}

// readJSON decodes a JSON body strictly, bounded by MaxBodyBytes.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, dst any, alsoTypes ...string) *apiError {
	if e := requireJSON(r, alsoTypes...); e != nil {
		return e
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return newError(http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("the JSON body exceeds %d bytes", s.cfg.MaxBodyBytes))
	}
	return decodeStrict(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes), dst)
}

// readOptionalJSON is readJSON for routes whose body may be absent; it
// reports whether there was one.
func (s *Server) readOptionalJSON(w http.ResponseWriter, r *http.Request, dst any) (bool, *apiError) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return false, newError(http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("the JSON body exceeds %d bytes", s.cfg.MaxBodyBytes))
	}
	if err != nil {
		return false, newError(http.StatusBadRequest, CodeMalformedJSON, "the body could not be read")
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return false, nil
	}
	if e := requireJSON(r); e != nil {
		return false, e
	}
	return true, decodeStrict(bytes.NewReader(raw), dst)
}

// upload is a parsed multipart request: its text parts and its photos.
type upload struct {
	texts  map[string]string
	photos []enroll.Photo
}

// readMultipart streams a multipart/form-data body, enforcing the sizes
// while reading (never buffering more than the limits): each photo at most
// MaxPhotoBytes, at most maxPhotos of them, each text part at most
// MaxBodyBytes. Parts other than "photo" and textParts are refused.
func (s *Server) readMultipart(w http.ResponseWriter, r *http.Request, maxPhotos int, textParts ...string) (upload, *apiError) {
	up := upload{texts: map[string]string{}}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return up, newError(http.StatusUnsupportedMediaType, CodeUnsupportedMedia, "the body must be multipart/form-data with a boundary")
	}
	limit := int64(maxPhotos)*s.cfg.MaxPhotoBytes + int64(len(textParts))*s.cfg.MaxBodyBytes + 64<<10 // part headers
	tooLarge := newError(http.StatusRequestEntityTooLarge, CodeTooLarge,
		fmt.Sprintf("the request exceeds %d bytes (at most %d photos of %d bytes each)", limit, maxPhotos, s.cfg.MaxPhotoBytes))
	if r.ContentLength > limit {
		return up, tooLarge
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	mr := multipart.NewReader(r.Body, params["boundary"])
	var mbe *http.MaxBytesError
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if errors.As(err, &mbe) {
			return up, tooLarge
		}
		if err != nil {
			return up, newError(http.StatusBadRequest, CodeInvalidMultipart, "the multipart body cannot be parsed: "+err.Error())
		}
		name := part.FormName()
		switch {
		case name == "photo":
			if len(up.photos) == maxPhotos {
				return up, fieldError(http.StatusBadRequest, CodeTooManyPhotos, "photo", fmt.Sprintf("at most %d photo(s) per request", maxPhotos))
			}
			n := len(up.photos) + 1
			data, err := io.ReadAll(io.LimitReader(part, s.cfg.MaxPhotoBytes+1))
			if errors.As(err, &mbe) {
				return up, tooLarge
			}
			if err != nil {
				return up, newError(http.StatusBadRequest, CodeInvalidMultipart, "the multipart body cannot be parsed: "+err.Error())
			}
			fileName := photoName(part.FileName(), n)
			if int64(len(data)) > s.cfg.MaxPhotoBytes {
				return up, fieldError(http.StatusRequestEntityTooLarge, CodeTooLarge, "photo",
					fmt.Sprintf("photo %d (%s) is larger than %d bytes", n, fileName, s.cfg.MaxPhotoBytes))
			}
			up.photos = append(up.photos, enroll.Photo{Name: fileName, Data: data})
		case slices.Contains(textParts, name):
			if _, dup := up.texts[name]; dup {
				return up, fieldError(http.StatusBadRequest, CodeInvalidMultipart, name, fmt.Sprintf("part %q given twice", name))
			}
			data, err := io.ReadAll(io.LimitReader(part, s.cfg.MaxBodyBytes+1))
			if errors.As(err, &mbe) {
				return up, tooLarge
			}
			if err != nil {
				return up, newError(http.StatusBadRequest, CodeInvalidMultipart, "the multipart body cannot be parsed: "+err.Error())
			}
			if int64(len(data)) > s.cfg.MaxBodyBytes {
				return up, fieldError(http.StatusRequestEntityTooLarge, CodeTooLarge, name, fmt.Sprintf("part %q exceeds %d bytes", name, s.cfg.MaxBodyBytes))
			}
			if !utf8.Valid(data) {
				return up, fieldError(http.StatusBadRequest, CodeInvalidMultipart, name, fmt.Sprintf("part %q is not UTF-8 text", name))
			}
			up.texts[name] = string(data)
		default:
			known := append([]string{"photo"}, textParts...)
			return up, fieldError(http.StatusBadRequest, CodeUnknownField, name,
				fmt.Sprintf("unknown multipart part %q (known: %s)", name, strings.Join(known, ", ")))
		}
	}
	return up, nil
}

// photoName is the name a photo goes by in reports: its file name, made
// printable and short, or its position.
func photoName(file string, n int) string {
	file = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, file)
	if file == "" {
		return fmt.Sprintf("photo %d", n)
	}
	if utf8.RuneCountInString(file) > 128 {
		file = string([]rune(file)[:128])
	}
	return file
}

func isMultipart(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "multipart/form-data"
}

// ---- response shaping ----

// Empty lists are [] in every response, never null (the OpenAPI schemas
// say array).
func normalisePerson(p enroll.Person) enroll.Person {
	if p.Gates == nil {
		p.Gates = []string{}
	}
	return p
}

func normaliseResult(res enroll.AddResult) enroll.AddResult {
	res.Person = normalisePerson(res.Person)
	if res.Photos == nil {
		res.Photos = []enroll.PhotoReport{}
	}
	return res
}

// photoFailure records the photos of a refused upload and maps the error.
func (s *Server) photoFailure(err error) *apiError {
	var pe *enroll.PhotosError
	if errors.As(err, &pe) {
		s.m.photos(pe.Photos)
	}
	return domainError(err)
}

// ---- people ----

type personBody struct {
	ExternalID   string    `json:"external_id"`
	Name         string    `json:"name"`
	Organisation string    `json:"organisation"`
	HomePark     string    `json:"home_park"`
	Gates        []string  `json:"gates"`
	ValidFrom    *jsonTime `json:"valid_from"`
	ValidUntil   *jsonTime `json:"valid_until"`
}

func (b personBody) input() enroll.PersonInput {
	in := enroll.PersonInput{ExternalID: b.ExternalID, Name: b.Name, Organisation: b.Organisation, HomePark: b.HomePark, Gates: b.Gates}
	if b.ValidFrom != nil {
		in.ValidFrom = &b.ValidFrom.Time
	}
	if b.ValidUntil != nil {
		in.ValidUntil = &b.ValidUntil.Time
	}
	return in
}

func (s *Server) handleListPeople(w http.ResponseWriter, r *http.Request, p principal) {
	q, e := queryParams(r, "q", "status", "gate", "limit", "after")
	if e != nil {
		s.fail(w, r, e)
		return
	}
	limit, e := intParam(q, "limit", 32)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	page, err := s.deps.Registry.List(r.Context(), enroll.ListQuery{
		Search: q.Get("q"), Status: q.Get("status"), Gate: q.Get("gate"), Limit: int(limit), After: q.Get("after"),
	})
	if err != nil {
		s.fail(w, r, queryFieldError(err))
		return
	}
	for i := range page.People {
		page.People[i] = normalisePerson(page.People[i])
	}
	s.reply(w, http.StatusOK, page)
}

// handleCreatePerson takes a JSON person (no photos), or a multipart form
// with a "person" JSON part, "photo" files and an optional
// "override_duplicate" reason: the person and every template, or nothing.
func (s *Server) handleCreatePerson(w http.ResponseWriter, r *http.Request, p principal) {
	if _, e := queryParams(r); e != nil {
		s.fail(w, r, e)
		return
	}
	var body personBody
	var photos []enroll.Photo
	var opts enroll.PhotoOptions
	if isMultipart(r) {
		up, e := s.readMultipart(w, r, s.cfg.MaxPhotos, "person", "override_duplicate")
		if e != nil {
			s.fail(w, r, e)
			return
		}
		js, ok := up.texts["person"]
		if !ok {
			s.fail(w, r, fieldError(http.StatusUnprocessableEntity, CodeInvalidField, "person", `the "person" part (a JSON object) is required`))
			return
		}
		if e := decodeStrict(strings.NewReader(js), &body); e != nil {
			s.fail(w, r, e)
			return
		}
		photos, opts.OverrideDuplicate = up.photos, up.texts["override_duplicate"]
	} else if e := s.readJSON(w, r, &body); e != nil {
		s.fail(w, r, e)
		return
	}
	res, err := s.deps.Registry.Create(r.Context(), p.actor(), body.input(), photos, opts)
	if err != nil {
		s.fail(w, r, s.photoFailure(err))
		return
	}
	s.m.photos(res.Photos)
	s.log.Info("person created", "external_id", res.Person.ExternalID, "templates", res.Added, "by", p.name, "client", p.addr)
	w.Header().Set("Location", "/api/v1/people/"+url.PathEscape(res.Person.ExternalID))
	s.reply(w, http.StatusCreated, normaliseResult(res))
}

func (s *Server) handleGetPerson(w http.ResponseWriter, r *http.Request, p principal) {
	if _, e := queryParams(r); e != nil {
		s.fail(w, r, e)
		return
	}
	person, err := s.deps.Registry.Get(r.Context(), r.PathValue("external_id"))
	if err != nil {
		s.fail(w, r, domainError(err))
		return
	}
	s.reply(w, http.StatusOK, normalisePerson(person))
}

// patchBody is a JSON merge patch (RFC 7396) of a person: an absent member
// leaves the field unchanged, null clears it.
type patchBody struct {
	Name         patchField[string]   `json:"name"`
	Organisation patchField[string]   `json:"organisation"`
	HomePark     patchField[string]   `json:"home_park"`
	Gates        patchField[[]string] `json:"gates"`
	ValidFrom    patchField[jsonTime] `json:"valid_from"`
	ValidUntil   patchField[jsonTime] `json:"valid_until"`
}

func (b patchBody) patch() (enroll.PersonPatch, *apiError) {
	var out enroll.PersonPatch
	for _, f := range []struct {
		name string
		null bool
	}{{"name", b.Name.Null}, {"home_park", b.HomePark.Null}} {
		if f.null {
			return out, fieldError(http.StatusUnprocessableEntity, CodeInvalidField, f.name, f.name+" cannot be cleared (null)")
		}
	}
	if b.Name.Set {
		out.Name = enroll.Some(b.Name.Value)
	}
	if b.Organisation.Set {
		out.Organisation = enroll.Some(b.Organisation.Value) // null clears to ""
	}
	if b.HomePark.Set {
		out.HomePark = enroll.Some(b.HomePark.Value)
	}
	if b.Gates.Set {
		g := b.Gates.Value
		if g == nil {
			g = []string{}
		}
		out.Gates = enroll.Some(g)
	}
	timeField := func(f patchField[jsonTime]) enroll.Optional[*time.Time] {
		if f.Null {
			return enroll.Some[*time.Time](nil)
		}
		t := f.Value.Time
		return enroll.Some(&t)
	}
	if b.ValidFrom.Set {
		out.ValidFrom = timeField(b.ValidFrom)
	}
	if b.ValidUntil.Set {
		out.ValidUntil = timeField(b.ValidUntil)
	}
	return out, nil
}

func (s *Server) handleUpdatePerson(w http.ResponseWriter, r *http.Request, p principal) {
	if _, e := queryParams(r); e != nil {
		s.fail(w, r, e)
		return
	}
	var body patchBody
	if e := s.readJSON(w, r, &body, "application/merge-patch+json"); e != nil {
		s.fail(w, r, e)
		return
	}
	patch, e := body.patch()
	if e != nil {
		s.fail(w, r, e)
		return
	}
	person, err := s.deps.Registry.Update(r.Context(), p.actor(), r.PathValue("external_id"), patch)
	if err != nil {
		s.fail(w, r, domainError(err))
		return
	}
	s.reply(w, http.StatusOK, normalisePerson(person))
}

type reasonBody struct {
	Reason string `json:"reason"`
}

// handleDeletePerson erases a person (admins): the reason comes in a JSON
// body or as ?reason=.
func (s *Server) handleDeletePerson(w http.ResponseWriter, r *http.Request, p principal) {
	q, e := queryParams(r, "reason")
	if e != nil {
		s.fail(w, r, e)
		return
	}
	var body reasonBody
	hasBody, e := s.readOptionalJSON(w, r, &body)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	reason := q.Get("reason")
	if hasBody {
		if q.Has("reason") {
			s.fail(w, r, fieldError(http.StatusBadRequest, CodeInvalidParameter, "reason", "give the reason once: in the body or as ?reason=, not both"))
			return
		}
		reason = body.Reason
	}
	id := r.PathValue("external_id")
	if err := s.deps.Registry.Delete(r.Context(), p.actor(), id, reason); err != nil {
		s.fail(w, r, domainError(err))
		return
	}
	s.log.Info("person deleted", "external_id", id, "by", p.name, "client", p.addr)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request, p principal) {
	if _, e := queryParams(r); e != nil {
		s.fail(w, r, e)
		return
	}
	var body reasonBody
	if e := s.readJSON(w, r, &body); e != nil {
		s.fail(w, r, e)
		return
	}
	person, err := s.deps.Registry.Revoke(r.Context(), p.actor(), r.PathValue("external_id"), body.Reason)
	if err != nil {
		s.fail(w, r, domainError(err))
		return
	}
	s.reply(w, http.StatusOK, normalisePerson(person))
}

func (s *Server) handleReinstate(w http.ResponseWriter, r *http.Request, p principal) {
	if _, e := queryParams(r); e != nil {
		s.fail(w, r, e)
		return
	}
	var body struct{}
	if _, e := s.readOptionalJSON(w, r, &body); e != nil {
		s.fail(w, r, e)
		return
	}
	person, err := s.deps.Registry.Reinstate(r.Context(), p.actor(), r.PathValue("external_id"))
	if err != nil {
		s.fail(w, r, domainError(err))
		return
	}
	s.reply(w, http.StatusOK, normalisePerson(person))
}

// handleAddPhotos adds (mode=add, the default) or replaces (mode=replace)
// a person's templates: every photo passes, or nothing is stored.
func (s *Server) handleAddPhotos(w http.ResponseWriter, r *http.Request, p principal) {
	if _, e := queryParams(r); e != nil {
		s.fail(w, r, e)
		return
	}
	up, e := s.readMultipart(w, r, s.cfg.MaxPhotos, "mode", "override_duplicate")
	if e != nil {
		s.fail(w, r, e)
		return
	}
	opts := enroll.PhotoOptions{OverrideDuplicate: up.texts["override_duplicate"]}
	switch up.texts["mode"] {
	case "", "add":
	case "replace":
		opts.Replace = true
	default:
		s.fail(w, r, fieldError(http.StatusUnprocessableEntity, CodeInvalidField, "mode", `mode must be "add" or "replace"`))
		return
	}
	res, err := s.deps.Registry.AddPhotos(r.Context(), p.actor(), r.PathValue("external_id"), up.photos, opts)
	if err != nil {
		s.fail(w, r, s.photoFailure(err))
		return
	}
	s.m.photos(res.Photos)
	s.log.Info("photos enrolled", "external_id", res.Person.ExternalID, "added", res.Added, "replaced", res.Replaced, "by", p.name, "client", p.addr)
	s.reply(w, http.StatusOK, normaliseResult(res))
}

func (s *Server) handleListTemplates(w http.ResponseWriter, r *http.Request, p principal) {
	if _, e := queryParams(r); e != nil {
		s.fail(w, r, e)
		return
	}
	ts, err := s.deps.Registry.Templates(r.Context(), r.PathValue("external_id"))
	if err != nil {
		s.fail(w, r, domainError(err))
		return
	}
	s.reply(w, http.StatusOK, map[string]any{"templates": ts})
}

// unreadable reason codes mean the upload was not an image we accept at
// all, as opposed to a photo of the wrong kind.
var unreadable = []string{enroll.ReasonDecodeFailed, enroll.ReasonUnsupportedFormat, enroll.ReasonTooLarge}

// handleQuality checks one photo and stores nothing: the page's instant
// check. A readable photo gets 200 with its report, accepted or not; data
// that is not an image we accept gets 422 photo_rejected with the report.
func (s *Server) handleQuality(w http.ResponseWriter, r *http.Request, p principal) {
	if _, e := queryParams(r); e != nil {
		s.fail(w, r, e)
		return
	}
	up, e := s.readMultipart(w, r, 1)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	if len(up.photos) == 0 {
		s.fail(w, r, fieldError(http.StatusUnprocessableEntity, CodeInvalidField, "photo", `a "photo" part is required`))
		return
	}
	rep := s.deps.Registry.CheckPhoto(r.Context(), up.photos[0])
	if err := r.Context().Err(); err != nil {
		s.fail(w, r, domainError(err))
		return
	}
	reports := []enroll.PhotoReport{rep}
	s.m.photos(reports)
	for _, reason := range rep.Reasons {
		if slices.Contains(unreadable, reason.Code) {
			e := newError(http.StatusUnprocessableEntity, CodePhotoRejected, "not a usable image: "+photoSummary(reports))
			e.detail.Photos = reports
			s.fail(w, r, e)
			return
		}
	}
	s.reply(w, http.StatusOK, rep)
}

// ---- accounts and tokens (admins) ----

func (s *Server) handleListAccounts(w http.ResponseWriter, r *http.Request, p principal) {
	if _, e := queryParams(r); e != nil {
		s.fail(w, r, e)
		return
	}
	accs, err := s.deps.Accounts.ListUsers(r.Context())
	if err != nil {
		s.fail(w, r, domainError(err))
		return
	}
	s.reply(w, http.StatusOK, map[string]any{"accounts": accs})
}

func (s *Server) handleCreateAccount(w http.ResponseWriter, r *http.Request, p principal) {
	if _, e := queryParams(r); e != nil {
		s.fail(w, r, e)
		return
	}
	var body struct {
		Username string `json:"username"`
		Password string `json:"password"`
		Role     string `json:"role"`
	}
	if e := s.readJSON(w, r, &body); e != nil {
		s.fail(w, r, e)
		return
	}
	acc, err := s.deps.Accounts.AddUser(r.Context(), p.actor(), body.Username, body.Password, body.Role)
	if err != nil {
		s.fail(w, r, domainError(err))
		return
	}
	s.log.Info("account created", "account", acc.Username, "role", acc.Role, "by", p.name, "client", p.addr)
	s.reply(w, http.StatusCreated, acc)
}

func (s *Server) handleDisableAccount(w http.ResponseWriter, r *http.Request, p principal) {
	if _, e := queryParams(r); e != nil {
		s.fail(w, r, e)
		return
	}
	var body struct{}
	if _, e := s.readOptionalJSON(w, r, &body); e != nil {
		s.fail(w, r, e)
		return
	}
	username := r.PathValue("username")
	if err := s.deps.Accounts.DisableUser(r.Context(), p.actor(), username); err != nil {
		s.fail(w, r, domainError(err))
		return
	}
	ended := s.sessions.DeleteName(username)
	s.log.Info("account disabled", "account", username, "sessions_ended", ended, "by", p.name, "client", p.addr)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleListTokens(w http.ResponseWriter, r *http.Request, p principal) {
	if _, e := queryParams(r); e != nil {
		s.fail(w, r, e)
		return
	}
	ts, err := s.deps.Accounts.ListTokens(r.Context())
	if err != nil {
		s.fail(w, r, domainError(err))
		return
	}
	s.reply(w, http.StatusOK, map[string]any{"tokens": ts})
}

// createdToken is the only response that ever holds a token's secret.
type createdToken struct {
	Secret string          `json:"secret"`
	Token  enroll.APIToken `json:"token"`
}

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request, p principal) {
	if _, e := queryParams(r); e != nil {
		s.fail(w, r, e)
		return
	}
	var body struct {
		Name string `json:"name"`
		Role string `json:"role"`
	}
	if e := s.readJSON(w, r, &body); e != nil {
		s.fail(w, r, e)
		return
	}
	secret, t, err := s.deps.Accounts.CreateToken(r.Context(), p.actor(), body.Name, body.Role)
	if err != nil {
		s.fail(w, r, domainError(err))
		return
	}
	s.log.Info("API token created", "token", t.Name, "id", t.ID, "role", t.Role, "by", p.name, "client", p.addr)
	s.reply(w, http.StatusCreated, createdToken{Secret: secret, Token: t})
}

func (s *Server) handleRevokeToken(w http.ResponseWriter, r *http.Request, p principal) {
	if _, e := queryParams(r); e != nil {
		s.fail(w, r, e)
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		s.fail(w, r, fieldError(http.StatusBadRequest, CodeInvalidParameter, "id", "a token id is a positive integer"))
		return
	}
	if err := s.deps.Accounts.RevokeToken(r.Context(), p.actor(), id); err != nil {
		s.fail(w, r, domainError(err))
		return
	}
	s.log.Info("API token revoked", "id", id, "by", p.name, "client", p.addr)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// auditPage is a page of the audit log, newest first. NextBefore is the
// ?before= of the next page; 0 when this page is empty.
type auditPage struct {
	Entries    []enroll.AuditEntry `json:"entries"`
	NextBefore int64               `json:"next_before"`
}

func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request, p principal) {
	q, e := queryParams(r, "subject", "action", "limit", "before")
	if e != nil {
		s.fail(w, r, e)
		return
	}
	limit, e := intParam(q, "limit", 32)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	before, e := intParam(q, "before", 64)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	entries, err := s.deps.Registry.AuditLog(r.Context(), enroll.AuditQuery{
		Subject: q.Get("subject"), Action: q.Get("action"), Limit: int(limit), Before: before,
	})
	if err != nil {
		s.fail(w, r, queryFieldError(err))
		return
	}
	page := auditPage{Entries: entries}
	if n := len(page.Entries); n > 0 {
		page.NextBefore = page.Entries[n-1].ID
	}
	s.reply(w, http.StatusOK, page)
}

// ---- service routes ----

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request, p principal) {
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(OpenAPI)
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	s.reply(w, http.StatusOK, map[string]string{"status": "alive"})
}

type checkResult struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
}

// handleReadyz pings the database. The response names the failing check
// only; the reason goes to the log, not to anonymous callers.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.CheckTimeout)
	defer cancel()
	err := s.deps.DB.Ping(ctx)
	body := map[string]any{"status": "ready", "checks": []checkResult{{Name: "database", OK: err == nil}}}
	status := http.StatusOK
	if err != nil {
		s.log.Warn("readiness: database unreachable", "err", err)
		body["status"] = "not_ready"
		status = http.StatusServiceUnavailable
	}
	s.reply(w, status, body)
}
