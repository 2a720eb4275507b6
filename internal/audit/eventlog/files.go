package eventlog

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/switchboard/switchboard/internal/audit/event"
)

// maxFileNumber is where numbering wraps: GW999.log is followed by GW001.log,
// which is truncated, so the folder never holds more than 999 files.
const maxFileNumber = 999

// rotator appends lines to GW<n>.log, moving to the next number when the
// next line would push the file past max bytes.
type rotator struct {
	dir  string
	max  int64
	n    int
	f    *os.File
	w    *bufio.Writer
	size int64
}

func fileName(dir string, n int) string {
	return filepath.Join(dir, fmt.Sprintf("GW%03d.log", n))
}

// newRotator continues in the most recently written log file if it has
// room, so a restart does not start a new file each time. The most recent
// rather than the highest number, because numbering wraps.
func newRotator(dir string, max int64) (*rotator, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("eventlog: log folder: %w", err)
	}
	r := &rotator{dir: dir, max: max, n: 1}
	var newest time.Time
	for n := 1; n <= maxFileNumber; n++ {
		fi, err := os.Stat(fileName(dir, n))
		if err != nil {
			continue
		}
		if fi.ModTime().After(newest) || newest.IsZero() {
			newest, r.n = fi.ModTime(), n
		}
	}
	if err := r.open(false); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rotator) open(truncate bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	if truncate {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(fileName(r.dir, r.n), flags, 0o644)
	if err != nil {
		return fmt.Errorf("eventlog: open log file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("eventlog: open log file: %w", err)
	}
	r.f, r.w, r.size = f, bufio.NewWriter(f), fi.Size()
	return nil
}

func (r *rotator) next() error {
	if err := r.close(); err != nil {
		return err
	}
	r.n++
	if r.n > maxFileNumber {
		r.n = 1
	}
	return r.open(true)
}

// write appends one line per event and flushes, so tail -f sees them.
func (r *rotator) write(evs []event.Event) error {
	if r.f == nil {
		if err := r.open(false); err != nil {
			return err
		}
	}
	limit := int(min(int64(MaxLineBytes), r.max))
	for _, e := range evs {
		line := logLine(e, limit)
		if r.size > 0 && r.size+int64(len(line)) > r.max {
			if err := r.next(); err != nil {
				return err
			}
		}
		if _, err := r.w.WriteString(line); err != nil {
			return fmt.Errorf("eventlog: write log file: %w", err)
		}
		r.size += int64(len(line))
	}
	if err := r.w.Flush(); err != nil {
		return fmt.Errorf("eventlog: write log file: %w", err)
	}
	return nil
}

func (r *rotator) close() error {
	if r.f == nil {
		return nil
	}
	err := r.w.Flush()
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	r.f = nil
	if err != nil {
		return fmt.Errorf("eventlog: close log file: %w", err)
	}
	return nil
}
