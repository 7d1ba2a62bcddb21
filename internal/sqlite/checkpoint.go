package sqlite

import (
	"context"
	"database/sql"
	"time"
)

// SQLite's own checkpoints run inside the commit that crosses the WAL's
// size threshold, so that commit, and every create waiting on it, would pay
// for copying the WAL into the database file and syncing it. The writer
// turns them off (wal_autocheckpoint=0) and a connection of its own
// checkpoints in the background instead.
//
// A background checkpoint never catches up with a load that never pauses,
// and SQLite writes the WAL from its start again only once every frame of
// it is in the database file, so the WAL would grow without end. SQLite's
// RESTART checkpoint solves that by blocking new writes until it has copied
// everything and every reader has moved on: measured under load, that held
// creates for 6 to 545 ms (its wait on the write lock sleeps in steps of up
// to 100 ms). Instead, once the WAL is large, background checkpoints run
// back to back until only a short tail is left, and the writer's own
// connection copies that tail between two batches; the writer's next
// transaction then starts the WAL again from its start.

// checkpoints says when checkpoints run.
type checkpoints struct {
	interval time.Duration
	// restartFrames is the WAL size, in pages, past which the WAL is
	// brought back to its start.
	restartFrames int
	// tailFrames is the most the writer copies itself.
	tailFrames int
	// catchUpRounds bounds the back-to-back background checkpoints of one
	// tick; a writer that outruns them is tried again at the next tick.
	catchUpRounds int
}

// defaultCheckpoints lets the WAL grow to 256 MiB before bringing it back:
// under a sustained 6,000 creates/s that is once every 4 s or so, and costs
// the writer 5 to 25 ms each time, mostly the database file's fsync.
var defaultCheckpoints = checkpoints{
	interval:      200 * time.Millisecond,
	restartFrames: 65536,
	tailFrames:    256,
	catchUpRounds: 8,
}

// loop checkpoints through bg every interval, and through writer as said
// above, until stop closes; then once more, fully, before it returns.
func (c checkpoints) loop(bg, writer *sql.DB, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			checkpoint(bg, "TRUNCATE")
			return
		case <-t.C:
		}
		wal, copied := checkpoint(bg, "PASSIVE")
		if wal <= c.restartFrames {
			continue
		}
		for i := 0; i < c.catchUpRounds && wal-copied > c.tailFrames; i++ {
			wal, copied = checkpoint(bg, "PASSIVE")
		}
		if wal-copied <= c.tailFrames {
			checkpoint(writer, "PASSIVE")
		}
	}
}

// checkpoint runs one checkpoint in mode through db and returns the WAL's
// size and how much of it is now in the database file, in frames. A
// failure needs no handling: the next tick tries again, and the WAL keeps
// every commit durable meanwhile.
func checkpoint(db *sql.DB, mode string) (wal, copied int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var busy int
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &wal, &copied); err != nil {
		return 0, 0
	}
	return wal, copied
}
