package phone

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Store keeps phones and their outbox. Each method is one transaction.
type Store interface {
	// CreatePhone gives the phone of c a new id and the transaction's time
	// (UTC, in milliseconds), and stores what c.Write returns for them, the
	// phone and its Phone created event, in one transaction. It returns the
	// stored phone, or ErrDuplicate when the phone is active and its account
	// already has an active phone with the same duplicate key.
	CreatePhone(ctx context.Context, c Creation) (Phone, error)
	// Phone returns one phone of an account of a tenant, or ErrNotFound.
	Phone(ctx context.Context, tenant string, account, id int64) (Phone, error)
	// ListPhones returns up to q.Limit phones of q's account with ids above
	// q.AfterID that pass q's filters, in id order.
	ListPhones(ctx context.Context, q ListQuery) ([]Phone, error)
	// Replay returns what is kept of the create made with the key of scope,
	// and false when there is none, or it expired before now.
	Replay(ctx context.Context, scope string, now time.Time) (Replay, bool, error)
	// PurgeKeys deletes the idempotency keys that expired before t and
	// returns how many.
	PurgeKeys(ctx context.Context, t time.Time) (int64, error)
	// UpdatePhone locks the phone of c and calls c.Apply with it and the
	// transaction's time (UTC, in milliseconds); when Apply reports a change
	// it stores the Write Apply returned, the phone and its event, in one
	// transaction. It returns the phone as stored afterwards, ErrNotFound,
	// ErrDuplicate, or Apply's error (and then stores nothing).
	UpdatePhone(ctx context.Context, c Change) (Phone, error)
}

// Outcome is what became of one Creation of a batch: the stored phone, or
// its own failure (ErrDuplicate).
type Outcome struct {
	Phone Phone
	Err   error
}

// ListQuery selects a page of an account's phones.
type ListQuery struct {
	Tenant    string
	AccountID int64
	Active    *bool // nil: any
	Type      *Type // nil: any
	AfterID   int64
	Limit     int
}

// Service applies the rules of phones on top of a Store.
type Service struct {
	store   Store
	written func()

	// running holds the idempotency scopes of the creates in progress in
	// this process, so that a retry racing its original is told so.
	mu      sync.Mutex
	running map[string]bool
}

// NewService returns a Service over store. eventsWritten, when not nil, is
// called after each commit that wrote an event, so that the relay delivering
// the outbox need not wait for its next poll.
func NewService(store Store, eventsWritten func()) *Service {
	if eventsWritten == nil {
		eventsWritten = func() {}
	}
	return &Service{store: store, written: eventsWritten, running: map[string]bool{}}
}

// CreateRequest is a create as the transport hands it over: the phone New
// made of the request, which validated it, what the event says of the
// caller, and the idempotency key if one was sent.
type CreateRequest struct {
	Phone       Candidate
	Audit       Audit
	Idempotency *Idempotency
}

// Create stores a new phone with its Phone created event. It
// returns ErrDuplicate or a storage error. With an idempotency key it
// returns the first answer to that key again (a phone with only its ID, or
// ErrDuplicate), ErrKeyMismatch when the key was first used for another
// request, or ErrKeyInProgress while that request is still running here.
func (s *Service) Create(ctx context.Context, r CreateRequest) (Phone, error) {
	c := Creation{Phone: r.Phone, EventID: newEventID(), Audit: r.Audit, Idempotency: r.Idempotency}
	if c.Idempotency == nil {
		return s.create(ctx, c)
	}
	scope := c.Idempotency.Scope
	if !s.begin(scope) {
		return Phone{}, ErrKeyInProgress
	}
	defer s.end(scope)
	if p, replayed, err := s.replay(ctx, c.Idempotency); replayed {
		return p, err
	}
	p, err := s.create(ctx, c)
	if errors.Is(err, ErrKeyTaken) {
		// Another replica committed a create with this key meanwhile.
		if p, replayed, err := s.replay(ctx, c.Idempotency); replayed {
			return p, err
		}
		return Phone{}, ErrKeyInProgress
	}
	return p, err
}

func (s *Service) create(ctx context.Context, c Creation) (Phone, error) {
	created, err := s.store.CreatePhone(ctx, c)
	if err != nil {
		return Phone{}, fmt.Errorf("create phone: %w", err)
	}
	s.written()
	return created, nil
}

// replay answers a key already used; replayed is false when it is not.
func (s *Service) replay(ctx context.Context, key *Idempotency) (p Phone, replayed bool, err error) {
	rep, ok, err := s.store.Replay(ctx, key.Scope, time.Now())
	switch {
	case err != nil:
		return Phone{}, true, fmt.Errorf("read idempotency key: %w", err)
	case !ok:
		return Phone{}, false, nil
	case !bytes.Equal(rep.Fingerprint, key.Fingerprint):
		return Phone{}, true, ErrKeyMismatch
	case !rep.Created:
		return Phone{}, true, fmt.Errorf("replay: %w", ErrDuplicate)
	}
	return Phone{ID: rep.PhoneID}, true, nil
}

func (s *Service) begin(scope string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running[scope] {
		return false
	}
	s.running[scope] = true
	return true
}

func (s *Service) end(scope string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.running, scope)
}

// PurgeKeys deletes the idempotency keys that have expired.
func (s *Service) PurgeKeys(ctx context.Context) (int64, error) {
	n, err := s.store.PurgeKeys(ctx, time.Now())
	if err != nil {
		return n, fmt.Errorf("purge idempotency keys: %w", err)
	}
	return n, nil
}

// newEventID returns a version 7 UUID: time-ordered, so that the outbox's
// index of event ids grows at its end instead of at a random page per event,
// which a commit would then have to write.
func newEventID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// Get returns one phone, or ErrNotFound when it does not exist in that
// account of that tenant.
func (s *Service) Get(ctx context.Context, tenant string, account, id int64) (Phone, error) {
	p, err := s.store.Phone(ctx, tenant, account, id)
	if err != nil {
		return Phone{}, fmt.Errorf("get phone: %w", err)
	}
	return p, nil
}

// Page is one page of a list: NextAfterID is 0 on the last page.
type Page struct {
	Phones      []Phone
	NextAfterID int64
}

// List returns the page of q. It reads one phone more than q.Limit to learn
// whether another page follows.
func (s *Service) List(ctx context.Context, q ListQuery) (Page, error) {
	limit := q.Limit
	q.Limit++
	phones, err := s.store.ListPhones(ctx, q)
	if err != nil {
		return Page{}, fmt.Errorf("list phones: %w", err)
	}
	if len(phones) <= limit {
		return Page{Phones: phones}, nil
	}
	phones = phones[:limit]
	return Page{Phones: phones, NextAfterID: phones[limit-1].ID}, nil
}

// UpdateRequest is an update as the transport hands it over.
type UpdateRequest struct {
	Tenant    string
	AccountID int64
	ID        int64
	Patch     ValidPatch
	// IfMatch lists the versions the client accepts; nil accepts any.
	IfMatch []int64
	Audit   Audit
}

// Update applies a patch to a phone and stores it with its Phone
// updated event; a patch that changes nothing stores nothing and returns the
// phone as it is. It returns ErrNotFound, ErrPrecondition when the phone's
// version is not in IfMatch, ErrDuplicate when the result would be active
// and equal by duplicate key to another active phone of the account, or a
// storage error.
func (s *Service) Update(ctx context.Context, r UpdateRequest) (Phone, error) {
	changed := false
	eventID := newEventID()
	p, err := s.store.UpdatePhone(ctx, Change{
		Tenant:    r.Tenant,
		AccountID: r.AccountID,
		ID:        r.ID,
		Apply: func(cur Phone, at time.Time) (Write, bool, error) {
			if r.IfMatch != nil && !slices.Contains(r.IfMatch, cur.Version) {
				return Write{}, false, ErrPrecondition
			}
			next, ok := r.Patch.apply(cur)
			if !ok {
				return Write{}, false, nil
			}
			w, err := Changed(cur, next, at, eventID, r.Audit)
			changed = err == nil
			return w, true, err
		},
	})
	if err != nil {
		return Phone{}, fmt.Errorf("update phone: %w", err)
	}
	if changed {
		s.written()
	}
	return p, nil
}
