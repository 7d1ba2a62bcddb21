package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/phonesd/phonesd/internal/phone"
	"github.com/phonesd/phonesd/internal/testkit/pgtest"
	"github.com/phonesd/phonesd/internal/testkit/procstat"
)

// BenchmarkCreatePhones measures CreatePhones per create, for batches of
// the sizes group commit forms, over many accounts as in production, on the
// PostgreSQL of PHONES_TEST_DATABASE_URL. ns/op includes the round trip
// and the commit's WAL flush; when the server runs on this machine, it
// also reports the CPU its processes spent per create (server-cpu-ns/op),
// which varies far less, but counts whatever else the server did meanwhile.
//
// batch=32-without-account-index drops the index List phones reads
// (phones_account), to show what it costs each create. The reference
// limit of cmd/phonesbench has no such index.
func BenchmarkCreatePhones(b *testing.B) {
	runs := []struct {
		size int
		drop string
	}{{1, ""}, {32, ""}, {32, "phones_account"}}
	for _, run := range runs {
		name := fmt.Sprintf("batch=%d", run.size)
		if run.drop != "" {
			name += "-without-account-index"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			db := open(b, pgtest.Database(b), Options{})
			if run.drop != "" {
				if _, err := db.pool.Exec(ctx, "DROP INDEX "+run.drop); err != nil {
					b.Fatal(err)
				}
			}
			creates := newBenchCreates(run.size)
			server := startServerMeter(b, db)
			b.ResetTimer()
			for done := 0; done < b.N; done += run.size {
				createBatch(b, db, creates.next())
			}
			b.StopTimer()
			server.report(b)
		})
	}
}

// BenchmarkEventsAfter measures the relay's read of the outbox per event,
// in rounds of the sizes it reads under load and when catching up.
func BenchmarkEventsAfter(b *testing.B) {
	for _, limit := range []int{32, 256} {
		b.Run(fmt.Sprintf("limit=%d", limit), func(b *testing.B) {
			ctx := context.Background()
			db := open(b, pgtest.Database(b), Options{})
			creates := newBenchCreates(32)
			for range 1000 {
				createBatch(b, db, creates.next())
			}
			server := startServerMeter(b, db)
			b.ResetTimer()
			var after int64
			for read := 0; read < b.N; {
				events, err := db.EventsAfter(ctx, after, limit)
				if err != nil {
					b.Fatal(err)
				}
				if len(events) == 0 {
					after = 0 // read it all: again from the start
					continue
				}
				read += len(events)
				after = events[len(events)-1].Seq
			}
			b.StopTimer()
			server.report(b)
		})
	}
}

// benchCreates makes batches of creates of phones with unique numbers
// over 10,000 accounts.
type benchCreates struct {
	rng   *rand.Rand
	n     int
	batch []phone.Creation
}

func newBenchCreates(size int) *benchCreates {
	return &benchCreates{rng: rand.New(rand.NewPCG(1, 2)), batch: make([]phone.Creation, size)}
}

func (c *benchCreates) next() []phone.Creation {
	area, mobile := int64(11), string(phone.Mobile)
	for i := range c.batch {
		c.n++
		number := fmt.Sprintf("%09d", c.n)
		p, err := phone.New("TN-bench", c.rng.Int64N(10000)+1, nil, phone.Draft{Number: &number, Type: &mobile, AreaCode: &area})
		if err != nil {
			panic(err)
		}
		// UUIDv7, as the service's, so that the event id index is
		// appended to.
		c.batch[i] = phone.Creation{Phone: p, EventID: uuid.Must(uuid.NewV7()).String(),
			Audit: phone.Audit{CID: "cid", Origin: "API"}}
	}
	return c.batch
}

func createBatch(b *testing.B, db *DB, batch []phone.Creation) {
	outs, err := db.CreatePhones(context.Background(), batch)
	if err != nil {
		b.Fatal(err)
	}
	for _, o := range outs {
		if o.Err != nil {
			b.Fatal(o.Err)
		}
	}
}

// serverMeter measures the CPU db's server spends, its postmaster and
// every process under it, when the server runs on this machine.
type serverMeter struct {
	postmaster int // 0: not here
	start      time.Duration
}

func startServerMeter(b *testing.B, db *DB) serverMeter {
	var backend int
	if err := db.pool.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		b.Fatal(err)
	}
	m := serverMeter{postmaster: procstat.Postmaster(backend)}
	if m.postmaster != 0 {
		m.start = procstat.TreeCPU(m.postmaster)
	}
	return m
}

// report reports the server's CPU per operation since the start.
func (m serverMeter) report(b *testing.B) {
	if m.postmaster != 0 {
		b.ReportMetric(float64(procstat.TreeCPU(m.postmaster)-m.start)/float64(b.N), "server-cpu-ns/op")
	}
}
