package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// readOnlyTransaction is PostgreSQL's SQLSTATE for a write refused because
// the transaction is read-only: on a standby, or on a primary an operator
// fenced with default_transaction_read_only.
const readOnlyTransaction = "25006"

// requireWritable makes every connection of cfg, the pool's and the relay
// lease's alike, land on a server that accepts writes. A URL may name
// several hosts (postgres://h1:5432,h2:5432/db), as libpq's may: pgx tries
// them in order and, with target_session_attrs=read-write, skips a standby.
// phonesd writes, so it asks that of every URL: after a failover, a new
// connection finds the promoted standby whichever host it names first. It
// returns an error when the URL asks for a standby or a read-only server.
func requireWritable(dbURL string, cfg *pgconn.Config) error {
	u, err := url.Parse(dbURL)
	if err != nil {
		// pgx parsed it; what net/url refuses is not phonesd's to judge.
		cfg.ValidateConnect = pgconn.ValidateConnectTargetSessionAttrsReadWrite
		return nil
	}
	switch attrs := u.Query().Get("target_session_attrs"); attrs {
	case "", "any", "read-write":
		cfg.ValidateConnect = pgconn.ValidateConnectTargetSessionAttrsReadWrite
	case "primary":
		// pgx checks pg_is_in_recovery(), which a fenced primary passes;
		// the standby guard drops such a connection at its first write.
	default:
		return fmt.Errorf("open postgres: target_session_attrs=%s would connect to a server that refuses writes; phonesd writes: use read-write (the default) or primary", attrs)
	}
	return nil
}

// standbyGuard drops every connection of the pool as soon as one statement
// finds its server read-only. A server that accepted writes when the
// connection was made can refuse them later only when an operator fences
// it (default_transaction_read_only, as failover tools do to an old
// primary they cannot stop); its other connections are then as useless.
// The pool closes idle connections at once and busy ones when they are
// released, and the new ones go through requireWritable's check to
// whichever host accepts writes now. It is the pool's query tracer, since
// that sees every statement's error in one place.
type standbyGuard struct {
	pool atomic.Pointer[pgxpool.Pool]
}

func (g *standbyGuard) check(err error) {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != readOnlyTransaction {
		return
	}
	if p := g.pool.Load(); p != nil {
		p.Reset()
	}
}

// TraceQueryStart is part of pgx.QueryTracer.
func (g *standbyGuard) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

// TraceQueryEnd is part of pgx.QueryTracer.
func (g *standbyGuard) TraceQueryEnd(_ context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	g.check(data.Err)
}

// TraceBatchStart is part of pgx.BatchTracer.
func (g *standbyGuard) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

// TraceBatchQuery is part of pgx.BatchTracer.
func (g *standbyGuard) TraceBatchQuery(_ context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	g.check(data.Err)
}

// TraceBatchEnd is part of pgx.BatchTracer.
func (g *standbyGuard) TraceBatchEnd(_ context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	g.check(data.Err)
}
