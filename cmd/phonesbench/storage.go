package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/phonesd/phonesd/internal/phone"
	"github.com/phonesd/phonesd/internal/postgres"
	"github.com/phonesd/phonesd/internal/sqlite"
	"github.com/phonesd/phonesd/internal/testkit/latency"
)

// probePayload is the text each bare commit inserts, about the size of a
// phone row.
var probePayload = strings.Repeat("x", 200)

// storageTarget is the storage of one phonesd run, as the bench reaches it
// directly.
type storageTarget interface {
	// databaseURL is phonesd's PHONES_DATABASE_URL.
	databaseURL() string
	// open opens the storage as phonesd would, migrating it.
	open(ctx context.Context) (batchStore, error)
	// commitLatency times n bare inserts, each committed alone, on the same
	// disk or server and with the same durability settings as phonesd's.
	commitLatency(ctx context.Context, n int) (storageResult, error)
}

// batchStore is what the preload needs of a store.
type batchStore interface {
	CreatePhones(ctx context.Context, cs []phone.Creation) ([]phone.Outcome, error)
	PendingEvents(ctx context.Context, limit int) ([]phone.Event, error)
	MarkDelivered(ctx context.Context, through int64, epoch int64) error
	Close() error
}

// sqliteTarget is phonesd's SQLite file in dir.
type sqliteTarget struct{ dir string }

func (s sqliteTarget) path() string        { return filepath.Join(s.dir, "phones.db") }
func (s sqliteTarget) databaseURL() string { return "sqlite:" + s.path() }

func (s sqliteTarget) open(ctx context.Context) (batchStore, error) {
	return sqlite.Open(ctx, s.path(), sqlite.Options{})
}

// commitLatency commits on a scratch file beside phonesd's, opened with the
// durability of internal/sqlite's writer: WAL and synchronous=FULL.
func (s sqliteTarget) commitLatency(ctx context.Context, n int) (storageResult, error) {
	path := filepath.Join(s.dir, "commit-probe.db")
	dsn, err := sqlite.DurableWriterDSN(path)
	if err != nil {
		return storageResult{}, err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return storageResult{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer func() {
		db.Close()
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(path + suffix)
		}
	}()
	db.SetMaxOpenConns(1)

	var journal string
	var synchronous int
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&journal); err != nil {
		return storageResult{}, fmt.Errorf("PRAGMA journal_mode: %w", err)
	}
	if err := db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&synchronous); err != nil {
		return storageResult{}, fmt.Errorf("PRAGMA synchronous: %w", err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE probe (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, payload TEXT NOT NULL)`); err != nil {
		return storageResult{}, fmt.Errorf("create probe table: %w", err)
	}
	times, err := timeCommits(n, func() error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, `INSERT INTO probe (at, payload) VALUES (?, ?)`, time.Now().UnixMilli(), probePayload); err != nil {
			return err
		}
		return tx.Commit()
	})
	if err != nil {
		return storageResult{}, err
	}
	return storageResult{
		Commits: n,
		P50ms:   millis(times.Quantile(0.50)),
		P99ms:   millis(times.Quantile(0.99)),
		Settings: []setting{
			{"journal_mode", journal},
			{"synchronous", synchronousName(synchronous)},
		},
	}, nil
}

// synchronousName names a PRAGMA synchronous value.
func synchronousName(v int) string {
	names := []string{"OFF", "NORMAL", "FULL", "EXTRA"}
	if v >= 0 && v < len(names) {
		return strconv.Itoa(v) + "(" + names[v] + ")"
	}
	return strconv.Itoa(v)
}

// postgresTarget is the bench's PostgreSQL database at url.
type postgresTarget struct{ url string }

func (p postgresTarget) databaseURL() string { return p.url }

func (p postgresTarget) open(ctx context.Context) (batchStore, error) {
	return postgres.Open(ctx, p.url, postgres.Options{})
}

// commitLatency commits on a scratch table of the bench's database. The
// table is a regular one: PostgreSQL does not wait for the WAL flush when a
// transaction wrote only temporary (or unlogged) tables, which would time
// no commit at all.
func (p postgresTarget) commitLatency(ctx context.Context, n int) (storageResult, error) {
	conn, err := pgx.Connect(ctx, p.url)
	if err != nil {
		return storageResult{}, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var settings []setting
	for _, name := range []string{"fsync", "synchronous_commit", "wal_sync_method", "full_page_writes"} {
		var v string
		if err := conn.QueryRow(ctx, "SHOW "+name).Scan(&v); err != nil {
			return storageResult{}, fmt.Errorf("SHOW %s: %w", name, err)
		}
		settings = append(settings, setting{name, v})
	}
	const table = "phonesbench_commit_probe"
	if _, err := conn.Exec(ctx, `CREATE TABLE `+table+` (id bigserial PRIMARY KEY, at timestamptz NOT NULL, payload text NOT NULL)`); err != nil {
		return storageResult{}, fmt.Errorf("create probe table: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS `+table)
	times, err := timeCommits(n, func() error {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `INSERT INTO `+table+` (at, payload) VALUES ($1, $2)`, time.Now(), probePayload); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
	if err != nil {
		return storageResult{}, err
	}
	return storageResult{
		Commits:  n,
		P50ms:    millis(times.Quantile(0.50)),
		P99ms:    millis(times.Quantile(0.99)),
		Settings: settings,
	}, nil
}

// timeCommits runs commit n times and returns the summary of their
// durations.
func timeCommits(n int, commit func() error) (*latency.Summary, error) {
	times := latency.New()
	for range n {
		start := time.Now()
		if err := commit(); err != nil {
			return nil, fmt.Errorf("bare commit: %w", err)
		}
		times.Record(time.Since(start))
	}
	return times, nil
}

// preloadPhones stores n phones of benchTenant, spread evenly over accounts
// 1..accounts, through the store's batch method, batch per transaction,
// and marks their events sent, as the relay would have. Its numbers have 14
// digits, the load's 15, so that no create of the load is a duplicate of
// one of them. It calls progress every few seconds and returns how long
// the preload took.
func preloadPhones(ctx context.Context, st storageTarget, n int, accounts int64, batch int, progress func(done int, elapsed time.Duration)) (time.Duration, error) {
	db, err := st.open(ctx)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	numbers, err := newNumberSource(14)
	if err != nil {
		return 0, err
	}
	area, mobile := int64(11), string(phone.Mobile)
	start := time.Now()
	said := start
	for done := 0; done < n; {
		cs := make([]phone.Creation, min(batch, n-done))
		for i := range cs {
			number := string(numbers.appendNext(nil))
			p, err := phone.New(benchTenant, int64(done+i)%accounts+1, nil, phone.Draft{Number: &number, Type: &mobile, AreaCode: &area})
			if err != nil {
				return 0, fmt.Errorf("preload phone %s: %w", number, err)
			}
			cs[i] = phone.Creation{Phone: p, EventID: uuid.NewString(), Audit: phone.Audit{CID: uuid.NewString(), Origin: "API"}}
		}
		outs, err := db.CreatePhones(ctx, cs)
		if err != nil {
			return 0, err
		}
		for i, o := range outs {
			if o.Err != nil {
				return 0, fmt.Errorf("phone %d of the batch: %w", i, o.Err)
			}
		}
		if err := markAllDelivered(ctx, db, batch); err != nil {
			return 0, err
		}
		done += len(cs)
		if time.Since(said) >= 5*time.Second || done == n {
			said = time.Now()
			progress(done, time.Since(start))
		}
	}
	return time.Since(start), nil
}

// markAllDelivered marks every pending event of the outbox delivered.
func markAllDelivered(ctx context.Context, db batchStore, limit int) error {
	for {
		events, err := db.PendingEvents(ctx, limit)
		if err != nil {
			return err
		}
		if len(events) == 0 {
			return nil
		}
		if err := db.MarkDelivered(ctx, events[len(events)-1].Seq, 0); err != nil {
			return err
		}
	}
}

// benchDatabase is a database the bench made for one run, on the server
// named by --postgres-url.
type benchDatabase struct {
	admin string // the server's URL as given
	name  string
	url   string
}

const (
	// benchDBPrefix starts the name of each database the bench creates;
	// the creation time in Unix seconds and a random part follow, as the
	// test databases of internal/testkit/pgtest are named.
	benchDBPrefix = "phonesd_bench_"
	// benchDBStaleAfter is the age past which a database of the prefix is
	// taken for the leftover of a killed run and dropped.
	benchDBStaleAfter = 24 * time.Hour
)

// createDatabase creates a fresh database on the server at admin, first
// dropping the bench databases left there by killed runs.
func createDatabase(ctx context.Context, admin string) (*benchDatabase, error) {
	var r [4]byte
	rand.Read(r[:])
	now := time.Now()
	d := &benchDatabase{admin: admin, name: benchDBPrefix + strconv.FormatInt(now.Unix(), 10) + "_" + hex.EncodeToString(r[:])}
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// The URL is not quoted: it may hold a password.
		return nil, errors.New("--postgres-url: want a postgres:// or postgresql:// URL")
	}
	u.Path, u.RawPath = "/"+d.name, ""
	if q := u.Query(); q.Has("dbname") || q.Has("database") {
		// Either would override the path.
		q.Del("dbname")
		q.Del("database")
		u.RawQuery = q.Encode()
	}
	d.url = u.String()

	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return nil, fmt.Errorf("connect to --postgres-url: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE starts_with(datname, $1)`, benchDBPrefix)
	if err != nil {
		return nil, fmt.Errorf("list bench databases: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list bench databases: %w", err)
	}
	for _, name := range names {
		secs, _, _ := strings.Cut(strings.TrimPrefix(name, benchDBPrefix), "_")
		if at, err := strconv.ParseInt(secs, 10, 64); err == nil && now.Sub(time.Unix(at, 0)) > benchDBStaleAfter {
			// Another run may be dropping it too: a failure is no concern of this run.
			conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		}
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{d.name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create database %s: %w", d.name, err)
	}
	return d, nil
}

// drop drops the database, ending the sessions still connected to it.
func (d *benchDatabase) drop(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, d.admin)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", d.name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", d.name, err)
	}
	return nil
}
