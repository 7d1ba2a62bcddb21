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

// newEvent encodes the event with the contract's own types, so that a field
// can only be added to the event by adding it to the types a test checks
// against the event contract, api/asyncapi.yaml.
func newEvent(eventID, typ, method, uri string, p Phone, a Audit, at time.Time) (Event, error) {
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
	env := api.PhoneEvent{
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
	payload, err := json.Marshal(env)
	if err != nil {
		return Event{}, fmt.Errorf("encode %s event: %w", typ, err)
	}
	return Event{ID: eventID, Domain: EventDomain, Type: typ, Payload: payload, CreatedAt: at, TraceParent: a.TraceParent}, nil
}
