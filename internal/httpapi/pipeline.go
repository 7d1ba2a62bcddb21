package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/phonesd/phonesd/internal/auth"
	"github.com/phonesd/phonesd/internal/phone"
)

// operation is one operation of the contract: how its parameters and body
// are read into a request, and what it does with it.
type operation struct {
	// name names it in metrics and traces.
	name string
	// failMsg is the body of the operation's 500, and does what it does
	// in the log line of one.
	failMsg string
	does    string
	// params reads the path arguments, query and headers into in, and
	// sets in.account, which the account rule checks; its error is a
	// *phone.FieldError.
	params func(in *request, r *http.Request, args pathArgs) error
	// body decodes a JSON body into in; nil for operations without one.
	body func(in *request, body []byte) error
	// do calls the service and answers, or returns the error to answer.
	do func(s *Server, w http.ResponseWriter, ctx context.Context, in *request) error
}

// request is an API request once read: the caller and everything the
// operation needs, in the domain's types.
type request struct {
	principal auth.Principal
	cid       string
	account   int64
	phoneID   int64
	customer  *int64
	// traceParent is the W3C trace context the request runs in, for its
	// event; "" when it belongs to no trace.
	traceParent string
	// key is the Idempotency-Key; "" when none was sent. fingerprint
	// digests what makes two creates the same request.
	key         string
	fingerprint []byte
	// ifMatch lists the versions If-Match accepts; nil accepts any.
	ifMatch []int64
	list    listParams
	created phone.Candidate
	patch   phone.ValidPatch
}

// requests keeps requests between uses: the operations take one by pointer
// through their function fields, which puts it on the heap, and it holds
// every operation's fields, some 500 bytes. None keeps it once it has
// answered.
var requests = sync.Pool{New: func() any { return new(request) }}

// audit is what the request's event says of its caller.
func (in *request) audit() phone.Audit {
	p := in.principal
	return phone.Audit{CID: in.cid, Email: p.Email, Roles: p.Roles, Origin: p.Origin, TraceParent: in.traceParent}
}

// serve runs the contract's checks on a routed request, then its
// operation, and answers whatever error either returns.
func (s *Server) serve(x *exchange, r *http.Request, op *operation, args pathArgs) {
	x.failMsg = op.failMsg
	ctx := s.traceContext(x, r, op)
	if err := s.handle(ctx, x, r, op, args); err != nil {
		s.writeError(ctx, x, op, err)
	}
}

// handle runs the contract's checks in their order, each once: draining
// (503), the key set loaded (503), the token (401), the replica's, the
// account's and the tenant's places (503, 429), the account's and the
// tenant's rate (429), path and headers (400), the account rule (403),
// media type, size and arrival of the body (415, 413, 408), the body
// (400); then the operation.
func (s *Server) handle(ctx context.Context, x *exchange, r *http.Request, op *operation, args pathArgs) error {
	if s.draining.Load() {
		return errDraining
	}
	if op.body != nil && s.bodyTimeout > 0 {
		// Counted from the headers' arrival, so that a body trickled in
		// byte by byte cannot hold what the request takes below for longer.
		_ = http.NewResponseController(x).SetReadDeadline(x.start.Add(s.bodyTimeout))
	}
	if !s.verifier.Ready() {
		return errKeysNotLoaded
	}
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	x.tenant = p.Tenant
	if err := s.admit(p); err != nil {
		return err
	}
	defer s.dismiss(p)
	if err := s.allowRate(x, p); err != nil {
		return err
	}
	in := requests.Get().(*request)
	*in = request{principal: p, cid: x.cid, traceParent: s.traceParent(ctx)}
	defer func() {
		*in = request{} // holds nothing of this request while pooled
		requests.Put(in)
	}()
	if err := op.params(in, r, args); err != nil {
		return err
	}
	if !p.MayAccess(in.account) {
		return errForbidden
	}
	if op.body != nil {
		body, err := s.readBody(x, r)
		if err != nil {
			return err
		}
		if err := op.body(in, body); err != nil {
			return err
		}
		if in.key != "" {
			in.fingerprint = fingerprint(r.URL.EscapedPath(), r.Header.Get("X-Customer-Id"), body)
		}
	}
	// An answer not taken by the client within the body's timeout ends the
	// request, so that its places are free within that time too; the
	// alternative, giving them back before a large answer is written,
	// would leave that answer's memory (a page of 500 phones, some 120
	// KiB) outside every bound until the server's write timeout. Only the
	// operation's answers need it: the refusals above are small, written
	// out once handle has returned and given its places back, and for a
	// body not read, only after the server has waited for it.
	x.writeWithin = s.bodyTimeout
	ctx, cancel := context.WithTimeout(ctx, s.storageTimeout)
	defer cancel()
	return op.do(s, x, ctx, in)
}

// traceParent writes the W3C trace context of ctx, "" when it has none.
func (s *Server) traceParent(ctx context.Context) string {
	if s.propagator == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	carrier := propagation.MapCarrier{}
	s.propagator.Inject(ctx, carrier)
	return carrier["traceparent"]
}

// traceContext is the request's context with its W3C trace: the one the
// client sent in traceparent, and with a tracer a server span of the
// operation's under it, ended once the answer is written.
func (s *Server) traceContext(x *exchange, r *http.Request, op *operation) context.Context {
	ctx := r.Context()
	if s.propagator != nil && r.Header.Get("Traceparent") != "" {
		ctx = s.propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	if s.tracer != nil {
		var span trace.Span
		ctx, span = s.tracer.Start(ctx, op.name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("http.route", x.route),
		))
		x.span = span
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		x.traceID = sc.TraceID().String()
	}
	return ctx
}

// authenticate reads the bearer token and verifies it; its error is a
// 401's refusal. The work before a token is known to be good is bounded on
// its own (s.verifying), apart from the authenticated requests' share of
// the replica: junk tokens cannot take the places of good ones. A token
// verified before is looked up first, outside that bound, so that a flood
// of bad tokens filling it cannot slow or shed a good client.
func (s *Server) authenticate(r *http.Request) (auth.Principal, error) {
	vals := r.Header.Values("Authorization")
	switch {
	case len(vals) == 0:
		return auth.Principal{}, errNoToken
	case len(vals) > 1:
		return auth.Principal{}, errTwoAuthorization
	}
	scheme, token, _ := strings.Cut(vals[0], " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return auth.Principal{}, errNotBearer
	}
	if p, ok := s.verifier.Cached(token); ok {
		return p, nil
	}
	if !s.verifying.enter() {
		return auth.Principal{}, errOverloadedAnon
	}
	p, err := s.verifier.Verify(r.Context(), token)
	s.verifying.leave()
	if err != nil {
		return auth.Principal{}, errors.Join(errInvalidToken, err)
	}
	return p, nil
}
