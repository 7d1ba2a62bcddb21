package api

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"

	"github.com/go-faster/jx"
	"github.com/go-faster/yaml"
)

// AsyncAPI is asyncapi.yaml as built into the binary: the event contract,
// an AsyncAPI 3.0 document of the channels phonesd publishes to and the
// JSON Schemas of its events. phonesd serves it at /asyncapi.yaml.
//
//go:embed asyncapi.yaml
var AsyncAPI []byte

// AsyncAPIJSON returns AsyncAPI as indented JSON, its keys in the
// document's order: the same document, served at /asyncapi.json, for the
// tools that read no YAML. It returns an error when the document is not
// one YAML document whose keys are all strings.
func AsyncAPIJSON() ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(AsyncAPI, &doc); err != nil {
		return nil, fmt.Errorf("parse asyncapi.yaml: %w", err)
	}
	var e jx.Encoder
	if err := doc.EncodeJSON(&e); err != nil {
		return nil, fmt.Errorf("asyncapi.yaml as JSON: %w", err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, e.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("asyncapi.yaml as JSON: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}
