// Package sqlite stores phones and their outbox in one SQLite file.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/phonesd/phonesd/internal/groupcommit"
	"github.com/phonesd/phonesd/internal/migration"
	"github.com/phonesd/phonesd/internal/phone"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// DB is phonesd's storage on one SQLite file.
type DB struct {
	// writer has a single connection: SQLite admits one writer at a time,
	// and waiting for Go's pool, unlike waiting on SQLite's busy handler,
	// respects the caller's ctx.
	writer *sql.DB
	// reader is a pool of read-only connections; in WAL mode they never
	// block the writer nor wait for it.
	reader *sql.DB
	// creates gathers concurrent creates into shared transactions: with
	// synchronous=FULL each commit costs an fsync, which a batch pays once.
	creates *groupcommit.Batcher[phone.Creation, phone.Outcome]
	// writes and reads are the prepared statements of the writer and the
	// readers (see statements.go); prepared lists them all, to be closed.
	writes   *writes
	reads    *reads
	prepared []*sql.Stmt
	// checkpointer copies the WAL into the database file off the writer's
	// path (see checkpoint.go).
	checkpointer   *sql.DB
	stopCheckpoint chan struct{}
	checkpointDone chan struct{}
	// committed is Options.Committed, or a function that does nothing.
	committed func([]phone.Event)
}

// Options tunes a DB; the zero value is the service's.
type Options struct {
	// Instruments tell about the commits of creates.
	Instruments groupcommit.Instruments
	// Committed, when set, is given the events of each transaction that
	// wrote some, with their seqs, once it has committed: the relay's
	// outbox.Handoff. The outbox's order is the single writer's commit
	// order, with no seq skipped, which is what a handoff needs. It is
	// called on the writer's path, so it must return at once; two calls
	// may come out of commit order.
	Committed func(events []phone.Event)
}

// Open opens or creates the database file at path (its directory must exist),
// sets WAL mode and synchronous=FULL on every connection, and applies the
// embedded migrations. It returns an error when the file cannot be opened, is
// not in WAL mode afterwards, or a migration fails.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	return open(ctx, path, opts, defaultCheckpoints)
}

func open(ctx context.Context, path string, opts Options, ckpt checkpoints) (*DB, error) {
	if err := createPrivate(path); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	writerDSN, err := dsn(path, true)
	if err != nil {
		return nil, err
	}
	readerDSN, err := dsn(path, false)
	if err != nil {
		return nil, err
	}

	writer, err := sql.Open("sqlite", writerDSN)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	// An idle connection never expires: reopening one costs the pragmas again.
	writer.SetConnMaxIdleTime(0)
	writer.SetConnMaxLifetime(0)

	db := &DB{writer: writer, committed: opts.Committed}
	if db.committed == nil {
		db.committed = func([]phone.Event) {}
	}
	if err := db.prepare(ctx, path); err != nil {
		writer.Close()
		return nil, err
	}
	db.writes, db.prepared, err = prepareWrites(ctx, writer)
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}

	reader, err := sql.Open("sqlite", readerDSN)
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("open %s for reading: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	reader.SetMaxOpenConns(n)
	reader.SetMaxIdleConns(n)
	db.reader = reader
	if err := reader.PingContext(ctx); err != nil {
		writer.Close()
		reader.Close()
		return nil, fmt.Errorf("open %s for reading: %w", path, err)
	}
	var readStmts []*sql.Stmt
	db.reads, readStmts, err = prepareReads(ctx, reader)
	if err != nil {
		writer.Close()
		reader.Close()
		return nil, fmt.Errorf("open %s for reading: %w", path, err)
	}
	checkpointer, err := sql.Open("sqlite", writerDSN)
	if err != nil {
		writer.Close()
		reader.Close()
		return nil, fmt.Errorf("open %s for checkpoints: %w", path, err)
	}
	checkpointer.SetMaxOpenConns(1)
	db.checkpointer = checkpointer
	db.stopCheckpoint, db.checkpointDone = make(chan struct{}), make(chan struct{})
	go ckpt.loop(checkpointer, writer, db.stopCheckpoint, db.checkpointDone)
	db.prepared = append(db.prepared, readStmts...)
	db.creates = groupcommit.New(db.CreatePhones, groupcommit.Options{Instruments: opts.Instruments})
	return db, nil
}

// createPrivate creates an empty database file at path, with mode 0600
// whatever the umask, unless one exists: its rows hold phone numbers.
// SQLite would create it 0644, and gives its WAL and shared-memory files the
// database file's mode.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Chmod(0o600)
}

// dsn returns the driver's name for the file at path: the durable
// parameters (see durable), foreign keys, and for the writer the cache and
// checkpoint tuning that is this store's own; readers are query_only, so
// no write can bypass the single writer.
func dsn(path string, writer bool) (string, error) {
	q := durable(writer)
	q.Add("_pragma", "foreign_keys(1)")
	if writer {
		// A batch of creates dirties pages all over the indexes; a cache
		// that holds them keeps SQLite from spilling them to the WAL in the
		// middle of the transaction and writing them again at commit. 8 MiB
		// holds the largest batch's pages (256 creates dirty about 600)
		// with the indexes' interior pages. Not more: every commit walks
		// the whole cache's hash table, which at 32 MiB was a tenth of the
		// writer's time.
		q.Add("_pragma", "cache_size(-8192)")
		q.Add("_pragma", "wal_autocheckpoint(0)")
		// A multi-row INSERT keeps a statement journal, to undo its own
		// rows if a later one fails; past 64 KiB SQLite spills it to a
		// temporary file, which cost open, write and close calls on every
		// batch. In memory it is a copy of the pages it saves.
		q.Add("_pragma", "temp_store(MEMORY)")
	} else {
		q.Set("_query_only", "1")
	}
	return fileURL(path, q)
}

// durable returns the parameters that make every connection's commits
// durable: a committed write must survive a power cut, which in WAL mode
// takes synchronous=FULL (NORMAL may lose the last commits). A writer
// begins transactions IMMEDIATE, so that a transaction takes the write
// lock up front instead of failing with SQLITE_BUSY when it upgrades.
func durable(writer bool) url.Values {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	if writer {
		q.Set("_txlock", "immediate")
	}
	return q
}

// DurableWriterDSN returns the driver's name for a connection that writes
// the file at path with the durability of this store's writer (WAL,
// synchronous=FULL, transactions IMMEDIATE, a busy timeout), without the
// store's own tuning of its cache and checkpoints. It is for yardsticks
// that measure a commit beside the store's, so that both commit alike.
func DurableWriterDSN(path string) (string, error) {
	return fileURL(path, durable(true))
}

// fileURL returns the file: URI of path with the parameters q. A file: URI
// escapes the path, so a '?' or '%' in a directory name cannot be read as
// the start of the parameters.
func fileURL(path string, q url.Values) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", path, err)
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	return u.String(), nil
}

// prepare checks the journal mode and migrates the schema.
func (db *DB) prepare(ctx context.Context, path string) error {
	// A file system without shared memory support silently keeps the
	// rollback journal; refuse to run with durability other than promised.
	var mode string
	if err := db.writer.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("open %s: journal mode is %q, want wal", path, mode)
	}
	if err := db.migrate(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", path, err)
	}
	return nil
}

// Close finishes the commit in progress and closes both connection pools.
func (db *DB) Close() error {
	db.creates.Close()
	close(db.stopCheckpoint)
	<-db.checkpointDone
	if err := errors.Join(closeAll(db.prepared), db.checkpointer.Close(), db.reader.Close(), db.writer.Close()); err != nil {
		return fmt.Errorf("close database: %w", err)
	}
	return nil
}

// Ping makes a round trip to the file, so it fails when it cannot be read.
func (db *DB) Ping(ctx context.Context) error {
	// Through a reader: the single writer may be busy with a batch for a
	// while under load, which says nothing about whether storage answers.
	var one int
	if err := db.reader.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

const (
	createMigrationsSQL = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  applied_at INTEGER NOT NULL
)`
	migrationAppliedSQL = `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?)`
	recordMigrationSQL  = `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`
)

// migrate applies, in version order, each embedded migration not yet
// recorded in schema_migrations, each in its own transaction.
func (db *DB) migrate(ctx context.Context) error {
	migrations, err := migration.Read(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	if _, err := db.writer.ExecContext(ctx, createMigrationsSQL); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for _, m := range migrations {
		if err := db.applyMigration(ctx, m); err != nil {
			return fmt.Errorf("apply %s: %w", m.Name, err)
		}
	}
	return nil
}

// applyMigration checks and applies m in one IMMEDIATE transaction, so two
// processes opening the same new file cannot both apply it.
func (db *DB) applyMigration(ctx context.Context, m migration.Migration) error {
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()

	var applied bool
	if err := tx.QueryRowContext(ctx, migrationAppliedSQL, m.Version).Scan(&applied); err != nil {
		return fmt.Errorf("check version: %w", err)
	}
	if applied {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, recordMigrationSQL, m.Version, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("record version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
