package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/go-faster/jx"
	"github.com/ogen-go/ogen/ogenerrors"
	"github.com/ogen-go/ogen/validate"

	"phonesd/internal/httpapi/oas"
	"phonesd/internal/phone"
)

// Client-facing messages. A 500 never carries anything but its operation's message.
const (
	msgCreateFailed     = "Error creating phone number"
	msgListFailed       = "Error listing phones"
	msgReadFailed       = "Error reading phone"
	msgUpdateFailed     = "Error updating phone"
	msgInternal         = "Internal server error"
	msgDuplicate        = "Phone number already exists"
	msgKeyInProgress    = "A request with this Idempotency-Key is still in progress: retry later"
	msgKeyMismatch      = "Idempotency-Key was already used with another request"
	msgPhoneNotFound    = "Phone not found"
	msgPrecondition     = "Phone was changed since it was read: If-Match does not match its ETag"
	msgNotFound         = "Not found"
	msgMethodNotAllowed = "Method not allowed"
	msgTooLarge         = "Request body too large: the limit is 65536 bytes"
	msgMediaType        = "Unsupported Content-Type: send application/json"
	msgDraining         = "Service is shutting down"
	msgForbidden        = "Token may not access this account"
	msgUnauthorized     = "Missing bearer token"
	msgRateLimited      = "Too many requests for this tenant, retry later"
	msgOverloaded       = "Service overloaded, retry later"
)

// maxBody is the largest request body accepted.
const maxBody = 64 << 10

// writeJSON writes a body encoded by a generated type, so that every error
// body has exactly the contract's shape.
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
	writeJSON(w, status, &oas.SimpleError{Message: msg})
}

func writeFieldError(w http.ResponseWriter, fe *phone.FieldError) {
	writeJSON(w, http.StatusBadRequest, &oas.BadRequestError{Message: fe.Message, Field: fe.Field})
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

// ogenErrorHandler answers the faults ogen's generated server detects itself.
// The gate has run the contract's checks before ogen sees a request, so these
// are a safety net; they still answer with the contract's bodies, never
// ogen's defaults, and never with internal text.
func ogenErrorHandler(log *slog.Logger) oas.ErrorHandler {
	return func(ctx context.Context, w http.ResponseWriter, r *http.Request, err error) {
		var (
			secErr   *ogenerrors.SecurityError
			paramErr *ogenerrors.DecodeParamsError
			bodyErr  *ogenerrors.DecodeRequestError
			ctErr    *validate.InvalidContentTypeError
			maxErr   *http.MaxBytesError
		)
		switch {
		case errors.As(err, &secErr):
			writeUnauthorized(w, msgUnauthorized)
		case errors.As(err, &paramErr):
			var pe *ogenerrors.DecodeParamError
			field := "parameters"
			if errors.As(err, &pe) {
				field = pe.Name
			}
			writeFieldError(w, &phone.FieldError{Field: field, Message: field + " is invalid"})
		case errors.As(err, &maxErr):
			writeMessage(w, http.StatusRequestEntityTooLarge, msgTooLarge)
		case errors.As(err, &ctErr):
			writeMessage(w, http.StatusUnsupportedMediaType, msgMediaType)
		case errors.As(err, &bodyErr):
			writeFieldError(w, &phone.FieldError{Field: "body", Message: "request body does not match the schema"})
		default:
			log.ErrorContext(ctx, "unhandled api error", "err", err)
			writeMessage(w, http.StatusInternalServerError, routeOf(ctx).failMsg)
		}
	}
}
