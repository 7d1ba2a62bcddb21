// Package groupcommit lets many callers share one durable commit. Each
// caller still waits for its own commit, but the calls that arrive while a
// commit is in progress are gathered and committed together next, so a
// disk that takes milliseconds per fsync serves thousands of writes a second.
// A lone call is committed at once: batching never adds a fixed wait.
package groupcommit

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("group commit: closed")

// Commit writes a batch in one transaction. It returns one outcome per input,
// in order, when the transaction committed (an outcome may carry that
// input's own failure, such as a duplicate), or an error when the whole
// batch failed. The error is wrapped by NotCommitted when the batch certainly
// committed nothing; any other error leaves the outcome unknown.
type Commit[In, Out any] func(ctx context.Context, batch []In) ([]Out, error)

// NotCommitted marks err, the failure of a whole batch, as certain to have
// committed nothing: the database reported that the transaction failed, or
// the batch failed before its commit was sent. Only such a batch is retried
// call by call. Any other failure leaves the batch's outcome unknown: the
// commit may have reached the database though its answer never came back,
// and a call retried alone would then meet the batch's own rows (a create
// would find its own phone and be told it is a duplicate).
func NotCommitted(err error) error {
	if err == nil {
		return nil
	}
	return &notCommittedError{err: err}
}

type notCommittedError struct{ err error }

func (e *notCommittedError) Error() string { return e.err.Error() }
func (e *notCommittedError) Unwrap() error { return e.err }

// IsNotCommitted reports whether err was marked by NotCommitted.
func IsNotCommitted(err error) bool {
	var nc *notCommittedError
	return errors.As(err, &nc)
}

// Options tunes a Batcher; zero fields take their defaults.
type Options struct {
	// MaxBatch bounds the calls in one commit; default 256.
	MaxBatch int
	// Timeout bounds one commit when its callers' deadlines are later or
	// absent; default 5s. A caller that cancels without a deadline (a
	// client that hangs up) does not abort the others' commit.
	Timeout time.Duration
	// QueueSize bounds the calls waiting for a commit; default 4096. A full
	// queue makes Do wait, within its caller's deadline.
	QueueSize int
	// Instruments tell about each commit; zero fields tell nothing.
	Instruments Instruments
}

// Instruments are what a Batcher tells the people who run it.
type Instruments struct {
	// Committed learns each commit's size, duration and failure.
	Committed func(size int, took time.Duration, err error)
	// Waiting learns each call that begins waiting for its commit (+1),
	// and each that stops (-1): their sum is the calls queued or being
	// committed, which grows while storage is slow or locked.
	Waiting func(delta int)
	// Tracer makes a span for each commit, linked to the span of each
	// call it carries: the commit is the child of no single request.
	Tracer trace.Tracer
}

// Batcher commits the calls of Do in batches, one batch at a time.
type Batcher[In, Out any] struct {
	commit Commit[In, Out]
	opts   Options
	queue  chan *call[In, Out]
	stop   chan struct{}
	done   chan struct{}
}

type call[In, Out any] struct {
	ctx    context.Context
	in     In
	result chan result[Out]
}

type result[Out any] struct {
	out Out
	err error
}

// New starts a Batcher that writes through commit; Close stops it.
func New[In, Out any](commit Commit[In, Out], opts Options) *Batcher[In, Out] {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 4096
	}
	b := &Batcher[In, Out]{
		commit: commit,
		opts:   opts,
		queue:  make(chan *call[In, Out], opts.QueueSize),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go b.loop()
	return b
}

// Do commits in with the calls waiting alongside it and returns its own
// outcome once the shared commit is durable. When ctx ends first it returns
// ctx's error; the write may then still commit, as with any write whose
// answer is lost.
func (b *Batcher[In, Out]) Do(ctx context.Context, in In) (Out, error) {
	if f := b.opts.Instruments.Waiting; f != nil {
		f(1)
		defer f(-1)
	}
	var zero Out
	c := &call[In, Out]{ctx: ctx, in: in, result: make(chan result[Out], 1)}
	select {
	case b.queue <- c:
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-b.stop:
		return zero, ErrClosed
	}
	select {
	case r := <-c.result:
		return r.out, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-b.done:
		select {
		case r := <-c.result:
			return r.out, r.err
		default:
			return zero, ErrClosed // queued after the last drain
		}
	}
}

// Close stops the Batcher once the batch in progress is committed; calls
// still queued fail with ErrClosed.
func (b *Batcher[In, Out]) Close() {
	close(b.stop)
	<-b.done
}

func (b *Batcher[In, Out]) loop() {
	defer close(b.done)
	batch := make([]*call[In, Out], 0, b.opts.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case c := <-b.queue:
			batch = append(batch, c)
		case <-b.stop:
			b.failQueued()
			return
		}
		// Take whatever else is already waiting, without waiting for more.
	gather:
		for len(batch) < b.opts.MaxBatch {
			select {
			case c := <-b.queue:
				batch = append(batch, c)
			default:
				break gather
			}
		}
		b.run(batch)
	}
}

// run commits one batch. Calls whose caller has already gone are left out:
// nobody would learn their outcome. The batch must finish by the earliest
// deadline of its callers, so that a caller told its write failed really
// wrote nothing. When the batch certainly committed nothing and failed for a
// reason other than time, each call is retried alone, so that one bad input
// fails only itself; after any other failure each call gets the batch's
// error, since its write may have been committed.
func (b *Batcher[In, Out]) run(batch []*call[In, Out]) {
	live := batch[:0]
	deadline := time.Now().Add(b.opts.Timeout)
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.result <- result[Out]{err: err}
			continue
		}
		if d, ok := c.ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	err := b.commitAll(ctx, live)
	if err == nil {
		return
	}
	if len(live) == 1 || ctx.Err() != nil || !IsNotCommitted(err) {
		for _, c := range live {
			c.result <- result[Out]{err: err}
		}
		return
	}
	for _, c := range live {
		if err := b.commitAll(ctx, []*call[In, Out]{c}); err != nil {
			c.result <- result[Out]{err: err}
		}
	}
}

// commitAll commits calls together and answers each, or returns the error
// of a batch that failed as a whole without answering any.
func (b *Batcher[In, Out]) commitAll(ctx context.Context, calls []*call[In, Out]) (err error) {
	ins := make([]In, len(calls))
	for i, c := range calls {
		ins[i] = c.in
	}
	if t := b.opts.Instruments.Tracer; t != nil {
		links := make([]trace.Link, 0, len(calls))
		for _, c := range calls {
			if l := trace.LinkFromContext(c.ctx); l.SpanContext.IsValid() {
				links = append(links, l)
			}
		}
		var span trace.Span
		ctx, span = t.Start(ctx, "groupcommit.commit", trace.WithLinks(links...),
			trace.WithAttributes(attribute.Int("groupcommit.batch_size", len(calls))))
		defer func() {
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}()
	}
	if f := b.opts.Instruments.Committed; f != nil {
		began := time.Now()
		defer func() { f(len(calls), time.Since(began), err) }()
	}
	outs, err := b.commit(ctx, ins)
	if err != nil {
		return err
	}
	for i, c := range calls {
		c.result <- result[Out]{out: outs[i]}
	}
	return nil
}

func (b *Batcher[In, Out]) failQueued() {
	for {
		select {
		case c := <-b.queue:
			c.result <- result[Out]{err: ErrClosed}
		default:
			return
		}
	}
}
