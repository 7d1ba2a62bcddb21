package phone

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/phonesd/phonesd/api"
)

// The audit events' domain and types, as the event contract names them:
// the action plus "-<schema version>", as Pismo names its events.
const (
	EventDomain  = api.EventDomain
	EventCreated = api.EventPhoneCreation
	EventChanged = api.EventPhoneChange
)

// TimestampLayout is the envelope's timestamp format: UTC with milliseconds.
const TimestampLayout = "2006-01-02T15:04:05.000Z"

// Audit is who asked for a change and under which correlation ID; it fills
// the audit fields of the event.
type Audit struct {
	CID    string
	Email  string
	Roles  []string
	Origin string
	// TraceParent is the W3C trace context the change was made in, carried
	// with the event to the brokers that take headers; "" for none.
	TraceParent string
}

// Event is an audit event waiting in, or read from, the outbox.
type Event struct {
	Seq       int64  // outbox order; 0 until stored
	ID        string // event_id, a UUID
	Domain    string
	Type      string
	Payload   []byte // the whole envelope as JSON, exactly as sinks deliver it
	CreatedAt time.Time
	// TraceParent is the W3C trace context of the change that wrote the
	// event (Audit.TraceParent), outside the envelope; "" for none.
	TraceParent string
}

// CreatedEvent returns the Phone created event for a stored phone: its
// timestamp is the phone's creation time, the time of its transaction.
func CreatedEvent(eventID string, p Phone, a Audit) (Event, error) {
	return newEvent(eventID, EventCreated, api.EventCreationMethod, api.EventCreationURI, p, a, p.CreatedAt)
}

// ChangedEvent returns the Phone updated event for a stored change: the full
// state after it, stamped with the phone's update time.
func ChangedEvent(eventID string, p Phone, a Audit) (Event, error) {
	return newEvent(eventID, EventChanged, api.EventChangeMethod, api.EventChangeURI, p, a, p.UpdatedAt)
}

// newEvent encodes the event from the contract's own types, so that a
// field can only be added to the event by adding it to the types a test
// checks against the event contract, api/asyncapi.yaml.
func newEvent(eventID, typ, method, uri string, p Phone, a Audit, at time.Time) (Event, error) {
	env := envelope(eventID, typ, method, uri, p, a, at)
	payload, err := appendEvent(make([]byte, 0, eventSizeHint(&env)), &env)
	if err != nil {
		return Event{}, fmt.Errorf("encode %s event: %w", typ, err)
	}
	return Event{ID: eventID, Domain: EventDomain, Type: typ, Payload: payload, CreatedAt: at, TraceParent: a.TraceParent}, nil
}

// envelope returns the event of a change to p, made by a at at, in the
// event contract's types.
func envelope(eventID, typ, method, uri string, p Phone, a Audit, at time.Time) api.PhoneEvent {
	roles := a.Roles
	if roles == nil {
		roles = []string{}
	}
	obj := api.AuditedPhone{
		ID:          p.ID,
		AccountID:   p.AccountID,
		CustomerID:  p.CustomerID,
		CountryCode: strconv.FormatInt(int64(p.CountryCode), 10),
		Number:      p.Number,
		Type:        api.PhoneType(p.Type),
		Extension:   p.Extension,
		Active:      p.Active,
	}
	if p.AreaCode != nil {
		ac := strconv.FormatInt(int64(*p.AreaCode), 10)
		obj.AreaCode = &ac
	}
	return api.PhoneEvent{
		EventID:       eventID,
		SchemaVersion: api.EventSchemaVersion,
		Domain:        EventDomain,
		EventType:     typ,
		OrgID:         p.Tenant,
		CID:           a.CID,
		Timestamp:     at.UTC().Format(TimestampLayout),
		Data: api.PhoneAudit{
			Method: method,
			URI:    uri,
			Email:  a.Email,
			Roles:  roles,
			Origin: a.Origin,
			Object: obj,
		},
	}
}

// appendEvent appends env as encoding/json encodes it, byte for byte
// (TestAppendEventMatchesEncodingJSON): the members in the types' order,
// strings escaped as json.Marshal escapes them (HTML characters, U+2028
// and U+2029 included, invalid UTF-8 as U+FFFD). Written out rather than
// reflected, since encoding every event through reflection was a
// noticeable share of phonesd's CPU under a load of creates. It fails only
// where encoding/json would: the phone type's own encoder failing.
func appendEvent(b []byte, env *api.PhoneEvent) ([]byte, error) {
	return appendEventMarking(b, env, nil)
}

// holes are where, in an encoded event, the text of its timestamp and the
// digits of its phone's id lie: b[timeAt:timeEnd] and b[idAt:idEnd].
type holes struct {
	timeAt, timeEnd, idAt, idEnd int
}

// appendEventMarking is appendEvent, also recording in h, when not nil,
// where the timestamp and the phone's id went.
func appendEventMarking(b []byte, env *api.PhoneEvent, h *holes) ([]byte, error) {
	var mark holes
	b = append(b, `{"event_id":`...)
	b = appendString(b, env.EventID)
	b = append(b, `,"schema_version":`...)
	b = strconv.AppendInt(b, int64(env.SchemaVersion), 10)
	b = append(b, `,"domain":`...)
	b = appendString(b, env.Domain)
	b = append(b, `,"event_type":`...)
	b = appendString(b, env.EventType)
	b = append(b, `,"org_id":`...)
	b = appendString(b, env.OrgID)
	b = append(b, `,"cid":`...)
	b = appendString(b, env.CID)
	b = append(b, `,"timestamp":`...)
	mark.timeAt = len(b) + len(`"`)
	b = appendString(b, env.Timestamp)
	mark.timeEnd = len(b) - len(`"`)
	d := &env.Data
	b = append(b, `,"data":{"method":`...)
	b = appendString(b, d.Method)
	b = append(b, `,"uri":`...)
	b = appendString(b, d.URI)
	b = append(b, `,"email":`...)
	b = appendString(b, d.Email)
	b = append(b, `,"roles":`...)
	if d.Roles == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, r := range d.Roles {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, r)
		}
		b = append(b, ']')
	}
	b = append(b, `,"origin":`...)
	b = appendString(b, d.Origin)
	o := &d.Object
	b = append(b, `,"object":{"id":`...)
	mark.idAt = len(b)
	b = strconv.AppendInt(b, o.ID, 10)
	mark.idEnd = len(b)
	b = append(b, `,"account_id":`...)
	b = strconv.AppendInt(b, o.AccountID, 10)
	b = append(b, `,"customer_id":`...)
	if o.CustomerID == nil {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendInt(b, *o.CustomerID, 10)
	}
	b = append(b, `,"area_code":`...)
	b = appendOptionalString(b, o.AreaCode)
	b = append(b, `,"country_code":`...)
	b = appendString(b, o.CountryCode)
	b = append(b, `,"number":`...)
	b = appendString(b, o.Number)
	b = append(b, `,"type":`...)
	if isPlain(string(o.Type)) {
		b = appendString(b, string(o.Type))
	} else {
		// The generated type has an encoder of its own, which
		// encoding/json calls, and which escapes otherwise.
		enc, err := json.Marshal(o.Type)
		if err != nil {
			return nil, err
		}
		b = append(b, enc...)
	}
	b = append(b, `,"extension":`...)
	b = appendOptionalString(b, o.Extension)
	b = append(b, `,"active":`...)
	b = strconv.AppendBool(b, o.Active)
	if h != nil {
		*h = mark
	}
	return append(b, "}}}"...), nil
}

// eventSizeHint is about the length of env's encoding when nothing in it
// needs escaping: the members' names and punctuation, and the values.
func eventSizeHint(env *api.PhoneEvent) int {
	n := 400 + len(env.EventID) + len(env.OrgID) + len(env.CID) + len(env.Data.Email) + len(env.Data.Origin) + len(env.Data.Object.Number)
	for _, r := range env.Data.Roles {
		n += len(r) + 3
	}
	return n
}

func appendOptionalString(b []byte, s *string) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	return appendString(b, *s)
}

// appendString appends s as a JSON string. Text of printable ASCII other
// than what encoding/json escapes (the quote, the backslash and <, >, &),
// which is nearly every value, is copied between quotes; anything else is
// left to encoding/json itself, so that its escaping rules are not copied.
func appendString(b []byte, s string) []byte {
	if !isPlain(s) {
		// Marshal cannot fail on a string.
		enc, _ := json.Marshal(s)
		return append(b, enc...)
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// isPlain reports whether s is printable ASCII that encoding/json writes
// as it is between quotes.
func isPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}
