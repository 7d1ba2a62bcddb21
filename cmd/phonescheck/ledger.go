package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/phonesd/phonesd/api"
	"github.com/phonesd/phonesd/internal/phone"
)

// class is what the client learned from an answer.
type class string

const (
	// classOK is a 200: the service acknowledged the request.
	classOK class = "ok"
	// classFailed is a 4xx: the service refused the request, definitely.
	classFailed class = "failed"
	// classUnknown is a transport error, a timeout or a 5xx: the request
	// may or may not have taken effect.
	classUnknown class = "unknown"
)

// classify names what an answer (or its absence) tells the client.
func classify(status int, err error) class {
	switch {
	case err != nil, status >= 500, status == 0:
		return classUnknown
	case status == 200:
		return classOK
	default:
		return classFailed
	}
}

// intent is what a create was sent to provoke, and so which answers are
// legitimate for it.
type intent string

const (
	// intentCreate is a valid create of a number no other request sends.
	intentCreate intent = "create"
	// intentDuplicate sends the body of a phone acknowledged earlier in the
	// same account, with a new key: a 409 while that phone stays active
	// with the same duplicate key, a new phone otherwise.
	intentDuplicate intent = "duplicate"
	// intentInvalid sends a body that breaks the contract: a 400.
	intentInvalid intent = "invalid"
	// intentForbidden sends an account-specific token on another account: a 403.
	intentForbidden intent = "forbidden"
)

// allowed lists the definite answers each intent may get; 429 (rate
// limited) is always allowed, since it refuses before anything is done.
var allowed = map[intent][]int{
	intentCreate:    {200, 429},
	intentDuplicate: {200, 409, 429},
	intentInvalid:   {400, 429},
	intentForbidden: {403, 429},
}

// allowedUpdate lists the definite answers an update may get: 409 when a
// reactivation meets an active duplicate.
var allowedUpdate = []int{200, 409, 429}

// draft is a Create phone body.
type draft struct {
	Number      string  `json:"number"`
	Type        string  `json:"type"`
	Active      *bool   `json:"active,omitempty"`
	AreaCode    *int    `json:"area_code,omitempty"`
	CountryCode *int    `json:"country_code,omitempty"`
	Extension   *string `json:"extension,omitempty"`
}

// request is the draft as the public client sends it. It copies each
// field as it is, "FAX" included: an invalid draft is sent as written.
func (d draft) request() *api.PhoneRequest {
	r := &api.PhoneRequest{Number: api.PhoneNumber(d.Number), Type: api.PhoneType(d.Type)}
	if d.Active != nil {
		r.Active = api.NewOptPhoneActive(api.PhoneActive(*d.Active))
	}
	if d.AreaCode != nil {
		r.AreaCode = api.NewOptAreaCode2(api.AreaCode2(*d.AreaCode))
	}
	if d.CountryCode != nil {
		r.CountryCode = api.NewOptPhoneCountryCode2(api.PhoneCountryCode2(*d.CountryCode))
	}
	if d.Extension != nil {
		r.Extension = api.NewOptPhoneExtension(api.PhoneExtension(*d.Extension))
	}
	return r
}

// attempt is one exchange: the answer's status (0 without one), the
// transport error, the class, and the id a 200 carried.
type attempt struct {
	Status int    `json:"status"`
	Err    string `json:"error,omitempty"`
	Class  class  `json:"class"`
	ID     int64  `json:"id,omitempty"`
	// Message is the error body's message, to tell a duplicate's 409 from
	// an Idempotency-Key's.
	Message string `json:"message,omitempty"`
	// Contract is why the public client refused an answer that came
	// whole: a status or a body its operation does not document.
	Contract string `json:"contract,omitempty"`
	// Tries counts the sends of a retry: a 429, a 503 or a refused
	// connection after recovery is sent again, up to a few times.
	Tries int `json:"tries,omitempty"`
	// At is when a retry's last send began.
	At time.Time `json:"at,omitzero"`
}

// createEntry is one Create phone request and what became of it.
type createEntry struct {
	Seq          int64  `json:"seq"`
	Tenant       string `json:"tenant"`
	Account      int64  `json:"account"`
	TokenAccount int64  `json:"token_account,omitempty"` // 0: a tenant-wide token
	CustomerID   *int64 `json:"customer_id,omitempty"`
	Draft        draft  `json:"draft"`
	Body         string `json:"body"` // exactly as sent
	Key          string `json:"key"`
	// NoKey marks a create sent without Idempotency-Key, as most clients
	// send them: an unknown outcome cannot be retried safely, so the
	// database resolves it (its number is sent by no other request).
	NoKey   bool      `json:"no_key,omitempty"`
	Intent  intent    `json:"intent"`
	Replica int       `json:"replica"`
	Start   time.Time `json:"start"`
	// Wrote is when the request was fully written, zero if it never was.
	Wrote time.Time `json:"wrote"`
	End   time.Time `json:"end"`
	attempt
	// Retry is the retry with the same key of an unknown, after recovery.
	Retry *attempt `json:"retry,omitempty"`
	// FoundID is the phone the database holds for an unknown sent without
	// a key, 0 when it holds none.
	FoundID int64 `json:"found_id,omitempty"`
}

// createdID returns the id of the phone the request created, and whether
// it created one: a 200, an unknown whose retry got a 200, or an unknown
// without a key whose phone the database holds.
func (e *createEntry) createdID() (int64, bool) {
	switch {
	case e.Class == classOK:
		return e.ID, true
	case e.Class == classUnknown && e.Retry != nil && e.Retry.Class == classOK:
		return e.Retry.ID, true
	case e.Class == classUnknown && e.FoundID != 0:
		return e.FoundID, true
	}
	return 0, false
}

// state is the phone the request asks for, with the defaults applied.
func (e *createEntry) state(id int64) phoneState {
	d := e.Draft
	s := phoneState{
		ID:          id,
		Tenant:      e.Tenant,
		AccountID:   e.Account,
		CustomerID:  e.CustomerID,
		Number:      d.Number,
		Type:        d.Type,
		Active:      true,
		CountryCode: strconv.Itoa(phone.DefaultCountryCode),
		Extension:   d.Extension,
	}
	if d.Active != nil {
		s.Active = *d.Active
	}
	if d.AreaCode != nil {
		a := strconv.Itoa(*d.AreaCode)
		s.AreaCode = &a
	}
	if d.CountryCode != nil {
		s.CountryCode = strconv.Itoa(*d.CountryCode)
	}
	return s
}

// patch is an Update phone body: always a new extension, unique in the
// run, so that each state of a phone, and each event, can be told apart.
type patch struct {
	Extension string `json:"extension"`
	Active    *bool  `json:"active,omitempty"`
}

// request is the patch as the public client sends it.
func (p patch) request() *api.PhoneUpdateRequest {
	r := &api.PhoneUpdateRequest{Extension: api.NewOptNilString(p.Extension)}
	if p.Active != nil {
		r.Active = api.NewOptPhoneActive(api.PhoneActive(*p.Active))
	}
	return r
}

// apply returns s changed by p.
func (p patch) apply(s phoneState) phoneState {
	ext := p.Extension
	s.Extension = &ext
	if p.Active != nil {
		s.Active = *p.Active
	}
	return s
}

// updateEntry is one Update phone request and what became of it.
type updateEntry struct {
	Seq     int64     `json:"seq"`
	PhoneID int64     `json:"phone_id"`
	Tenant  string    `json:"tenant"`
	Account int64     `json:"account"`
	IfMatch int64     `json:"if_match"` // the version the update was made on
	Patch   patch     `json:"patch"`
	Replica int       `json:"replica"`
	Start   time.Time `json:"start"`
	Wrote   time.Time `json:"wrote"`
	End     time.Time `json:"end"`
	attempt
	NewVersion int64 `json:"new_version,omitempty"`
	// Retry is the same PATCH with the same If-Match, sent after recovery
	// for an unknown: a 200 applies it now, a 412 says it was applied.
	Retry *attempt `json:"retry,omitempty"`
}

// applied reports whether the update took effect, and whether that is known.
func (u *updateEntry) applied() (applied, known bool) {
	switch u.Class {
	case classOK:
		return true, true
	case classFailed:
		return false, true
	}
	if u.Retry == nil {
		return false, false
	}
	switch {
	case u.Retry.Class == classOK, u.Retry.Status == 412:
		return true, true
	case u.Retry.Class == classFailed:
		return false, true
	}
	return false, false
}

// ledger records every request of a scenario and its outcome.
type ledger struct {
	mu      sync.Mutex
	seq     int64
	creates []*createEntry
	updates []*updateEntry
}

func (l *ledger) nextSeq() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	return l.seq
}

func (l *ledger) addCreate(e *createEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.creates = append(l.creates, e)
}

func (l *ledger) addUpdate(u *updateEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.updates = append(l.updates, u)
}

// snapshot returns the entries recorded so far, in sequence order. The
// entries are shared: call it once the load has stopped.
func (l *ledger) snapshot() ([]*createEntry, []*updateEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cs, us := slices.Clone(l.creates), slices.Clone(l.updates)
	slices.SortFunc(cs, func(a, b *createEntry) int { return cmp.Compare(a.Seq, b.Seq) })
	slices.SortFunc(us, func(a, b *updateEntry) int { return cmp.Compare(a.Seq, b.Seq) })
	return cs, us
}

// phoneState is a phone as the checker compares it: the fields of the
// API's phone object and of the events' object, codes as strings.
type phoneState struct {
	ID          int64   `json:"id"`
	Tenant      string  `json:"org_id"`
	AccountID   int64   `json:"account_id"`
	CustomerID  *int64  `json:"customer_id"`
	Number      string  `json:"number"`
	Type        string  `json:"type"`
	Active      bool    `json:"active"`
	AreaCode    *string `json:"area_code"`
	CountryCode string  `json:"country_code"`
	Extension   *string `json:"extension"`
}

// diff lists the fields in which got differs from want.
func (want phoneState) diff(got phoneState) []string {
	var d []string
	add := func(name string, w, g any) { d = append(d, fmt.Sprintf("%s %s; want %s", name, show(g), show(w))) }
	if want.ID != got.ID {
		add("id", want.ID, got.ID)
	}
	if want.Tenant != got.Tenant {
		add("tenant", want.Tenant, got.Tenant)
	}
	if want.AccountID != got.AccountID {
		add("account_id", want.AccountID, got.AccountID)
	}
	if !equalPtr(want.CustomerID, got.CustomerID) {
		add("customer_id", want.CustomerID, got.CustomerID)
	}
	if want.Number != got.Number {
		add("number", want.Number, got.Number)
	}
	if want.Type != got.Type {
		add("type", want.Type, got.Type)
	}
	if want.Active != got.Active {
		add("active", want.Active, got.Active)
	}
	if !equalPtr(want.AreaCode, got.AreaCode) {
		add("area_code", want.AreaCode, got.AreaCode)
	}
	if want.CountryCode != got.CountryCode {
		add("country_code", want.CountryCode, got.CountryCode)
	}
	if !equalPtr(want.Extension, got.Extension) {
		add("extension", want.Extension, got.Extension)
	}
	return d
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// show formats a field's value as JSON, so that null and "" differ.
func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
