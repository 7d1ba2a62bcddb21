package httpapi

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
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

// redocInit renders the document served at /openapi.json (relative, so the
// page works behind a proxy that adds a path prefix) with every response
// open: the error bodies are part of what an integrator reads.
const redocInit = `Redoc.init("openapi.json", {expandResponses: "all", requiredPropsFirst: true, sortPropsAlphabetically: false}, document.getElementById("redoc"));`

// docsPage returns the handler of /docs, the API reference. The page carries
// Redoc inline, so one request brings all of it and nothing is loaded from
// anywhere but this server: it works without internet access, and the
// Content-Security-Policy allows only these two scripts (by hash) and
// requests to this server.
func docsPage() http.HandlerFunc {
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
`, redocBundle, redocInit)
	body := page.Bytes()
	// Redoc styles its elements with inline style sheets, and runs its search
	// index in a worker made from a blob.
	csp := strings.Join([]string{
		"default-src 'none'",
		"script-src " + scriptHash(redocBundle) + " " + scriptHash(redocInit),
		"style-src 'unsafe-inline'",
		"img-src 'self' data:",
		"connect-src 'self'",
		"worker-src blob:",
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	}, "; ")
	sum := sha256.Sum256(body)
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	}
}

// scriptHash is a Content-Security-Policy source that allows an inline
// script with exactly this text.
func scriptHash(script string) string {
	sum := sha256.Sum256([]byte(script))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}
