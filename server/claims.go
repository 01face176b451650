package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// Sentinel errors a Claimer returns; the API maps them to 404 with a code.
var (
	ErrUnknownLane   = errors.New("unknown lane")
	ErrUnknownPerson = errors.New("unknown person")
	// ErrGalleryStale: the node's gallery copy is older than its bound,
	// so it cannot vouch for any registration.
	ErrGalleryStale = errors.New("gallery copy out of date")
)

// ClaimInfo is a registered 1:1 claim.
type ClaimInfo struct {
	ID         string
	Lane       string
	ExternalID string
	Expires    time.Time
}

// Claimer registers that the person with externalID is about to walk
// through lane: for ttl, a face at that lane is verified 1:1 against them.
// The engine implements it; errors wrap ErrUnknownLane or ErrUnknownPerson
// when those are the cause.
type Claimer interface {
	Claim(ctx context.Context, lane, externalID string, ttl time.Duration) (ClaimInfo, error)
}

// The same shape the gallery allows for gate names.
var laneRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

const maxClaimBody = 4 << 10

type claimRequest struct {
	Lane       string `json:"lane"`
	ExternalID string `json:"external_id"`
	TTLSeconds *int   `json:"ttl_seconds"`
}

type claimResponse struct {
	ID         string    `json:"id"`
	Lane       string    `json:"lane"`
	ExternalID string    `json:"external_id"`
	Expires    time.Time `json:"expires"`
}

func (s *Server) handleClaim(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r)
	fail := func(status int, code, msg string) {
		s.m.claim(code)
		writeError(w, status, code, msg)
	}
	if s.deps.Claimer == nil {
		fail(http.StatusNotImplemented, CodeClaimsDisabled, "this gate node takes no claims")
		return
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		fail(http.StatusUnsupportedMediaType, CodeUnsupportedMedia, "send Content-Type: application/json")
		return
	}
	var req claimRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxClaimBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		status, code, msg := decodeError(err)
		fail(status, code, msg)
		return
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		fail(http.StatusBadRequest, CodeInvalidJSON, "the body must hold exactly one JSON object")
		return
	}
	ttl := s.cfg.DefaultClaimTTL
	if req.TTLSeconds != nil {
		ttl = time.Duration(*req.TTLSeconds) * time.Second
	}
	switch {
	case !laneRe.MatchString(req.Lane):
		fail(http.StatusBadRequest, CodeInvalidField, "lane is required: 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit")
		return
	case !validExternalID(req.ExternalID):
		fail(http.StatusBadRequest, CodeInvalidField, "external_id is required: 1-64 printable characters")
		return
	case ttl < time.Second || ttl > s.cfg.MaxClaimTTL:
		fail(http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("ttl_seconds must be between 1 and %d", int(s.cfg.MaxClaimTTL/time.Second)))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ClaimTimeout)
	defer cancel()
	info, err := s.deps.Claimer.Claim(ctx, req.Lane, req.ExternalID, ttl)
	switch {
	case errors.Is(err, ErrUnknownLane):
		fail(http.StatusNotFound, CodeUnknownLane, fmt.Sprintf("lane %q is not served by this gate node", req.Lane))
		return
	case errors.Is(err, ErrUnknownPerson):
		fail(http.StatusNotFound, CodeUnknownPerson, "no active registration with this external_id for this gate")
		return
	case errors.Is(err, ErrGalleryStale):
		fail(http.StatusServiceUnavailable, CodeGalleryStale, "this gate node's gallery copy is out of date (database unreachable): it denies everyone until it syncs")
		return
	case errors.Is(err, context.DeadlineExceeded):
		s.log.Error("claim timed out", "token", p.name, "lane", req.Lane, "err", err)
		fail(http.StatusGatewayTimeout, CodeTimeout, "the claim could not be registered in time")
		return
	case err != nil:
		s.log.Error("claim failed", "token", p.name, "lane", req.Lane, "err", err)
		fail(http.StatusInternalServerError, CodeInternal, "the claim could not be registered")
		return
	}
	s.m.claim("created")
	s.log.Info("claim registered", "token", p.name, "claim_id", info.ID, "lane", info.Lane,
		"external_id", info.ExternalID, "expires", info.Expires)
	writeJSON(w, http.StatusCreated, claimResponse(info))
}

func validExternalID(id string) bool {
	if id == "" || len(id) > 64 || strings.TrimSpace(id) != id {
		return false
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// decodeError turns a json decoding error into a status, a stable code and a
// message that names the field without echoing the body.
func decodeError(err error) (int, string, string) {
	var (
		syntax   *json.SyntaxError
		typeErr  *json.UnmarshalTypeError
		tooLarge *http.MaxBytesError
	)
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, CodeBodyTooLarge, fmt.Sprintf("the body must be at most %d bytes", tooLarge.Limit)
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return http.StatusBadRequest, CodeInvalidJSON, "the body is not a JSON object"
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return http.StatusBadRequest, CodeInvalidJSON, "the body must be a JSON object"
		}
		return http.StatusBadRequest, CodeInvalidType, fmt.Sprintf("field %s must be a %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return http.StatusBadRequest, CodeUnknownField, strings.TrimPrefix(err.Error(), "json: ")
	}
	return http.StatusBadRequest, CodeInvalidJSON, "the body is not valid JSON"
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int64", "float64":
		return "number (integer)"
	case "string":
		return "string"
	}
	return goKind
}
