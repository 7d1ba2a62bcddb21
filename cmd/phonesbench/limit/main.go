// Command limit is phonesbench's yardstick for durable creates: the least a
// Go program does to create a phone as durably as phonesd, measured beside
// it (phonesbench --limit). It checks an HS256 token, decodes and
// validates the body, and hands the create to one writer goroutine, which
// commits whatever creates are queued in one transaction: each phone under
// a unique index on its account and duplicate key, then its event of about
// 530 bytes in the outbox, one COMMIT (SQLite in WAL with synchronous=FULL;
// PostgreSQL with synchronous_commit=on), and only then the answers: 200
// with the phone's id, or 409 for a duplicate.
//
// It does nothing phonesd does beyond that: no relay reading the outbox
// back, no index but the duplicate rule's, no idempotency keys, metrics or
// limits. It reads PHONES_ADDR, PHONES_DATABASE_URL (sqlite:PATH or a
// postgres:// URL), PHONES_JWT_ISSUER, PHONES_JWT_AUDIENCE and
// PHONES_LIMIT_KEY, the HS256 secret in hex, and stops on SIGTERM.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Getenv)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "limit:", err)
		os.Exit(1)
	}
}

// maxBatch bounds the creates of one transaction, as phonesd's group commit does.
const maxBatch = 256

func run(ctx context.Context, getenv func(string) string) error {
	v, err := newVerifier(getenv("PHONES_LIMIT_KEY"), getenv("PHONES_JWT_ISSUER"), getenv("PHONES_JWT_AUDIENCE"))
	if err != nil {
		return err
	}
	url := getenv("PHONES_DATABASE_URL")
	var st store
	switch {
	case strings.HasPrefix(url, "sqlite:"):
		st, err = openSQLite(ctx, strings.TrimPrefix(url, "sqlite:"))
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		st, err = openPostgres(ctx, url)
	default:
		err = errors.New("PHONES_DATABASE_URL: want sqlite:PATH or postgres://")
	}
	if err != nil {
		return err
	}
	defer st.close()

	w := newWriter(st)
	defer w.close()
	mux := http.NewServeMux()
	mux.Handle("POST /accounts/v1/accounts/{account}/phones", &handler{verify: v, writer: w})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, _ *http.Request) { rw.WriteHeader(http.StatusOK) })
	ln, err := net.Listen("tcp", getenv("PHONES_ADDR"))
	if err != nil {
		return fmt.Errorf("PHONES_ADDR: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Println("limit listening on", ln.Addr())
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// store commits one batch of creates in one transaction, setting each
// create's id, or its duplicate flag.
type store interface {
	commit(ctx context.Context, batch []*create) error
	close() error
}

// writer is the one goroutine that writes: it takes whatever creates are
// queued, up to maxBatch, and commits them together.
type writer struct {
	queue chan *create
	done  chan struct{}
}

func newWriter(st store) *writer {
	w := &writer{queue: make(chan *create, 4096), done: make(chan struct{})}
	go w.loop(st)
	return w
}

func (w *writer) loop(st store) {
	defer close(w.done)
	batch := make([]*create, 0, maxBatch)
	for c := range w.queue {
		batch = append(batch[:0], c)
	gather:
		for len(batch) < maxBatch {
			select {
			case c, ok := <-w.queue:
				if !ok {
					break gather
				}
				batch = append(batch, c)
			default:
				break gather
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := st.commit(ctx, batch)
		cancel()
		for _, c := range batch {
			c.err = err
			close(c.done)
		}
	}
}

// close stops the writer once the queued creates are committed; the
// server has stopped taking requests by then.
func (w *writer) close() {
	close(w.queue)
	<-w.done
}

// do queues c and waits for its commit.
func (w *writer) do(ctx context.Context, c *create) error {
	c.done = make(chan struct{})
	select {
	case w.queue <- c:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}
