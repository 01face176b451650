package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

var specOnce struct {
	sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

// loadSpec parses and validates the embedded openapi.yaml.
func loadSpec(t *testing.T) (*openapi3.T, routers.Router) {
	t.Helper()
	specOnce.Do(func() {
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData(OpenAPI)
		if err != nil {
			specOnce.err = fmt.Errorf("load openapi.yaml: %w", err)
			return
		}
		if err := doc.Validate(context.Background(), openapi3.EnableSchemaFormatValidation()); err != nil {
			specOnce.err = fmt.Errorf("openapi.yaml is not a valid OpenAPI 3 document: %w", err)
			return
		}
		specOnce.doc = doc
		specOnce.router, specOnce.err = gorillamux.NewRouter(doc)
	})
	if specOnce.err != nil {
		t.Fatal(specOnce.err)
	}
	return specOnce.doc, specOnce.router
}

// opCoverage records which documented operations answered 2xx.
type opCoverage struct {
	mu  sync.Mutex
	ok  map[string]bool
	any bool
}

var coverage = &opCoverage{ok: map[string]bool{}}

func (c *opCoverage) record(method, path string, status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.any = true
	if status >= 200 && status < 300 {
		c.ok[method+" "+path] = true
	}
}

func (c *opCoverage) used() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.any
}

func (c *opCoverage) missing() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, op := range operations() {
		if !c.ok[op.method+" "+op.path] {
			out = append(out, op.method+" "+op.path)
		}
	}
	return out
}

type operation struct {
	method, path, role string
}

// operations lists every documented operation with its x-role.
func operations() []operation {
	doc := specOnce.doc
	if doc == nil {
		return nil
	}
	var out []operation
	for _, path := range doc.Paths.InMatchingOrder() {
		for method, op := range doc.Paths.Value(path).Operations() {
			role, _ := op.Extensions["x-role"].(string)
			out = append(out, operation{method: strings.ToLower(method), path: path, role: role})
		}
	}
	slices.SortFunc(out, func(a, b operation) int { return strings.Compare(a.path+a.method, b.path+b.method) })
	return out
}

// validating checks every response a test receives against openapi.yaml,
// and that no response carries a template.
type validating struct {
	t    *testing.T
	base http.RoundTripper
}

func (v *validating) RoundTrip(req *http.Request) (*http.Response, error) {
	doc, router := loadSpec(v.t)
	resp, err := v.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	what := fmt.Sprintf("%s %s → %d", req.Method, req.URL.RequestURI(), resp.StatusCode)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		assertNoTemplates(v.t, what, body)
	}
	route, params, ferr := router.FindRoute(req)
	if ferr != nil && !strings.HasPrefix(req.URL.Path, "/api/") && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		// The officers' page and its files (web.go), not the API.
		return resp, nil
	}
	if ferr != nil {
		// Not a documented operation (unknown path, wrong method): it must
		// still be a JSON error of the documented shape.
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			v.t.Errorf("%s: undocumented operation answered %d", what, resp.StatusCode)
		}
		var decoded any
		if err := json.Unmarshal(body, &decoded); err != nil {
			v.t.Errorf("%s: not JSON: %s", what, body)
		} else if err := doc.Components.Schemas["Error"].Value.VisitJSON(decoded); err != nil {
			v.t.Errorf("%s: error body does not match the Error schema: %v\n%s", what, err, body)
		}
		return resp, nil
	}
	coverage.record(strings.ToLower(req.Method), route.Path, resp.StatusCode)
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		v.t.Errorf("%s: response does not match openapi.yaml: %v\n%.2000s", what, err, body)
	}
	return resp, nil
}

// assertNoTemplates fails on anything in a JSON body that looks like a
// face template: a key naming one, or a long array of numbers.
func assertNoTemplates(t errorfT, what string, body []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Errorf("%s: JSON content type but not JSON: %v", what, err)
		return
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, child := range x {
				lk := strings.ToLower(k)
				if strings.Contains(lk, "embedding") || strings.Contains(lk, "descriptor") || strings.Contains(lk, "vector") {
					t.Errorf("%s: response has a %q member at %s", what, k, path)
				}
				walk(path+"."+k, child)
			}
		case []any:
			numbers := 0
			for i, child := range x {
				if _, ok := child.(float64); ok {
					numbers++
				}
				walk(fmt.Sprintf("%s[%d]", path, i), child)
			}
			if numbers >= 64 {
				t.Errorf("%s: response has an array of %d numbers at %s (a template?)", what, numbers, path)
			}
		}
	}
	walk("$", v)
}

// TestOpenAPIDocument: the spec is a valid OpenAPI 3 document, every
// operation names its role, every error code the server can send is in the
// ErrorCode enum, and the server serves the same bytes.
func TestOpenAPIDocument(t *testing.T) {
	doc, _ := loadSpec(t)
	ops := operations()
	if len(ops) < 24 {
		t.Errorf("only %d operations documented", len(ops))
	}
	for _, op := range ops {
		if !slices.Contains([]string{"none", "any", "officer", "admin"}, op.role) {
			t.Errorf("%s %s: x-role %q", op.method, op.path, op.role)
		}
		o := doc.Paths.Value(op.path).GetOperation(strings.ToUpper(op.method))
		public := o.Security != nil && len(*o.Security) == 0
		if public != (op.role == "none") {
			t.Errorf("%s %s: security %v does not fit x-role %s", op.method, op.path, o.Security, op.role)
		}
	}
	var enum []string
	for _, v := range doc.Components.Schemas["ErrorCode"].Value.Enum {
		enum = append(enum, v.(string))
	}
	for _, code := range []string{CodeUnauthenticated, CodeBadCredentials, CodeForbidden, CodeCSRF, CodeNotFound, CodeMethodNotAllowed,
		CodeMalformedJSON, CodeUnknownField, CodeWrongType, CodeInvalidMultipart, CodeInvalidParameter, CodeUnknownParameter,
		CodeTooManyPhotos, CodeTooLarge, CodeUnsupportedMedia, CodeInvalidField, CodePhotoRejected, CodeIDConflict,
		CodeStateConflict, CodeDuplicateIdentity, CodeRateLimited, CodeInternal, CodeUnavailable} {
		if !slices.Contains(enum, code) {
			t.Errorf("error code %q is not in the ErrorCode enum", code)
		}
	}
	if len(enum) != 23 {
		t.Errorf("ErrorCode enum has %d codes, the server 23", len(enum))
	}

	s := newStack(t, Config{})
	resp, body := s.admin().get("/api/v1/openapi.yaml")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, OpenAPI) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/yaml") {
		t.Errorf("GET /api/v1/openapi.yaml: %d %s, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
}

// TestValidatorCatchesDrift: the response validator is not a rubber
// stamp. A body with an extra member, a missing member or a wrong type,
// an undocumented status and a template-like array all fail it.
func TestValidatorCatchesDrift(t *testing.T) {
	_, router := loadSpec(t)
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/api/v1/session", nil)
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Fatal(err)
	}
	validate := func(status int, body string) error {
		h := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
		return openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
			Status:                 status, Header: h, Body: io.NopCloser(strings.NewReader(body)),
			Options: &openapi3filter.Options{IncludeResponseStatus: true},
		})
	}
	good := `{"username":"ada","role":"admin","kind":"account","csrf_token":"x","expires_at":null}`
	if err := validate(200, good); err != nil {
		t.Fatalf("a correct body fails: %v", err)
	}
	for name, c := range map[string]struct {
		status int
		body   string
	}{
		"extra member":       {200, `{"username":"ada","role":"admin","kind":"account","csrf_token":"x","expires_at":null,"embedding":[0.1]}`},
		"missing member":     {200, `{"username":"ada","role":"admin","kind":"account","expires_at":null}`},
		"wrong type":         {200, `{"username":"ada","role":"admin","kind":"account","csrf_token":7,"expires_at":null}`},
		"unknown role":       {200, `{"username":"ada","role":"root","kind":"account","csrf_token":"x","expires_at":null}`},
		"undocumented 418":   {418, `{"error":{"code":"internal","message":"x"}}`},
		"unknown error code": {401, `{"error":{"code":"nope","message":"x"}}`},
	} {
		if err := validate(c.status, c.body); err == nil {
			t.Errorf("%s: the validator accepted it", name)
		}
	}
	floats := make([]string, 128)
	for i := range floats {
		floats[i] = "0.01"
	}
	for name, body := range map[string]string{
		"128 numbers": `{"templates":[{"id":1,"x":[` + strings.Join(floats, ",") + `]}]}`,
		"embedding":   `{"person":{"face_embedding":"AAAA"}}`,
	} {
		rec := &recordingT{}
		assertNoTemplates(rec, name, []byte(body))
		if !rec.failed {
			t.Errorf("%s: passed the template check", name)
		}
	}
	rec := &recordingT{}
	assertNoTemplates(rec, "a report", []byte(`{"photos":[{"face_box":{"x":1,"y":2,"w":3,"h":4},"reasons":[]}]}`))
	if rec.failed {
		t.Error("the template check refuses an ordinary report")
	}
}

// recordingT lets the template check be tested without failing this test.
type recordingT struct{ failed bool }

func (r *recordingT) Helper()               {}
func (r *recordingT) Errorf(string, ...any) { r.failed = true }

type errorfT interface {
	Helper()
	Errorf(string, ...any)
}
