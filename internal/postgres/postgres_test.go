package postgres

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phonesd/phonesd/internal/migration"
	"github.com/phonesd/phonesd/internal/phone"
	"github.com/phonesd/phonesd/internal/testkit/pgtest"
	"github.com/phonesd/phonesd/internal/testkit/storetest"
)

func open(t testing.TB, dbURL string, opts Options) *DB {
	t.Helper()
	db, err := Open(context.Background(), dbURL, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

func TestStore(t *testing.T) {
	if os.Getenv("PHONES_TEST_DATABASE_URL") == "" {
		pgtest.Database(t) // skips the whole suite at once, saying why
	}
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return open(t, pgtest.Database(t), Options{})
	})
}

func TestPing(t *testing.T) {
	db := open(t, pgtest.Database(t), Options{})
	if err := db.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: got error %v; want nil", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := db.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Ping with cancelled ctx: got error %v; want context.Canceled", err)
	}
}

// TestConcurrentMigrations opens one new database from several replicas at
// once: each must succeed, and each migration must be applied once.
func TestConcurrentMigrations(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.Database(t)
	const replicas = 5
	dbs := make([]*DB, replicas)
	errs := make([]error, replicas)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() {
			<-start
			dbs[i], errs[i] = Open(ctx, dbURL, Options{})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: got error %v; want nil", i, err)
			continue
		}
		t.Cleanup(func() { dbs[i].Close() })
	}
	if t.Failed() {
		t.FailNow()
	}

	migrations, err := migration.Read(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	before := appliedMigrations(t, dbs[0])
	if len(before) != len(migrations) {
		t.Errorf("applied migrations: got %v; want %d", before, len(migrations))
	}
	for _, m := range migrations {
		if _, ok := before[m.Version]; !ok {
			t.Errorf("migration %s: got unrecorded; want recorded", m.Name)
		}
	}

	// Every replica sees the schema.
	p, err := phone.New("tenant-a", 1, nil, phone.Draft{Number: new("1234-5678"), Type: new("MOBILE")})
	if err != nil {
		t.Fatal(err)
	}
	created, err := dbs[0].CreatePhone(ctx, phone.Creation{Phone: p, EventID: uuid.NewString()})
	if err != nil {
		t.Fatalf("CreatePhone: %v", err)
	}
	for i, db := range dbs {
		if _, err := db.Phone(ctx, "tenant-a", 1, created.ID); err != nil {
			t.Errorf("replica %d: Phone: got error %v; want nil", i, err)
		}
	}

	// A later start finds nothing to apply.
	again := open(t, dbURL, Options{})
	after := appliedMigrations(t, again)
	if len(after) != len(before) {
		t.Fatalf("applied migrations after reopening: got %v; want %v", after, before)
	}
	for v, at := range before {
		if !after[v].Equal(at) {
			t.Errorf("migration %d applied_at: got %v; want %v (not re-applied)", v, after[v], at)
		}
	}
}

// appliedMigrations returns applied_at by version.
func appliedMigrations(t *testing.T, db *DB) map[int]time.Time {
	t.Helper()
	rows, err := db.pool.Query(context.Background(), "SELECT version, applied_at FROM schema_migrations")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	applied := make(map[int]time.Time)
	for rows.Next() {
		var (
			v  int
			at time.Time
		)
		if err := rows.Scan(&v, &at); err != nil {
			t.Fatal(err)
		}
		applied[v] = at
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return applied
}

// TestIdentitySequenceName checks that insertPhonesSQL draws ids from the
// sequence PostgreSQL made for phones.id, which it names rather than look
// up.
func TestIdentitySequenceName(t *testing.T) {
	db := open(t, pgtest.Database(t), Options{})
	var same bool
	if err := db.pool.QueryRow(context.Background(),
		"SELECT pg_get_serial_sequence('phones', 'id')::regclass = 'phones_id_seq'::regclass").Scan(&same); err != nil {
		t.Fatal(err)
	}
	if !same {
		t.Error("phones.id's sequence is not phones_id_seq")
	}
}

// TestConstraints checks that the schema itself refuses what the store
// never writes, through raw SQL that bypasses the store.
func TestConstraints(t *testing.T) {
	ctx := context.Background()
	db := open(t, pgtest.Database(t), Options{})
	const insertPhone = `INSERT INTO phones (tenant, account_id, number, type, active,
  area_code, country_code, extension, dup_key, created_at, updated_at, version)
VALUES ('t', $1, $2, $3, $4, $5, $6, $7, $8, now(), now(), 1)`
	const insertEvent = `INSERT INTO outbox (event_id, domain, event_type, payload, created_at)
VALUES ($1, 'audit', 'phone_creation-1', $2, now())`
	type row struct {
		account   int64
		number    string
		typ       string
		active    bool
		area      *int32
		country   int32
		extension *string
		key       *string
	}
	valid := func(account int64) row {
		return row{account, "1234-5678", "MOBILE", true, nil, 55, nil, new("55|-|12345678|")}
	}
	with := func(r row, f func(*row)) row { f(&r); return r }
	insert := func(r row) error {
		_, err := db.pool.Exec(ctx, insertPhone, r.account, r.number, r.typ, r.active, r.area, r.country, r.extension, r.key)
		return err
	}

	tests := []struct {
		name           string
		first          *row // inserted beforehand, when not nil
		second         row
		wantCode       string // "" for success
		wantConstraint string
	}{
		{"valid", nil, valid(1), "", ""},
		{"NULL dup_key", nil, with(valid(2), func(r *row) { r.key = nil }), "23502", ""},
		{"second active with the same key", new(valid(3)), valid(3), "23505", "phones_active_dup_key"},
		{"second inactive with the same key", new(valid(4)), with(valid(4), func(r *row) { r.active = false }), "", ""},
		{"same key in another account", new(valid(5)), valid(6), "", ""},
		{"unknown type", nil, with(valid(7), func(r *row) { r.typ = "FAX" }), "23514", "phones_type_valid"},
		{"country code above 99999", nil, with(valid(8), func(r *row) { r.country = 100000 }), "23514", "phones_country_code_valid"},
		{"negative country code", nil, with(valid(9), func(r *row) { r.country = -1 }), "23514", "phones_country_code_valid"},
		{"negative area code", nil, with(valid(10), func(r *row) { r.area = new(int32(-1)) }), "23514", "phones_area_code_valid"},
		{"number without digits", nil, with(valid(11), func(r *row) { r.number = "()" }), "23514", "phones_number_valid"},
		{"number with letters", nil, with(valid(12), func(r *row) { r.number = "12ab" }), "23514", "phones_number_valid"},
		{"number of 16 characters", nil, with(valid(13), func(r *row) { r.number = "1234567890123456" }), "23514", "phones_number_valid"},
		{"extension of 11 characters", nil, with(valid(14), func(r *row) { r.extension = new("12345678901") }), "23514", "phones_extension_valid"},
		{"extension of 10 characters", nil, with(valid(15), func(r *row) { r.extension = new("çççççççççç") }), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.first != nil {
				if err := insert(*tt.first); err != nil {
					t.Fatalf("first insert: %v", err)
				}
			}
			checkPgError(t, insert(tt.second), tt.wantCode, tt.wantConstraint)
		})
	}

	t.Run("outbox", func(t *testing.T) {
		id := uuid.NewString()
		checkPgError(t, exec(db, insertEvent, id, []byte("{}")), "", "")
		checkPgError(t, exec(db, insertEvent, id, []byte("{}")), "23505", "outbox_event_id_key")
		checkPgError(t, exec(db, insertEvent, uuid.NewString(), nil), "23502", "")
		checkPgError(t, exec(db, insertEvent, "not-a-uuid", []byte("{}")), "22P02", "")
	})
}

func exec(db *DB, sql string, args ...any) error {
	_, err := db.pool.Exec(context.Background(), sql, args...)
	return err
}

// checkPgError checks that err is nil when code is empty, or else a
// PostgreSQL error with that code and, when not empty, constraint.
func checkPgError(t *testing.T, err error, code, constraint string) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Errorf("got error %v; want nil", err)
		}
		return
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Errorf("got error %v; want SQLSTATE %s", err, code)
		return
	}
	if pgErr.Code != code || (constraint != "" && pgErr.ConstraintName != constraint) {
		t.Errorf("got SQLSTATE %s on %q; want %s on %q", pgErr.Code, pgErr.ConstraintName, code, constraint)
	}
}

// TestReusedEventID checks that a unique violation other than the duplicate
// rule's is not reported as a duplicate phone, and stores nothing.
func TestReusedEventID(t *testing.T) {
	ctx := context.Background()
	db := open(t, pgtest.Database(t), Options{})
	eventID := uuid.NewString()
	for i, number := range []string{"1111-1111", "2222-2222"} {
		p, err := phone.New("tenant-a", 1, nil, phone.Draft{Number: &number, Type: new("MOBILE")})
		if err != nil {
			t.Fatal(err)
		}
		_, err = db.CreatePhone(ctx, phone.Creation{Phone: p, EventID: eventID})
		switch {
		case i == 0 && err != nil:
			t.Fatalf("first CreatePhone: %v", err)
		case i == 1 && (err == nil || errors.Is(err, phone.ErrDuplicate)):
			t.Errorf("second CreatePhone with the same event id: got error %v; want another", err)
		}
	}
	var phones int
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM phones").Scan(&phones); err != nil {
		t.Fatal(err)
	}
	if phones != 1 {
		t.Errorf("phones stored: got %d; want 1 (the second rolled back)", phones)
	}
}

// TestStatementTimeout checks the run-time parameters on several pool
// connections at once, not just the first, and that they are enforced.
func TestStatementTimeout(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.Database(t)
	tests := []struct {
		name    string
		timeout time.Duration
		want    string
	}{
		{"default", 0, "5s"},
		{"set", 1500 * time.Millisecond, "1500ms"},
	}
	// A timeout below a millisecond is sent as one millisecond, not as 0
	// (no timeout at all). It is checked on the value sent, not on a
	// server: under a 1 ms timeout a busy machine cancels even SHOW, and
	// the check of each new connection that it accepts writes.
	if got := millis(time.Microsecond); got != "1" {
		t.Errorf("millis(1µs): got %q; want \"1\"", got)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := open(t, dbURL, Options{StatementTimeout: tt.timeout})
			for i := range 3 {
				conn, err := db.pool.Acquire(ctx)
				if err != nil {
					t.Fatalf("acquire %d: %v", i, err)
				}
				defer conn.Release()
				for _, param := range []string{"statement_timeout", "idle_in_transaction_session_timeout"} {
					var got string
					if err := conn.QueryRow(ctx, "SHOW "+param).Scan(&got); err != nil {
						t.Fatalf("conn %d: SHOW %s: %v", i, param, err)
					}
					if got != tt.want {
						t.Errorf("conn %d: %s: got %q; want %q", i, param, got, tt.want)
					}
				}
			}
		})
	}
	t.Run("enforced", func(t *testing.T) {
		db := open(t, dbURL, Options{StatementTimeout: 100 * time.Millisecond})
		start := time.Now()
		_, err := db.pool.Exec(ctx, "SELECT pg_sleep(5)")
		checkPgError(t, err, "57014", "") // query_canceled
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("pg_sleep(5) ended after %v; want about 100ms", d)
		}
	})
	t.Run("idle in transaction enforced", func(t *testing.T) {
		db := open(t, dbURL, Options{StatementTimeout: 100 * time.Millisecond})
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		keys := accountLocks([]account{{"tenant-a", 1}})
		if _, err := tx.Exec(ctx, lockAccountsSQL, accountLockClass, keys); err != nil {
			t.Fatal(err)
		}
		var pid uint32
		if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		// The server ends the idle session: its backend leaves
		// pg_stat_activity once it has released its locks.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			var alive bool
			if err := db.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", pid).Scan(&alive); err != nil {
				t.Fatal(err)
			}
			if !alive {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the session idle in its transaction still exists after 5s; want it ended after 100ms")
			}
		}
		if _, err := tx.Exec(ctx, "SELECT 1"); err == nil {
			t.Error("statement after idling in a transaction: got nil error; want one")
		}
		var locked bool
		if err := db.pool.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1, $2)", accountLockClass, keys[0]).Scan(&locked); err != nil {
			t.Fatal(err)
		}
		if !locked {
			t.Error("account lock: got still held; want released with the idle session")
		}
	})
}

// silentServer returns the address of a server that accepts connections
// and never answers, like a server that hangs.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		held []net.Conn
	)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return l.Addr().String()
}

// TestOpenFails checks that Open fails fast where it cannot connect, and
// never shows the password.
func TestOpenFails(t *testing.T) {
	const secret = "S3cr3t-pw"
	// refused is a port with nothing behind it.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := closed.Addr().String()
	closed.Close()

	tests := []struct {
		name string
		url  string
	}{
		{"server that never answers", "postgres://u:" + secret + "@" + silentServer(t) + "/db"},
		{"connection refused", "postgres://u:" + secret + "@" + refused + "/db?sslmode=disable"},
		{"bad port", "postgres://u:" + secret + "@localhost:notaport/db"},
		{"bad sslmode", "postgresql://u:" + secret + "@localhost/db?sslmode=bogus"},
		{"password in the query", "postgres://localhost:notaport/db?password=" + secret},
		{"escaped password", "postgres://u:" + url.QueryEscape(secret+"%") + "@localhost:notaport/db"},
		{"keyword/value form", "host=localhost password=" + secret},
	}
	if admin := os.Getenv("PHONES_TEST_DATABASE_URL"); admin != "" {
		u, err := url.Parse(admin)
		if err != nil {
			t.Fatal(err)
		}
		// A role that does not exist: the server refuses it under any
		// authentication method, even trust, which would accept any
		// password of a real role.
		u.User = url.UserPassword("phonesd_no_such_role", secret)
		tests = append(tests, struct {
			name string
			url  string
		}{"unknown role", u.String()})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			db, err := Open(context.Background(), tt.url, Options{})
			elapsed := time.Since(start)
			if err == nil {
				db.Close()
				t.Fatal("Open: got nil error; want one")
			}
			t.Logf("after %v: %v", elapsed.Round(time.Millisecond), err)
			if elapsed > 5*time.Second {
				t.Errorf("Open failed after %v; want within 5s", elapsed)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), url.QueryEscape(secret)) {
				t.Errorf("error %q holds the password", err)
			}
		})
	}
}

// TestOpenHidesPassword checks that no error text of Open holds the password,
// written as the URL syntax wants it or not, in any part of the URL. A
// password with an unescaped '@' or '/' is left out: it changes where the
// host and database are read, so its tail is no longer the password.
func TestOpenHidesPassword(t *testing.T) {
	refused := "127.0.0.1:1"
	shapes := []struct {
		name string
		url  func(password string) string
	}{
		{"as written, bad port", func(pw string) string { return "postgres://u:" + pw + "@127.0.0.1:x/db" }},
		{"as written, bad sslmode", func(pw string) string { return "postgres://u:" + pw + "@" + refused + "/db?sslmode=bogus" }},
		{"as written, refused", func(pw string) string { return "postgres://u:" + pw + "@" + refused + "/db?sslmode=disable" }},
		{"escaped, refused", func(pw string) string {
			u := url.URL{Scheme: "postgres", User: url.UserPassword("u", pw), Host: refused, Path: "/db", RawQuery: "sslmode=disable"}
			return u.String()
		}},
		{"query, bad sslmode", func(pw string) string {
			return "postgresql://" + refused + "/db?sslmode=bogus&password=" + pw
		}},
		{"query escaped, refused", func(pw string) string {
			return "postgresql://" + refused + "/db?password=" + url.QueryEscape(pw) + "&sslmode=disable"
		}},
	}
	chars := append(strings.Fields("# ? : % %zz %41 [ ] & = \\ ' \" ` , ; + $ ! ~"), " ", "")
	for _, c := range chars {
		password := "Sekr1t" + c + "Pazz"
		for _, shape := range shapes {
			dbURL := shape.url(password)
			db, err := Open(context.Background(), dbURL, Options{})
			if err == nil {
				db.Close()
				t.Errorf("Open(%q): got nil error; want one", dbURL)
				continue
			}
			if msg := err.Error(); strings.Contains(msg, "Sekr1t") || strings.Contains(msg, "Pazz") {
				t.Errorf("%s, password %q: error %q holds the password", shape.name, password, msg)
			}
		}
	}
}

// TestOpenEndedContext checks that Open gives up when ctx ends, well before
// the connect timeout.
func TestOpenEndedContext(t *testing.T) {
	addr := silentServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Open(ctx, "postgres://u@"+addr+"/db", Options{ConnectTimeout: time.Minute})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Open: got error %v; want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Open returned after %v; want about 200ms", d)
	}
}

func TestRedact(t *testing.T) {
	err := redact(errors.New("failed: a-pw and a-pw-longer"), []string{"", "a-pw", "a-pw-longer", "a-pw"})
	if got, want := err.Error(), "failed: xxxxx and xxxxx"; got != want {
		t.Errorf("Error(): got %q; want %q", got, want)
	}
	inner := errors.New("plain")
	if got := redact(inner, []string{""}); got != inner {
		t.Errorf("redact with no secret: got %v; want the error itself", got)
	}
	if !errors.Is(redact(context.Canceled, []string{"x"}), context.Canceled) {
		t.Error("redact: the wrapped error is lost")
	}
}

// TestSynchronousCommitForced checks that phonesd commits with
// synchronous_commit=on even where the database's own default is off, as a
// tuned cluster may have it: a 200 promises a commit that survives a crash
// of the database server.
func TestSynchronousCommitForced(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.Database(t)
	admin, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET synchronous_commit = off', current_database()); END$$"); err != nil {
		t.Fatalf("set the database's default: %v", err)
	}
	db := open(t, dbURL, Options{})
	for i := range 3 {
		conn, err := db.pool.Acquire(ctx)
		if err != nil {
			t.Fatalf("acquire %d: %v", i, err)
		}
		defer conn.Release()
		var got string
		if err := conn.QueryRow(ctx, "SHOW synchronous_commit").Scan(&got); err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
		if got != "on" {
			t.Errorf("conn %d: synchronous_commit %q; want on whatever the database's default", i, got)
		}
	}
}
