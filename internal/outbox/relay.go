// Package outbox delivers the events of the transactional outbox to a sink,
// in outbox order and none lost. The relay delivers again what a crash or a
// failed mark left unmarked (at most MarkEvery + BatchSize - 1 events), and
// the sinks recognise it: JetStream by Nats-Msg-Id, the file sink among its
// file's last lines.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/phonesd/phonesd/internal/phone"
)

// FailpointExitCode is the status a failpoint of a build tagged failpoints
// exits with, so that a test or a checker can tell it from a crash.
const FailpointExitCode = 86

// Store is the outbox as the relay needs it.
type Store interface {
	PendingEvents(ctx context.Context, limit int) ([]phone.Event, error)
	// MarkDelivered records every event up to the seq through as
	// delivered: one position, not a mark per event. A non-zero epoch is
	// the relay lease's term the relay holds: the store refuses the mark
	// with an error wrapping ErrLeaseLost once a later term has begun.
	MarkDelivered(ctx context.Context, through int64, epoch int64) error
	// PruneDelivered deletes delivered events created before a time.
	PruneDelivered(ctx context.Context, createdBefore time.Time) (int64, error)
	OutboxStats(ctx context.Context) (pending int64, oldest time.Time, err error)
}

// AfterReader is a Store that can also read the events after any event,
// not only after its marked position: a relay on it marks the position
// every MarkEvery events or MarkInterval rather than every round, and
// reads on from what it published. A relay on a Store without it marks
// every round, since it can read only from the mark.
type AfterReader interface {
	// EventsAfter returns up to limit events that follow the event whose
	// seq is after, in delivery order.
	EventsAfter(ctx context.Context, after int64, limit int) ([]phone.Event, error)
}

// Sink delivers events durably: when Publish returns nil every event is safe
// at the destination (a broker's ack, a file's fsync). Publish gets events in
// outbox order.
type Sink interface {
	Publish(ctx context.Context, events []phone.Event) error
	Close() error
}

// Lease is the right to deliver, which one relay among replicas sharing an
// outbox holds at a time, so that they do not publish the same events
// concurrently. Hold reports whether this relay holds it, taking it if free,
// and the term it holds it in.
type Lease interface {
	Hold(ctx context.Context) (t Term, held bool, err error)
}

// Term is one unbroken holding of a Lease. A relay publishes only while its
// term lasts, and marks events sent only with its term's epoch, which the
// store checks in the same statement: a relay that lost the lease (its
// session died, and another replica took over) can neither go on
// publishing once it knows, nor mark anything at all.
type Term struct {
	// Epoch numbers the term: each take-over begins a greater one.
	Epoch int64
	// Lost is closed the moment the holder learns the lease is lost.
	Lost <-chan struct{}
}

// ErrLeaseLost means the relay no longer holds the lease it delivered under.
var ErrLeaseLost = errors.New("relay lease lost")

// Options tunes a Relay; a zero field takes its default.
type Options struct {
	// Lease, when set, is held before each delivery round; a relay without
	// it always delivers, which suits a store only one process opens.
	Lease        Lease
	BatchSize    int           // events per delivery round; default 256
	PollInterval time.Duration // wait between polls when idle; default 1s
	// Gather is how long a woken relay waits for more events before a
	// round; default 10ms. Every round ends in a write (marking the events
	// sent) that competes with the creates for the database's writer and
	// disk; gathering makes one round carry many events under load, for a
	// delay no consumer of audit events notices.
	Gather        time.Duration
	Retention     time.Duration // how long delivered events are kept after their creation; default 7 days
	PruneInterval time.Duration // how often delivered events are pruned; default 1h
	MaxBackoff    time.Duration // longest wait after failed rounds; default 30s
	StatsInterval time.Duration // how often the backlog is logged; default 30s
	// MarkEvery and MarkInterval bound the events published and not yet
	// marked delivered, on a Store that is an AfterReader: the position is
	// marked once MarkEvery events, or events published MarkInterval ago,
	// wait for it; defaults 1024 and 100ms. A crash delivers them again,
	// so a sink's deduplication must reach MarkEvery + BatchSize - 1
	// events back.
	MarkEvery    int
	MarkInterval time.Duration
	// Handoff, when set, is where the store's writer hands over the
	// events it commits (see Handoff); nil reads every event from the
	// outbox.
	Handoff *Handoff
	Logger  *slog.Logger // default discards
	// Instruments tell about the deliveries; zero fields tell nothing.
	Instruments Instruments
}

// Instruments are what a Relay tells the people who run it.
type Instruments struct {
	// Delivered learns each round that published n events, or failed to
	// read, publish or mark them.
	Delivered func(n int, err error)
	// LeaseHeld learns, each round, whether this relay may deliver.
	LeaseHeld func(held bool)
	// Tracer makes a span for each round that publishes, linked to the
	// traces of the requests that wrote its events.
	Tracer trace.Tracer
}

func (in Instruments) delivered(n int, err error) {
	if in.Delivered != nil {
		in.Delivered(n, err)
	}
}

func (in Instruments) leaseHeld(held bool) {
	if in.LeaseHeld != nil {
		in.LeaseHeld(held)
	}
}

// span starts the span of a round that publishes events, or returns ctx
// and a no-op end without a tracer.
func (in Instruments) span(ctx context.Context, events []phone.Event) (context.Context, func(error)) {
	if in.Tracer == nil {
		return ctx, func(error) {}
	}
	ctx, span := in.Tracer.Start(ctx, "outbox.deliver", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithLinks(eventLinks(events)...),
		trace.WithAttributes(attribute.Int("outbox.events", len(events)), attribute.Int64("outbox.first_seq", events[0].Seq)))
	return ctx, func(err error) {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// Defaults of Options.
const (
	DefaultBatchSize     = 256
	DefaultPollInterval  = time.Second
	DefaultGather        = 10 * time.Millisecond
	DefaultRetention     = 7 * 24 * time.Hour
	DefaultPruneInterval = time.Hour
	DefaultMaxBackoff    = 30 * time.Second
	DefaultStatsInterval = 30 * time.Second
	DefaultMarkEvery     = 1024
	DefaultMarkInterval  = 100 * time.Millisecond
)

// errStandby means another relay holds the lease.
var errStandby = errors.New("another replica holds the relay lease")

// firstBackoff is the wait after the first failure; it doubles with each
// further failure up to MaxBackoff.
const firstBackoff = 100 * time.Millisecond

// markTimeout bounds marking a published batch sent once the relay's ctx has
// ended: the events are already at the destination, and every batch left
// unmarked is delivered twice.
const markTimeout = 5 * time.Second

// Relay moves events from a Store to a Sink: read the pending events in
// outbox order, publish them, mark them sent, and only then read again.
type Relay struct {
	store Store
	sink  Sink
	opts  Options
	log   *slog.Logger
	wake  chan struct{}
	// round is a one-slot semaphore held for one delivery round, so that
	// Run and Flush never publish at the same time (which could reorder or
	// duplicate events); unlike a sync.Mutex, waiting for it honours ctx.
	round chan struct{}
	// published counts the rounds that published, under round, for the
	// failpoint of test builds.
	published int
	// pos is what this relay delivered, under round.
	pos position
}

// position is how far a relay has delivered, in the term it holds.
type position struct {
	epoch int64
	// known is whether last is this relay's own: it delivered events in
	// this term. Until then it reads from the store's mark.
	known bool
	last  int64 // seq of the last event published
	// unmarked counts the events published after the store's mark, the
	// first of them at since.
	unmarked int
	since    time.Time
}

// NewRelay returns a Relay from store to sink; it starts nothing until Run
// or Flush.
func NewRelay(store Store, sink Sink, opts Options) *Relay {
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.PruneInterval <= 0 {
		opts.PruneInterval = DefaultPruneInterval
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.Gather <= 0 {
		opts.Gather = DefaultGather
	}
	if opts.StatsInterval <= 0 {
		opts.StatsInterval = DefaultStatsInterval
	}
	if opts.MarkEvery <= 0 {
		opts.MarkEvery = DefaultMarkEvery
	}
	if opts.MarkInterval <= 0 {
		opts.MarkInterval = DefaultMarkInterval
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Relay{
		store: store,
		sink:  sink,
		opts:  opts,
		log:   log,
		wake:  make(chan struct{}, 1),
		round: make(chan struct{}, 1),
	}
}

// Notify wakes Run without blocking; the service calls it after each commit
// that wrote an event so that delivery does not wait for the next poll.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run delivers events until ctx ends. It polls every PollInterval, or sooner
// after Notify; after a failed round it backs off exponentially up to
// MaxBackoff, ignoring Notify so that a broken sink is not retried on every
// commit. Every PruneInterval it deletes delivered events created more than Retention ago,
// and every StatsInterval, unless another replica holds the lease, it logs
// the backlog.
func (r *Relay) Run(ctx context.Context) {
	var (
		backoff   time.Duration
		failures  int
		lastPrune time.Time
		lastStats time.Time
	)
	for ctx.Err() == nil {
		if time.Since(lastPrune) >= r.opts.PruneInterval {
			r.prune(ctx)
			lastPrune = time.Now()
		}

		n, err := r.deliver(ctx)
		if ctx.Err() != nil {
			return
		}
		// The backlog is the shared database's, so only the relay that
		// drains it reports it: standbys would log the same figure again,
		// and the holder's line sits beside its own delivery errors.
		if !errors.Is(err, errStandby) && time.Since(lastStats) >= r.opts.StatsInterval {
			r.logBacklog(ctx)
			lastStats = time.Now()
		}
		if errors.Is(err, ErrLeaseLost) {
			r.log.Warn("relay lease lost; publishing stopped", "err", err)
		}
		if errors.Is(err, errStandby) || errors.Is(err, ErrLeaseLost) {
			// Another replica delivers; check for its lease now and then,
			// not on every local commit.
			sleep(ctx, r.opts.PollInterval, nil)
			continue
		}
		if err != nil {
			failures++
			if failures == 1 {
				r.log.Error("outbox delivery failing", "err", err)
			}
			backoff = nextBackoff(backoff, r.opts.MaxBackoff)
			sleep(ctx, backoff, nil)
			continue
		}
		if failures > 0 {
			r.log.Info("outbox delivery recovered", "failed_rounds", failures)
			failures = 0
			backoff = 0
		}
		if n == r.opts.BatchSize {
			// A full batch: more may be waiting.
			continue
		}
		if sleep(ctx, r.idle(), r.wake) {
			sleep(ctx, r.opts.Gather, nil)
		}
	}
}

// Flush delivers until nothing is pending and marks what it delivered,
// for shutdown. It returns an error when ctx ends first, wrapping the last
// delivery error if any; what is left stays in the outbox for the next Run.
func (r *Relay) Flush(ctx context.Context) error {
	var (
		backoff time.Duration
		lastErr error
	)
	for {
		n, err := r.deliver(ctx)
		if errors.Is(err, errStandby) || errors.Is(err, ErrLeaseLost) {
			return nil // the replica holding the lease delivers
		}
		if err == nil && n < r.opts.BatchSize {
			err = r.markNow(ctx)
			if err == nil {
				return nil
			}
		}
		if err == nil {
			lastErr, backoff = nil, 0
			continue
		}
		if ctx.Err() != nil {
			return fmt.Errorf("flush outbox: %w", errors.Join(ctx.Err(), lastErr))
		}
		lastErr = err
		backoff = nextBackoff(backoff, r.opts.MaxBackoff)
		sleep(ctx, backoff, nil)
	}
}

// deliver runs one round: it publishes up to BatchSize pending events, and
// marks the position when it is due, returning how many it published.
func (r *Relay) deliver(ctx context.Context) (int, error) {
	select {
	case r.round <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-r.round }()

	term, err := r.hold(ctx)
	if err != nil {
		return 0, err
	}
	// The round stops the moment the lease is lost: a replica taking over
	// publishes the same events, and this relay must not go on with them.
	rctx, stop := untilLost(ctx, term.Lost)
	defer stop()
	n, err := r.publish(ctx, rctx, term)
	if errors.Is(err, ErrLeaseLost) {
		// What was published before is marked if no other replica has
		// taken over; the store refuses the mark otherwise.
		err = errors.Join(err, r.mark(ctx, term))
	}
	return n, err
}

// hold returns the term this relay delivers in, and forgets its position
// when the term is a new one: another replica may have delivered since.
func (r *Relay) hold(ctx context.Context) (Term, error) {
	var term Term
	if r.opts.Lease != nil {
		t, held, err := r.opts.Lease.Hold(ctx)
		r.opts.Instruments.leaseHeld(held && err == nil)
		if err != nil {
			return Term{}, err
		}
		if !held {
			return Term{}, errStandby
		}
		term = t
	} else {
		r.opts.Instruments.leaseHeld(true)
	}
	if term.Epoch != r.pos.epoch {
		r.pos = position{epoch: term.Epoch}
	}
	return term, nil
}

// publish publishes the events after this relay's position, marking the
// position first or afterwards when it is due, and returns how many it
// published.
func (r *Relay) publish(ctx, rctx context.Context, term Term) (int, error) {
	// Due before publishing only when a mark has failed: no more is
	// published until it succeeds, which bounds what a crash delivers
	// again.
	if r.markDue() {
		if err := r.mark(ctx, term); err != nil {
			r.opts.Instruments.delivered(0, err)
			return 0, err
		}
	}
	events, err := r.next(ctx, rctx, term)
	if err != nil {
		return 0, err
	}
	if len(events) == 0 {
		return 0, nil
	}
	rctx, end := r.opts.Instruments.span(rctx, events)
	err = r.sink.Publish(rctx, events)
	if err != nil {
		err = fmt.Errorf("publish %d events from seq %d: %w", len(events), events[0].Seq, leaseCause(rctx, err))
		end(err)
		r.opts.Instruments.delivered(0, err)
		return 0, err
	}
	end(nil)
	r.opts.Instruments.delivered(len(events), nil)
	if r.pos.unmarked == 0 {
		r.pos.since = time.Now()
	}
	r.pos.known, r.pos.last = true, events[len(events)-1].Seq
	r.pos.unmarked += len(events)
	// Test builds can stop the process here, where a crash leaves events
	// at the destination but unmarked: the case deduplication exists for.
	r.published++
	failpoint("relay-after-publish", r.published)
	if _, after := r.store.(AfterReader); !after || r.markDue() {
		if err := r.mark(ctx, term); err != nil {
			r.opts.Instruments.delivered(0, err)
			return len(events), err
		}
	}
	return len(events), nil
}

// next returns the events to publish after this relay's position: from the
// handoff when it holds those that directly follow, otherwise read from the
// store, after the position when the store can read from there, or after
// the store's mark, once the position is marked.
func (r *Relay) next(ctx, rctx context.Context, term Term) ([]phone.Event, error) {
	if r.pos.known && r.opts.Handoff != nil {
		if events := r.opts.Handoff.take(r.pos.last, r.opts.BatchSize); len(events) > 0 {
			return events, nil
		}
	}
	var (
		events []phone.Event
		err    error
	)
	if after, ok := r.store.(AfterReader); ok && r.pos.known {
		events, err = after.EventsAfter(rctx, r.pos.last, r.opts.BatchSize)
	} else {
		if err := r.mark(ctx, term); err != nil {
			return nil, err
		}
		events, err = r.store.PendingEvents(rctx, r.opts.BatchSize)
	}
	if err != nil {
		return nil, fmt.Errorf("read pending events: %w", leaseCause(rctx, err))
	}
	return events, nil
}

// markDue reports whether the position waits to be marked: MarkEvery
// events published, or MarkInterval since the first of them.
func (r *Relay) markDue() bool {
	return r.pos.unmarked > 0 && (r.pos.unmarked >= r.opts.MarkEvery || time.Since(r.pos.since) >= r.opts.MarkInterval)
}

// idle returns how long Run may wait for a Notify: PollInterval, or less
// when the position is to be marked sooner.
func (r *Relay) idle() time.Duration {
	select {
	case r.round <- struct{}{}:
	default:
		return r.opts.PollInterval // Flush holds the round
	}
	defer func() { <-r.round }()
	if r.pos.unmarked == 0 {
		return r.opts.PollInterval
	}
	return min(r.opts.PollInterval, max(0, r.opts.MarkInterval-time.Since(r.pos.since)))
}

// markNow marks what this relay published and has not marked, under the
// term it holds.
func (r *Relay) markNow(ctx context.Context) error {
	select {
	case r.round <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-r.round }()
	return r.mark(ctx, Term{Epoch: r.pos.epoch})
}

// mark records this relay's position in the store, if anything published
// is unmarked.
func (r *Relay) mark(ctx context.Context, term Term) error {
	if r.pos.unmarked == 0 {
		return nil
	}
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), markTimeout)
	defer cancel()
	// Marked even when the lease was lost meanwhile: the epoch lets the
	// store refuse the mark only if another replica has taken over, which
	// then delivers the events itself.
	if err := r.store.MarkDelivered(mctx, r.pos.last, term.Epoch); err != nil {
		// The events were published; a crash or a new term delivers them
		// again, and the sink recognises them: JetStream by
		// Nats-Msg-Id, the file sink among its file's last lines.
		return fmt.Errorf("mark %d events delivered: %w", r.pos.unmarked, err)
	}
	r.pos.unmarked = 0
	return nil
}

// untilLost returns a context that ends with ctx, or with ErrLeaseLost as
// its cause when lost closes (a nil lost never closes).
func untilLost(ctx context.Context, lost <-chan struct{}) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancelCause(ctx)
	if lost == nil {
		return c, func() { cancel(nil) }
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-lost:
			cancel(ErrLeaseLost)
		case <-c.Done():
		case <-done:
		}
	}()
	return c, func() {
		close(done)
		cancel(nil)
	}
}

// leaseCause returns err, joined with ErrLeaseLost when the lease's loss
// ended ctx.
func leaseCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, ErrLeaseLost) && !errors.Is(err, ErrLeaseLost) {
		return fmt.Errorf("%w: %w", cause, err)
	}
	return err
}

// prune deletes the delivered events created more than Retention ago. A failure is only
// logged: the rows wait for the next prune, and delivery goes on.
func (r *Relay) prune(ctx context.Context) {
	n, err := r.store.PruneDelivered(ctx, time.Now().Add(-r.opts.Retention))
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("outbox prune failed", "err", err, "deleted", n)
		}
		return
	}
	if n > 0 {
		r.log.Debug("outbox pruned", "deleted", n)
	}
}

// logBacklog logs how many events wait and the age of the oldest. A failure
// is only logged at debug level: it comes with the storage failure that
// delivery already reports.
func (r *Relay) logBacklog(ctx context.Context) {
	pending, oldest, err := r.store.OutboxStats(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Debug("outbox stats failed", "err", err)
		}
		return
	}
	var age time.Duration
	if !oldest.IsZero() {
		age = max(0, time.Since(oldest)).Round(time.Millisecond)
	}
	r.log.Info("outbox backlog", "pending", pending, "oldest_age_seconds", age.Seconds())
}

// nextBackoff returns the wait after one more failure.
func nextBackoff(prev, limit time.Duration) time.Duration {
	next := prev * 2
	if prev == 0 {
		next = firstBackoff
	}
	return min(next, limit)
}

// sleep waits for d, for ctx to end, or for a value on wake (nil never
// fires), and reports whether wake ended the wait.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-wake:
		return true
	}
	return false
}

// eventLinks links a round's span to the traces its events were written in.
func eventLinks(events []phone.Event) []trace.Link {
	var links []trace.Link
	for _, ev := range events {
		if ev.TraceParent == "" {
			continue
		}
		ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": ev.TraceParent})
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	return links
}
