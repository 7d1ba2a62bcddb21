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
const (
	checkpointInterval = 200 * time.Millisecond
	// walRestartFrames is the WAL size, in pages, past which a checkpoint
	// also waits for the writer to let it restart the WAL from its start,
	// so that the file stays bounded under a load that never pauses.
	walRestartFrames = 16384
)

// checkpointLoop checkpoints every checkpointInterval until stop closes,
// and once more, fully, before it returns.
func checkpointLoop(conn *sql.DB, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			checkpoint(conn, "TRUNCATE")
			return
		case <-t.C:
		}
		if frames := checkpoint(conn, "PASSIVE"); frames > walRestartFrames {
			checkpoint(conn, "RESTART")
		}
	}
}

// checkpoint runs one checkpoint in mode and returns the WAL's size in
// frames. A failure needs no handling: the next tick tries again, and the
// WAL keeps every commit durable meanwhile.
func checkpoint(conn *sql.DB, mode string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var busy, frames, done int
	if err := conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &frames, &done); err != nil {
		return 0
	}
	return frames
}
