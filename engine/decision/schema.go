package decision

import _ "embed"

//go:embed event.schema.json
var schemaJSON []byte

// Schema returns the JSON Schema (draft 2020-12) of an Event's JSON form, so
// receivers and tests can validate what sinks emit.
func Schema() []byte { return append([]byte(nil), schemaJSON...) }
