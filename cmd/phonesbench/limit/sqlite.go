package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/phonesd/phonesd/internal/sqlite"
)

const sqliteSchema = `
CREATE TABLE IF NOT EXISTS phones (
  id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, account_id INTEGER NOT NULL, number TEXT NOT NULL,
  type TEXT NOT NULL, area_code INTEGER, country_code INTEGER NOT NULL, dup_key TEXT NOT NULL,
  created_at INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS phones_dup_key ON phones (tenant, account_id, dup_key);
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL);`

// sqliteStore writes through one connection, in WAL with synchronous=FULL,
// the durability phonesd's SQLite store sets; SQLite's own automatic
// checkpoints stay on.
type sqliteStore struct {
	db                 *sql.DB
	insPhone, insEvent *sql.Stmt
	lastID             int64
}

func openSQLite(ctx context.Context, path string) (*sqliteStore, error) {
	dsn, err := sqlite.DurableWriterDSN(path)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	s := &sqliteStore{db: db}
	if err := s.prepare(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return s, nil
}

func (s *sqliteStore) prepare(ctx context.Context) error {
	var mode string
	var sync int
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if err := s.db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") || sync != 2 {
		return fmt.Errorf("journal_mode %s, synchronous %d; want wal and 2 (FULL)", mode, sync)
	}
	if _, err := s.db.ExecContext(ctx, sqliteSchema); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	if err := s.db.QueryRowContext(ctx, "SELECT COALESCE(MAX(id), 0) FROM phones").Scan(&s.lastID); err != nil {
		return err
	}
	var err error
	if s.insPhone, err = s.db.PrepareContext(ctx, `INSERT INTO phones
  (id, tenant, account_id, number, type, area_code, country_code, dup_key, created_at)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`); err != nil {
		return err
	}
	s.insEvent, err = s.db.PrepareContext(ctx, `INSERT INTO outbox (payload) VALUES (?)`)
	return err
}

// commit inserts each phone, and the event of each phone inserted, in one
// IMMEDIATE transaction; a phone the unique index refuses is a duplicate.
func (s *sqliteStore) commit(ctx context.Context, batch []*create) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	insPhone, insEvent := tx.StmtContext(ctx, s.insPhone), tx.StmtContext(ctx, s.insEvent)
	now := time.Now()
	for _, c := range batch {
		s.lastID++
		c.id = s.lastID
		res, err := insPhone.ExecContext(ctx, c.id, c.tenant, c.account, c.number, c.typ, c.area, c.country, c.dupKey, now.UnixMilli())
		if err != nil {
			return fmt.Errorf("insert phone: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			c.duplicate = true
			continue
		}
		ev, err := c.event(now)
		if err != nil {
			return err
		}
		if _, err := insEvent.ExecContext(ctx, ev); err != nil {
			return fmt.Errorf("insert event: %w", err)
		}
	}
	return tx.Commit()
}

func (s *sqliteStore) close() error { return s.db.Close() }
