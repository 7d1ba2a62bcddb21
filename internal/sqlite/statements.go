package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// statements keeps the prepared statements of one pool. Through
// database/sql a statement run with arguments is parsed, planned and
// finalised on every call; for the multi-row INSERTs of a create batch that
// was a tenth of the batch's time in profiles, and parsing was a third of
// the relay's marking of events sent. A statement is prepared once per
// connection and reused (database/sql prepares it again by itself on a
// connection that replaces one).
type statements struct {
	db *sql.DB

	mu   sync.Mutex
	byID map[statementID]*sql.Stmt
}

// statementID names a statement: a plain one by its text, a multi-row
// INSERT by its template and row count.
type statementID struct {
	query string
	ins   *rowsInsert
	rows  int
}

// prepareStatements prepares on db the plain queries and the multi-row inserts
// for each power of two rows up to maxRowsPerStatement. Only powers of two
// are kept because a statement of many rows holds a large program: one per
// row count took 14 MiB. The writer's must be prepared before any
// transaction holds its only connection, hence all at once, at open.
func prepareStatements(ctx context.Context, db *sql.DB, plain []string, inserts []*rowsInsert) (*statements, error) {
	s := &statements{db: db, byID: make(map[statementID]*sql.Stmt)}
	for _, q := range plain {
		if err := s.prepare(ctx, statementID{query: q}, q); err != nil {
			return nil, errors.Join(err, s.close())
		}
	}
	for _, ins := range inserts {
		for rows := 1; rows <= maxRowsPerStatement; rows *= 2 {
			text := ins.head + strings.TrimSuffix(strings.Repeat(ins.row+", ", rows), ", ") + ins.tail
			if err := s.prepare(ctx, statementID{ins: ins, rows: rows}, text); err != nil {
				return nil, errors.Join(err, s.close())
			}
		}
	}
	return s, nil
}

func (s *statements) prepare(ctx context.Context, id statementID, text string) error {
	st, err := s.db.PrepareContext(ctx, text)
	if err != nil {
		return fmt.Errorf("prepare %.60q: %w", text, err)
	}
	s.byID[id] = st
	return nil
}

// plain returns the prepared statement of query, one of those given to
// prepareStatements.
func (s *statements) plain(query string) (*sql.Stmt, error) {
	return s.get(statementID{query: query})
}

// insert returns the prepared statement of ins with rows rows, a power of
// two up to maxRowsPerStatement.
func (s *statements) insert(ins *rowsInsert, rows int) (*sql.Stmt, error) {
	return s.get(statementID{ins: ins, rows: rows})
}

func (s *statements) get(id statementID) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.byID[id]
	if !ok {
		return nil, fmt.Errorf("statement %.60q (%d rows) was not prepared", id.query, id.rows)
	}
	return st, nil
}

// close closes every statement kept.
func (s *statements) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for id, st := range s.byID {
		errs = append(errs, st.Close())
		delete(s.byID, id)
	}
	return errors.Join(errs...)
}
