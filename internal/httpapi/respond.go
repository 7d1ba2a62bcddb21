package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/go-faster/jx"

	"github.com/phonesd/phonesd/api"
	"github.com/phonesd/phonesd/internal/auth"
	"github.com/phonesd/phonesd/internal/phone"
)

// How a request ends when it does not get its operation's answer: the
// steps of the pipeline and the operations return errors, and writeError
// alone turns them into answers, from the two tables below. A 500 never
// carries anything but its operation's message.

// outcomes maps each error of the domain to its answer, in the order
// errors.Is tries them.
var outcomes = [...]struct {
	err     error
	status  int
	message string
}{
	{phone.ErrDuplicate, http.StatusConflict, "Phone number already exists"},
	{phone.ErrKeyInProgress, http.StatusConflict, "A request with this Idempotency-Key is still in progress: retry later"},
	{phone.ErrKeyMismatch, http.StatusUnprocessableEntity, "Idempotency-Key was already used with another request"},
	{phone.ErrNotFound, http.StatusNotFound, "Phone not found"},
	{phone.ErrPrecondition, http.StatusPreconditionFailed, "Phone was changed since it was read: If-Match does not match its ETag"},
}

// Message returns the message phonesd answers err with, err being one of
// the domain's errors above (phone.ErrDuplicate, ...) or wrapping one, and
// "" for any other: what tells apart two answers of one status, such as a
// duplicate's 409 and that of a retry whose key is still in use.
func Message(err error) string {
	for _, o := range outcomes {
		if errors.Is(err, o.err) {
			return o.message
		}
	}
	return ""
}

// refusal is a request the pipeline turns away before its operation runs:
// for the replica's sake, for its credentials, or for how its body came.
type refusal struct {
	status  int
	message string
	// reason counts it: under Observer.TokenRejected for a 401, under
	// Observer.Refused otherwise; "" counts nothing.
	reason string
	// header is set on the answer besides what its status implies
	// (WWW-Authenticate on a 401, Retry-After on a 429 or a 503).
	header [2]string
}

func (r *refusal) Error() string { return r.message }

// The refusals, each with its status and message.
var (
	errDraining         = &refusal{http.StatusServiceUnavailable, "Service is shutting down", "draining", closeConnection}
	errKeysNotLoaded    = &refusal{http.StatusServiceUnavailable, "Token signing keys are not loaded yet, retry later", "keys_not_loaded", noHeader}
	errOverloaded       = &refusal{http.StatusServiceUnavailable, "Service overloaded, retry later", "overloaded", noHeader}
	errOverloadedAnon   = &refusal{http.StatusServiceUnavailable, errOverloaded.message, "overloaded_unauthenticated", noHeader}
	errTenantBusy       = &refusal{http.StatusTooManyRequests, "Too many requests in progress for this tenant, retry later", "tenant_busy", noHeader}
	errAccountBusy      = &refusal{http.StatusTooManyRequests, "Too many requests in progress for this account, retry later", "tenant_busy", noHeader}
	errRateLimited      = &refusal{http.StatusTooManyRequests, "Too many requests for this tenant, retry later", "rate_limited", noHeader}
	errAccountLimited   = &refusal{http.StatusTooManyRequests, "Too many requests for this account, retry later", "rate_limited", noHeader}
	errNoToken          = &refusal{http.StatusUnauthorized, "Missing bearer token", "missing", noHeader}
	errTwoAuthorization = &refusal{http.StatusUnauthorized, "Send exactly one Authorization header", "not_bearer", noHeader}
	errNotBearer        = &refusal{http.StatusUnauthorized, "Authorization must be a Bearer token", "not_bearer", noHeader}
	// errInvalidToken is joined to the verifier's error, whose
	// *auth.Error, when it is one, gives the message and the reason.
	errInvalidToken = &refusal{http.StatusUnauthorized, "Invalid bearer token", "invalid", [2]string{"WWW-Authenticate", `Bearer realm="phonesd", error="invalid_token"`}}
	errForbidden    = &refusal{http.StatusForbidden, "Token may not access this account", "", noHeader}
	errMediaType    = &refusal{http.StatusUnsupportedMediaType, "Unsupported Content-Type: send application/json", "", noHeader}
	errTooLarge     = &refusal{http.StatusRequestEntityTooLarge, "Request body too large: the limit is " + strconv.Itoa(maxBody) + " bytes", "", noHeader}
	// The connection cannot carry another request after a body cut
	// short: it is closed, and with it everything the request held.
	errBodyTimeout = &refusal{http.StatusRequestTimeout, "Request body not received in time", "body_timeout", closeConnection}
)

var (
	noHeader        [2]string
	closeConnection = [2]string{"Connection", "close"}
)

// retryLater is a refusal whose Retry-After is wait, not one second.
type retryLater struct {
	*refusal
	wait time.Duration
}

func (r retryLater) Unwrap() error { return r.refusal }

// Messages of the router's answers, and of a 500 outside the operations.
const (
	msgInternal         = "Internal server error"
	msgNotFound         = "Not found"
	msgMethodNotAllowed = "Method not allowed"
)

// writeError answers err: a *phone.FieldError is a 400 naming its field,
// a refusal or an outcome its own answer, and anything else a defect,
// logged here and answered as the operation's 500.
func (s *Server) writeError(ctx context.Context, x *exchange, op *operation, err error) {
	if fe, ok := errors.AsType[*phone.FieldError](err); ok {
		writeJSON(x, http.StatusBadRequest, &api.BadRequestError{Message: fe.Message, Field: api.BadRequestErrorField(fe.Field)})
		return
	}
	if rf, ok := errors.AsType[*refusal](err); ok {
		s.writeRefusal(x, rf, err)
		return
	}
	for _, o := range outcomes {
		if errors.Is(err, o.err) {
			writeMessage(x, o.status, o.message)
			return
		}
	}
	s.log.ErrorContext(ctx, op.does+" failed", "err", err, "cid", x.cid)
	writeInternal(x)
}

// writeRefusal answers rf, err being the error it was found in, and counts it.
func (s *Server) writeRefusal(x *exchange, rf *refusal, err error) {
	msg, reason := rf.message, rf.reason
	var ae *auth.Error
	if rf == errInvalidToken && errors.As(err, &ae) {
		msg, reason = ae.Message, ae.Reason
	}
	h := x.Header()
	switch rf.status {
	case http.StatusUnauthorized:
		s.observer.TokenRejected(reason)
		h.Set("WWW-Authenticate", `Bearer realm="phonesd"`)
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		wait := 1
		var rl retryLater
		if errors.As(err, &rl) {
			wait = retryAfter(rl.wait)
		}
		h.Set("Retry-After", strconv.Itoa(wait))
	}
	if reason != "" && rf.status != http.StatusUnauthorized {
		s.observer.Refused(reason)
	}
	if rf.header[0] != "" {
		h.Set(rf.header[0], rf.header[1])
	}
	writeMessage(x, rf.status, msg)
}

// writeInternal answers a defect with the 500 of the request's operation.
func writeInternal(x *exchange) {
	writeMessage(x, http.StatusInternalServerError, x.failMsg)
}

// writeOK answers v, a body of the contract's, with 200.
func writeOK(w http.ResponseWriter, v interface{ Encode(*jx.Encoder) }) {
	writeJSON(w, http.StatusOK, v)
}

// writeJSON writes a body encoded by a generated type, so that every body
// has exactly the contract's shape.
func writeJSON(w http.ResponseWriter, status int, v interface{ Encode(*jx.Encoder) }) {
	e := jx.GetEncoder()
	defer jx.PutEncoder(e)
	v.Encode(e)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(e.Bytes())))
	w.WriteHeader(status)
	_, _ = w.Write(e.Bytes())
}

func writeMessage(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, &api.SimpleError{Message: msg})
}
