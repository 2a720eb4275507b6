// Package eventlog writes the gateway's events to PostgreSQL and to the
// rotating GW log files without ever making the relay wait.
//
// Emit only appends to memory. Two goroutines do the I/O: one delivers to the
// store in order and in batches, retrying while the database is away; one
// appends lines to GW001.log, GW002.log, ... The store is the copy that must
// not lose anything: while it is unreachable, events beyond MaxPending move to
// a spool file on disk, and whatever is undelivered at shutdown is spooled
// and delivered by the next start. The log files are a convenience copy: if
// the disk stalls for long, file lines are dropped (and counted) rather than
// letting memory grow.
package eventlog

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/audit/event"
)

// Store is where events are kept for good.
type Store interface {
	InsertEvents(ctx context.Context, evs []event.Event) error
}

// Config configures a Log.
type Config struct {
	Dir        string // folder of the GW log files; empty writes no files
	MaxKB      int    // maximum size of one log file in KB; 0 is 1000
	Store      Store
	SpoolPath  string // where events wait on disk; empty keeps them in memory only
	MaxPending int    // events kept in memory before spilling; 0 is 10,000
	Node       string // stamped on events without one
	Logger     *slog.Logger
}

const (
	batchSize = 500
	// fileQueueMax bounds the lines waiting for a stuck disk.
	fileQueueMax = 100_000
	// insertTimeout bounds one delivery attempt so a hung database cannot
	// keep the writer from spilling to disk.
	insertTimeout = 10 * time.Second
	// finalTimeout is the last delivery attempt at shutdown.
	finalTimeout = 5 * time.Second
)

// Log is the event writer. Emit may be called before Run and from any
// goroutine.
type Log struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	head     []event.Event // oldest, being delivered
	tail     []event.Event // newest, not yet looked at by the writer
	spool    *spool        // events between head and tail, on disk
	fileq    []event.Event
	stopped  bool
	storeSig chan struct{}
	fileSig  chan struct{}

	emitted     atomic.Uint64 // events emitted, plus those replayed from the spool
	stored      atomic.Uint64 // events delivered to the store
	filed       atomic.Uint64 // events written to (or dropped from) the files
	written     atomic.Uint64 // events delivered by this process
	fileDropped atomic.Uint64

	files *rotator
}

// New validates cfg, opens the log folder and loads a spool left by an
// earlier run, whose events are delivered before any new one.
func New(cfg Config) (*Log, error) {
	if cfg.Store == nil {
		return nil, errors.New("eventlog: a store is required")
	}
	if cfg.MaxKB <= 0 {
		cfg.MaxKB = 1000
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 10_000
	}
	l := &Log{cfg: cfg, log: cfg.Logger, storeSig: make(chan struct{}, 1), fileSig: make(chan struct{}, 1)}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Dir != "" {
		r, err := newRotator(cfg.Dir, int64(cfg.MaxKB)*1024)
		if err != nil {
			return nil, err
		}
		l.files = r
	}
	if cfg.SpoolPath != "" {
		sp, err := openSpool(cfg.SpoolPath)
		if err != nil {
			return nil, err
		}
		l.spool = sp
		if n := sp.unread; n > 0 {
			l.log.Info("delivering events spooled by an earlier run", "events", n)
			// Already in the log files when first emitted.
			l.emitted.Add(uint64(n))
			l.filed.Add(uint64(n))
		}
	}
	return l, nil
}

// Emit queues an event. It never blocks on I/O.
func (l *Log) Emit(e event.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Node == "" {
		e.Node = l.cfg.Node
	}
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		l.lateEmit(e)
		return
	}
	l.tail = append(l.tail, e)
	if l.files != nil {
		if len(l.fileq) < fileQueueMax {
			l.fileq = append(l.fileq, e)
		} else {
			l.fileDropped.Add(1)
			l.filed.Add(1)
		}
	}
	l.emitted.Add(1)
	l.mu.Unlock()
	signal(l.storeSig)
	if l.files != nil {
		signal(l.fileSig)
	} else {
		l.filed.Add(1)
	}
}

// lateEmit handles an event emitted after Run ended: straight to the spool,
// which the next start delivers.
func (l *Log) lateEmit(e event.Event) {
	if l.spool == nil {
		l.log.Warn("event emitted after the event log stopped, lost", "message", e.Message)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.spool.append([]event.Event{e}); err != nil {
		l.log.Error("event emitted after the event log stopped, cannot spool it", "message", e.Message, "err", err)
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Pending counts events not yet in the store.
func (l *Log) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.head) + len(l.tail)
	if l.spool != nil {
		n += l.spool.unread
	}
	return n
}

// Written counts events this process delivered to the store.
func (l *Log) Written() uint64 { return l.written.Load() }

// FileDropped counts log lines dropped because the disk could not keep up.
func (l *Log) FileDropped() uint64 { return l.fileDropped.Load() }

// Flush waits until every event emitted before the call is in the store and
// the log files.
func (l *Log) Flush(ctx context.Context) error {
	target := l.emitted.Load()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for l.stored.Load() < target || l.filed.Load() < target {
		signal(l.storeSig)
		select {
		case <-ctx.Done():
			return fmt.Errorf("eventlog: flush: %d of %d events stored: %w", l.stored.Load(), target, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Run writes events until ctx is done, then drains: the files get every
// line, the store one last bounded attempt, and the rest goes to the spool.
func (l *Log) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if l.files != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.runFiles(ctx)
		}()
	}
	l.runStore(ctx)
	wg.Wait()
	if l.files != nil {
		return l.files.close()
	}
	return nil
}

func (l *Log) runStore(ctx context.Context) {
	backoff := 100 * time.Millisecond
	failing := false
	for {
		batch, more := l.nextBatch()
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				l.finish()
				return
			case <-l.storeSig:
				continue
			}
		}
		ictx, cancel := context.WithTimeout(ctx, insertTimeout)
		err := l.cfg.Store.InsertEvents(ictx, batch)
		cancel()
		if err == nil {
			l.delivered(len(batch))
			if failing {
				l.log.Info("event store reachable again; queued events are being written", "pending", l.Pending())
				failing = false
			}
			backoff = 100 * time.Millisecond
			if !more {
				continue
			}
			continue
		}
		if ctx.Err() != nil {
			// Stopping cut this insert short: that is no store failure, and
			// finish makes the last attempt and says what became of the rest.
			l.finish()
			return
		}
		if !failing {
			l.log.Warn("cannot write events to the store; they wait in memory and on disk", "err", err)
			failing = true
		}
		l.spill()
		select {
		case <-ctx.Done():
			l.finish()
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// nextBatch returns the oldest undelivered events, moving them from the
// spool or the tail into head as needed. The batch stays in head until
// delivered.
func (l *Log) nextBatch() ([]event.Event, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.head) == 0 {
		if l.spool != nil && l.spool.unread > 0 {
			evs, err := l.spool.read(batchSize)
			if err != nil {
				l.log.Error("cannot read the event spool", "path", l.spool.path, "err", err)
			}
			l.head = evs
		} else {
			l.head, l.tail = l.tail, nil
		}
	}
	n := min(len(l.head), batchSize)
	return l.head[:n:n], len(l.head) > n
}

func (l *Log) delivered(n int) {
	l.mu.Lock()
	l.head = l.head[n:]
	if len(l.head) == 0 {
		l.head = nil
	}
	if l.spool != nil && l.spool.unread == 0 && len(l.head) == 0 {
		if err := l.spool.reset(); err != nil {
			l.log.Error("cannot empty the event spool", "err", err)
		}
	}
	l.mu.Unlock()
	l.stored.Add(uint64(n))
	l.written.Add(uint64(n))
}

// spill moves the tail to the spool while the store is failing and memory
// holds more than MaxPending events.
func (l *Log) spill() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.spool == nil || len(l.head)+len(l.tail) <= l.cfg.MaxPending || len(l.tail) == 0 {
		return
	}
	if err := l.spool.append(l.tail); err != nil {
		l.log.Error("cannot spool events; they stay in memory", "err", err)
		return
	}
	l.tail = nil
}

// finish makes the last delivery attempt and spools the rest.
func (l *Log) finish() {
	deadline := time.Now().Add(finalTimeout)
	for time.Now().Before(deadline) {
		batch, _ := l.nextBatch()
		if len(batch) == 0 {
			break
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := l.cfg.Store.InsertEvents(ctx, batch)
		cancel()
		if err != nil {
			break
		}
		l.delivered(len(batch))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	rest := len(l.head) + len(l.tail)
	if l.spool == nil {
		if rest > 0 {
			l.log.Error("event store unreachable at shutdown and no spool configured: events lost", "events", rest)
		}
		return
	}
	if err := l.spool.compact(l.head, l.tail); err != nil {
		l.log.Error("cannot spool undelivered events at shutdown", "events", rest, "err", err)
		return
	}
	if n := l.spool.unread; n > 0 {
		l.log.Warn("events not yet in the store were spooled for the next start", "events", n, "path", l.spool.path)
	}
	l.head, l.tail = nil, nil
}

func (l *Log) runFiles(ctx context.Context) {
	failing := false
	for {
		l.mu.Lock()
		q := l.fileq
		l.fileq = nil
		l.mu.Unlock()
		if len(q) > 0 {
			err := l.files.write(q)
			l.filed.Add(uint64(len(q)))
			switch {
			case err != nil && !failing:
				l.log.Error("cannot write the GW log file", "err", err)
				failing = true
			case err == nil && failing:
				l.log.Info("GW log file writable again")
				failing = false
			}
			continue
		}
		select {
		case <-ctx.Done():
			l.mu.Lock()
			empty := len(l.fileq) == 0
			l.mu.Unlock()
			if empty {
				return
			}
		case <-l.fileSig:
		}
	}
}

// spool is a JSON-lines file of events waiting for the store. Events are
// read from the front (tracked by offset) and appended at the end; when all
// are read it is truncated.
type spool struct {
	path   string
	f      *os.File
	offset int64 // bytes already read
	unread int   // events not yet read
}

func openSpool(path string) (*spool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("eventlog: open spool: %w", err)
	}
	s := &spool{path: path, f: f}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		s.unread++
	}
	if err := sc.Err(); err != nil {
		f.Close()
		return nil, fmt.Errorf("eventlog: read spool %s: %w", path, err)
	}
	return s, nil
}

func (s *spool) append(evs []event.Event) error {
	if _, err := s.f.Seek(0, io.SeekEnd); err != nil {
		return fmt.Errorf("eventlog: spool: %w", err)
	}
	w := bufio.NewWriter(s.f)
	enc := json.NewEncoder(w)
	for _, e := range evs {
		if err := enc.Encode(e); err != nil {
			return fmt.Errorf("eventlog: spool: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("eventlog: spool: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("eventlog: spool: %w", err)
	}
	s.unread += len(evs)
	return nil
}

func (s *spool) read(n int) ([]event.Event, error) {
	if _, err := s.f.Seek(s.offset, io.SeekStart); err != nil {
		return nil, err
	}
	r := bufio.NewReader(s.f)
	var out []event.Event
	for len(out) < n && s.unread > 0 {
		line, err := r.ReadBytes('\n')
		if err != nil {
			// A torn last line from a crash: nothing more to read.
			s.unread = 0
			return out, err
		}
		s.offset += int64(len(line))
		s.unread--
		var e event.Event
		if err := json.Unmarshal(line, &e); err != nil {
			continue // skip a corrupt line rather than block all after it
		}
		out = append(out, e)
	}
	return out, nil
}

func (s *spool) reset() error {
	s.offset, s.unread = 0, 0
	if err := s.f.Truncate(0); err != nil {
		return err
	}
	return s.f.Sync()
}

// compact rewrites the spool as head, the unread spooled events, then tail,
// so the next start delivers them in their original order.
func (s *spool) compact(head, tail []event.Event) error {
	rest, err := s.read(s.unread)
	if err != nil && len(rest) == 0 && s.unread > 0 {
		return err
	}
	all := make([]event.Event, 0, len(head)+len(rest)+len(tail))
	all = append(append(append(all, head...), rest...), tail...)
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	old := s.f
	s.f, s.offset, s.unread = f, 0, 0
	if err := s.append(all); err != nil {
		f.Close()
		s.f = old
		return err
	}
	old.Close()
	if err := os.Rename(tmp, s.path); err != nil {
		return err
	}
	return nil
}
