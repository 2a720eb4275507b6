package eventlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/switchboard/switchboard/internal/audit/event"
)

// IsPermanent is the default Config.Permanent: the store refused the data
// itself, so the same events will fail again however often they are
// retried. It recognises PostgreSQL errors by their SQLSTATE (any error in
// the chain with a SQLState() string method, as pgx's *pgconn.PgError
// has): class 22 (data exception: a value out of range, invalid text,
// ...), 23 (integrity constraint violation) and 54 (program limit
// exceeded: an index row or a value too large). Everything else (the
// network, timeouts, a database shutting down or out of space, a missing
// table) is taken as transient: retrying it loses nothing, while
// quarantining it would quarantine every event.
func IsPermanent(err error) bool {
	var se interface{ SQLState() string }
	if !errors.As(err, &se) {
		return false
	}
	code := se.SQLState()
	if len(code) != 5 {
		return false
	}
	switch code[:2] {
	case "22", "23", "54":
		return true
	}
	return false
}

// quarantineEntry is one line of the quarantine file.
type quarantineEntry struct {
	Quarantined time.Time   `json:"quarantined"`
	Error       string      `json:"error"`
	SQLState    string      `json:"sqlstate,omitempty"`
	Seq         uint64      `json:"seq"`
	Event       event.Event `json:"event"`
}

// quarantine appends the events the store refused for good to a JSON-lines
// file, where an administrator can read them and, once the cause is fixed,
// insert them by hand. Only the store goroutine uses it.
type quarantine struct {
	path string
	max  int64
	f    *os.File
	size int64
}

// maxErrorText bounds the error kept with a quarantined event; PostgreSQL
// may quote the offending value in its message.
const maxErrorText = 1024

var errQuarantineFull = errors.New("eventlog: quarantine file full")

// write appends r and fsyncs: a quarantined event is acknowledged, and so
// deleted from the spool, right after.
func (q *quarantine) write(r rec, cause error, now time.Time) error {
	if q.path == "" {
		return errors.New("eventlog: no quarantine file configured")
	}
	if q.f == nil {
		if err := os.MkdirAll(filepath.Dir(q.path), 0o700); err != nil {
			return fmt.Errorf("eventlog: quarantine: %w", err)
		}
		f, err := os.OpenFile(q.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("eventlog: quarantine: %w", err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("eventlog: quarantine: %w", err)
		}
		q.f, q.size = f, fi.Size()
	}
	ent := quarantineEntry{Quarantined: now, Error: bound(cause.Error(), maxErrorText), Seq: r.seq, Event: r.ev}
	var se interface{ SQLState() string }
	if errors.As(cause, &se) {
		ent.SQLState = bound(se.SQLState(), 16)
	}
	b, err := json.Marshal(ent)
	if err != nil {
		return fmt.Errorf("eventlog: quarantine: %w", err)
	}
	b = append(b, '\n')
	if q.size+int64(len(b)) > q.max {
		return errQuarantineFull
	}
	n, err := q.f.Write(b)
	q.size += int64(n)
	if err != nil {
		return fmt.Errorf("eventlog: quarantine: %w", err)
	}
	if err := q.f.Sync(); err != nil {
		return fmt.Errorf("eventlog: quarantine: %w", err)
	}
	return nil
}

func (q *quarantine) close() error {
	if q.f == nil {
		return nil
	}
	err := q.f.Close()
	q.f = nil
	if err != nil {
		return fmt.Errorf("eventlog: quarantine: %w", err)
	}
	return nil
}

// quarantinePath is the default quarantine file: beside the spool, named
// like it (events.spool -> events.quarantine).
func quarantinePath(spool string) string {
	if spool == "" {
		return ""
	}
	base := filepath.Base(spool)
	if ext := filepath.Ext(base); ext != "" && ext != base {
		base = strings.TrimSuffix(base, ext)
	}
	return filepath.Join(filepath.Dir(spool), base+".quarantine")
}
