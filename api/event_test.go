package api_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/go-faster/yaml"

	"github.com/phonesd/phonesd/api"
)

// TestAsyncAPIJSONIsTheDocument checks that the JSON served beside
// asyncapi.yaml holds exactly what the YAML holds, in the YAML's order.
func TestAsyncAPIJSONIsTheDocument(t *testing.T) {
	got, err := api.AsyncAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	var fromYAML any
	// Decoding into a value, unlike into a yaml.Node, refuses a key
	// written twice.
	if err := yaml.Unmarshal(api.AsyncAPI, &fromYAML); err != nil {
		t.Fatalf("asyncapi.yaml: %v", err)
	}
	want, err := json.Marshal(fromYAML)
	if err != nil {
		t.Fatalf("asyncapi.yaml as JSON: %v", err)
	}
	if !reflect.DeepEqual(decodeJSON(t, got), decodeJSON(t, want)) {
		t.Errorf("AsyncAPIJSON differs from asyncapi.yaml:\n%s", got)
	}
	if !bytes.HasPrefix(got, []byte("{\n  \"asyncapi\": \"3.0.0\",\n  \"info\": {")) {
		t.Errorf("AsyncAPIJSON starts %.60q; want the document's own first keys, asyncapi and info", got)
	}
}

// TestEventTypesMatchTheSchemas compares the Go event types with the
// document's payload schemas field by field, both ways: a field added to
// one and not the other, a nullable field that Go cannot hold as null (or
// the reverse), a type, a required field or an enum that differs all fail.
// The end-to-end tests check the same schemas against the events phonesd
// writes.
func TestEventTypesMatchTheSchemas(t *testing.T) {
	d := loadSchemas(t)
	for _, name := range []string{"PhoneCreationEvent", "PhoneChangeEvent"} {
		t.Run(name, func(t *testing.T) {
			d.check(t, name, reflect.TypeFor[api.PhoneEvent](), d.schemas[name])
		})
	}
	consts := []struct {
		schema, property string
		want             any
	}{
		{"PhoneCreationEvent", "event_type", api.EventPhoneCreation},
		{"PhoneChangeEvent", "event_type", api.EventPhoneChange},
		{"PhoneCreationAudit", "method", api.EventCreationMethod},
		{"PhoneChangeAudit", "method", api.EventChangeMethod},
		{"PhoneCreationAudit", "uri", api.EventCreationURI},
		{"PhoneChangeAudit", "uri", api.EventChangeURI},
		{"PhoneCreationEvent", "domain", api.EventDomain},
		{"PhoneChangeEvent", "domain", api.EventDomain},
		{"PhoneCreationEvent", "schema_version", json.Number("1")},
	}
	if api.EventSchemaVersion != 1 {
		t.Errorf("EventSchemaVersion %d; want 1, the version the schemas describe", api.EventSchemaVersion)
	}
	for _, c := range consts {
		props, _ := d.schemas[c.schema]["properties"].(map[string]any)
		prop, _ := props[c.property].(map[string]any)
		if got := d.resolve(prop)["const"]; got != c.want {
			t.Errorf("%s.%s: const %v in the document; want %v, as the Go constant says", c.schema, c.property, got, c.want)
		}
	}
}

// TestEventExamplesDecode decodes every example event of the document into
// PhoneEvent, refusing unknown fields, and checks that encoding it again
// gives the example back: no field of an example is lost in Go.
func TestEventExamplesDecode(t *testing.T) {
	d := loadSchemas(t)
	n := 0
	for _, name := range []string{"PhoneCreationEvent", "PhoneChangeEvent"} {
		examples, _ := d.schemas[name]["examples"].([]any)
		for i, ex := range examples {
			n++
			raw, err := json.Marshal(ex)
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			var ev api.PhoneEvent
			if err := dec.Decode(&ev); err != nil {
				t.Errorf("%s example %d: %v", name, i, err)
				continue
			}
			again, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(decodeJSON(t, again), decodeJSON(t, raw)) {
				t.Errorf("%s example %d: encoded again as\n%s\nwant\n%s", name, i, again, raw)
			}
		}
	}
	if n < 2 {
		t.Errorf("%d example events in the document; want one of each event at least", n)
	}
}

// schemaDoc is the document's components/schemas.
type schemaDoc struct {
	schemas map[string]map[string]any
}

func loadSchemas(t *testing.T) schemaDoc {
	t.Helper()
	doc, err := api.AsyncAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Components struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&parsed); err != nil {
		t.Fatal(err)
	}
	return schemaDoc{parsed.Components.Schemas}
}

// resolve follows a schema's $ref, and an allOf of one schema (a $ref
// with a description of its own), to the schema that says what it holds.
func (d schemaDoc) resolve(s map[string]any) map[string]any {
	for {
		if ref, ok := s["$ref"].(string); ok {
			s = d.schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
			continue
		}
		if all, ok := s["allOf"].([]any); ok && len(all) == 1 && s["type"] == nil {
			s, _ = all[0].(map[string]any)
			continue
		}
		return s
	}
}

// schemaKinds is the JSON Schema type of each kind of Go value.
var schemaKinds = map[reflect.Kind]string{
	reflect.String: "string",
	reflect.Int:    "integer",
	reflect.Int64:  "integer",
	reflect.Bool:   "boolean",
	reflect.Slice:  "array",
	reflect.Struct: "object",
}

// check fails t where Go type typ cannot hold exactly what schema s allows.
func (d schemaDoc) check(t *testing.T, path string, typ reflect.Type, s map[string]any) {
	t.Helper()
	s = d.resolve(s)
	if s == nil {
		t.Errorf("%s: no schema", path)
		return
	}
	var types []string
	switch v := s["type"].(type) {
	case string:
		types = []string{v}
	case []any:
		for _, x := range v {
			types = append(types, x.(string))
		}
	}
	nullable := slices.Contains(types, "null")
	types = slices.DeleteFunc(types, func(s string) bool { return s == "null" })
	switch {
	case typ.Kind() == reflect.Pointer && !nullable:
		t.Errorf("%s: Go %s may be nil, and the schema's type %v has no null", path, typ, s["type"])
	case typ.Kind() != reflect.Pointer && nullable:
		t.Errorf("%s: the schema allows null, and Go %s cannot hold it", path, typ)
	}
	if typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if want := schemaKinds[typ.Kind()]; len(types) != 1 || types[0] != want {
		t.Errorf("%s: schema type %v; Go %s holds %q", path, s["type"], typ, want)
		return
	}
	switch typ.Kind() {
	case reflect.Slice:
		items, _ := s["items"].(map[string]any)
		d.check(t, path+"[]", typ.Elem(), items)
	case reflect.Struct:
		d.checkFields(t, path, typ, s)
	case reflect.String:
		d.checkEnum(t, path, typ, s)
	}
}

// checkFields compares the JSON fields of struct type typ with the
// properties of schema s, and its required list with the fields that are
// always written.
func (d schemaDoc) checkFields(t *testing.T, path string, typ reflect.Type, s map[string]any) {
	t.Helper()
	props, _ := s["properties"].(map[string]any)
	var required []string
	for _, r := range s["required"].([]any) {
		required = append(required, r.(string))
	}
	fields := map[string]bool{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = true
		prop, ok := props[name].(map[string]any)
		if !ok {
			t.Errorf("%s: Go field %s.%s (%q) is not in the schema; add it to asyncapi.yaml", path, typ.Name(), f.Name, name)
			continue
		}
		always := !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero")
		if always != slices.Contains(required, name) {
			t.Errorf("%s.%s: required in the schema is %v; Go always writes it: %v", path, name, !always, always)
		}
		d.check(t, path+"."+name, f.Type, prop)
	}
	for name := range props {
		if !fields[name] {
			t.Errorf("%s: the schema's property %q is not a field of Go %s; add it to api/event.go", path, name, typ.Name())
		}
	}
}

// checkEnum compares the values of a Go enum type (one with AllValues,
// as ogen makes them) with the schema's enum.
func (d schemaDoc) checkEnum(t *testing.T, path string, typ reflect.Type, s map[string]any) {
	t.Helper()
	all, ok := typ.MethodByName("AllValues")
	if !ok {
		if s["enum"] != nil {
			t.Errorf("%s: the schema has an enum, and Go %s takes any string", path, typ)
		}
		return
	}
	var goValues, schemaValues []string
	values := all.Func.Call([]reflect.Value{reflect.Zero(typ)})[0]
	for i := range values.Len() {
		goValues = append(goValues, values.Index(i).String())
	}
	for _, v := range s["enum"].([]any) {
		schemaValues = append(schemaValues, v.(string))
	}
	slices.Sort(goValues)
	slices.Sort(schemaValues)
	if !slices.Equal(goValues, schemaValues) {
		t.Errorf("%s: enum %v in the schema; Go %s has %v", path, schemaValues, typ, goValues)
	}
}

func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return v
}

// TestEventSchemasStateTheirBounds holds the event schemas to the rule
// openapi.json keeps: every string states its length, values or form,
// every integer its format and range, every array its length, so that a
// consumer can size what it stores them in.
func TestEventSchemasStateTheirBounds(t *testing.T) {
	d := loadSchemas(t)
	var walk func(path string, s map[string]any)
	walk = func(path string, s map[string]any) {
		has := func(keys ...string) bool {
			return slices.ContainsFunc(keys, func(k string) bool { _, ok := s[k]; return ok })
		}
		var types []any
		switch v := s["type"].(type) {
		case string:
			types = []any{v}
		case []any:
			types = v
		}
		if slices.Contains(types, any("string")) && !has("maxLength", "enum", "const", "pattern", "format") {
			t.Errorf("%s: a string without maxLength, enum, const, pattern or format", path)
		}
		if slices.Contains(types, any("integer")) && (!has("format") || !has("minimum", "enum", "const") || !has("maximum", "enum", "const")) {
			t.Errorf("%s: an integer without format, minimum and maximum", path)
		}
		if slices.Contains(types, any("array")) && !has("maxItems") {
			t.Errorf("%s: an array without maxItems", path)
		}
		if items, ok := s["items"].(map[string]any); ok {
			walk(path+"[]", items)
		}
		props, _ := s["properties"].(map[string]any)
		for name, p := range props {
			walk(path+"."+name, p.(map[string]any))
		}
	}
	for name, s := range d.schemas {
		walk(name, s)
	}
}
