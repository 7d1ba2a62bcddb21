package sqlite

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/phonesd/phonesd/internal/phone"
)

// BenchmarkCreatePhones measures the writer's cost per create for batches
// of the sizes group commit forms, over many accounts as in production: each
// create then dirties its own leaf of each phones index. ns/op is per
// create; the fsync is included, so compare runs on the same disk. On
// Linux it also reports the CPU, bytes written and write calls per create,
// which vary far less from run to run than the fsyncs do.
//
// batch=32-without-account-index drops the index List phones reads
// (phones_account), to show what it costs each create: one more leaf
// dirtied, at a place of its own, and written to the WAL at each commit.
// The reference limit of cmd/phonesbench has no such index.
func BenchmarkCreatePhones(b *testing.B) {
	runs := []struct {
		size int
		drop string
	}{{1, ""}, {8, ""}, {32, ""}, {32, "phones_account"}}
	for _, run := range runs {
		name := fmt.Sprintf("batch=%d", run.size)
		if run.drop != "" {
			name += "-without-account-index"
		}
		size := run.size
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			db, err := Open(ctx, filepath.Join(b.TempDir(), "phones.db"), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			if run.drop != "" {
				if _, err := db.writer.ExecContext(ctx, "DROP INDEX "+run.drop); err != nil {
					b.Fatal(err)
				}
			}
			rng := rand.New(rand.NewPCG(1, 2))
			area, mobile := int64(11), string(phone.Mobile)
			n := 0
			batch := make([]phone.Creation, size)
			before, measured := readUsage()
			b.ResetTimer()
			for done := 0; done < b.N; done += size {
				for i := range batch {
					n++
					number := fmt.Sprintf("%09d", n)
					p, err := phone.New("TN-bench", rng.Int64N(10000)+1, nil, phone.Draft{Number: &number, Type: &mobile, AreaCode: &area})
					if err != nil {
						b.Fatal(err)
					}
					// Event ids increase, as the service's UUIDv7 do, so
					// that their index is appended to.
					batch[i] = phone.Creation{Phone: p, EventID: fmt.Sprintf("bench-%012d", n),
						Audit: phone.Audit{CID: "cid", Origin: "API"}}
				}
				outs, err := db.CreatePhones(ctx, batch)
				if err != nil {
					b.Fatal(err)
				}
				for _, o := range outs {
					if o.Err != nil {
						b.Fatal(o.Err)
					}
				}
			}
			after, _ := readUsage()
			if measured {
				n := float64(b.N)
				b.ReportMetric(float64(after.cpu-before.cpu)/n, "cpu-ns/op")
				b.ReportMetric(float64(after.writeBytes-before.writeBytes)/n, "written-B/op")
				b.ReportMetric(float64(after.writeCall-before.writeCall)/n, "writes/op")
			}
		})
	}
}
