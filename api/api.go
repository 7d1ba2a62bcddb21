// Package api is phonesd's contract in Go: the OpenAPI document
// (openapi.json, served by phonesd at /openapi.json) and what ogen
// generates from it, the contract's types with their JSON encoders and
// validators and a client for its four operations (the oas_* files, never
// edited by hand). phonesd writes its answers with these types, so that
// every body it sends has the contract's shape; a consumer imports the
// same package to call it.
//
// The event side has its own document, asyncapi.yaml (AsyncAPI 3.0,
// served at /asyncapi.yaml), and PhoneEvent, the type phonesd encodes
// every event with and a consumer decodes them with; a test holds the two
// together field by field.
//
// Regenerate with go generate after changing openapi.json; a test fails
// while the committed code differs from what the contract generates.
package api

//go:generate go tool ogen --config ogen.yml --target . --package api --clean openapi.json

import _ "embed"

// Spec is openapi.json as built into the binary.
//
//go:embed openapi.json
var Spec []byte
