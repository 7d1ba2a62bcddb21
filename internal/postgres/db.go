// Package postgres stores phones and their outbox in a PostgreSQL database,
// which several replicas of phonesd may share.
package postgres

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/phonesd/phonesd/internal/groupcommit"
	"github.com/phonesd/phonesd/internal/migration"
	"github.com/phonesd/phonesd/internal/phone"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Advisory lock keys. PostgreSQL scopes advisory locks to one database, so
// the keys only have to be unique among phonesd's own. Each is the ASCII
// bytes of "phonesd" followed by a number.
const (
	// migrationLockKey is held, at session level, for a whole migration run,
	// so that replicas starting at once apply each migration exactly once.
	migrationLockKey int64 = 0x70686f6e65736401
	// outboxOrderLockKey was held, at transaction level, by every
	// transaction that appended to the outbox, before migration 0005
	// ordered the outbox by transaction id; that migration takes it, to
	// come after the writers of the previous version.
	outboxOrderLockKey int64 = 0x70686f6e65736402
	// accountLockClass is the first key of the account locks, taken with
	// the two-key advisory lock functions (see accountLocks), whose keys
	// PostgreSQL keeps apart from the one-key locks above.
	accountLockClass int32 = 0x70686f6e
)

// Defaults of Options.
const (
	DefaultMaxConns         = 16
	DefaultStatementTimeout = 5 * time.Second
	DefaultConnectTimeout   = 2 * time.Second
)

// Options tunes the pool. Zero values take the defaults.
type Options struct {
	MaxConns         int32         // default 16
	StatementTimeout time.Duration // default 5s, set as the statement_timeout run-time parameter of every connection
	ConnectTimeout   time.Duration // default 2s: a dial to an unreachable server fails fast
	// Instruments tell about the commits of creates.
	Instruments groupcommit.Instruments
}

// DB is phonesd's storage on a PostgreSQL database.
type DB struct {
	pool  *pgxpool.Pool
	lease *Lease
	// creates gathers concurrent creates into shared transactions: each
	// commit waits for the WAL to reach disk, which a batch does once.
	creates *groupcommit.Batcher[phone.Creation, phone.Outcome]
}

// Open connects to the database at dbURL, a postgres:// or postgresql:// URL,
// checks that the server answers, and applies the embedded migrations. It
// returns an error when the URL is invalid, the server cannot be reached
// within the connect timeout, or a migration fails. Error texts never hold
// the URL's password. The statement timeout of opts, which also bounds how
// long a session may sit idle inside a transaction, overrides any given in
// the URL.
func Open(ctx context.Context, dbURL string, opts Options) (*DB, error) {
	set, err := parse(dbURL, opts)
	if err != nil {
		return nil, err
	}
	cfg := set.pool
	guard := &standbyGuard{}
	cfg.ConnConfig.Tracer = guard
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, redact(fmt.Errorf("open %s: %w", set.where, err), set.secrets)
	}
	guard.pool.Store(pool)
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, redact(fmt.Errorf("open %s: %w", set.where, err), set.secrets)
	}
	if err := migrate(ctx, cfg.ConnConfig); err != nil {
		pool.Close()
		return nil, redact(fmt.Errorf("migrate %s: %w", set.where, err), set.secrets)
	}
	db := &DB{pool: pool, lease: newLease(cfg.ConnConfig)}
	db.creates = groupcommit.New(db.CreatePhones, groupcommit.Options{Timeout: opts.StatementTimeout, Instruments: opts.Instruments})
	return db, nil
}

// Check returns the error Open would return for dbURL before connecting: a
// URL of another scheme, a malformed one, or one that would connect to a
// server refusing writes. It reaches nothing.
func Check(dbURL string) error {
	_, err := parse(dbURL, Options{})
	return err
}

// Ping connects once to the database at dbURL as Open would, to a server
// that accepts writes, and returns the server's version. It changes
// nothing: no migration runs. Its errors are Check's, and the connection's,
// never holding the URL's password.
func Ping(ctx context.Context, dbURL string) (string, error) {
	set, err := parse(dbURL, Options{})
	if err != nil {
		return "", err
	}
	conn, err := pgx.ConnectConfig(ctx, set.pool.ConnConfig)
	if err != nil {
		return "", redact(fmt.Errorf("connect to %s: %w", set.where, err), set.secrets)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var version string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		return "", redact(fmt.Errorf("query %s: %w", set.where, err), set.secrets)
	}
	return version, nil
}

// settings are a database URL and Options read as Open reads them.
type settings struct {
	pool *pgxpool.Config
	// secrets are what error texts must not show.
	secrets []string
	// where names the database for error texts.
	where string
}

// parse reads dbURL and opts for Open, with the defaults of opts applied.
func parse(dbURL string, opts Options) (settings, error) {
	if !strings.HasPrefix(dbURL, "postgres://") && !strings.HasPrefix(dbURL, "postgresql://") {
		return settings{}, errors.New("open postgres: URL must start with postgres:// or postgresql://")
	}
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		// pgx quotes the URL and parts of it in its parse errors, hiding
		// passwords on a best-effort basis only; in a malformed URL, what is
		// the password is anyone's guess. So the error is only shown for a
		// URL that cannot hold a password.
		if mayHoldPassword(dbURL) {
			return settings{}, errors.New("open postgres: malformed URL, not shown as it may hold a password (percent-encode reserved characters in the user name and password)")
		}
		return settings{}, fmt.Errorf("open postgres: %w", err)
	}
	secrets := urlSecrets(dbURL)
	if pw := cfg.ConnConfig.Password; pw != "" {
		secrets = append(secrets, pw, url.QueryEscape(pw), url.PathEscape(pw))
	}

	opts.MaxConns = cmp.Or(max(opts.MaxConns, 0), DefaultMaxConns)
	opts.StatementTimeout = cmp.Or(max(opts.StatementTimeout, 0), DefaultStatementTimeout)
	opts.ConnectTimeout = cmp.Or(max(opts.ConnectTimeout, 0), DefaultConnectTimeout)
	cfg.MaxConns = opts.MaxConns
	cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = millis(opts.StatementTimeout)
	// A 200 promises a commit that survives the database server's crash:
	// never rely on the server's, database's or role's default for that.
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	// A session that stops talking inside a transaction, say behind a
	// network partition, would hold its account locks, and with its
	// transaction id the delivery of every later event (see
	// readEventsSQL), until TCP gave up. No transaction of the store
	// waits on its client for long, so the server may end such a session
	// as soon as a statement would have timed out.
	cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = millis(opts.StatementTimeout)

	if err := requireWritable(dbURL, &cfg.ConnConfig.Config); err != nil {
		return settings{}, err
	}
	return settings{pool: cfg, secrets: secrets, where: describe(cfg.ConnConfig)}, nil
}

// millis formats d as a run-time parameter in milliseconds, rounded up so
// that a positive duration never becomes 0, which would disable the limit.
func millis(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Millisecond-1)/time.Millisecond), 10)
}

// describe names the database of cfg for error texts, without credentials:
// every host the URL names, in the order they are tried.
func describe(cfg *pgx.ConnConfig) string {
	name := func(host string, port uint16) string {
		if strings.HasPrefix(host, "/") {
			return host
		}
		return net.JoinHostPort(host, strconv.Itoa(int(port)))
	}
	hosts := []string{name(cfg.Host, cfg.Port)}
	for _, fb := range cfg.Fallbacks {
		// sslmode=prefer adds each host twice, with and without TLS.
		if h := name(fb.Host, fb.Port); !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return "postgres " + strings.Join(hosts, ",") + "/" + cfg.Database
}

// Close releases the relay lease and closes the pool, waiting for the
// connections in use to be released.
func (db *DB) Close() error {
	db.creates.Close()
	db.lease.Close()
	db.pool.Close()
	return nil
}

// PoolStats counts the pool's connections: in use, idle, and open in all.
func (db *DB) PoolStats() (acquired, idle, total int32) {
	st := db.pool.Stat()
	return st.AcquiredConns(), st.IdleConns(), st.TotalConns()
}

// Ping makes a round trip to the server, so it fails when no connection can
// be had.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

// redactedError hides secrets in the text of the error it wraps. pgx
// redacts passwords from its URL parser's errors on a best-effort basis
// only, and says so.
type redactedError struct {
	err     error
	secrets []string
}

func (e *redactedError) Error() string {
	s := e.err.Error()
	for _, secret := range e.secrets {
		s = strings.ReplaceAll(s, secret, "xxxxx")
	}
	return s
}

func (e *redactedError) Unwrap() error { return e.err }

// redact returns err with every non-empty secret hidden from its text, the
// longest first so that no part of one survives the hiding of another.
func redact(err error, secrets []string) error {
	var keep []string
	for _, s := range secrets {
		if s != "" && !slices.Contains(keep, s) {
			keep = append(keep, s)
		}
	}
	if len(keep) == 0 {
		return err
	}
	slices.SortFunc(keep, func(a, b string) int { return len(b) - len(a) })
	return &redactedError{err: err, secrets: keep}
}

// mayHoldPassword reports whether raw may hold a password, even in a form
// no parser would accept: user information ends with '@', a password
// parameter is named so, maybe percent-encoded.
func mayHoldPassword(raw string) bool {
	return strings.ContainsAny(raw, "@%") || strings.Contains(strings.ToLower(raw), "password")
}

// urlSecrets returns the passwords a connection URL may hold, both as
// written and decoded: an error text may quote either. It reads the URL
// leniently and more than one way, as pgx and net/url do not always agree
// on where a password ends.
func urlSecrets(raw string) []string {
	var secrets []string
	add := func(s string) {
		secrets = append(secrets, s)
		if dec, err := url.PathUnescape(s); err == nil {
			secrets = append(secrets, dec)
		}
		if dec, err := url.QueryUnescape(s); err == nil {
			secrets = append(secrets, dec)
		}
	}
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil
	}
	beforeQuery, query, _ := strings.Cut(rest, "?")
	// Read as net/url would: the user information ends at the last '@'.
	if at := strings.LastIndex(beforeQuery, "@"); at >= 0 {
		if _, password, ok := strings.Cut(beforeQuery[:at], ":"); ok {
			add(password)
		}
	}
	// password and sslpassword, however their names are escaped.
	for _, kv := range strings.Split(query, "&") {
		key, value, _ := strings.Cut(kv, "=")
		if dec, err := url.QueryUnescape(key); err == nil {
			key = dec
		}
		if strings.Contains(strings.ToLower(key), "password") {
			add(value)
		}
	}
	if u, err := url.Parse(raw); err == nil {
		if password, ok := u.User.Password(); ok {
			secrets = append(secrets, password)
		}
	}
	return secrets
}

const (
	createMigrationsSQL = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  applied_at TIMESTAMPTZ NOT NULL
)`
	appliedMigrationsSQL = `SELECT version FROM schema_migrations`
	recordMigrationSQL   = `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`
	lockSQL              = `SELECT pg_advisory_lock($1)`
	unlockSQL            = `SELECT pg_advisory_unlock($1)`
)

// migrate applies, in version order, each embedded migration not yet
// recorded in schema_migrations, each in its own transaction.
//
// It runs on a connection of its own that holds migrationLockKey for the
// whole run, so that replicas starting at once take turns: the first
// applies what is missing, the others then find nothing to do. Closing the
// connection releases the lock even when unlocking fails. The connection has
// no statement_timeout: a replica may wait for another's migrations, and a
// migration may rightly take long; ctx bounds both.
func migrate(ctx context.Context, poolConfig *pgx.ConnConfig) error {
	migrations, err := migration.Read(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	cfg := poolConfig.Copy()
	cfg.RuntimeParams["statement_timeout"] = "0"
	cfg.RuntimeParams["idle_in_transaction_session_timeout"] = "0"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		conn.Close(closeCtx)
	}()

	if _, err := conn.Exec(ctx, lockSQL, migrationLockKey); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if err := applyMigrations(ctx, conn, migrations); err != nil {
		return err
	}
	// An unlock that fails leaves nothing behind: the deferred close ends
	// the session, which releases its locks.
	conn.Exec(ctx, unlockSQL, migrationLockKey)
	return nil
}

// applyMigrations applies the migrations not recorded yet; the caller holds
// migrationLockKey.
func applyMigrations(ctx context.Context, conn *pgx.Conn, migrations []migration.Migration) error {
	// Created under the lock: concurrent CREATE TABLE IF NOT EXISTS of one
	// table can fail on PostgreSQL's catalog unique indexes.
	if _, err := conn.Exec(ctx, createMigrationsSQL); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	rows, err := conn.Query(ctx, appliedMigrationsSQL)
	if err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	for _, m := range migrations {
		if slices.Contains(applied, int32(m.Version)) {
			continue
		}
		if err := applyMigration(ctx, conn, m); err != nil {
			return fmt.Errorf("apply %s: %w", m.Name, err)
		}
	}
	return nil
}

// applyMigration applies and records m in one transaction.
func applyMigration(ctx context.Context, conn *pgx.Conn, m migration.Migration) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)

	// Without arguments pgx uses the simple protocol, which runs a file of
	// several statements in one call.
	if _, err := tx.Exec(ctx, m.SQL); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, recordMigrationSQL, m.Version, time.Now().UTC()); err != nil {
		return fmt.Errorf("record version: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
