package faultproxy

import (
	"context"
	"crypto/tls"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phonesd/phonesd/internal/testkit/pgtest"
)

// viaPostgresProxy returns dbURL through a new PostgreSQL-aware proxy, with
// sslmode set.
func viaPostgresProxy(t *testing.T, dbURL, sslmode string) (string, *Proxy) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := StartPostgres(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	u.Host = p.Addr()
	q := u.Query()
	q.Set("sslmode", sslmode)
	u.RawQuery = q.Encode()
	return u.String(), p
}

func connect(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// insertBatch inserts ids in one pipeline that begins, inserts them (each
// returned as a row) and commits, as a batch of creates does.
func insertBatch(ctx context.Context, conn *pgx.Conn, ids ...int) error {
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("INSERT INTO t SELECT unnest($1::int[]) RETURNING id", ids)
	b.Queue("COMMIT")
	return conn.SendBatch(ctx, b).Close()
}

func count(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPostgresProxyLosesCommitReplies(t *testing.T) {
	direct := pgtest.Database(t)
	admin := connect(t, direct)
	if _, err := admin.Exec(context.Background(), "CREATE TABLE t (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	for _, sslmode := range []string{"disable", "prefer"} {
		t.Run("sslmode="+sslmode, func(t *testing.T) {
			if _, err := admin.Exec(context.Background(), "TRUNCATE t"); err != nil {
				t.Fatal(err)
			}
			proxied, p := viaPostgresProxy(t, direct, sslmode)
			conn := connect(t, proxied)
			ctx := context.Background()
			if err := insertBatch(ctx, conn, 1, 2); err != nil {
				t.Fatalf("batch while replies are kept: %v", err)
			}
			p.LoseCommitReplies(2)
			if err := insertBatch(ctx, conn, 3); err != nil {
				t.Fatalf("a one-row batch, under the two rows that lose a reply: %v", err)
			}
			encrypted := isTLS(conn)
			err := insertBatch(ctx, conn, 4, 5)
			if encrypted {
				// An encrypted session cannot be read: nothing is lost.
				if err != nil || p.CommitRepliesLost() != 0 {
					t.Fatalf("encrypted session: err %v, %d replies lost; want the batch through", err, p.CommitRepliesLost())
				}
				return
			}
			if err == nil {
				t.Fatal("a two-row batch whose COMMIT reply is lost succeeded; want an error")
			}
			if !conn.IsClosed() {
				t.Error("the client's connection is still open after its COMMIT reply was lost")
			}
			if got := p.CommitRepliesLost(); got != 1 {
				t.Errorf("CommitRepliesLost: got %d; want 1", got)
			}
			// The server committed what the client was never told about.
			if got := count(t, admin); got != 5 {
				t.Errorf("%d rows stored; want 5, the lost reply's batch included", got)
			}
			p.KeepCommitReplies()
			again := connect(t, proxied)
			if err := insertBatch(ctx, again, 6, 7); err != nil {
				t.Fatalf("batch after KeepCommitReplies: %v", err)
			}
		})
	}
}

func isTLS(conn *pgx.Conn) bool {
	_, ok := conn.PgConn().Conn().(*tls.Conn)
	return ok
}
