package outbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"phonesd/internal/phone"
)

// FileSink is a Sink that appends each event's payload as one line of a file
// (JSON Lines) and fsyncs before Publish returns. It is safe for sequential
// use by one relay.
type FileSink struct {
	f    *os.File
	path string
	// size is the length of the file's complete lines: where the next
	// Publish starts, and where a failed one is cut back to.
	size int64
}

// NewFileSink opens the file at path for appending, creating it with mode
// 0644 (its directory must exist). It returns an error when the file cannot
// be opened or its torn last line cannot be cut off.
func NewFileSink(path string) (*FileSink, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
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
	// The file may have just been created: its directory entry must be
	// durable too, or a power cut could lose the whole file after Publish
	// reported success.
	if err := syncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, fmt.Errorf("open event file %s: %w", path, err)
	}
	return &FileSink{f: f, path: path, size: size}, nil
}

// Publish appends one line per event, each payload exactly followed by '\n',
// in a single write, and returns after fsync. It returns an error, and leaves
// the file as it was, when a payload holds a newline, the write or the fsync
// fails, or ctx has ended.
func (s *FileSink) Publish(ctx context.Context, events []phone.Event) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("publish to %s: %w", s.path, err)
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
	return nil
}

// undo cuts the file back to its complete lines after a failed Publish, so
// that the retry does not append after a fragment.
func (s *FileSink) undo(err error) error {
	if terr := truncate(s.f, s.size); terr != nil {
		return errors.Join(err, terr)
	}
	return err
}

// Close closes the file.
func (s *FileSink) Close() error {
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
	buf := make([]byte, 64*1024)
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
