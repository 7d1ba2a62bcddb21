package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/phonesd/phonesd/api"
	"github.com/phonesd/phonesd/internal/testkit/natstest"
)

// observed is what the checker finds once the service has recovered: the
// rows of the database, the phones the API lists, and the delivered events.
type observed struct {
	// Rows are every phone row of the database, whatever its tenant.
	Rows []phoneState
	// Created holds each row's creation time, as the database stored it.
	Created map[int64]time.Time
	// Listings are the pages of List phones, per token and account.
	Listings []listing
	// Deliveries are the events as the sink holds them: every copy, in
	// the order of each source (a file, or the stream).
	Deliveries []delivery
	// Unreadable are lines or messages of the sink that are no event.
	Unreadable []string
	// Outbox maps each event_id to its place in outbox order, for the
	// order check: its seq on SQLite; on PostgreSQL, its rank by
	// transaction id then seq, the order the relay delivers in. nil skips
	// it.
	Outbox map[string]int64
	// LateWithin, when positive, allows an event to reach the sink after
	// events of higher outbox seq, by at most that many seqs: the exception
	// the README documents for a JetStream cluster's leader election, which
	// may refuse an event while storing those behind it. Such events are
	// counted, not reported as out of order.
	LateWithin int64
}

// listing is what List phones showed one tenant's token for one account.
type listing struct {
	Tenant  string
	Account int64
	Phones  []phoneState
	Err     string
}

// delivery is one copy of an event in the sink.
type delivery struct {
	Source  string // the file, or "stream"
	EventID string
	Type    string
	Object  phoneState // its Tenant is the envelope's org_id
	// MsgID is the Nats-Msg-Id header; empty for a file.
	MsgID string
}

// parseEvent reads one event's payload, as the event contract's type.
func parseEvent(source string, payload []byte) (delivery, error) {
	var ev api.PhoneEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return delivery{}, err
	}
	if ev.EventID == "" || ev.EventType == "" {
		return delivery{}, errors.New("no event_id or event_type")
	}
	o := ev.Data.Object
	return delivery{Source: source, EventID: ev.EventID, Type: ev.EventType, Object: phoneState{
		ID:          o.ID,
		Tenant:      ev.OrgID,
		AccountID:   o.AccountID,
		CustomerID:  o.CustomerID,
		Number:      o.Number,
		Type:        string(o.Type),
		Active:      o.Active,
		AreaCode:    o.AreaCode,
		CountryCode: o.CountryCode,
		Extension:   o.Extension,
	}}, nil
}

// readEventFiles appends the events of each file (a missing file has none).
func readEventFiles(o *observed, paths []string) error {
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		line := 0
		for sc.Scan() {
			line++
			d, err := parseEvent(p, sc.Bytes())
			if err != nil {
				o.Unreadable = append(o.Unreadable, fmt.Sprintf("%s line %d: %v: %.120s", p, line, err, sc.Text()))
				continue
			}
			o.Deliveries = append(o.Deliveries, d)
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			o.Unreadable = append(o.Unreadable, fmt.Sprintf("%s: the last line has no newline", p))
		}
	}
	return nil
}

// readStream appends every message of the stream.
func readStream(ctx context.Context, o *observed, st *natstest.Stream) error {
	msgs, err := st.ReadAll(ctx)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		d, err := parseEvent("stream", m.Data)
		if err != nil {
			o.Unreadable = append(o.Unreadable, fmt.Sprintf("stream message %d: %v: %.120s", m.Seq, err, m.Data))
			continue
		}
		d.MsgID = m.MsgID
		o.Deliveries = append(o.Deliveries, d)
	}
	return nil
}

// storage is the database of a scenario as the checker reads it directly.
type storage struct {
	sqlitePath  string // set for SQLite
	postgresURL string // set for PostgreSQL, without any proxy
}

const phonesQuery = `SELECT id, tenant, account_id, customer_id, number, type, active, area_code, country_code, extension, created_at FROM phones ORDER BY id`

// readRows reads every phone row and the outbox's event ids.
func (s storage) readRows(ctx context.Context, o *observed) error {
	if s.postgresURL != "" {
		return s.readPostgres(ctx, o)
	}
	return s.readSQLite(ctx, o)
}

func (s storage) readSQLite(ctx context.Context, o *observed) error {
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "busy_timeout(5000)")
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Path: s.sqlitePath, RawQuery: q.Encode()}).String())
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, phonesQuery)
	if err != nil {
		return fmt.Errorf("read phones: %w", err)
	}
	defer rows.Close()
	o.Created = map[int64]time.Time{}
	for rows.Next() {
		var p phoneState
		var active int
		var area, country sql.NullInt64
		var created int64 // Unix milliseconds
		if err := rows.Scan(&p.ID, &p.Tenant, &p.AccountID, &p.CustomerID, &p.Number, &p.Type, &active, &area, &country, &p.Extension, &created); err != nil {
			return fmt.Errorf("read phones: %w", err)
		}
		p.Active = active != 0
		setCodes(&p, area, country)
		o.Rows = append(o.Rows, p)
		o.Created[p.ID] = time.UnixMilli(created)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read phones: %w", err)
	}
	o.Outbox = map[string]int64{}
	orows, err := db.QueryContext(ctx, `SELECT seq, event_id FROM outbox`)
	if err != nil {
		return fmt.Errorf("read outbox: %w", err)
	}
	defer orows.Close()
	for orows.Next() {
		var seq int64
		var id string
		if err := orows.Scan(&seq, &id); err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		o.Outbox[id] = seq
	}
	return orows.Err()
}

func (s storage) readPostgres(ctx context.Context, o *observed) error {
	conn, err := pgx.Connect(ctx, s.postgresURL)
	if err != nil {
		return fmt.Errorf("connect to the scenario's database: %w", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, phonesQuery)
	if err != nil {
		return fmt.Errorf("read phones: %w", err)
	}
	o.Created = map[int64]time.Time{}
	for rows.Next() {
		var p phoneState
		var area, country sql.NullInt64
		var area32 *int32
		var country32 int32
		var created time.Time
		if err := rows.Scan(&p.ID, &p.Tenant, &p.AccountID, &p.CustomerID, &p.Number, &p.Type, &p.Active, &area32, &country32, &p.Extension, &created); err != nil {
			rows.Close()
			return fmt.Errorf("read phones: %w", err)
		}
		if area32 != nil {
			area = sql.NullInt64{Int64: int64(*area32), Valid: true}
		}
		country = sql.NullInt64{Int64: int64(country32), Valid: true}
		setCodes(&p, area, country)
		o.Rows = append(o.Rows, p)
		o.Created[p.ID] = created
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read phones: %w", err)
	}
	o.Outbox = map[string]int64{}
	// The relay delivers by transaction id, then seq (see
	// internal/postgres: readEventsSQL).
	orows, err := conn.Query(ctx, `SELECT row_number() OVER (ORDER BY xid, seq), event_id::text FROM outbox`)
	if err != nil {
		return fmt.Errorf("read outbox: %w", err)
	}
	defer orows.Close()
	for orows.Next() {
		var seq int64
		var id string
		if err := orows.Scan(&seq, &id); err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		o.Outbox[id] = seq
	}
	return orows.Err()
}

func setCodes(p *phoneState, area, country sql.NullInt64) {
	if area.Valid {
		a := strconv.FormatInt(area.Int64, 10)
		p.AreaCode = &a
	}
	p.CountryCode = strconv.FormatInt(country.Int64, 10)
}

// listAll lists every account of every tenant with each tenant's token,
// page by page, through base.
func listAll(c *client, base string, tokens tokenSet) []listing {
	var out []listing
	for _, tn := range tenants {
		for acct := int64(1); acct <= accountsPerTenant; acct++ {
			out = append(out, listAccount(c, base, tokens[tokenKey{tn, 0}], tn, acct))
		}
	}
	return out
}

// listAccount reads all pages of one account's phones through the public
// client, as an integrator would.
func listAccount(c *client, base, token, tenant string, account int64) listing {
	l := listing{Tenant: tenant, Account: account}
	ac, err := c.api(base, token)
	if err != nil {
		l.Err = fmt.Sprintf("client: %v", err)
		return l
	}
	params := api.GetAccountsV1AccountsAccountIdPhonesParams{AccountId: account, Limit: api.NewOptInt32(500)}
	for pages := 0; ; pages++ {
		var res api.GetAccountsV1AccountsAccountIdPhonesRes
		for try := 0; try < retryTries; try++ {
			res, err = ac.GetAccountsV1AccountsAccountIdPhones(context.Background(), params)
			switch res.(type) {
			case *api.TooManyRequestsHeaders, *api.ServiceUnavailableHeaders:
				time.Sleep(300 * time.Millisecond)
				continue
			}
			if err == nil {
				break
			}
			time.Sleep(300 * time.Millisecond)
		}
		page, ok := res.(*api.PhoneListHeaders)
		if err != nil || !ok {
			l.Err = fmt.Sprintf("page %d: %T %v", pages+1, res, err)
			return l
		}
		for _, p := range page.Response.Items {
			l.Phones = append(l.Phones, listedState(p))
		}
		next, more := page.Response.NextCursor.Get()
		if !more || next == "" {
			return l
		}
		params.Cursor = api.NewOptString(next)
	}
}

// listedState is p as the ledger keeps a phone.
func listedState(p api.Phone) phoneState {
	s := phoneState{
		ID:        int64(p.ID),
		Tenant:    p.OrgID,
		AccountID: p.AccountID,
		Number:    p.Number,
		Type:      string(p.Type),
		Active:    p.Active,
	}
	if v, ok := p.CustomerID.Get(); ok {
		s.CustomerID = &v
	}
	if v, ok := p.AreaCode.Get(); ok {
		s.AreaCode = &v
	}
	if v, ok := p.Extension.Get(); ok {
		s.Extension = &v
	}
	s.CountryCode, _ = p.CountryCode.Get()
	return s
}
