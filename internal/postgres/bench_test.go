package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/phonesd/phonesd/internal/phone"
	"github.com/phonesd/phonesd/internal/testkit/pgtest"
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
			before, measured := serverCPU()
			b.ResetTimer()
			for done := 0; done < b.N; done += run.size {
				createBatch(b, db, creates.next())
			}
			b.StopTimer()
			if after, ok := serverCPU(); measured && ok {
				b.ReportMetric(float64(after-before)/float64(b.N), "server-cpu-ns/op")
			}
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
			before, measured := serverCPU()
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
			if end, ok := serverCPU(); measured && ok {
				b.ReportMetric(float64(end-before)/float64(b.N), "server-cpu-ns/op")
			}
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

// serverCPU returns the CPU spent so far by the processes named postgres
// that this user may read in /proc: the server's, when it runs here. It
// reports false where there are none (another machine, no /proc).
func serverCPU() (time.Duration, bool) {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var ticks int64
	found := false
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // ended meanwhile
		}
		// pid (comm) state ppid ...: utime and stime are the 12th and 13th
		// fields after the comm's closing parenthesis.
		s := string(b)
		end := strings.LastIndexByte(s, ')')
		if end < 0 || s[strings.IndexByte(s, '(')+1:end] != "postgres" {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 13 {
			continue
		}
		u, err1 := strconv.ParseInt(f[11], 10, 64)
		k, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		ticks += u + k
		found = true
	}
	// The kernel counts in clock ticks of 1/100 s (USER_HZ) on Linux.
	return time.Duration(ticks) * 10 * time.Millisecond, found
}
