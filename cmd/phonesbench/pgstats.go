package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phonesd/phonesd/internal/postgres"
	"github.com/phonesd/phonesd/internal/testkit/procstat"
)

// lockSampleInterval is how often the locks that order the outbox are
// sampled in pg_locks. A wait shorter than that is still counted in proportion to its
// length, since the sampling is independent of the lock's timing.
const lockSampleInterval = 10 * time.Millisecond

// scaleResult is what one create measurement cost PostgreSQL and the
// phonesd replicas, measured over the same span as the creates.
type scaleResult struct {
	Replicas int     `json:"replicas"`
	Seconds  float64 `json:"seconds"`
	// Creates are the phones stored in the span; Batches the transactions
	// that stored them (distinct xmin), each taking the locks that order
	// the outbox once.
	Creates        int64   `json:"creates"`
	Batches        int64   `json:"batches"`
	PhonesPerBatch float64 `json:"phones_per_batch"`
	// CommitsPerSecond counts the commits of the bench's database
	// (pg_stat_database.xact_commit): the batches, the relay's marks and
	// reads, and every statement outside a transaction.
	CommitsPerSecond float64 `json:"commits_per_second"`
	// WALBytesPerCreate and WALSyncsPerSecond are the whole server's (the
	// WAL's position; pg_stat_wal.wal_sync): on a shared server they
	// include others' work.
	WALBytesPerCreate float64 `json:"wal_bytes_per_create"`
	WALBytesPerSecond float64 `json:"wal_bytes_per_second"`
	WALSyncsPerSecond float64 `json:"wal_syncs_per_second"`
	// The locks that order the outbox (postgres.OrderLocks: the account
	// locks, or the one outbox order lock of earlier versions), sampled
	// in pg_locks every 10 ms: LockHeldShare is the share of samples in
	// which a transaction held one, LockWaitedShare the share in which a
	// transaction waited for one, LockWaitersMean the mean number of
	// transactions waiting, and LockWaitPerBatchMs their total wait
	// (waiters × time) divided by the batches.
	LockSamples        int     `json:"lock_samples"`
	LockHeldShare      float64 `json:"lock_held_share"`
	LockWaitedShare    float64 `json:"lock_waited_share"`
	LockWaitersMean    float64 `json:"lock_waiters_mean"`
	LockWaitPerBatchMs float64 `json:"lock_wait_per_batch_ms"`
	// ServerCPUPerCreateUs is the CPU time (user + system) of every
	// process of the PostgreSQL server divided by the creates, when the
	// server runs on this machine (on a shared server it includes others'
	// work). phonesd's own is the creates' cpu_per_request_us.
	ServerCPUPerCreateUs float64 `json:"server_cpu_per_create_us,omitempty"`
}

// pgCounters is a snapshot of the cumulative figures a scaleResult is the
// difference of.
type pgCounters struct {
	at         time.Time
	commits    int64
	walLSN     uint64
	walSyncs   int64
	maxPhoneID int64
	serverCPU  time.Duration
}

// pgWatch samples PostgreSQL during one create measurement, on a
// connection of its own.
type pgWatch struct {
	conn       *pgx.Conn
	postmaster int // 0 when the server's processes cannot be read here
	replicas   int
	done       chan struct{}
	result     chan watchOutcome
}

type watchOutcome struct {
	res scaleResult
	err error
}

// startPGWatch starts watching the database at dbURL, which replicas
// phonesd share: it waits warmup, as the load does before it measures,
// then samples until stop.
func startPGWatch(ctx context.Context, dbURL string, replicas int, warmup time.Duration) (*pgWatch, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, fmt.Errorf("watch PostgreSQL: %w", err)
	}
	w := &pgWatch{conn: conn, replicas: replicas, done: make(chan struct{}), result: make(chan watchOutcome, 1)}
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err == nil {
		w.postmaster = procstat.Postmaster(backend)
	}
	go func() {
		res, err := w.run(ctx, warmup)
		w.result <- watchOutcome{res, err}
	}()
	return w, nil
}

// stop ends the sampling and returns what the span cost.
func (w *pgWatch) stop(ctx context.Context) (scaleResult, error) {
	close(w.done)
	out := <-w.result
	w.conn.Close(context.WithoutCancel(ctx))
	return out.res, out.err
}

func (w *pgWatch) run(ctx context.Context, warmup time.Duration) (scaleResult, error) {
	select {
	case <-time.After(warmup):
	case <-w.done:
		return scaleResult{}, errors.New("watch PostgreSQL: stopped during the warm-up")
	case <-ctx.Done():
		return scaleResult{}, ctx.Err()
	}
	start, err := w.snapshot(ctx)
	if err != nil {
		return scaleResult{}, err
	}
	accountClass, orderClassID, orderObjID := postgres.OrderLocks()
	var (
		samples       int
		held          int
		waited        int
		waitingTime   float64 // Σ waiters × seconds
		waitersSum    int
		last          = time.Now()
		ticker        = time.NewTicker(lockSampleInterval)
		sampleErr     error
		samplesFailed int
	)
	defer ticker.Stop()
sampling:
	for {
		select {
		case <-w.done:
			break sampling
		case <-ctx.Done():
			return scaleResult{}, ctx.Err()
		case <-ticker.C:
		}
		var waiting, granted int
		err := w.conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE NOT granted), count(*) FILTER (WHERE granted)
FROM pg_locks
WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((classid::bigint = $1 AND objsubid = 2) OR (classid::bigint = $2 AND objid::bigint = $3 AND objsubid = 1))`,
			accountClass, orderClassID, orderObjID).Scan(&waiting, &granted)
		now := time.Now()
		if err != nil {
			samplesFailed++
			sampleErr = err
			continue
		}
		samples++
		waitersSum += waiting
		waitingTime += float64(waiting) * now.Sub(last).Seconds()
		last = now
		if granted > 0 {
			held++
		}
		if waiting > 0 {
			waited++
		}
	}
	end, err := w.snapshot(ctx)
	if err != nil {
		return scaleResult{}, err
	}
	if samples == 0 && sampleErr != nil {
		return scaleResult{}, fmt.Errorf("sample pg_locks: %w", sampleErr)
	}
	r := scaleResult{Replicas: w.replicas, Seconds: end.at.Sub(start.at).Seconds(), LockSamples: samples}
	err = w.conn.QueryRow(ctx, `SELECT count(DISTINCT xmin::text), count(*) FROM phones WHERE id > $1 AND id <= $2`,
		start.maxPhoneID, end.maxPhoneID).Scan(&r.Batches, &r.Creates)
	if err != nil {
		return scaleResult{}, fmt.Errorf("count batches: %w", err)
	}
	if r.Seconds > 0 {
		r.CommitsPerSecond = float64(end.commits-start.commits) / r.Seconds
		r.WALBytesPerSecond = float64(end.walLSN-start.walLSN) / r.Seconds
		r.WALSyncsPerSecond = float64(end.walSyncs-start.walSyncs) / r.Seconds
	}
	if samples > 0 {
		r.LockHeldShare = float64(held) / float64(samples)
		r.LockWaitedShare = float64(waited) / float64(samples)
		r.LockWaitersMean = float64(waitersSum) / float64(samples)
	}
	if r.Batches > 0 {
		r.PhonesPerBatch = float64(r.Creates) / float64(r.Batches)
		r.LockWaitPerBatchMs = waitingTime / float64(r.Batches) * 1000
	}
	if r.Creates > 0 {
		r.WALBytesPerCreate = float64(end.walLSN-start.walLSN) / float64(r.Creates)
		if w.postmaster != 0 {
			r.ServerCPUPerCreateUs = float64((end.serverCPU - start.serverCPU).Microseconds()) / float64(r.Creates)
		}
	}
	return r, nil
}

// snapshot reads the cumulative counters now.
func (w *pgWatch) snapshot(ctx context.Context) (pgCounters, error) {
	c := pgCounters{at: time.Now()}
	var lsn string
	err := w.conn.QueryRow(ctx, `SELECT
  (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
  pg_current_wal_lsn()::text,
  (SELECT wal_sync FROM pg_stat_wal),
  (SELECT coalesce(max(id), 0) FROM phones)`).Scan(&c.commits, &lsn, &c.walSyncs, &c.maxPhoneID)
	if err != nil {
		return c, fmt.Errorf("read PostgreSQL's counters: %w", err)
	}
	if c.walLSN, err = parseLSN(lsn); err != nil {
		return c, err
	}
	if w.postmaster != 0 {
		c.serverCPU = procstat.TreeCPU(w.postmaster)
	}
	return c, nil
}

// parseLSN reads a pg_lsn such as 16/B374D848.
func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("WAL position %q: not an LSN", s)
	}
	return h<<32 | l, nil
}

// footprint is the size on disk of phonesd's tables and indexes after a
// run, per row.
type footprint struct {
	Phones    int64          `json:"phones"`
	Events    int64          `json:"events"`
	Relations []relationSize `json:"relations"`
}

// relationSize is one table or index: its bytes, and its bytes per row of
// its table.
type relationSize struct {
	Name        string  `json:"name"`
	Table       string  `json:"table"`
	Bytes       int64   `json:"bytes"`
	BytesPerRow float64 `json:"bytes_per_row"`
}

// readFootprint measures the phones and outbox tables and their indexes
// (TOAST included in each table's size).
func readFootprint(ctx context.Context, dbURL string) (*footprint, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, fmt.Errorf("footprint: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	f := &footprint{}
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM phones), (SELECT count(*) FROM outbox)`).Scan(&f.Phones, &f.Events); err != nil {
		return nil, fmt.Errorf("footprint: %w", err)
	}
	rows, err := conn.Query(ctx, `SELECT c.relname, t.relname,
  CASE WHEN c.relkind = 'r' THEN pg_table_size(c.oid) ELSE pg_relation_size(c.oid) END
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
LEFT JOIN pg_index i ON i.indexrelid = c.oid
JOIN pg_class t ON t.oid = coalesce(i.indrelid, c.oid)
WHERE t.relname IN ('phones', 'outbox') AND c.relkind IN ('r', 'i')
ORDER BY t.relname DESC, c.relkind DESC, c.relname`)
	if err != nil {
		return nil, fmt.Errorf("footprint: %w", err)
	}
	f.Relations, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (relationSize, error) {
		var r relationSize
		err := row.Scan(&r.Name, &r.Table, &r.Bytes)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("footprint: %w", err)
	}
	for i, r := range f.Relations {
		n := f.Phones
		if r.Table == "outbox" {
			n = f.Events
		}
		if n > 0 {
			f.Relations[i].BytesPerRow = float64(r.Bytes) / float64(n)
		}
	}
	return f, nil
}

// printScale writes, for the runs on PostgreSQL, what each create
// measurement cost the server and the replicas.
func printScale(w io.Writer, r report) {
	t := table{header: []string{"run", "replicas", "conc", "creates/s", "batches/s", "phones/batch", "commits/s", "WAL syncs/s", "WAL B/create", "lock held", "lock waited", "waiting", "lock wait/batch ms", "server CPU µs/create"}}
	for _, run := range r.Runs {
		for _, l := range run.Levels {
			s := l.Scale
			if s == nil || s.Seconds <= 0 {
				continue
			}
			server := "n/a"
			if s.ServerCPUPerCreateUs > 0 {
				server = fmt.Sprintf("%.0f", s.ServerCPUPerCreateUs)
			}
			t.add(run.label(), strconv.Itoa(s.Replicas), strconv.Itoa(l.Concurrency),
				fmt.Sprintf("%.0f", float64(s.Creates)/s.Seconds), fmt.Sprintf("%.0f", float64(s.Batches)/s.Seconds),
				fmt.Sprintf("%.1f", s.PhonesPerBatch), fmt.Sprintf("%.0f", s.CommitsPerSecond),
				fmt.Sprintf("%.0f", s.WALSyncsPerSecond), fmt.Sprintf("%.0f", s.WALBytesPerCreate),
				fmt.Sprintf("%.0f%%", 100*s.LockHeldShare), fmt.Sprintf("%.0f%%", 100*s.LockWaitedShare), fmt.Sprintf("%.2f", s.LockWaitersMean),
				fmt.Sprintf("%.3f", s.LockWaitPerBatchMs), server)
		}
	}
	if len(t.rows) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "PostgreSQL during the creates (measured span only): batches are the transactions that stored phones (distinct xmin),")
	fmt.Fprintln(w, "each taking the locks that order the outbox once (its accounts' locks; one global lock before the outbox was ordered by")
	fmt.Fprintln(w, "transaction id); the locks sampled in pg_locks every 10 ms: share of samples one was held, share one was waited for, mean")
	fmt.Fprintln(w, "transactions waiting, and their total wait per batch. WAL figures and server CPU are the whole server's: on a shared server,")
	fmt.Fprintln(w, "others' work too.")
	t.write(w)
	for _, run := range r.Runs {
		if f := run.Footprint; f != nil {
			var parts []string
			for _, rel := range f.Relations {
				parts = append(parts, fmt.Sprintf("%s %.0f", rel.Name, rel.BytesPerRow))
			}
			fmt.Fprintf(w, "On disk after %s: %d phones, %d events; bytes per row: %s.\n", run.label(), f.Phones, f.Events, strings.Join(parts, ", "))
		}
	}
}

// printReplicas writes, for the runs of several replicas (--replicas 1,3),
// their creates/s over one replica's of the same build, storage and
// concurrency, measured in the same rotation, beside the share of samples
// in which a transaction waited for a lock that orders the outbox.
func printReplicas(w io.Writer, r report) {
	type key struct {
		build, backend, topology string
		preload, concurrency     int
	}
	one := map[key]levelResult{}
	for _, run := range r.Runs {
		if run.Replicas <= 1 {
			for _, l := range run.Levels {
				one[key{run.Build, run.Backend, run.Topology, run.Preload, l.Concurrency}] = l
			}
		}
	}
	t := table{header: []string{"run", "conc", "creates/s", "creates/s of one replica", "÷ one replica", "lock waited", "lock waited, one replica"}}
	share := func(l levelResult) string {
		if l.Scale == nil {
			return "n/a"
		}
		return fmt.Sprintf("%.0f%%", 100*l.Scale.LockWaitedShare)
	}
	for _, run := range r.Runs {
		if run.Replicas <= 1 {
			continue
		}
		for _, l := range run.Levels {
			base, ok := one[key{run.Build, run.Backend, run.Topology, run.Preload, l.Concurrency}]
			if !ok || base.Creates.PerSecond <= 0 {
				continue
			}
			t.add(run.label(), strconv.Itoa(l.Concurrency),
				fmt.Sprintf("%.0f", l.Creates.PerSecond), fmt.Sprintf("%.0f", base.Creates.PerSecond),
				fmt.Sprintf("%.2f", l.Creates.PerSecond/base.Creates.PerSecond), share(l), share(base))
		}
	}
	if len(t.rows) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Replicas against one replica of the same phonesd, at the same total concurrency, in the same rotation (medians of the rounds).")
	t.write(w)
}
