package httpapi

// The oas package is generated from the contract; never edit it by hand.
// Regenerate with: go generate ./internal/httpapi
//go:generate go tool ogen --config ogen.yml --target oas --package oas --clean ../../api/openapi.json
