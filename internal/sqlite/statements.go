package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"
	"strings"
)

// Through database/sql a statement run with arguments is parsed, planned
// and finalised on every call; for the multi-row INSERTs of a create batch
// that was a tenth of the batch's time in profiles, and parsing was a third
// of the relay's marking of events sent. The statements that run on every
// request or relay round are therefore prepared once, at open, and reused
// (database/sql prepares one again by itself on a connection that replaces
// another). The writer's must be prepared before any transaction holds its
// only connection, hence all at open.

// writes are the writer's prepared statements.
type writes struct {
	lastPhoneID, spendPhoneIDs, selectPhone, updatePhone, insertEvent, markDelivered *sql.Stmt
	// inserts holds, for each multi-row INSERT, its statements of 1, 2, 4
	// ... maxRowsPerStatement rows, at index log2(rows). Only powers of two
	// are kept because a statement of many rows holds a large program: one
	// per row count took 14 MiB.
	inserts map[*rowsInsert][]*sql.Stmt
}

// reads are the readers' prepared statements.
type reads struct {
	selectPhone, listPhones, replay, pendingEvents, eventsAfter, outboxStats *sql.Stmt
}

// insert returns the statement of ins for rows rows, a power of two up to
// maxRowsPerStatement.
func (w *writes) insert(ins *rowsInsert, rows int) *sql.Stmt {
	return w.inserts[ins][bits.Len(uint(rows))-1]
}

// preparer prepares statements on one pool, keeping the first error and
// every statement, so that a caller prepares a list and checks once.
type preparer struct {
	ctx      context.Context
	db       *sql.DB
	prepared []*sql.Stmt
	err      error
}

func (p *preparer) prepare(query string) *sql.Stmt {
	if p.err != nil {
		return nil
	}
	st, err := p.db.PrepareContext(p.ctx, query)
	if err != nil {
		p.err = fmt.Errorf("prepare %.60q: %w", query, err)
		return nil
	}
	p.prepared = append(p.prepared, st)
	return st
}

// insert prepares ins for each power of two rows up to maxRowsPerStatement.
func (p *preparer) insert(ins *rowsInsert) []*sql.Stmt {
	var sts []*sql.Stmt
	for rows := 1; rows <= maxRowsPerStatement; rows *= 2 {
		sts = append(sts, p.prepare(ins.head+strings.TrimSuffix(strings.Repeat(ins.row+", ", rows), ", ")+ins.tail))
	}
	return sts
}

// done returns the error of the first statement that failed, after closing
// every statement prepared, or nil.
func (p *preparer) done() error {
	if p.err == nil {
		return nil
	}
	return errors.Join(p.err, closeAll(p.prepared))
}

func prepareWrites(ctx context.Context, db *sql.DB) (*writes, []*sql.Stmt, error) {
	p := &preparer{ctx: ctx, db: db}
	w := &writes{
		lastPhoneID:   p.prepare(lastPhoneIDSQL),
		spendPhoneIDs: p.prepare(spendPhoneIDsSQL),
		selectPhone:   p.prepare(selectPhoneSQL),
		updatePhone:   p.prepare(updatePhoneSQL),
		insertEvent:   p.prepare(insertEventSQL),
		markDelivered: p.prepare(markDeliveredSQL),
		inserts: map[*rowsInsert][]*sql.Stmt{
			&insertKeysSQL:   p.insert(&insertKeysSQL),
			&insertPhonesSQL: p.insert(&insertPhonesSQL),
			&insertEventsSQL: p.insert(&insertEventsSQL),
		},
	}
	return w, p.prepared, p.done()
}

func prepareReads(ctx context.Context, db *sql.DB) (*reads, []*sql.Stmt, error) {
	p := &preparer{ctx: ctx, db: db}
	r := &reads{
		selectPhone:   p.prepare(selectPhoneSQL),
		listPhones:    p.prepare(listPhonesSQL),
		replay:        p.prepare(replaySQL),
		pendingEvents: p.prepare(pendingEventsSQL),
		eventsAfter:   p.prepare(eventsAfterSQL),
		outboxStats:   p.prepare(outboxStatsSQL),
	}
	return r, p.prepared, p.done()
}

func closeAll(sts []*sql.Stmt) error {
	var errs []error
	for _, st := range sts {
		errs = append(errs, st.Close())
	}
	return errors.Join(errs...)
}
