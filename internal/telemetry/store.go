package telemetry

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/phonesd/phonesd/internal/phone"
)

// TraceStore returns store with a client span around each of its
// transactions, the child of the request's span: where a request's time
// went between the service and the database. A create's span covers its
// wait for the group commit too; the commit's own span links back to it.
func TraceStore(store phone.Store, tracer trace.Tracer, system string) phone.Store {
	return &tracedStore{store: store, tracer: tracer, system: attribute.String("db.system.name", system)}
}

type tracedStore struct {
	store  phone.Store
	tracer trace.Tracer
	system attribute.KeyValue
}

func (s *tracedStore) start(ctx context.Context, name string) (context.Context, trace.Span) {
	return s.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(s.system))
}

// end ends span, marked failed when err is a failure: a duplicate, a
// phone not found or a stale version are answers, not failures.
func end(span trace.Span, err error) {
	if err != nil && !errors.Is(err, phone.ErrDuplicate) && !errors.Is(err, phone.ErrNotFound) &&
		!errors.Is(err, phone.ErrPrecondition) && !errors.Is(err, phone.ErrKeyTaken) {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

func (s *tracedStore) CreatePhone(ctx context.Context, c phone.Creation) (p phone.Phone, err error) {
	ctx, span := s.start(ctx, "store.CreatePhone")
	defer func() { end(span, err) }()
	return s.store.CreatePhone(ctx, c)
}

func (s *tracedStore) Phone(ctx context.Context, tenant string, account, id int64) (p phone.Phone, err error) {
	ctx, span := s.start(ctx, "store.Phone")
	defer func() { end(span, err) }()
	return s.store.Phone(ctx, tenant, account, id)
}

func (s *tracedStore) ListPhones(ctx context.Context, q phone.ListQuery) (ps []phone.Phone, err error) {
	ctx, span := s.start(ctx, "store.ListPhones")
	defer func() { end(span, err) }()
	return s.store.ListPhones(ctx, q)
}

func (s *tracedStore) Replay(ctx context.Context, scope string, now time.Time) (r phone.Replay, ok bool, err error) {
	ctx, span := s.start(ctx, "store.Replay")
	defer func() { end(span, err) }()
	return s.store.Replay(ctx, scope, now)
}

func (s *tracedStore) PurgeKeys(ctx context.Context, t time.Time) (n int64, err error) {
	ctx, span := s.start(ctx, "store.PurgeKeys")
	defer func() { end(span, err) }()
	return s.store.PurgeKeys(ctx, t)
}

func (s *tracedStore) UpdatePhone(ctx context.Context, c phone.Change) (p phone.Phone, err error) {
	ctx, span := s.start(ctx, "store.UpdatePhone")
	defer func() { end(span, err) }()
	return s.store.UpdatePhone(ctx, c)
}
