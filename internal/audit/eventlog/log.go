// Package eventlog writes the gateway's events to PostgreSQL and to the
// rotating GW log files without ever making the relay wait.
//
// # Path of an event
//
// Emit bounds the event (every text field at most MaxFieldBytes, the
// message MaxMessageBytes, cut with TruncatedMark; NUL and invalid UTF-8,
// which PostgreSQL cannot store, become U+FFFD), numbers it and appends it
// to a queue in memory. That is all Emit does; it takes one mutex and never
// waits for a disk or the database.
//
// With a spool (Config.SpoolPath), a committer goroutine appends whatever
// is queued to the spool right away (one write per wake-up, so an event
// reaches the page cache, where a kill -9 cannot take it, within
// microseconds) and a syncer goroutine fsyncs what was written, at most
// once per FsyncInterval (default 10 ms): a group commit that never delays
// a write. A power cut loses at most the events of the last interval and
// of the fsync in progress.
//
// The store goroutine reads the spool behind the committer and delivers in
// order, in batches; what is stored is acknowledged and the spool trimmed
// (see spool.go for the format). After a restart, whatever the spool still
// holds is delivered before any new event. Delivery is at least once: a
// crash between a batch's commit and its acknowledgement delivers that
// batch again.
//
// Without a spool, the queue itself waits for the store, and a stop with
// the store away loses what is queued (it is logged).
//
// # Bounds and drops
//
// The queue holds at most MaxPendingBytes (default 8 MiB) of events,
// measured by their fields' lengths plus a fixed overhead. If the producer
// outruns the spool's disk (or, without a spool, the store), Emit drops
// the new event and counts it (Dropped) rather than block or grow; so it
// does once the spool holds MaxSpoolBytes (default 1 GiB) while the store
// is away. The GW log files have a queue of their own, bounded the same
// way, whose drops FileDropped counts. Drops are logged at most every ten
// seconds.
//
// # Quarantine
//
// An event the store refuses for good (Config.Permanent, by default
// IsPermanent: SQLSTATE classes 22, 23 and 54) must not hold back those
// behind it. When a batch fails that way it is split in halves and each
// retried, down to single events; an event that still fails alone is
// appended to the quarantine file (JSON lines, beside the spool) and
// counted (Quarantined), and delivery goes on. Any other failure is taken
// as transient and the batch is retried with backoff, as long as it takes.
//
// # Log files
//
// The GW log files are a convenience copy: one line per event in the
// design's format, control characters and line separators escaped (\n,
// \x1b, \u2028) so that nothing a peer sends can forge a line, and every
// line at most MaxLineBytes (and never more than a file).
package eventlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/audit/event"
)

// Store is where events are kept for good.
type Store interface {
	// InsertEvents stores evs in one transaction, all or none. It must not
	// keep evs after it returns: the slice is reused.
	InsertEvents(ctx context.Context, evs []event.Event) error
}

// Config configures a Log.
type Config struct {
	Dir       string // folder of the GW log files; empty writes no files
	MaxKB     int    // maximum size of one log file in KB; 0 is 1000
	Store     Store
	SpoolPath string // folder where events wait on disk; empty keeps them in memory only
	// MaxPending is no longer used: memory is bounded in bytes by
	// MaxPendingBytes.
	//
	// Deprecated: set MaxPendingBytes.
	MaxPending int
	// MaxPendingBytes bounds the events held in memory, queued for the
	// spool (or, without one, for the store); 0 is 8 MiB. The log files'
	// queue has a bound of the same size.
	MaxPendingBytes int64
	// MaxSpoolBytes bounds the spool on disk; 0 is 1 GiB.
	MaxSpoolBytes int64
	// FsyncInterval spaces the spool's fsyncs: an event written to the
	// spool waits at most this long, plus the fsync's own duration, to be
	// safe from a power cut; 0 is 10 ms. (A kill -9 needs no fsync.)
	FsyncInterval time.Duration
	// QuarantinePath is the file of events the store refused for good;
	// empty is beside the spool (events.spool: events.quarantine). With
	// neither, they are only logged.
	QuarantinePath string
	// MaxQuarantineBytes bounds the quarantine file; 0 is 64 MiB. Beyond
	// it, quarantined events are only logged.
	MaxQuarantineBytes int64
	// Permanent reports whether an error from the store is the data's
	// fault, so that retrying the same events cannot succeed; nil is
	// IsPermanent.
	Permanent func(error) bool
	Node      string // stamped on events without one
	Logger    *slog.Logger

	// Tests only: the spool's segment size, the last delivery attempt's
	// duration and the longest backoff (0: the constants below).
	segmentBytes int64
	finalTimeout time.Duration
	maxBackoff   time.Duration
}

const (
	batchSize = 500
	// maxBatchBytes bounds a batch read from the spool, and so the memory
	// the store goroutine holds beside the queue.
	maxBatchBytes = 1 << 20
	// insertTimeout bounds one delivery attempt so a hung database is
	// retried like an unreachable one.
	insertTimeout = 10 * time.Second
	// finalTimeout is the last delivery attempt at shutdown.
	finalTimeout = 5 * time.Second
	minBackoff   = 100 * time.Millisecond
	maxBackoff   = 5 * time.Second
	// spoolRetry is how soon a failed spool write is tried again.
	spoolRetry = time.Second
	// dropReportEvery spaces the warnings about drops and quarantines,
	// which an attacker could otherwise turn into a flood of their own.
	dropReportEvery = 10 * time.Second

	defaultMaxPendingBytes    = 8 << 20
	defaultMaxSpoolBytes      = 1 << 30
	defaultFsyncInterval      = 10 * time.Millisecond
	defaultMaxQuarantineBytes = 64 << 20
)

// rec is an event with its sequence number and approximate size.
type rec struct {
	seq  uint64
	size int64
	ev   event.Event
}

// Log is the event writer. Emit may be called before Run and from any
// goroutine.
type Log struct {
	cfg   Config
	log   *slog.Logger
	spool *spool // nil: memory only
	files *rotator
	quar  quarantine

	mu         sync.Mutex
	seq        uint64 // the last sequence number given out
	target     uint64 // the last event accepted; Flush waits for it
	queue      []rec  // spool: not yet written; memory only: not yet stored
	queueBytes int64  // includes what the committer is writing
	fileq      []event.Event
	fileBytes  int64
	fileEnq    uint64 // lines queued for the files, ever
	stopped    bool

	commitSig, syncSig, storeSig, fileSig chan struct{}

	done        atomic.Uint64 // every event up to this sequence is stored or quarantined
	pending     atomic.Int64
	filed       atomic.Uint64
	written     atomic.Uint64
	quarantined atomic.Uint64
	dropped     atomic.Uint64
	fileDropped atomic.Uint64
	// quarantineLost counts quarantined events not written because the
	// quarantine file is full.
	quarantineLost atomic.Uint64

	// Owned by the store goroutine.
	evbuf      []event.Event
	lastReport time.Time
	reported   [4]uint64 // dropped, fileDropped, quarantined, quarantineLost at the last report
}

// New validates cfg, opens the log folder and opens the spool, whose
// events (left by an earlier run) are delivered before any new one.
func New(cfg Config) (*Log, error) {
	if cfg.Store == nil {
		return nil, errors.New("eventlog: a store is required")
	}
	if cfg.MaxKB <= 0 {
		cfg.MaxKB = 1000
	}
	if cfg.MaxPendingBytes <= 0 {
		cfg.MaxPendingBytes = defaultMaxPendingBytes
	}
	if cfg.MaxSpoolBytes <= 0 {
		cfg.MaxSpoolBytes = defaultMaxSpoolBytes
	}
	if cfg.FsyncInterval <= 0 {
		cfg.FsyncInterval = defaultFsyncInterval
	}
	if cfg.MaxQuarantineBytes <= 0 {
		cfg.MaxQuarantineBytes = defaultMaxQuarantineBytes
	}
	if cfg.Permanent == nil {
		cfg.Permanent = IsPermanent
	}
	if cfg.QuarantinePath == "" {
		cfg.QuarantinePath = quarantinePath(cfg.SpoolPath)
	}
	if cfg.segmentBytes <= 0 {
		cfg.segmentBytes = defaultSegmentBytes
	}
	if cfg.finalTimeout <= 0 {
		cfg.finalTimeout = finalTimeout
	}
	if cfg.maxBackoff <= 0 {
		cfg.maxBackoff = maxBackoff
	}
	l := &Log{cfg: cfg, log: cfg.Logger,
		commitSig: make(chan struct{}, 1), syncSig: make(chan struct{}, 1),
		storeSig: make(chan struct{}, 1), fileSig: make(chan struct{}, 1),
		quar: quarantine{path: cfg.QuarantinePath, max: cfg.MaxQuarantineBytes},
	}
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
		sp, st, err := openSpool(cfg.SpoolPath, cfg.segmentBytes, l.log, time.Now())
		if err != nil {
			if l.files != nil {
				l.files.close()
			}
			return nil, err
		}
		l.spool = sp
		l.seq, l.target = st.nextSeq-1, st.lastSeq
		l.done.Store(sp.skipTo)
		l.pending.Store(int64(st.pending))
		if st.pending > 0 {
			// Already in the log files when first emitted.
			l.log.Info("delivering events spooled by an earlier run", "events", st.pending)
		}
	}
	return l, nil
}

// Emit queues an event. It never blocks on I/O (but after Run has ended,
// when it writes the event to the spool itself).
func (l *Log) Emit(e event.Event) {
	if e.Node == "" {
		e.Node = l.cfg.Node
	}
	sanitize(&e, time.Now)
	sz := size(&e)
	l.mu.Lock()
	if l.stopped {
		l.lateEmit(e, sz)
		l.mu.Unlock()
		return
	}
	ok := l.queueBytes+sz <= l.cfg.MaxPendingBytes &&
		(l.spool == nil || l.spool.bytes.Load()+l.queueBytes+sz <= l.cfg.MaxSpoolBytes)
	if ok {
		l.seq++
		l.target = l.seq
		l.queue = append(l.queue, rec{seq: l.seq, size: sz, ev: e})
		l.queueBytes += sz
		l.pending.Add(1)
	} else {
		l.dropped.Add(1)
	}
	toFile := false
	if l.files != nil {
		if l.fileBytes+sz <= l.cfg.MaxPendingBytes {
			l.fileq = append(l.fileq, e)
			l.fileBytes += sz
			l.fileEnq++
			toFile = true
		} else {
			l.fileDropped.Add(1)
		}
	}
	l.mu.Unlock()
	switch {
	case l.spool != nil:
		signal(l.commitSig)
	case ok:
		signal(l.storeSig)
	}
	if toFile {
		signal(l.fileSig)
	}
	if !ok {
		// Let the store goroutine report the drop.
		signal(l.storeSig)
	}
}

// lateEmit handles an event emitted after Run ended, with l.mu held:
// straight to the spool, which the next start delivers. The relay has
// stopped by then, so this one may wait for the disk.
func (l *Log) lateEmit(e event.Event, sz int64) {
	if l.spool == nil {
		l.log.Warn("event emitted after the event log stopped, lost", "message", e.Message)
		return
	}
	r := rec{seq: l.seq + 1, size: sz, ev: e}
	_, err := l.spool.write([]rec{r})
	if err == nil {
		err = l.spool.closeWriter()
	}
	if err != nil {
		l.log.Error("event emitted after the event log stopped, cannot spool it", "message", e.Message, "err", err)
		return
	}
	l.seq++
	l.target = l.seq
	l.pending.Add(1)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Pending counts events not yet in the store (in memory or spooled).
func (l *Log) Pending() int { return int(l.pending.Load()) }

// Written counts events this process delivered to the store.
func (l *Log) Written() uint64 { return l.written.Load() }

// Quarantined counts events this process moved to the quarantine because
// the store refused them for good.
func (l *Log) Quarantined() uint64 { return l.quarantined.Load() }

// Dropped counts events lost because memory or the spool was full.
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// FileDropped counts log lines dropped because the disk could not keep up.
func (l *Log) FileDropped() uint64 { return l.fileDropped.Load() }

// Flush waits until every event emitted before the call is in the store
// (or quarantined) and the log files.
func (l *Log) Flush(ctx context.Context) error {
	l.mu.Lock()
	target, fileTarget := l.target, l.fileEnq
	l.mu.Unlock()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for l.done.Load() < target || l.filed.Load() < fileTarget {
		signal(l.storeSig)
		select {
		case <-ctx.Done():
			return fmt.Errorf("eventlog: flush: %d events not yet stored: %w", l.Pending(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Run writes events until ctx is done, then drains: the spool gets every
// queued event, the files every line, the store one last bounded attempt.
func (l *Log) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	var committed chan struct{}
	if l.spool != nil {
		committed = make(chan struct{})
		wg.Go(func() {
			defer close(committed)
			l.runCommitter(ctx)
		})
		wg.Go(func() { l.runSyncer(ctx) })
	}
	if l.files != nil {
		wg.Go(func() { l.runFiles(ctx) })
	}
	l.runStore(ctx, committed)
	wg.Wait()
	var errs []error
	if l.files != nil {
		errs = append(errs, l.files.close())
	}
	if l.spool != nil {
		errs = append(errs, l.spool.closeFiles())
	}
	errs = append(errs, l.quar.close())
	return errors.Join(errs...)
}

// runCommitter appends queued events to the spool as soon as they come.
func (l *Log) runCommitter(ctx context.Context) {
	var held, spare []rec // held: taken from the queue, not yet written
	var retry <-chan time.Time
	failing := false
	for {
		select {
		case <-ctx.Done():
			l.finalCommit(held)
			return
		case <-l.commitSig:
		case <-retry:
			retry = nil
		}
		if retry != nil {
			continue // a failed write waits for its retry
		}
		// Swap the queue for the spare array (double buffering, so that a
		// steady stream allocates nothing); spare is never shared with
		// the queue.
		l.mu.Lock()
		switch {
		case len(l.queue) == 0:
		case len(held) == 0:
			held, l.queue, spare = l.queue, spare[:0], nil
		default:
			held = append(held, l.queue...)
			clear(l.queue)
			l.queue = l.queue[:0]
		}
		l.mu.Unlock()
		if len(held) == 0 {
			continue
		}
		n, err := l.spool.write(held)
		l.written2spool(held[:n])
		if err != nil {
			if !failing {
				l.log.Error("cannot write the event spool; events wait in memory, new ones are dropped when it is full", "err", err)
				failing = true
			}
			// Keep the rest, in order, for the retry.
			rest := slices.Clone(held[n:])
			clear(held)
			held = rest
			retry = time.After(spoolRetry)
			continue
		}
		if failing {
			l.log.Info("event spool writable again")
			failing = false
		}
		clear(held)
		spare, held = held[:0], nil
		if cap(spare) > 4096 {
			spare = nil // one burst should not pin its array
		}
	}
}

// written2spool releases the memory of recs, now in the spool.
func (l *Log) written2spool(recs []rec) {
	var n int64
	for i := range recs {
		n += recs[i].size
	}
	l.mu.Lock()
	l.queueBytes -= n
	l.mu.Unlock()
	signal(l.syncSig)
	signal(l.storeSig)
}

// finalCommit spools what is still queued and closes the segment. From
// here on Emit writes to the spool itself (lateEmit), behind these.
func (l *Log) finalCommit(held []rec) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	held = append(held, l.queue...)
	l.queue, l.queueBytes = nil, 0
	if n, err := l.spool.write(held); err != nil {
		lost := len(held) - n
		l.log.Error("cannot spool events at shutdown: lost", "events", lost, "err", err)
		l.dropped.Add(uint64(lost))
		l.pending.Add(-int64(lost))
	}
	if err := l.spool.closeWriter(); err != nil {
		l.log.Error("cannot close the event spool", "err", err)
	}
}

// runSyncer fsyncs the spool after writes, at most once per FsyncInterval:
// the group commit. It never delays a write.
func (l *Log) runSyncer(ctx context.Context) {
	var last time.Time
	failing := false
	for {
		select {
		case <-ctx.Done():
			return // finalCommit fsyncs
		case <-l.syncSig:
		}
		if wait := time.Until(last.Add(l.cfg.FsyncInterval)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		err := l.spool.sync()
		last = time.Now()
		switch {
		case err != nil && !failing:
			l.log.Error("cannot fsync the event spool", "err", err)
			failing = true
		case err == nil && failing:
			l.log.Info("event spool fsync works again")
			failing = false
		}
	}
}

func (l *Log) runStore(ctx context.Context, committed <-chan struct{}) {
	backoff := minBackoff
	failing := false
	var batch []rec
	for {
		l.report(false)
		if len(batch) == 0 {
			batch = l.nextBatch()
		}
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				l.finish(committed, batch)
				return
			case <-l.storeSig:
				continue
			}
		}
		n, err := l.deliver(ctx, batch)
		batch = batch[n:]
		if err == nil {
			if failing {
				l.log.Info("event store reachable again; queued events are being written", "pending", l.Pending())
				failing = false
			}
			backoff = minBackoff
			continue
		}
		if ctx.Err() != nil {
			// Stopping cut this insert short: that is no store failure, and
			// finish makes the last attempt and says what became of the rest.
			l.finish(committed, batch)
			return
		}
		if !failing {
			where := "in memory"
			if l.spool != nil {
				where = "on disk"
			}
			l.log.Warn("cannot write events to the store; they wait "+where, "err", err)
			failing = true
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			l.finish(committed, batch)
			return
		case <-t.C:
		}
		backoff = min(backoff*2, l.cfg.maxBackoff)
	}
}

// nextBatch returns the oldest undelivered events, in order.
func (l *Log) nextBatch() []rec {
	if l.spool != nil {
		return l.spool.read(batchSize, maxBatchBytes, time.Now())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	n := min(len(l.queue), batchSize)
	return slices.Clone(l.queue[:n])
}

// deliver stores recs in order and reports how many of them (from the
// front) are done. When the store refuses the batch for good, halves are
// retried until the events at fault are found, alone, and quarantined; a
// transient error ends it, and the caller retries from the first event not
// done.
func (l *Log) deliver(ctx context.Context, recs []rec) (int, error) {
	err := l.insert(ctx, recs)
	if err == nil {
		l.ack(recs, true)
		return len(recs), nil
	}
	if ctx.Err() != nil || !l.cfg.Permanent(err) {
		return 0, err
	}
	if len(recs) == 1 {
		l.quarantine(recs[0], err)
		l.ack(recs, false)
		return 1, nil
	}
	mid := len(recs) / 2
	n, err := l.deliver(ctx, recs[:mid])
	if err != nil {
		return n, err
	}
	m, err := l.deliver(ctx, recs[mid:])
	return n + m, err
}

func (l *Log) insert(ctx context.Context, recs []rec) error {
	l.evbuf = l.evbuf[:0]
	for i := range recs {
		l.evbuf = append(l.evbuf, recs[i].ev)
	}
	ictx, cancel := context.WithTimeout(ctx, insertTimeout)
	defer cancel()
	err := l.cfg.Store.InsertEvents(ictx, l.evbuf)
	clear(l.evbuf)
	return err
}

// ack marks recs (the oldest undelivered) as done.
func (l *Log) ack(recs []rec, stored bool) {
	last := recs[len(recs)-1].seq
	if l.spool != nil {
		if err := l.spool.ack(last); err != nil {
			l.log.Error("cannot record delivered events in the spool; they may be delivered again after a restart", "err", err)
		}
	} else {
		var n int64
		for i := range recs {
			n += recs[i].size
		}
		l.mu.Lock()
		clear(l.queue[:len(recs)])
		l.queue = l.queue[len(recs):]
		l.queueBytes -= n
		l.mu.Unlock()
	}
	l.pending.Add(-int64(len(recs)))
	l.done.Store(last)
	if stored {
		l.written.Add(uint64(len(recs)))
	}
}

func (l *Log) quarantine(r rec, cause error) {
	l.quarantined.Add(1)
	err := l.quar.write(r, cause, time.Now())
	if errors.Is(err, errQuarantineFull) {
		l.quarantineLost.Add(1) // reported, not logged one by one
		return
	}
	if err != nil {
		// Logged in full, since this is its only copy.
		l.log.Error("event refused by the store for good and not quarantined: only in this log", "err", err, "cause", cause,
			"time", r.ev.Time, "kind", r.ev.Kind, "message", r.ev.Message, "client", r.ev.Client, "control", r.ev.Control,
			"operator", r.ev.Operator, "real_ip", r.ev.RealIP, "public_ip", r.ev.PublicIP, "node", r.ev.Node)
	}
}

// report logs drops and quarantines since the last report, at most every
// dropReportEvery unless force is set: an attacker must not be able to
// turn them into a flood of log lines.
func (l *Log) report(force bool) {
	cur := [4]uint64{l.dropped.Load(), l.fileDropped.Load(), l.quarantined.Load(), l.quarantineLost.Load()}
	if cur == l.reported || (!force && time.Since(l.lastReport) < dropReportEvery) {
		return
	}
	prev := l.reported
	l.reported, l.lastReport = cur, time.Now()
	if d := cur[0] - prev[0]; d > 0 {
		l.log.Warn("events dropped: the event queue or spool is full", "dropped", d, "dropped_total", cur[0])
	}
	if d := cur[1] - prev[1]; d > 0 {
		l.log.Warn("GW log lines dropped: the log file disk cannot keep up", "dropped", d, "dropped_total", cur[1])
	}
	if d := cur[2] - prev[2]; d > 0 {
		l.log.Warn("events refused by the store for good were quarantined", "events", d, "quarantined_total", cur[2], "file", l.cfg.QuarantinePath)
	}
	if d := cur[3] - prev[3]; d > 0 {
		l.log.Error("quarantine file full: events refused by the store were dropped", "events", d, "file", l.cfg.QuarantinePath, "max_bytes", l.cfg.MaxQuarantineBytes)
	}
}

// finish makes the last delivery attempt. With a spool it first waits for
// the committer, so that every event is on disk.
func (l *Log) finish(committed <-chan struct{}, batch []rec) {
	if committed != nil {
		<-committed
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.finalTimeout)
	defer cancel()
	for ctx.Err() == nil {
		if len(batch) == 0 {
			batch = l.nextBatch()
		}
		if len(batch) == 0 {
			break
		}
		n, err := l.deliver(ctx, batch)
		batch = batch[n:]
		if err != nil {
			break
		}
	}
	l.report(true)
	if l.spool != nil {
		if n := l.Pending(); n > 0 {
			l.log.Warn("events not yet in the store wait in the spool for the next start", "events", n, "path", l.cfg.SpoolPath)
		}
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	if n := len(l.queue); n > 0 {
		l.log.Error("event store unreachable at shutdown and no spool configured: events lost", "events", n)
		l.pending.Add(-int64(n))
		l.dropped.Add(uint64(n))
	}
	l.queue, l.queueBytes = nil, 0
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
			var n int64
			for i := range q {
				n += size(&q[i])
			}
			l.mu.Lock()
			l.fileBytes -= n
			l.mu.Unlock()
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
