package phone

import (
	"errors"
	"fmt"
	"time"

	"github.com/phonesd/phonesd/api"
)

// Write is everything a store writes for one create or one change, all of
// it decided here: the phone as it is to be stored, its duplicate key, and
// the event to append to the outbox in the same transaction. A store writes
// it as it is, so that the rules of a create or a change live in this
// package alone, whichever store records them.
type Write struct {
	Phone Phone
	Key   string
	Event Event
}

// Creation is what a store needs to create a phone: the phone New made,
// what its Phone created event says beyond the phone, and the idempotency
// key it came with, if any. A store keeps the idempotency key in the
// phone's transaction, so that a create committed just before a crash is
// still replayed to a retry; it answers ErrKeyTaken, and stores nothing,
// when an unexpired key of that scope exists.
type Creation struct {
	Phone       Candidate
	EventID     string
	Audit       Audit
	Idempotency *Idempotency
}

// Write returns what a store writes for c once it has chosen, under its
// lock, the phone's id and the transaction's time at: the phone at version
// 1, created and updated at at, its duplicate key and its Phone created
// event. It returns an error when the event cannot be encoded, or when c's
// phone is the zero Candidate, which New never returns.
//
// A create is a method of the Creation, where a change is a function the
// service hands over (Change.Apply): what a create writes depends on
// nothing the store reads but the id and the time it allocates, so the
// service has nothing to choose, and a batch of creates committed together
// costs no closure per create. The event is built here, under the store's
// lock, rather than by the service before the batch, because it carries
// the id and the time, which only exist once the lock is held.
func (c Creation) Write(id int64, at time.Time) (Write, error) {
	p, err := c.stored(id, at)
	if err != nil {
		return Write{}, err
	}
	ev, err := CreatedEvent(c.EventID, p, c.Audit)
	if err != nil {
		return Write{}, err
	}
	return Write{Phone: p, Key: p.DuplicateKey(), Event: ev}, nil
}

// stored returns c's phone as stored with id at at.
func (c Creation) stored(id int64, at time.Time) (Phone, error) {
	p := c.Phone.p
	if p.Type == "" {
		// New never leaves a type empty: only the zero Candidate has none.
		return Phone{}, errors.New("create phone: the phone was not made by phone.New")
	}
	p.ID, p.CreatedAt, p.UpdatedAt, p.Version = id, at, at, 1
	return p, nil
}

// Template is what a Creation writes for a store that chooses the phone's
// id and the time inside the transaction that stores it, after the writes
// have been sent: Write, with id 0 and the zero time (its event's Payload
// nil), and the Phone created event around the two, in the order the
// event has them. The event of the phone stored with id and at is Head,
// at formatted with TimestampLayout, Mid, id in decimal digits, then Tail,
// exactly as Write(id, at) encodes it (TestTemplate).
type Template struct {
	Write           Write
	Head, Mid, Tail []byte
}

// Template returns what c writes, with holes for the id and the time.
func (c Creation) Template() (Template, error) {
	p, err := c.stored(0, time.Time{})
	if err != nil {
		return Template{}, err
	}
	env := envelope(c.EventID, EventCreated, api.EventCreationMethod, api.EventCreationURI, p, c.Audit, time.Time{})
	var h holes
	b, err := appendEventMarking(make([]byte, 0, eventSizeHint(&env)), &env, &h)
	if err != nil {
		return Template{}, fmt.Errorf("encode %s event: %w", EventCreated, err)
	}
	ev := Event{ID: c.EventID, Domain: EventDomain, Type: EventCreated, TraceParent: c.Audit.TraceParent}
	return Template{
		Write: Write{Phone: p, Key: p.DuplicateKey(), Event: ev},
		Head:  b[:h.timeAt:h.timeAt], Mid: b[h.timeEnd:h.idAt:h.idAt], Tail: b[h.idEnd:],
	}, nil
}

// Change is what a store needs to update a phone: which phone, and the
// function that decides what to write for it. Unlike a Creation's
// Candidate it is not guarded: the service builds its Apply from a
// ValidPatch and Changed, and the stores' contract suite drives them with
// changes of its own, which a guard would take from it.
type Change struct {
	Tenant    string
	AccountID int64
	ID        int64
	// Apply returns what to write for cur, the phone as the store read it
	// under its lock, changed at at, the transaction's time; changed is
	// false when there is nothing to write. An error stores nothing. It
	// runs while the store holds its lock, so it must be quick and must
	// not write through the store.
	Apply func(cur Phone, at time.Time) (w Write, changed bool, err error)
}

// Changed returns the Write that makes next the version after cur, updated
// at at: next with what a change may not alter taken from cur (see
// successor), its duplicate key and its Phone updated event, which carries
// the full state after the change. It returns an error only when the event
// cannot be encoded.
func Changed(cur, next Phone, at time.Time, eventID string, a Audit) (Write, error) {
	next = cur.successor(next, at)
	ev, err := ChangedEvent(eventID, next, a)
	if err != nil {
		return Write{}, err
	}
	return Write{Phone: next, Key: next.DuplicateKey(), Event: ev}, nil
}

// successor returns next as the version after p, updated at now. What a
// change may not alter (id, tenant, account, customer, creation time) is
// taken from p, so that a change can never move a phone.
func (p Phone) successor(next Phone, now time.Time) Phone {
	next.ID = p.ID
	next.Tenant = p.Tenant
	next.AccountID = p.AccountID
	next.CustomerID = p.CustomerID
	next.CreatedAt = p.CreatedAt
	next.UpdatedAt = now
	next.Version = p.Version + 1
	return next
}
