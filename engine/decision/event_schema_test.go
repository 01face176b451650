package decision_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/loopgate/loopgate/engine/decision"
)

const schemaURL = "https://github.com/loopgate/loopgate/engine/decision/event.schema.json"

func compileSchema(t *testing.T) (*jsonschema.Schema, map[string]any) {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(decision.Schema()))
	if err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(schemaURL, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		t.Fatalf("schema does not compile: %v", err)
	}
	return sch, doc.(map[string]any)
}

func validate(t *testing.T, sch *jsonschema.Schema, raw []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("not JSON: %v\n%s", err, raw)
	}
	return sch.Validate(inst)
}

func f(v float64) *float64 { return &v }

// events are the shapes the pipeline emits: an open on a match, a deny for an
// unknown face, a deny for a revoked registration, and a deny with nothing usable.
func events() []decision.Event {
	t0 := time.Date(2026, 3, 14, 9, 26, 53, 589793238, time.FixedZone("HKT", 8*3600))
	fq := t0.Add(120 * time.Millisecond)
	return []decision.Event{
		{
			ID: "gate-n1/cam-a/17/1710379613589", Decision: decision.Open, Reason: decision.Matched,
			Detail: "matched Ada Lovelace", Gate: "north-1", Lane: "a", Camera: "cam-a", TrackID: 17,
			Person:   &decision.Person{ID: 42, ExternalID: "E123", Name: "Ada Lovelace"},
			Distance: f(0.38), Margin: f(0.21), Threshold: 0.6, FramesUsed: 4, FramesSeen: 9,
			SkippedFrames: map[string]int{"blur": 3, "too_small": 2},
			FirstSeen:     t0, FirstQuality: &fq, DecidedAt: t0.Add(410 * time.Millisecond),
			Timings: decision.Timings{DetectMS: 31.5, QualityMS: 2.25, EmbedMS: 180, SearchMS: 3.5,
				CaptureToDecisionMS: 96.4, FirstQualityToDecisionMS: 290},
		},
		{
			ID: "gate-n1/cam-b/3/1710379613999", Decision: decision.Deny, Reason: decision.UnknownFace,
			Gate: "north-1", Camera: "cam-b", TrackID: 3, Distance: f(0.71), Threshold: 0.6,
			FramesUsed: 3, FramesSeen: 3, FirstSeen: t0, DecidedAt: t0.Add(time.Second),
			Timings: decision.Timings{DetectMS: 20, EmbedMS: 150, SearchMS: 2, CaptureToDecisionMS: 80},
		},
		{
			ID: "gate-n1/cam-a/18/1710379614000", Decision: decision.Deny, Reason: decision.Revoked,
			Gate: "north-1", Camera: "cam-a", TrackID: 18,
			Person:   &decision.Person{ID: 7, ExternalID: "E7", Name: "Grace Hopper"},
			Distance: f(0.41), Threshold: 0.6, FramesUsed: 2, FramesSeen: 2,
			FirstSeen: t0, DecidedAt: t0.Add(2 * time.Second),
		},
		{
			ID: "gate-n1/cam-a/19/1710379615000", Decision: decision.Deny, Reason: decision.NoUsableCapture,
			Gate: "north-1", Camera: "cam-a", TrackID: 19, Threshold: 0.6, FramesSeen: 5,
			SkippedFrames: map[string]int{"pose": 5}, FirstSeen: t0, DecidedAt: t0.Add(3 * time.Second),
		},
	}
}

func TestRealEventsValidate(t *testing.T) {
	sch, _ := compileSchema(t)
	for _, e := range events() {
		raw, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(t, sch, raw); err != nil {
			t.Errorf("event %s does not validate: %v\n%s", e.ID, err, raw)
		}
	}
}

// The schema must reject what a consumer must never see, or it documents
// nothing.
func TestSchemaRejectsMalformedEvents(t *testing.T) {
	sch, _ := compileSchema(t)
	good := events()[0]
	cases := map[string]func(m map[string]any){
		"missing decision":    func(m map[string]any) { delete(m, "decision") },
		"unknown decision":    func(m map[string]any) { m["decision"] = "maybe" },
		"unknown reason":      func(m map[string]any) { m["reason"] = "vibes" },
		"open without person": func(m map[string]any) { delete(m, "person") },
		"open not matched":    func(m map[string]any) { m["reason"] = "unknown_face" },
		"deny matched":        func(m map[string]any) { m["decision"] = "deny" },
		"unknown field":       func(m map[string]any) { m["embedding"] = []float64{0.1, 0.2} },
		"bad time":            func(m map[string]any) { m["decided_at"] = "yesterday" },
		"negative frames":     func(m map[string]any) { m["frames_used"] = -1 },
		"track id as string":  func(m map[string]any) { m["track_id"] = "17" },
		"person without name": func(m map[string]any) { delete(m["person"].(map[string]any), "name") },
		"timings missing":     func(m map[string]any) { delete(m, "timings") },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			raw, _ := json.Marshal(good)
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			mutate(m)
			raw, _ = json.Marshal(m)
			if err := validate(t, sch, raw); err == nil {
				t.Errorf("schema accepted %s:\n%s", name, raw)
			}
		})
	}
	revoked := events()[2]
	revoked.Person = nil
	raw, _ := json.Marshal(revoked)
	if err := validate(t, sch, raw); err == nil {
		t.Error("schema accepted a revoked deny without the person")
	}
}

// Every field of Event (and of its nested structs) must be documented in the
// schema, so adding a field without documenting it fails here.
func TestSchemaDocumentsEveryField(t *testing.T) {
	_, doc := compileSchema(t)
	checkStruct(t, "Event", reflect.TypeOf(decision.Event{}), doc)
}

func checkStruct(t *testing.T, path string, typ reflect.Type, schema map[string]any) {
	t.Helper()
	props, _ := schema["properties"].(map[string]any)
	if props == nil {
		t.Fatalf("%s: schema has no properties", path)
	}
	if schema["additionalProperties"] != false {
		t.Errorf("%s: schema must set additionalProperties false", path)
	}
	for i := 0; i < typ.NumField(); i++ {
		fld := typ.Field(i)
		name, _, _ := strings.Cut(fld.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			t.Errorf("%s.%s has no json name", path, fld.Name)
			continue
		}
		sub, ok := props[name].(map[string]any)
		if !ok {
			t.Errorf("%s.%s (json %q) is not in the schema", path, fld.Name, name)
			continue
		}
		ft := fld.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Time{}) {
			checkStruct(t, path+"."+fld.Name, ft, sub)
		}
	}
	if len(props) != countJSONFields(typ) {
		t.Errorf("%s: schema lists %d properties, the Go type has %d fields", path, len(props), countJSONFields(typ))
	}
}

func countJSONFields(typ reflect.Type) int {
	n := 0
	for i := 0; i < typ.NumField(); i++ {
		if typ.Field(i).IsExported() {
			n++
		}
	}
	return n
}
