// Package file delivers outbox events to a file, one JSON line each.
package file

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/phonesd/phonesd/internal/phone"
)

// Sink is an outbox.Sink that appends each event's payload as one line of a file
// (JSON Lines) and fsyncs before Publish returns. Each event is written to
// the file once, even when the relay delivers it again (a crash between
// the fsync and marking the events sent, a failed mark): the sink knows
// the event ids of the file's last lines, read back from the file when it
// opens, and reports those events delivered without appending them again.
// It is safe for sequential use by one relay, and the file must have no
// other writer.
type Sink struct {
	f    *os.File
	path string
	// size is the length of the file's complete lines: where the next
	// Publish starts, and where a failed one is cut back to.
	size int64
	// recent holds the event ids of the file's last lines, at most
	// recentLines of them, oldest first; inFile indexes it.
	recent []string
	inFile map[string]bool
}

// recentLines is how many of the file's last lines the sink recognises.
// The events a relay may deliver again are those it published and has not
// marked sent: at most MarkEvery + BatchSize - 1, 1,279 with phonesd's
// defaults (TestFileSinkAfterCrashWithTheLargestUnmarkedWindow), fewer
// than this.
const recentLines = 4096

// readBlock is how much of the file a backward scan reads at a time.
const readBlock = 64 << 10

// NewSink opens the file at path for appending, creating it with mode
// 0600 whatever the umask (its directory must exist): its events hold phone
// numbers. It cuts a torn last line and reads the event ids of the last
// lines. It returns an error when the file cannot be opened, read, cut or
// made durable.
func NewSink(path string) (*Sink, error) {
	f, err := openPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("open event file: %w", err)
	}
	size, err := completeLength(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open event file %s: %w", path, err)
	}
	// A crash during Publish can leave the last line torn: written in part,
	// never fsynced in full, and so never marked sent in the outbox. The relay
	// will publish that event again, so the fragment is cut off here rather
	// than left to corrupt the line appended after it.
	if err := truncate(f, size); err != nil {
		f.Close()
		return nil, fmt.Errorf("open event file %s: %w", path, err)
	}
	// A crash between a write and its fsync leaves whole lines that only
	// the page cache holds. They are about to be taken for delivered, so
	// they must be durable first. The file may also have just been created:
	// its directory entry must be durable too, or a power cut could lose the
	// whole file after Publish reported success.
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("open event file %s: fsync: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, fmt.Errorf("open event file %s: %w", path, err)
	}
	s := &Sink{f: f, path: path, size: size, inFile: map[string]bool{}}
	ids, err := lastEventIDs(f, size, recentLines)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open event file %s: %w", path, err)
	}
	s.remember(ids)
	return s, nil
}

// openPrivate opens path for reading and appending, creating it with mode
// 0600. The mode is set again after creating, since the umask may have
// taken bits from it.
func openPrivate(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	}
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// remember records ids as the file's last lines.
func (s *Sink) remember(ids []string) {
	for _, id := range ids {
		if id == "" {
			continue
		}
		s.recent = append(s.recent, id)
		s.inFile[id] = true
	}
	if over := len(s.recent) - recentLines; over > 0 {
		for _, id := range s.recent[:over] {
			delete(s.inFile, id)
		}
		s.recent = append(s.recent[:0], s.recent[over:]...)
	}
}

// Publish appends one line per event, each payload exactly followed by '\n',
// in a single write, and returns after fsync. It returns an error, and leaves
// the file as it was, when a payload holds a newline, the write or the fsync
// fails, or ctx has ended.
func (s *Sink) Publish(ctx context.Context, events []phone.Event) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("publish to %s: %w", s.path, err)
	}
	// Events already in the file were delivered by an earlier Publish,
	// here or before a crash, and never marked sent: they count as
	// delivered, and are not appended again.
	fresh := make([]phone.Event, 0, len(events))
	for _, ev := range events {
		if ev.ID == "" || !s.inFile[ev.ID] {
			fresh = append(fresh, ev)
		}
	}
	events = fresh
	if len(events) == 0 {
		return nil
	}
	n := 0
	for _, ev := range events {
		n += len(ev.Payload) + 1
	}
	buf := make([]byte, 0, n)
	for _, ev := range events {
		// A newline inside a payload would split it into two lines no
		// reader could put back together.
		if bytes.IndexByte(ev.Payload, '\n') >= 0 {
			return fmt.Errorf("publish to %s: payload of event seq %d contains a newline", s.path, ev.Seq)
		}
		buf = append(buf, ev.Payload...)
		buf = append(buf, '\n')
	}
	if _, err := s.f.Write(buf); err != nil {
		return s.undo(fmt.Errorf("publish to %s: write: %w", s.path, err))
	}
	// After a failed fsync the written pages may be dropped or reported
	// clean, so the batch is cut off and written again in full by the retry.
	if err := s.f.Sync(); err != nil {
		return s.undo(fmt.Errorf("publish to %s: fsync: %w", s.path, err))
	}
	s.size += int64(len(buf))
	ids := make([]string, len(events))
	for i, ev := range events {
		ids[i] = ev.ID
	}
	s.remember(ids)
	return nil
}

// undo cuts the file back to its complete lines after a failed Publish, so
// that the retry does not append after a fragment.
func (s *Sink) undo(err error) error {
	if terr := truncate(s.f, s.size); terr != nil {
		return errors.Join(err, terr)
	}
	return err
}

// Close closes the file.
func (s *Sink) Close() error {
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("close event file %s: %w", s.path, err)
	}
	return nil
}

// completeLength returns the length of f up to and including its last '\n',
// reading backwards from the end in blocks.
func completeLength(f *os.File) (int64, error) {
	info, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat: %w", err)
	}
	end := info.Size()
	buf := make([]byte, readBlock)
	for end > 0 {
		start := max(0, end-int64(len(buf)))
		block := buf[:end-start]
		if _, err := f.ReadAt(block, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("read tail: %w", err)
		}
		if i := bytes.LastIndexByte(block, '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// lastEventIDs returns the event_id of each of the last n complete lines of
// f, which are size bytes long, oldest first; "" for a line that has none.
// It reads back lines, however many bytes they take, rather than a number
// of bytes: the relay's largest batch is a number of events, and events
// grow with the token's claims (a batch of 256 events whose roles JSON
// escapes is over 9 MiB), so no byte count covers it without depending on
// how large a token may be.
func lastEventIDs(f *os.File, size int64, n int) ([]string, error) {
	starts, err := lastLineStarts(f, size, n)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(starts))
	for i, start := range starts {
		end := size
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		ids[i] = eventID(io.NewSectionReader(f, start, end-start))
	}
	return ids, nil
}

// eventID returns the event_id of the JSON object line holds, "" when it
// has none. It reads no further than that member: the envelope starts
// with it, so the rest of a large event is never read.
func eventID(line io.Reader) string {
	dec := json.NewDecoder(line)
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return ""
		}
		if key == "event_id" {
			var id string
			if dec.Decode(&id) != nil {
				return ""
			}
			return id
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return ""
		}
	}
	return ""
}

// lastLineStarts returns where each of the last n lines of f's first size
// bytes begins, oldest first, reading backwards in blocks; size is 0 or
// ends a line.
func lastLineStarts(f *os.File, size int64, n int) ([]int64, error) {
	if size == 0 || n <= 0 {
		return nil, nil
	}
	var starts []int64 // newest first
	buf := make([]byte, readBlock)
	// The byte at pos is the '\n' that ends the newest line not yet
	// placed; the bytes before it are still to scan.
	pos := size - 1
	for pos > 0 && len(starts) < n {
		from := max(0, pos-int64(len(buf)))
		block := buf[:pos-from]
		if _, err := f.ReadAt(block, from); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read tail: %w", err)
		}
		for i := len(block) - 1; i >= 0 && len(starts) < n; i-- {
			if block[i] == '\n' {
				starts = append(starts, from+int64(i)+1)
			}
		}
		pos = from
	}
	if pos == 0 && len(starts) < n {
		starts = append(starts, 0) // the file's first line
	}
	slices.Reverse(starts)
	return starts, nil
}

// truncate cuts f to size and makes the cut durable; it does nothing when f
// already has that size.
func truncate(f *os.File, size int64) error {
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if info.Size() == size {
		return nil
	}
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("truncate to %d bytes: %w", size, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync after truncate: %w", err)
	}
	return nil
}

// syncDir fsyncs the directory at path, making entries created in it durable.
func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory: %w", err)
	}
	return nil
}
