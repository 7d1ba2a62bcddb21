package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/phonesd/phonesd/internal/phone"
)

// TestWALComesBackToItsStart writes without pause, as a busy service does,
// and checks that the WAL file stops growing: the checkpoints must bring
// it back to its start although the writer never leaves them a quiet moment.
func TestWALComesBackToItsStart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "phones.db")
	ckpt := checkpoints{interval: 20 * time.Millisecond, restartFrames: 200, tailFrames: 64, catchUpRounds: 8}
	db, err := open(ctx, path, Options{}, ckpt)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	const writers = 4
	deadline := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				p, err := phone.New("tenant-wal", int64(w*1000000+i%5000), nil, phone.Draft{
					Number: new(fmt.Sprintf("11 9%d-%07d", w, i)),
					Type:   new(string(phone.Mobile)),
				})
				if err != nil {
					errs <- err
					return
				}
				c := phone.Creation{Phone: p, EventID: fmt.Sprintf("wal-%d-%d", w, i)}
				if _, err := db.CreatePhone(ctx, c); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var largest int64
	for time.Now().Before(deadline) {
		if fi, err := os.Stat(path + "-wal"); err == nil {
			largest = max(largest, fi.Size())
		}
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("create: %v", err)
	}
	var creates int
	if err := db.reader.QueryRowContext(ctx, "SELECT COUNT(*) FROM phones").Scan(&creates); err != nil {
		t.Fatal(err)
	}
	// Each create dirties a few pages; without restarts the WAL would hold
	// every one of them. With them, it stays within a few times the
	// threshold (the WAL file keeps its largest size, it is overwritten
	// from the start rather than truncated).
	const pageSize = 4096 + 24
	limit := int64(8 * ckpt.restartFrames * pageSize)
	t.Logf("%d creates; WAL file at most %d KiB (limit %d KiB)", creates, largest/1024, limit/1024)
	// 1,000 creates write some 5,000 pages: several times the limit.
	if creates < 1000 {
		t.Skipf("only %d creates in 3 s: too few to fill the WAL several times over", creates)
	}
	if largest > limit {
		t.Errorf("WAL file reached %d bytes; want at most %d: it is not brought back to its start", largest, limit)
	}
}
