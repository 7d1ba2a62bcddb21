package httpapi

import (
	"net/http"
	"strings"
)

// The API's resources, as api/openapi.json names their paths.
const (
	phonesPath = "/accounts/v1/accounts/{accountId}/phones"
	phonePath  = "/accounts/v1/accounts/{accountId}/phones/{phoneId}"
)

// resource is a path of the contract and the operations it answers.
type resource struct {
	path string
	// allow lists its methods for a 405's Allow header.
	allow string
	ops   map[string]*operation
}

// resourceID names the resources; match returns one.
type resourceID int

const (
	phonesResource resourceID = iota
	phoneResource
	resourceCount
)

// endpoint is an operational endpoint: no token, GET and HEAD only.
type endpoint struct {
	name    string // its operation, for metrics
	handler http.Handler
}

// routes is the whole HTTP surface: the operational endpoints, which need
// no token, and the operations of the contract. It returns an error when
// the documents cannot make the /docs page.
func (s *Server) routes() error {
	docs, err := docsPage(s.spec, s.eventSpecJSON)
	if err != nil {
		return err
	}
	s.operational = map[string]endpoint{
		"/healthz":      {"healthz", http.HandlerFunc(s.healthz)},
		"/readyz":       {"readyz", http.HandlerFunc(s.readyz)},
		"/openapi.json": {"openapi", document("application/json", s.spec)},
		"/docs":         {"docs", docs},
	}
	if s.eventSpec != nil {
		s.operational["/asyncapi.yaml"] = endpoint{"asyncapi", document("application/yaml", s.eventSpec)}
		s.operational["/asyncapi.json"] = endpoint{"asyncapi", document("application/json", s.eventSpecJSON)}
	}
	if s.metrics != nil {
		s.operational["/metrics"] = endpoint{"metrics", s.metrics}
	}
	s.resources = [resourceCount]resource{
		phonesResource: {path: phonesPath, allow: "GET,POST", ops: map[string]*operation{
			http.MethodPost: createPhone,
			http.MethodGet:  listPhones,
		}},
		phoneResource: {path: phonePath, allow: "GET,PATCH", ops: map[string]*operation{
			http.MethodGet:   getPhone,
			http.MethodPatch: updatePhone,
		}},
	}
	s.methods = map[string]bool{http.MethodGet: true, http.MethodHead: true}
	for _, res := range s.resources {
		for m := range res.ops {
			s.methods[m] = true
		}
	}
	return nil
}

// methodLabel is the method a request is counted under in the metrics: one
// the API answers, or "other". A client may send any token as its method,
// up to the header limit; counted as sent, each made-up method would be a
// series of its own, kept for the life of the process.
func (s *Server) methodLabel(method string) string {
	if s.methods[method] {
		return method
	}
	return "other"
}

// route answers the operational endpoints, finds the API operation of a
// request or answers 404 or 405: the first of the contract's checks.
func (s *Server) route(x *exchange, r *http.Request) {
	if e, ok := s.operational[r.URL.Path]; ok {
		x.route, x.operation = r.URL.Path, e.name
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			x.Header().Set("Allow", "GET, HEAD")
			writeMessage(x, http.StatusMethodNotAllowed, msgMethodNotAllowed)
			return
		}
		e.handler.ServeHTTP(x, r)
		return
	}
	id, args, ok := match(r.URL.EscapedPath())
	if !ok {
		writeMessage(x, http.StatusNotFound, msgNotFound)
		return
	}
	res := &s.resources[id]
	op, ok := res.ops[r.Method]
	if !ok {
		x.Header().Set("Allow", res.allow)
		writeMessage(x, http.StatusMethodNotAllowed, msgMethodNotAllowed)
		return
	}
	x.route, x.operation = res.path, op.name
	s.serve(x, r, op, args)
}

// match finds the resource of a path as sent, percent-escapes included, so
// that a parameter reaches its check still encoded: an id spelled %31 or
// 1%2F..%2F2 is refused, not decoded into another id. A parameter is never
// empty: /accounts/v1/accounts//phones matches nothing.
func match(path string) (resourceID, pathArgs, bool) {
	var args pathArgs
	rest, ok := strings.CutPrefix(path, "/accounts/v1/accounts/")
	if !ok {
		return 0, args, false
	}
	args.account, rest, ok = strings.Cut(rest, "/")
	if !ok || args.account == "" {
		return 0, args, false
	}
	if rest == "phones" {
		return phonesResource, args, true
	}
	args.phone, ok = strings.CutPrefix(rest, "phones/")
	if !ok || args.phone == "" || strings.Contains(args.phone, "/") {
		return 0, args, false
	}
	return phoneResource, args, true
}

// pathArgs are a path's parameters as sent.
type pathArgs struct {
	account string
	phone   string // "" on the collection
}
