package phone

import (
	"context"
	"fmt"

	"github.com/google/uuid"
)

// Store keeps phones and their outbox. Each method is one transaction.
type Store interface {
	// CreatePhone stores the phone of c with a new id and creation time (the
	// transaction's, UTC, in milliseconds) and, in the same transaction, the
	// Phone created event. It returns the stored phone, or ErrDuplicate when
	// the phone is active and its account already has an active phone with
	// the same duplicate key.
	CreatePhone(ctx context.Context, c Creation) (Phone, error)
}

// Creation is what a store needs to create a phone: the phone, its duplicate
// key, and what the Phone created event needs beyond the phone.
type Creation struct {
	Phone   Phone
	Key     string
	EventID string
	Audit   Audit
}

// Service applies the rules of phones on top of a Store.
type Service struct {
	store   Store
	written func()
}

// NewService returns a Service over store. eventsWritten, when not nil, is
// called after each commit that wrote an event, so that the relay delivering
// the outbox need not wait for its next poll.
func NewService(store Store, eventsWritten func()) *Service {
	if eventsWritten == nil {
		eventsWritten = func() {}
	}
	return &Service{store: store, written: eventsWritten}
}

// CreateRequest is a create as the transport hands it over: the caller's
// tenant, the account and customer from the path and headers, and the body.
type CreateRequest struct {
	Tenant     string
	AccountID  int64
	CustomerID *int64
	Draft      Draft
	Audit      Audit
}

// Create validates and stores a new phone with its Phone created event. It
// returns a *FieldError for an invalid draft, ErrDuplicate, or a storage error.
func (s *Service) Create(ctx context.Context, r CreateRequest) (Phone, error) {
	p, err := New(r.Tenant, r.AccountID, r.CustomerID, r.Draft)
	if err != nil {
		return Phone{}, err
	}
	created, err := s.store.CreatePhone(ctx, Creation{
		Phone:   p,
		Key:     p.DuplicateKey(),
		EventID: uuid.NewString(),
		Audit:   r.Audit,
	})
	if err != nil {
		return Phone{}, fmt.Errorf("create phone: %w", err)
	}
	s.written()
	return created, nil
}
