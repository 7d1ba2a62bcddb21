package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

const postgresSchema = `
CREATE TABLE IF NOT EXISTS phones (
  id BIGINT PRIMARY KEY, tenant TEXT NOT NULL, account_id BIGINT NOT NULL, number TEXT NOT NULL,
  type TEXT NOT NULL, area_code INTEGER, country_code INTEGER NOT NULL, dup_key TEXT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS phones_dup_key ON phones (tenant, account_id, dup_key);
CREATE TABLE IF NOT EXISTS outbox (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload BYTEA NOT NULL);`

// insertSQL inserts one phone and, unless the unique index refuses it as a
// duplicate, its event: one row affected means created.
const insertSQL = `WITH phone AS (
  INSERT INTO phones (id, tenant, account_id, number, type, area_code, country_code, dup_key, created_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
  ON CONFLICT (tenant, account_id, dup_key) DO NOTHING
  RETURNING id)
INSERT INTO outbox (payload) SELECT $10 FROM phone`

// postgresStore writes through one connection, with the server's
// synchronous_commit=on: a COMMIT answers once its WAL is flushed.
type postgresStore struct {
	url    string
	conn   *pgx.Conn
	lastID int64
}

func openPostgres(ctx context.Context, url string) (*postgresStore, error) {
	s := &postgresStore{url: url}
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	for _, want := range [][2]string{{"fsync", "on"}, {"synchronous_commit", "on"}} {
		var v string
		if err := s.conn.QueryRow(ctx, "SHOW "+want[0]).Scan(&v); err != nil {
			s.close()
			return nil, err
		}
		if v != want[1] {
			s.close()
			return nil, fmt.Errorf("%s is %s; want %s", want[0], v, want[1])
		}
	}
	if _, err := s.conn.Exec(ctx, postgresSchema); err != nil {
		s.close()
		return nil, fmt.Errorf("schema: %w", err)
	}
	if err := s.conn.QueryRow(ctx, "SELECT COALESCE(MAX(id), 0) FROM phones").Scan(&s.lastID); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *postgresStore) connect(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.url)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	s.conn = conn
	return nil
}

// commit sends BEGIN, one insertSQL per create and COMMIT in one round
// trip.
func (s *postgresStore) commit(ctx context.Context, batch []*create) error {
	if s.conn.IsClosed() {
		if err := s.connect(ctx); err != nil {
			return err
		}
	}
	now := time.Now()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	for _, c := range batch {
		s.lastID++
		c.id = s.lastID
		ev, err := c.event(now)
		if err != nil {
			return err
		}
		b.Queue(insertSQL, c.id, c.tenant, c.account, c.number, c.typ, c.area, c.country, c.dupKey, now, ev)
	}
	b.Queue("COMMIT")
	err := s.send(ctx, b, batch)
	if err != nil && !s.conn.IsClosed() {
		// A failed statement leaves the transaction open and aborted.
		s.conn.Exec(ctx, "ROLLBACK")
	}
	return err
}

func (s *postgresStore) send(ctx context.Context, b *pgx.Batch, batch []*create) error {
	br := s.conn.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	for _, c := range batch {
		tag, err := br.Exec()
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		c.duplicate = tag.RowsAffected() == 0
	}
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return br.Close()
}

func (s *postgresStore) close() error { return s.conn.Close(context.Background()) }
