package httpapi

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// redocBundle is Redoc's standalone bundle, as scripts/refresh-redoc took it
// from the npm registry (redoc/README.md says which release).
//
//go:embed redoc/redoc.standalone.js
var redocBundle string

// redocOptions render every response open (the error bodies are part of
// what an integrator reads) and every schema unfolded, the events'
// envelopes included. The download button offers the contract as served,
// relative to the page so that it works behind a proxy that adds a path
// prefix, not the document the page renders.
const redocOptions = `{expandResponses: "all", requiredPropsFirst: true, sortPropsAlphabetically: false, schemaExpansionLevel: "all", downloadDefinitionUrl: "openapi.json", downloadFileName: "openapi.json"}`

// docsPage returns the handler of /docs, the API reference: Redoc
// rendering the contract, spec, with the events of the event contract
// (asyncapi.json, events; nil for none) as a section of its own. The page
// carries Redoc and the document inline, so one request brings all of it
// and nothing is loaded from anywhere but this server: it works without
// internet access, and the Content-Security-Policy allows only these two
// scripts (by hash) and requests to this server.
//
// The events are shown by Redoc, from the same document the server serves
// at /asyncapi.json, rather than by AsyncAPI's own renderer: its
// standalone bundle (@asyncapi/react-component 3.2.1) weighs 3.0 MB, three
// times Redoc, and compiles JSON Schema validators with eval as it loads,
// even without its parser, which this page's policy forbids.
func docsPage(spec, events []byte) (http.HandlerFunc, error) {
	doc, err := docsDocument(spec, events)
	if err != nil {
		return nil, fmt.Errorf("docs page: %w", err)
	}
	// The document is JSON, a JavaScript expression; escaped for HTML, it
	// holds no "</script" to end the script early.
	var init bytes.Buffer
	init.WriteString("Redoc.init(")
	json.HTMLEscape(&init, doc)
	fmt.Fprintf(&init, `, %s, document.getElementById("redoc"));`, redocOptions)

	var page bytes.Buffer
	fmt.Fprintf(&page, `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>phonesd API reference</title>
<style>body { margin: 0; }</style>
</head>
<body>
<div id="redoc"></div>
<script>%s</script>
<script>%s</script>
</body>
</html>
`, redocBundle, init.String())
	body := page.Bytes()
	// Redoc styles its elements with inline style sheets, and runs its search
	// index in a worker made from a blob.
	csp := strings.Join([]string{
		"default-src 'none'",
		"script-src " + scriptHash(redocBundle) + " " + scriptHash(init.String()),
		"style-src 'unsafe-inline'",
		"img-src 'self' data:",
		"connect-src 'self'",
		"worker-src blob:",
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	}, "; ")
	etag := contentTag(body)
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	}, nil
}

// document returns the handler of a document built into the binary, such
// as the contract at /openapi.json, with an ETag so that a tool reading
// it again gets a 304.
func document(contentType string, body []byte) http.HandlerFunc {
	etag := contentTag(body)
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	}
}

// contentTag is a strong ETag of body.
func contentTag(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
}

// scriptHash is a Content-Security-Policy source that allows an inline
// script with exactly this text.
func scriptHash(script string) string {
	sum := sha256.Sum256([]byte(script))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}
