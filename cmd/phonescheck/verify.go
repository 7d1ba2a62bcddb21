package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/phonesd/phonesd/api"
	"github.com/phonesd/phonesd/internal/httpapi"
	"github.com/phonesd/phonesd/internal/phone"
)

// Kinds of violation: each is a guarantee phonesd broke.
const (
	// An acknowledged phone is not in the database.
	kindLost = "lost"
	// An acknowledged phone, or update, is stored otherwise than acknowledged.
	kindMismatch = "mismatch"
	// A row that no acknowledged create, nor retried unknown, explains: a
	// definite failure, or an unknown resolved as not created, stored it.
	kindPhantom = "phantom"
	// A row, listed phone or event carries a tenant other than its token's.
	kindTenant = "tenant"
	// An answer no request of its kind may get.
	kindStatus = "status"
	// An unknown whose retry, after recovery, still tells nothing, or tells
	// something its request cannot explain.
	kindUnresolved = "unresolved"
	// List phones shows otherwise than the database holds.
	kindList = "list"
	// A stored phone, or an applied update, without its event.
	kindEventMissing = "event-missing"
	// A phone with two distinct creation events, or an update with two
	// change events, or a copy of an event in a sink that promises each once.
	kindEventTwice = "event-twice"
	// An event whose phone, or update, does not exist.
	kindEventOrphan = "event-orphan"
	// An event whose object differs from the phone it reports.
	kindEventFields = "event-fields"
	// Events delivered out of outbox order.
	kindEventOrder = "event-order"
	// An account's events delivered out of commit order: a phone created
	// after one of a higher id, or a phone's events out of the order of
	// its changes.
	kindAccountOrder = "account-order"
	// A line or message of the sink that is not an event.
	kindEventUnreadable = "event-unreadable"
	// An answer the public client refused: a status, body or header the
	// contract does not document for its operation.
	kindContract = "contract"
	// A definite answer its request's fate contradicts: a 409 for a number
	// no other request sent, or a 4xx whose phone is stored.
	kindWrongAnswer = "wrong-answer"
)

// violation is one broken guarantee, described so that it can be found
// again: the request's sequence number and key, the phone's id.
type violation struct {
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

// tally counts what a scenario did and found.
type tally struct {
	Creates int `json:"creates"`
	// NoKey counts the creates sent without Idempotency-Key.
	NoKey          int `json:"no_key"`
	OK             int `json:"ok"`
	Failed         int `json:"failed"`
	Unknown        int `json:"unknown"`
	UnknownCreated int `json:"unknown_created"`
	// UnknownEarly counts the unknowns created before their retry: the
	// service committed them though the client got no answer, and the
	// retry got the stored answer back.
	UnknownEarly      int `json:"unknown_committed_before_retry"`
	UnknownNone       int `json:"unknown_none"`
	UnknownUnresolved int `json:"unknown_unresolved"`
	Updates           int `json:"updates"`
	UpdatesOK         int `json:"updates_ok"`
	UpdatesFailed     int `json:"updates_failed"`
	UpdatesUnknown    int `json:"updates_unknown"`
	// UpdatesUnknownApplied counts the unknown updates found applied by
	// their retry, whether before it (412) or by it (200).
	UpdatesUnknownApplied int `json:"updates_unknown_applied"`
	Phones                int `json:"phones"`
	Events                int `json:"events"`
	Deliveries            int `json:"deliveries"`
	// Duplicates are deliveries beyond each event's first, in another
	// source: a replica taking the relay's lease over delivers to its own
	// events file what the previous holder wrote to its own but did not
	// mark. A second copy in one source is a violation.
	Duplicates int `json:"duplicates"`
	// Late counts the events that reached the sink after events of higher
	// outbox seq, within observed.LateWithin.
	Late int `json:"late,omitempty"`
}

// expectation is what the ledger says of one phone.
type expectation struct {
	entry   *createEntry
	created phoneState // as the create asked
	final   phoneState // after every applied update
	// alternative is the other final state an unresolved update leaves
	// possible; nil when there is none.
	alternative *phoneState
	changes     []change
}

// change is an applied update and the state it left.
type change struct {
	update *updateEntry
	state  phoneState
}

// verify checks the observed state against the ledger. It records on each
// unknown create sent without a key the phone the database holds for it.
func verify(creates []*createEntry, updates []*updateEntry, o observed) (tally, []violation) {
	v := &verifier{o: o}
	v.index(creates)
	v.creates(creates)
	v.updates(updates)
	v.rows()
	v.early(creates)
	v.listings()
	v.events()
	return v.t, v.out
}

type verifier struct {
	o        observed
	t        tally
	out      []violation
	expected map[int64]*expectation
	byNumber map[string][]*createEntry
	rowsByID map[int64]phoneState
	// rowsOf holds the rows of each account's number.
	rowsOf map[numberKey][]phoneState
	// wrong holds the rows already reported as a wrong answer's phone.
	wrong map[int64]bool
	// refused maps the extension of each update that did not apply to it.
	refused map[string]*updateEntry
	// unsure holds the extensions of updates whose fate is unknown.
	unsure map[string]bool
}

func (v *verifier) add(kind, format string, args ...any) {
	v.out = append(v.out, violation{Kind: kind, Detail: fmt.Sprintf(format, args...)})
}

// describe names a create for a report: enough to find it in the ledger.
func describe(e *createEntry) string {
	tok := "tenant token"
	if e.TokenAccount != 0 {
		tok = fmt.Sprintf("token of account %d", e.TokenAccount)
	}
	key := "key " + e.Key
	if e.NoKey {
		key = "no key"
	}
	s := fmt.Sprintf("create #%d (%s, %s, %s account %d, %s, number %s) answered %s", e.Seq, e.Intent, key, e.Tenant, e.Account, tok, e.Draft.Number, outcome(e.attempt))
	if e.Retry != nil {
		s += ", retry " + outcome(*e.Retry)
	}
	return s
}

func outcome(a attempt) string {
	switch {
	case a.Err != "":
		return a.Err
	case a.Status == 200 && a.ID != 0:
		return fmt.Sprintf("200 id %d", a.ID)
	case a.Message != "":
		return fmt.Sprintf("%d %q", a.Status, a.Message)
	}
	return fmt.Sprint(a.Status)
}

// contract reports the answers to a request, and to its retry, that the
// public client refused.
func (v *verifier) contract(what string, a attempt, retry *attempt) {
	if a.Contract != "" {
		v.add(kindContract, "%s, an answer off the contract: %s", what, a.Contract)
	}
	if retry != nil && retry.Contract != "" {
		v.add(kindContract, "%s, its retry's answer off the contract: %s", what, retry.Contract)
	}
}

// numberKey is a number in one account of one tenant.
type numberKey struct {
	tenant  string
	account int64
	number  string
}

// index records which requests sent each number, and which rows hold each
// account's number.
func (v *verifier) index(creates []*createEntry) {
	v.byNumber = map[string][]*createEntry{}
	for _, e := range creates {
		v.byNumber[e.Draft.Number] = append(v.byNumber[e.Draft.Number], e)
	}
	v.rowsOf = map[numberKey][]phoneState{}
	for _, r := range v.o.Rows {
		k := numberKey{r.Tenant, r.AccountID, r.Number}
		v.rowsOf[k] = append(v.rowsOf[k], r)
	}
	v.wrong = map[int64]bool{}
}

// sentOnce reports whether e is the only request that sent its number.
func (v *verifier) sentOnce(e *createEntry) bool {
	return len(v.byNumber[e.Draft.Number]) == 1
}

// stored returns the rows holding the number of e in its account.
func (v *verifier) stored(e *createEntry) []phoneState {
	return v.rowsOf[numberKey{e.Tenant, e.Account, e.Draft.Number}]
}

// wrongAnswer reports a definite failure that e's fate contradicts: a 409
// though no other request sent its number, or any 4xx though its phone is
// stored. It reports whether it found one.
func (v *verifier) wrongAnswer(e *createEntry) bool {
	if e.Class != classFailed || !v.sentOnce(e) {
		return false
	}
	if rows := v.stored(e); len(rows) > 0 {
		for _, r := range rows {
			v.wrong[r.ID] = true
		}
		v.add(kindWrongAnswer, "%s, yet its phone %d is stored: a definite failure must store nothing", describe(e), rows[0].ID)
		return true
	}
	if e.Status == 409 {
		v.add(kindWrongAnswer, "%s, though no other request sent its number: nothing it could duplicate", describe(e))
		return true
	}
	return false
}

func (v *verifier) creates(creates []*createEntry) {
	v.expected = map[int64]*expectation{}
	for _, e := range creates {
		v.t.Creates++
		if e.NoKey {
			v.t.NoKey++
		}
		switch e.Class {
		case classOK:
			v.t.OK++
		case classFailed:
			v.t.Failed++
		case classUnknown:
			v.t.Unknown++
		}
		v.contract(describe(e), e.attempt, e.Retry)
		if !v.wrongAnswer(e) && e.Class != classUnknown && !slices.Contains(allowed[e.Intent], e.Status) {
			v.add(kindStatus, "%s: a %s request may get %v", describe(e), e.Intent, allowed[e.Intent])
		}
		if e.Class == classOK && e.ID <= 0 {
			v.add(kindStatus, "%s: a 200 without an id", describe(e))
		}
		if e.Class == classUnknown {
			v.resolution(e)
		}
		if id, ok := e.createdID(); ok && id > 0 {
			if prev := v.expected[id]; prev != nil {
				v.add(kindStatus, "phone %d was given to two keys: %s; and %s", id, describe(prev.entry), describe(e))
				continue
			}
			s := e.state(id)
			v.expected[id] = &expectation{entry: e, created: s, final: s}
		}
	}
}

// resolution checks what the retry of an unknown create said, or, for one
// sent without a key, what the database holds of it.
func (v *verifier) resolution(e *createEntry) {
	if e.NoKey {
		v.observedFate(e)
		return
	}
	r := e.Retry
	switch {
	case r == nil:
		v.t.UnknownUnresolved++
		v.add(kindUnresolved, "%s: never retried", describe(e))
	case r.Class == classOK && r.ID > 0 && slices.Contains(allowed[e.Intent], 200):
		v.t.UnknownCreated++
	case r.Class == classFailed && r.Status != 429 && slices.Contains(allowed[e.Intent], r.Status) &&
		// A 409 explains a duplicate only with the duplicate's message, not
		// the Idempotency-Key's.
		(r.Status != 409 || r.Message == httpapi.Message(phone.ErrDuplicate)):
		v.t.UnknownNone++
	case r.Class == classUnknown || r.Status == 429:
		v.t.UnknownUnresolved++
		v.add(kindUnresolved, "%s: the retry after recovery got no answer", describe(e))
	default:
		v.t.UnknownUnresolved++
		v.add(kindUnresolved, "%s: the retry's answer does not fit a %s request", describe(e), e.Intent)
	}
}

// observedFate resolves an unknown create sent without a key by the rows
// holding its number, which no other request sent: one row is its phone,
// none says it was not stored. A phone stored for a request that may not
// store one is left to the phantom check.
func (v *verifier) observedFate(e *createEntry) {
	rows := v.stored(e)
	switch {
	case len(rows) == 0:
		v.t.UnknownNone++
	case len(rows) > 1:
		v.t.UnknownUnresolved++
		v.add(kindPhantom, "%s: its number, which no other request sent, is stored %d times", describe(e), len(rows))
	case slices.Contains(allowed[e.Intent], 200):
		e.FoundID = rows[0].ID
		v.t.UnknownCreated++
	default:
		v.t.UnknownNone++
	}
}

func (v *verifier) updates(updates []*updateEntry) {
	v.refused = map[string]*updateEntry{}
	v.unsure = map[string]bool{}
	for _, u := range updates {
		v.t.Updates++
		switch u.Class {
		case classOK:
			v.t.UpdatesOK++
		case classFailed:
			v.t.UpdatesFailed++
		case classUnknown:
			v.t.UpdatesUnknown++
		}
		what := fmt.Sprintf("update #%d of phone %d (%s account %d, If-Match %d, extension %s) answered %s", u.Seq, u.PhoneID, u.Tenant, u.Account, u.IfMatch, u.Patch.Extension, outcome(u.attempt))
		if u.Retry != nil {
			what += ", retry " + outcome(*u.Retry)
		}
		v.contract(what, u.attempt, u.Retry)
		if u.Class != classUnknown && !slices.Contains(allowedUpdate, u.Status) {
			v.add(kindStatus, "%s: an update of an acknowledged phone, sent by the only client changing it, may get %v", what, allowedUpdate)
		}
		exp := v.expected[u.PhoneID]
		applied, known := u.applied()
		switch {
		case !known:
			v.add(kindUnresolved, "%s: the retry after recovery got no answer", what)
			v.unsure[u.Patch.Extension] = true
			if exp != nil {
				alt := u.Patch.apply(exp.final)
				exp.alternative = &alt
			}
			continue
		case u.Class == classUnknown && applied:
			v.t.UpdatesUnknownApplied++
		}
		if !applied {
			v.refused[u.Patch.Extension] = u
			continue
		}
		if exp == nil {
			// Updates go only to acknowledged phones.
			v.add(kindStatus, "%s: the phone is not one the ledger acknowledged", what)
			continue
		}
		exp.final = u.Patch.apply(exp.final)
		exp.changes = append(exp.changes, change{update: u, state: exp.final})
	}
}

func (v *verifier) rows() {
	v.rowsByID = map[int64]phoneState{}
	v.t.Phones = len(v.o.Rows)
	for _, r := range v.o.Rows {
		v.rowsByID[r.ID] = r
		exp := v.expected[r.ID]
		if exp == nil {
			if !v.wrong[r.ID] {
				v.phantom(r)
			}
			continue
		}
		if r.Tenant != exp.entry.Tenant {
			v.add(kindTenant, "phone %d is stored under tenant %s; %s", r.ID, r.Tenant, describe(exp.entry))
		}
		d := exp.final.diff(r)
		if len(d) > 0 && exp.alternative != nil && len(exp.alternative.diff(r)) == 0 {
			d = nil
		}
		if len(d) > 0 {
			v.add(kindMismatch, "phone %d: %s; %s, then %d applied updates", r.ID, strings.Join(d, ", "), describe(exp.entry), len(exp.changes))
		}
	}
	ids := make([]int64, 0, len(v.expected))
	for id := range v.expected {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if _, ok := v.rowsByID[id]; !ok {
			v.add(kindLost, "phone %d is not in the database; %s", id, describe(v.expected[id].entry))
		}
	}
}

// early counts the unknowns whose phone was committed before their retry
// was sent: the creation time is the transaction's, on the same clock.
func (v *verifier) early(creates []*createEntry) {
	for _, e := range creates {
		if e.Class != classUnknown || e.Retry == nil || e.Retry.Class != classOK {
			continue
		}
		if at, ok := v.o.Created[e.Retry.ID]; ok && !e.Retry.At.IsZero() && at.Before(e.Retry.At.Truncate(time.Millisecond)) {
			v.t.UnknownEarly++
		}
	}
}

// phantom reports a row no create of the ledger explains, naming the
// requests that sent its number.
func (v *verifier) phantom(r phoneState) {
	var senders []string
	for _, e := range v.byNumber[r.Number] {
		if e.Tenant != r.Tenant || e.Account != r.AccountID {
			if e.Tenant != r.Tenant {
				v.add(kindTenant, "phone %d is stored under tenant %s account %d; %s", r.ID, r.Tenant, r.AccountID, describe(e))
			}
			senders = append(senders, describe(e))
			continue
		}
		if e.Class == classUnknown && !e.NoKey && (e.Retry == nil || e.Retry.Class == classUnknown || e.Retry.Status == 429) {
			// Already reported as unresolved: either outcome is possible.
			return
		}
		senders = append(senders, describe(e))
	}
	if len(senders) == 0 {
		v.add(kindPhantom, "phone %d (%s account %d, number %s) was sent by no request of the ledger", r.ID, r.Tenant, r.AccountID, r.Number)
		return
	}
	v.add(kindPhantom, "phone %d (%s account %d, number %s) was acknowledged to no request: %s", r.ID, r.Tenant, r.AccountID, r.Number, strings.Join(senders, "; "))
}

func (v *verifier) listings() {
	byAccount := map[tokenKey][]phoneState{}
	for _, r := range v.o.Rows {
		k := tokenKey{r.Tenant, r.AccountID}
		byAccount[k] = append(byAccount[k], r)
	}
	for _, l := range v.o.Listings {
		where := fmt.Sprintf("List phones of account %d with %s's token", l.Account, l.Tenant)
		if l.Err != "" {
			v.add(kindList, "%s: %s", where, l.Err)
			continue
		}
		want := map[int64]phoneState{}
		for _, r := range byAccount[tokenKey{l.Tenant, l.Account}] {
			want[r.ID] = r
		}
		last := int64(0)
		for _, p := range l.Phones {
			if p.Tenant != l.Tenant {
				v.add(kindTenant, "%s: phone %d has org_id %s", where, p.ID, p.Tenant)
			}
			if p.ID <= last {
				v.add(kindList, "%s: phone %d after phone %d; want id order", where, p.ID, last)
			}
			last = p.ID
			r, ok := want[p.ID]
			if !ok {
				v.add(kindList, "%s: phone %d, which the database holds for no such account", where, p.ID)
				continue
			}
			delete(want, p.ID)
			if d := r.diff(p); len(d) > 0 {
				v.add(kindList, "%s: phone %d: %s (want: the database's row)", where, p.ID, strings.Join(d, ", "))
			}
		}
		for id := range want {
			v.add(kindList, "%s: phone %d of the database is missing", where, id)
		}
	}
}

func (v *verifier) events() {
	for _, u := range v.o.Unreadable {
		v.add(kindEventUnreadable, "%s", u)
	}
	type seen struct {
		d       delivery
		sources map[string]bool
	}
	byID := map[string]*seen{}
	var order []string
	for _, d := range v.o.Deliveries {
		if s := byID[d.EventID]; s != nil {
			if s.d.Type != d.Type || len(s.d.Object.diff(d.Object)) > 0 {
				v.add(kindEventFields, "event %s delivered twice with different content (%s, %s)", d.EventID, s.d.Source, d.Source)
			}
			if s.sources[d.Source] {
				// JetStream drops a copy within its duplicate window, and
				// the file sink finds it in its file.
				v.add(kindEventTwice, "event %s of phone %d is twice in %s: each sink holds each event once", d.EventID, d.Object.ID, d.Source)
			}
			s.sources[d.Source] = true
			continue
		}
		byID[d.EventID] = &seen{d: d, sources: map[string]bool{d.Source: true}}
		order = append(order, d.EventID)
	}
	v.t.Deliveries = len(v.o.Deliveries)
	v.t.Events = len(byID)
	v.t.Duplicates = v.t.Deliveries - v.t.Events
	v.order()
	v.accountOrder()

	creations := map[int64][]string{}
	changes := map[int64][]delivery{}
	for _, id := range order {
		d := byID[id].d
		row, ok := v.rowsByID[d.Object.ID]
		if !ok {
			v.add(kindEventOrphan, "event %s (%s, %s account %d, number %s) reports phone %d, which does not exist", id, d.Type, d.Object.Tenant, d.Object.AccountID, d.Object.Number, d.Object.ID)
			continue
		}
		if d.Object.Tenant != row.Tenant {
			v.add(kindTenant, "event %s (%s) has org_id %s; its phone %d belongs to %s", id, d.Type, d.Object.Tenant, row.ID, row.Tenant)
		}
		switch d.Type {
		case api.EventPhoneCreation:
			creations[row.ID] = append(creations[row.ID], id)
			if exp := v.expected[row.ID]; exp != nil {
				if diff := exp.created.diff(d.Object); len(diff) > 0 {
					v.add(kindEventFields, "creation event %s of phone %d: %s", id, row.ID, strings.Join(diff, ", "))
				}
			}
		case api.EventPhoneChange:
			changes[row.ID] = append(changes[row.ID], d)
		default:
			v.add(kindEventFields, "event %s of phone %d has event_type %q", id, row.ID, d.Type)
		}
	}
	for _, r := range v.o.Rows {
		switch ids := creations[r.ID]; {
		case len(ids) == 0:
			v.add(kindEventMissing, "phone %d (%s account %d, number %s) has no %s event", r.ID, r.Tenant, r.AccountID, r.Number, api.EventPhoneCreation)
		case len(ids) > 1:
			v.add(kindEventTwice, "phone %d has %d distinct %s events: %s", r.ID, len(ids), api.EventPhoneCreation, strings.Join(ids, ", "))
		}
	}
	v.changeEvents(changes)
}

// changeEvents matches the phone_change-1 events of each phone with its
// applied updates, by the extension each update set.
func (v *verifier) changeEvents(changes map[int64][]delivery) {
	for id, exp := range v.expected {
		evs := changes[id]
		for _, c := range exp.changes {
			var found []delivery
			for _, d := range evs {
				if d.Object.Extension != nil && *d.Object.Extension == c.update.Patch.Extension {
					found = append(found, d)
				}
			}
			switch {
			case len(found) == 0:
				v.add(kindEventMissing, "update #%d of phone %d (extension %s, answered %s) has no %s event", c.update.Seq, id, c.update.Patch.Extension, outcome(c.update.attempt), api.EventPhoneChange)
			case len(found) > 1:
				v.add(kindEventTwice, "update #%d of phone %d has %d distinct %s events", c.update.Seq, id, len(found), api.EventPhoneChange)
			default:
				if d := c.state.diff(found[0].Object); len(d) > 0 {
					v.add(kindEventFields, "change event %s of update #%d of phone %d: %s", found[0].EventID, c.update.Seq, id, strings.Join(d, ", "))
				}
			}
		}
	}
	for id, evs := range changes {
		for _, d := range evs {
			ext := ""
			if d.Object.Extension != nil {
				ext = *d.Object.Extension
			}
			if v.unsure[ext] {
				continue
			}
			if u := v.refused[ext]; u != nil {
				v.add(kindPhantom, "update #%d of phone %d answered %s, yet its change event %s exists", u.Seq, id, outcome(u.attempt), d.EventID)
				continue
			}
			exp := v.expected[id]
			if exp == nil {
				// A phantom phone: reported with its row.
				continue
			}
			if !slices.ContainsFunc(exp.changes, func(c change) bool { return c.update.Patch.Extension == ext }) {
				v.add(kindEventOrphan, "change event %s of phone %d (extension %q) matches no update of the ledger", d.EventID, id, ext)
			}
		}
	}
}

// order checks that each source received the events in outbox order: the
// first copy of each event after those earlier in outbox order.
func (v *verifier) order() {
	if v.o.Outbox == nil {
		return
	}
	type state struct {
		last     int64
		lastID   string
		seen     map[string]bool
		reported int
	}
	sources := map[string]*state{}
	for _, d := range v.o.Deliveries {
		s := sources[d.Source]
		if s == nil {
			s = &state{seen: map[string]bool{}}
			sources[d.Source] = s
		}
		if s.seen[d.EventID] {
			continue
		}
		s.seen[d.EventID] = true
		seq, ok := v.o.Outbox[d.EventID]
		if !ok {
			v.add(kindEventOrphan, "event %s in %s is not in the outbox", d.EventID, d.Source)
			continue
		}
		if seq < s.last && s.last-seq <= v.o.LateWithin {
			v.t.Late++
			continue
		}
		if seq < s.last && s.reported < 3 {
			s.reported++
			v.add(kindEventOrder, "%s: event %s (place %d in outbox order) after event %s (place %d)", d.Source, d.EventID, seq, s.lastID, s.last)
		}
		if seq > s.last {
			s.last, s.lastID = seq, d.EventID
		}
	}
}

// accountOrder checks, in the order each source received the first copy
// of each event, what every backend promises per account (see
// docs/guarantees.md, Order): phone ids, drawn in commit order per
// account, increase from one creation event of an account to the next;
// and a phone's events come as it was written, its creation first, then
// its applied updates in the order they were applied. Where the scenario
// allows JetStream's refused event to land late, it is skipped: that
// exception breaks any order.
func (v *verifier) accountOrder() {
	if v.o.LateWithin > 0 {
		return
	}
	type account struct {
		tenant string
		id     int64
	}
	type source struct {
		seen      map[string]bool
		lastID    map[account]int64
		place     map[string]int // of each first copy, by event id
		created   map[int64]int  // the place of each phone's creation event
		changedAt map[int64]map[string]int
		reported  int
	}
	sources := map[string]*source{}
	var names []string
	for _, d := range v.o.Deliveries {
		s := sources[d.Source]
		if s == nil {
			s = &source{seen: map[string]bool{}, lastID: map[account]int64{}, place: map[string]int{},
				created: map[int64]int{}, changedAt: map[int64]map[string]int{}}
			sources[d.Source] = s
			names = append(names, d.Source)
		}
		if s.seen[d.EventID] {
			continue
		}
		s.seen[d.EventID] = true
		place := len(s.place)
		s.place[d.EventID] = place
		id := d.Object.ID
		switch d.Type {
		case "phone_creation-1":
			a := account{d.Object.Tenant, d.Object.AccountID}
			if last := s.lastID[a]; id <= last && s.reported < 3 {
				s.reported++
				v.add(kindAccountOrder, "%s: %s account %d: phone %d created (event %s) after phone %d", d.Source, a.tenant, a.id, id, d.EventID, last)
			}
			s.lastID[a] = max(s.lastID[a], id)
			if _, ok := s.created[id]; !ok {
				s.created[id] = place
			}
		case "phone_change-1":
			if d.Object.Extension == nil {
				continue
			}
			if s.changedAt[id] == nil {
				s.changedAt[id] = map[string]int{}
			}
			if _, ok := s.changedAt[id][*d.Object.Extension]; !ok {
				s.changedAt[id][*d.Object.Extension] = place
			}
		}
	}
	for _, name := range names {
		s := sources[name]
		for id, exp := range v.expected {
			last, lastWhat := -1, ""
			if p, ok := s.created[id]; ok {
				last, lastWhat = p, "its creation"
			}
			for _, c := range exp.changes {
				p, ok := s.changedAt[id][c.update.Patch.Extension]
				if !ok {
					continue
				}
				if p < last && s.reported < 3 {
					s.reported++
					v.add(kindAccountOrder, "%s: phone %d: the event of update #%d (extension %s) before that of %s", name, id, c.update.Seq, c.update.Patch.Extension, lastWhat)
				}
				last, lastWhat = max(last, p), fmt.Sprintf("update #%d", c.update.Seq)
			}
		}
	}
}

// sortViolations orders violations by kind, keeping each kind's order.
func sortViolations(vs []violation) {
	slices.SortStableFunc(vs, func(a, b violation) int { return cmp.Compare(a.Kind, b.Kind) })
}
