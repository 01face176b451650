package server

import (
	"encoding/json"
	"net/http"
)

// Error codes in {"error":{"code":…}}. They are stable: clients switch on
// them, not on messages.
const (
	CodeUnauthenticated  = "unauthenticated"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeInvalidJSON      = "invalid_json"
	CodeUnknownField     = "unknown_field"
	CodeInvalidType      = "invalid_type"
	CodeInvalidField     = "invalid_field"
	CodeBodyTooLarge     = "body_too_large"
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeUnknownLane      = "unknown_lane"
	CodeUnknownPerson    = "unknown_person"
	CodeClaimsDisabled   = "claims_disabled"
	CodeTimeout          = "timeout"
	CodeGalleryStale     = "gallery_stale"
	CodeInternal         = "internal"
	CodeRateLimited      = "rate_limited"
	CodeCSRF             = "csrf"
	CodeUnknownCamera    = "unknown_camera"
)

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: message}})
}
