// Package api holds the contract of phonesd: the OpenAPI document that the
// server code is generated from and that the service serves at /openapi.json.
package api

import _ "embed"

// Spec is api/openapi.json as built into the binary.
//
//go:embed openapi.json
var Spec []byte
