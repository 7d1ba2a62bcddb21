package api

// The event contract's constants: the domain of phonesd's events and the
// event_type of each, which also ends its JetStream subject,
// <prefix>.<domain>.<event_type>.
const (
	EventDomain         = "audit"
	EventPhoneCreation  = "phone_creation-1"
	EventPhoneChange    = "phone_change-1"
	EventSchemaVersion  = 1
	EventCreationMethod = "POST"
	EventChangeMethod   = "PATCH"
	EventCreationURI    = "/v1/accounts/:accountId/phones"
	EventChangeURI      = "/v1/accounts/:accountId/phones/:phoneId"
)

// PhoneEvent is an audit event as phonesd writes it: the payload of the
// messages PhoneCreationEvent (EventType EventPhoneCreation) and
// PhoneChangeEvent (EventPhoneChange) of asyncapi.yaml, which share every
// field. It decodes with encoding/json; a test checks its fields against
// the document's schemas, and phonesd encodes every event with it.
type PhoneEvent struct {
	// EventID is unique to the event and the same on every delivery of
	// it: the key to deduplicate on.
	EventID       string `json:"event_id"`
	SchemaVersion int    `json:"schema_version"`
	Domain        string `json:"domain"`
	EventType     string `json:"event_type"`
	// OrgID is the tenant the phone belongs to.
	OrgID string `json:"org_id"`
	// CID is the correlation ID of the request that made the change.
	CID string `json:"cid"`
	// Timestamp is the time of the change, UTC with milliseconds
	// (2026-11-26T23:01:08.123Z); time.Parse(time.RFC3339, ...) reads it.
	Timestamp string     `json:"timestamp"`
	Data      PhoneAudit `json:"data"`
}

// PhoneAudit is who changed which phone, through which operation: Pismo's
// phone_creation and phone_change records.
type PhoneAudit struct {
	Method string `json:"method"`
	// URI is the operation's path template, not the path called.
	URI    string       `json:"uri"`
	Email  string       `json:"email"`
	Roles  []string     `json:"roles"`
	Origin string       `json:"origin"`
	Object AuditedPhone `json:"object"`
}

// AuditedPhone is the phone after the change, every field present: nil
// pointers are JSON nulls.
type AuditedPhone struct {
	// ID is the phone's id, phonesd's addition to Pismo's schema.
	ID          int64     `json:"id"`
	AccountID   int64     `json:"account_id"`
	CustomerID  *int64    `json:"customer_id"`
	AreaCode    *string   `json:"area_code"`
	CountryCode string    `json:"country_code"`
	Number      string    `json:"number"`
	Type        PhoneType `json:"type"`
	Extension   *string   `json:"extension"`
	Active      bool      `json:"active"`
}
