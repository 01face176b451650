package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/loopgate/loopgate/enroll"
)

// Error codes in {"error":{"code":…}}. They are stable: clients switch on
// them, not on messages. openapi.yaml lists the same set.
const (
	CodeUnauthenticated   = "unauthenticated"
	CodeBadCredentials    = "bad_credentials"
	CodeForbidden         = "forbidden"
	CodeCSRF              = "csrf"
	CodeNotFound          = "not_found"
	CodeMethodNotAllowed  = "method_not_allowed"
	CodeMalformedJSON     = "malformed_json"
	CodeUnknownField      = "unknown_field"
	CodeWrongType         = "wrong_type"
	CodeInvalidMultipart  = "invalid_multipart"
	CodeInvalidParameter  = "invalid_parameter"
	CodeUnknownParameter  = "unknown_parameter"
	CodeTooManyPhotos     = "too_many_photos"
	CodeTooLarge          = "too_large"
	CodeUnsupportedMedia  = "unsupported_media_type"
	CodeInvalidField      = "invalid_field"
	CodePhotoRejected     = "photo_rejected"
	CodeIDConflict        = "id_conflict"
	CodeStateConflict     = "state_conflict"
	CodeDuplicateIdentity = "duplicate_identity"
	CodeRateLimited       = "rate_limited"
	CodeInternal          = "internal"
	CodeUnavailable       = "unavailable"
)

// apiError is one refusal: an HTTP status and the JSON error body.
type apiError struct {
	status int
	detail errorDetail
	// retryAfter sets the Retry-After header (429).
	retryAfter string
	// cause is logged, never sent.
	cause error
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.status, e.detail.Code, e.detail.Message)
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Field names the request field (JSON key, multipart part or query
	// parameter) that is wrong.
	Field string `json:"field,omitempty"`
	// Photos are the per-photo reports of a refused upload.
	Photos []enroll.PhotoReport `json:"photos,omitempty"`
	// DuplicateOf is the external id a face already belongs to.
	DuplicateOf string `json:"duplicate_of,omitempty"`
}

func newError(status int, code, message string) *apiError {
	return &apiError{status: status, detail: errorDetail{Code: code, Message: message}}
}

func fieldError(status int, code, field, message string) *apiError {
	e := newError(status, code, message)
	e.detail.Field = field
	return e
}

// writeJSON encodes v first, so a value that cannot be encoded turns into
// a clean 500 instead of a half-written body.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"error":{"code":"internal","message":"the response could not be encoded"}}`+"\n")
		return fmt.Errorf("api: encode response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// fail answers with e; server errors are logged with their cause.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, e *apiError) {
	if e.retryAfter != "" {
		w.Header().Set("Retry-After", e.retryAfter)
	}
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="loopgate-enrolment"`)
	}
	if e.status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "code", e.detail.Code, "err", e.cause)
	}
	if err := writeJSON(w, e.status, errorBody{Error: e.detail}); err != nil {
		s.log.Error("write error response", "err", err)
	}
}

// reply writes a success body, logging an encoding failure.
func (s *Server) reply(w http.ResponseWriter, status int, v any) {
	if err := writeJSON(w, status, v); err != nil {
		s.log.Error("write response", "err", err)
	}
}

// domainError maps an error of package enroll to its status and code.
func domainError(err error) *apiError {
	var fe *enroll.FieldError
	var pe *enroll.PhotosError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &fe):
		return fieldError(http.StatusUnprocessableEntity, CodeInvalidField, fe.Field, fe.Error())
	case errors.As(err, &pe) && errors.Is(err, enroll.ErrDuplicateIdentity):
		e := newError(http.StatusConflict, CodeDuplicateIdentity, "nothing stored: "+photoSummary(pe.Photos))
		e.detail.Photos = pe.Photos
		for _, p := range pe.Photos {
			if p.Duplicate != nil {
				e.detail.DuplicateOf = p.Duplicate.ExternalID
				break
			}
		}
		return e
	case errors.As(err, &pe):
		e := newError(http.StatusUnprocessableEntity, CodePhotoRejected, "nothing stored: "+photoSummary(pe.Photos))
		e.detail.Photos = pe.Photos
		return e
	case errors.Is(err, enroll.ErrNotFound):
		return newError(http.StatusNotFound, CodeNotFound, err.Error())
	case errors.Is(err, enroll.ErrConflict):
		return newError(http.StatusConflict, CodeIDConflict, err.Error())
	case errors.Is(err, enroll.ErrAlreadyRevoked), errors.Is(err, enroll.ErrNotRevoked):
		return newError(http.StatusConflict, CodeStateConflict, err.Error())
	case errors.Is(err, enroll.ErrForbidden):
		return newError(http.StatusForbidden, CodeForbidden, err.Error())
	case errors.Is(err, enroll.ErrBadCredentials):
		return newError(http.StatusUnauthorized, CodeUnauthenticated, "a valid token or session is required")
	case errors.As(err, &mbe):
		return newError(http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("the request body exceeds %d bytes", mbe.Limit))
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		e := newError(http.StatusServiceUnavailable, CodeUnavailable, "the request was cancelled or timed out; nothing was changed")
		e.cause = err
		return e
	default:
		e := newError(http.StatusInternalServerError, CodeInternal, "internal error; nothing was changed")
		e.cause = err
		return e
	}
}

// photoSummary names each refused photo and its reason codes.
func photoSummary(photos []enroll.PhotoReport) string {
	var parts []string
	for i, p := range photos {
		if p.Accepted {
			continue
		}
		codes := make([]string, len(p.Reasons))
		for j, r := range p.Reasons {
			codes[j] = r.Code
		}
		parts = append(parts, fmt.Sprintf("photo %d (%s): %s", i+1, p.Name, strings.Join(codes, ", ")))
	}
	if len(parts) == 0 {
		return "the photos were refused"
	}
	return strings.Join(parts, "; ")
}

// requireJSON checks the request declares a JSON body. A cross-site form
// cannot send application/json without a CORS preflight, which this server
// never grants.
func requireJSON(r *http.Request, also ...string) *apiError {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err == nil && mt == "application/json" {
		return nil
	}
	for _, a := range also {
		if err == nil && mt == a {
			return nil
		}
	}
	return newError(http.StatusUnsupportedMediaType, CodeUnsupportedMedia, "the body must be application/json")
}

var unknownFieldRe = regexp.MustCompile(`^json: unknown field "(.*)"$`)

// decodeStrict reads exactly one JSON object into dst: unknown fields,
// wrong types, trailing data and oversized bodies are refused, each with
// its own code and the field it concerns.
func decodeStrict(body io.Reader, dst any) *apiError {
	raw, err := io.ReadAll(body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return newError(http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("the JSON body exceeds %d bytes", mbe.Limit))
	}
	if err != nil {
		return newError(http.StatusBadRequest, CodeMalformedJSON, "the body could not be read")
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		return newError(http.StatusBadRequest, CodeMalformedJSON, "the body is empty; a JSON object is required")
	}
	if trimmed[0] != '{' {
		return newError(http.StatusBadRequest, CodeMalformedJSON, "the body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return newError(http.StatusBadRequest, CodeMalformedJSON, "the body must hold exactly one JSON value")
	}
	return nil
}

func jsonError(err error) *apiError {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return newError(http.StatusBadRequest, CodeMalformedJSON, fmt.Sprintf("malformed JSON at byte %d: %v", syn.Offset, err))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return newError(http.StatusBadRequest, CodeMalformedJSON, "malformed JSON: the body ends early")
	case errors.As(err, &typ):
		field := typ.Field
		want := "a different type"
		if typ.Type != nil {
			want = jsonKind(typ.Type.String())
		}
		if field == "" {
			return newError(http.StatusBadRequest, CodeWrongType, fmt.Sprintf("got %s where %s is expected", typ.Value, want))
		}
		return fieldError(http.StatusBadRequest, CodeWrongType, field, fmt.Sprintf("%s: got %s, want %s", field, typ.Value, want))
	}
	if m := unknownFieldRe.FindStringSubmatch(err.Error()); m != nil {
		return fieldError(http.StatusBadRequest, CodeUnknownField, m[1], fmt.Sprintf("unknown field %q", m[1]))
	}
	return newError(http.StatusBadRequest, CodeMalformedJSON, "malformed JSON: "+err.Error())
}

// jsonKind names a Go type the way a JSON client thinks of it.
func jsonKind(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case goType == "[]string":
		return "an array of strings"
	case goType == "api.jsonTime" || goType == "*api.jsonTime":
		return "an RFC 3339 date-time string (e.g. 2026-03-01T00:00:00Z) or null"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "bool":
		return "a boolean"
	case strings.HasPrefix(goType, "api."):
		return "a JSON object"
	default:
		return goType
	}
}

// jsonTime is an RFC 3339 date-time in a request; anything else is a
// wrong_type error naming the field.
type jsonTime struct{ time.Time }

var reflectTypeOfJSONTime = reflect.TypeFor[jsonTime]()

func (t *jsonTime) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &json.UnmarshalTypeError{Value: jsonValueKind(b), Type: reflectTypeOfJSONTime}
	}
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return &json.UnmarshalTypeError{Value: fmt.Sprintf("string %q", s), Type: reflectTypeOfJSONTime}
	}
	t.Time = v
	return nil
}

// jsonValueKind names the kind of a raw JSON value for messages.
func jsonValueKind(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

// patchField is one member of a JSON merge patch: absent (Set false),
// null (Null), or a value.
type patchField[T any] struct {
	Set, Null bool
	Value     T
}

func (f *patchField[T]) UnmarshalJSON(b []byte) error {
	f.Set = true
	if string(bytes.TrimSpace(b)) == "null" {
		f.Null = true
		return nil
	}
	return json.Unmarshal(b, &f.Value)
}
