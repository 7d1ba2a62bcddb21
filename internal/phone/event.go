package phone

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Event type names, as Pismo names its audit events: the action plus "-<schema version>".
const (
	EventDomain  = "audit"
	EventCreated = "phone_creation-1"
	EventChanged = "phone_change-1"
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

type envelope struct {
	EventID       string    `json:"event_id"`
	SchemaVersion int       `json:"schema_version"`
	Domain        string    `json:"domain"`
	EventType     string    `json:"event_type"`
	OrgID         string    `json:"org_id"`
	CID           string    `json:"cid"`
	Timestamp     string    `json:"timestamp"`
	Data          auditData `json:"data"`
}

type auditData struct {
	Method string      `json:"method"`
	URI    string      `json:"uri"`
	Email  string      `json:"email"`
	Roles  []string    `json:"roles"`
	Origin string      `json:"origin"`
	Object auditObject `json:"object"`
}

// auditObject is the phone as Pismo's audit schemas carry it: area and
// country codes as strings. ID is our extension so consumers can tell phones apart.
type auditObject struct {
	ID          int64   `json:"id"`
	AccountID   int64   `json:"account_id"`
	CustomerID  *int64  `json:"customer_id"`
	AreaCode    *string `json:"area_code"`
	CountryCode *string `json:"country_code"`
	Number      string  `json:"number"`
	Type        Type    `json:"type"`
	Extension   *string `json:"extension"`
	Active      bool    `json:"active"`
}

// CreatedEvent returns the Phone created event for a stored phone: its
// timestamp is the phone's creation time, the time of its transaction.
func CreatedEvent(eventID string, p Phone, a Audit) (Event, error) {
	return newEvent(eventID, EventCreated, "POST", "/v1/accounts/:accountId/phones", p, a, p.CreatedAt)
}

// ChangedEvent returns the Phone updated event for a stored change: the full
// state after it, stamped with the phone's update time.
func ChangedEvent(eventID string, p Phone, a Audit) (Event, error) {
	return newEvent(eventID, EventChanged, "PATCH", "/v1/accounts/:accountId/phones/:phoneId", p, a, p.UpdatedAt)
}

func newEvent(eventID, typ, method, uri string, p Phone, a Audit, at time.Time) (Event, error) {
	roles := a.Roles
	if roles == nil {
		roles = []string{}
	}
	cc := strconv.FormatInt(int64(p.CountryCode), 10)
	obj := auditObject{
		ID:          p.ID,
		AccountID:   p.AccountID,
		CustomerID:  p.CustomerID,
		CountryCode: &cc,
		Number:      p.Number,
		Type:        p.Type,
		Extension:   p.Extension,
		Active:      p.Active,
	}
	if p.AreaCode != nil {
		ac := strconv.FormatInt(int64(*p.AreaCode), 10)
		obj.AreaCode = &ac
	}
	env := envelope{
		EventID:       eventID,
		SchemaVersion: 1,
		Domain:        EventDomain,
		EventType:     typ,
		OrgID:         p.Tenant,
		CID:           a.CID,
		Timestamp:     at.UTC().Format(TimestampLayout),
		Data: auditData{
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
