package httpapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/go-faster/jx"

	"github.com/phonesd/phonesd/api"
	"github.com/phonesd/phonesd/internal/phone"
)

// Client-facing messages, each written here once. A 500 never carries
// anything but its operation's message; the messages of 400s are the
// domain's and the parameters' own (*phone.FieldError).
const (
	msgCreateFailed      = "Error creating phone number"
	msgListFailed        = "Error listing phones"
	msgReadFailed        = "Error reading phone"
	msgUpdateFailed      = "Error updating phone"
	msgInternal          = "Internal server error"
	msgDuplicate         = "Phone number already exists"
	msgKeyInProgress     = "A request with this Idempotency-Key is still in progress: retry later"
	msgKeyMismatch       = "Idempotency-Key was already used with another request"
	msgPhoneNotFound     = "Phone not found"
	msgPrecondition      = "Phone was changed since it was read: If-Match does not match its ETag"
	msgNotFound          = "Not found"
	msgMethodNotAllowed  = "Method not allowed"
	msgTooLarge          = "Request body too large: the limit is 65536 bytes"
	msgMediaType         = "Unsupported Content-Type: send application/json"
	msgBodyTimeout       = "Request body not received in time"
	msgDraining          = "Service is shutting down"
	msgForbidden         = "Token may not access this account"
	msgUnauthorized      = "Missing bearer token"
	msgTwoAuthorizations = "Send exactly one Authorization header"
	msgNotBearer         = "Authorization must be a Bearer token"
	msgInvalidToken      = "Invalid bearer token"
	msgKeysNotLoaded     = "Token signing keys are not loaded yet, retry later"
	msgRateLimited       = "Too many requests for this tenant, retry later"
	msgTenantBusy        = "Too many requests in progress for this tenant, retry later"
	msgAccountLimited    = "Too many requests for this account, retry later"
	msgAccountBusy       = "Too many requests in progress for this account, retry later"
	msgOverloaded        = "Service overloaded, retry later"
)

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

func writeFieldError(w http.ResponseWriter, fe *phone.FieldError) {
	writeJSON(w, http.StatusBadRequest, &api.BadRequestError{Message: fe.Message, Field: api.BadRequestErrorField(fe.Field)})
}

// refuse answers a parameter or body the contract forbids: a
// *phone.FieldError is a 400 naming its field. Reading a request fails in
// no other way; anything else is a defect, answered as the operation's 500.
func (s *Server) refuse(x *exchange, err error) {
	var fe *phone.FieldError
	if errors.As(err, &fe) {
		writeFieldError(x, fe)
		return
	}
	s.log.Error("reading the request failed", "err", err, "cid", x.cid)
	writeMessage(x, http.StatusInternalServerError, x.failMsg)
}

func writeUnauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="phonesd"`)
	writeMessage(w, http.StatusUnauthorized, msg)
}

func writeDraining(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	w.Header().Set("Connection", "close")
	writeMessage(w, http.StatusServiceUnavailable, msgDraining)
}

func writeOverloaded(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	writeMessage(w, http.StatusServiceUnavailable, msgOverloaded)
}
