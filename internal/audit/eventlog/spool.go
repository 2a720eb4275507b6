package eventlog

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/audit/event"
)

// The spool is a folder of segment files, <first sequence number>.seg,
// each append-only, and a file "ack" holding the highest sequence number
// the store has taken (stored or quarantined). Every event is appended to
// the newest segment; the reader follows behind and hands the records to
// the store in order. A segment is deleted once the reader has left it and
// every record in it is acknowledged, so trimming is a file deletion, never
// a rewrite. Segments are only appended to by the run that created them: a
// start always begins a new one, so a torn record can only ever be the
// last of its segment.
//
// The ack file is rewritten in place after every stored batch but not
// fsynced: a kill -9 keeps it (the page cache survives the process), a
// power cut may lose the last update, and then the events after the
// surviving value are delivered again. Delivery is therefore at least
// once; it is never less than once.
const (
	defaultSegmentBytes = 4 << 20
	segmentExt          = ".seg"
	ackName             = "ack"
	ackMagic            = "SBEVACK1"
	ackSize             = len(ackMagic) + 8 + 4
	// importName is where a spool of the JSON-lines format before this one
	// is converted before it is renamed into place.
	importName = "import.tmp"
	legacyExt  = ".v1"
	// maxLegacyLine bounds one line of an old spool; longer lines (the old
	// format bounded nothing) are skipped.
	maxLegacyLine = 4 << 20
)

type segment struct {
	first  uint64 // from the name; every record's sequence is at least this
	path   string
	end    int64  // bytes of whole records (and the magic), what the reader may read
	size   int64  // bytes on disk, a torn tail included
	last   uint64 // the last whole record's sequence; 0 if none
	sealed bool   // no more appends
}

type spool struct {
	dir      string
	log      *slog.Logger
	segBytes int64

	mu    sync.Mutex
	segs  []*segment // oldest first
	w     *os.File   // appends to wseg, the last segment; nil when none is open
	wseg  *segment
	dirty bool // written since the last fsync
	// retired are segments rolled away from, for the syncer to fsync and
	// close; newDirEntry asks it to fsync the folder.
	retired     []*os.File
	newDirEntry bool
	rseg        *segment // the reader's segment

	bytes atomic.Int64 // all segment files
	// syncs and syncTime count fsyncs and the time spent in them, for the
	// benchmark.
	syncs    atomic.Uint64
	syncTime atomic.Int64

	// Owned by whoever writes: the committer, then (after Run) Emit under
	// Log.mu.
	enc []byte

	// Owned by the reader (the store goroutine).
	skipTo uint64 // records up to here were acknowledged before this start
	rf     *os.File
	roff   int64
	rlast  uint64
	rbuf   *bufio.Reader
	ackf   *os.File
}

// spoolState is what an opened spool holds for the store.
type spoolState struct {
	pending int    // records not yet acknowledged
	lastSeq uint64 // the last of them (0 if none)
	nextSeq uint64 // the sequence number for the next new event
}

func segName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, segmentExt) }

// openSpool opens (or creates) the spool folder dir, converting a spool
// file of the previous format found at dir, and scans every segment for
// its valid records.
func openSpool(dir string, segBytes int64, log *slog.Logger, now time.Time) (*spool, spoolState, error) {
	s := &spool{dir: dir, log: log, segBytes: segBytes}
	var st spoolState
	if fi, err := os.Lstat(dir); err == nil && fi.Mode().IsRegular() {
		if err := os.Rename(dir, dir+legacyExt); err != nil {
			return nil, st, fmt.Errorf("eventlog: spool: move old spool file aside: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, st, fmt.Errorf("eventlog: spool: %w", err)
	}
	if err := os.Remove(filepath.Join(dir, importName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, st, fmt.Errorf("eventlog: spool: %w", err)
	}
	acked := readAck(filepath.Join(dir, ackName))
	s.skipTo = acked
	maxSeq := acked
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, st, fmt.Errorf("eventlog: spool: %w", err)
	}
	for _, de := range entries {
		name := de.Name()
		first, err := strconv.ParseUint(strings.TrimSuffix(name, segmentExt), 10, 64)
		if !strings.HasSuffix(name, segmentExt) || err != nil || first == 0 || !de.Type().IsRegular() {
			continue
		}
		maxSeq = max(maxSeq, first)
		s.segs = append(s.segs, &segment{first: first, path: filepath.Join(dir, name), sealed: true})
	}
	slices.SortFunc(s.segs, func(a, b *segment) int { return cmp.Compare(a.first, b.first) })
	var prev uint64
	kept := s.segs[:0]
	for _, seg := range s.segs {
		unacked, err := s.scan(seg, max(prev, seg.first-1), acked)
		if err != nil {
			return nil, st, err
		}
		if seg.last > 0 {
			prev = seg.last
			maxSeq = max(maxSeq, seg.last)
		}
		if unacked == 0 {
			// Delivered before, or nothing in it: nothing to keep it for.
			if err := os.Remove(seg.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, st, fmt.Errorf("eventlog: spool: %w", err)
			}
			continue
		}
		st.pending += unacked
		st.lastSeq = seg.last
		s.bytes.Add(seg.size)
		kept = append(kept, seg)
	}
	s.segs = kept
	st.nextSeq = maxSeq + 1

	legacy := dir + legacyExt
	if _, err := os.Stat(legacy); err == nil {
		if len(s.segs) == 0 {
			n, err := s.importLegacy(legacy, st.nextSeq, now)
			if err != nil {
				return nil, st, err
			}
			if n > 0 {
				st.pending += n
				st.lastSeq = st.nextSeq + uint64(n) - 1
				st.nextSeq += uint64(n)
				log.Info("converted the event spool of an earlier version", "events", n)
			}
		}
		// Either just converted, or converted before a crash kept the old
		// file: segments exist only once the conversion is complete.
		if err := os.Remove(legacy); err != nil {
			return nil, st, fmt.Errorf("eventlog: spool: remove converted spool: %w", err)
		}
	}
	return s, st, nil
}

// scan finds seg's valid part and counts its records after acked. A
// segment whose header is not ours is moved aside (kept for a person to
// look at), one torn while being created is simply empty.
func (s *spool) scan(seg *segment, after, acked uint64) (unacked int, err error) {
	f, err := os.Open(seg.path)
	if err != nil {
		return 0, fmt.Errorf("eventlog: spool: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("eventlog: spool: %w", err)
	}
	seg.size = fi.Size()
	br := bufio.NewReaderSize(f, 64<<10)
	var magic [len(segmentMagic)]byte
	if _, err := io.ReadFull(br, magic[:]); err != nil || string(magic[:]) != segmentMagic {
		if seg.size > int64(len(segmentMagic)) {
			s.log.Error("event spool: not a spool segment; moved aside", "path", seg.path)
			if err := os.Rename(seg.path, seg.path+".bad"); err != nil {
				return 0, fmt.Errorf("eventlog: spool: %w", err)
			}
		}
		seg.end, seg.size = 0, 0
		return 0, nil
	}
	seg.end = int64(len(segmentMagic))
	rr := recordReader{r: br, left: seg.size - seg.end, last: after}
	for {
		seq, _, n, err := rr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			s.log.Warn("event spool: ignoring a torn or damaged end of a segment", "path", seg.path,
				"offset", seg.end, "bytes", seg.size-seg.end, "err", err)
			break
		}
		seg.end += n
		seg.last = seq
		if seq > acked {
			unacked++
		}
	}
	return unacked, nil
}

// write appends recs as whole records, starting a new segment whenever
// none is open or the open one is full, and makes them visible to the
// reader. It returns how many of recs (from the front) are written. After
// a failed write the segment is cut back to its last whole record and
// closed, so that a retry starts clean in a new one.
func (s *spool) write(recs []rec) (int, error) {
	done := 0
	for done < len(recs) {
		rest := recs[done:]
		if s.w == nil || s.wseg.end >= s.segBytes {
			if err := s.roll(rest[0].seq); err != nil {
				return done, err
			}
		}
		// Fill the segment up to segBytes, with at least one record.
		room := s.segBytes - s.wseg.end
		buf := s.enc[:0]
		n := 0
		for n < len(rest) && (n == 0 || int64(len(buf)) < room) {
			buf = s.encode(buf, &rest[n])
			n++
		}
		s.enc = buf
		if cap(s.enc) > 4<<20 {
			s.enc = nil // one big burst should not pin its buffer
		}
		if err := s.writeSegment(buf, rest[n-1].seq); err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

func (s *spool) encode(buf []byte, r *rec) []byte {
	out, err := appendRecord(buf, r.seq, &r.ev)
	if err == nil {
		return out
	}
	// Cannot happen to a sanitised event; should it, the record says so
	// rather than leaving a gap.
	s.log.Error("event spool: cannot encode an event; storing a placeholder", "err", err)
	ph := event.Event{Time: time.Now(), Kind: r.ev.Kind, Node: r.ev.Node, Message: "Event could not be encoded"}
	out, _ = appendRecord(buf, r.seq, &ph)
	return out
}

func (s *spool) writeSegment(buf []byte, last uint64) error {
	seg := s.wseg
	n, err := s.w.Write(buf)
	if err != nil {
		// Whatever part was written lies beyond end, which the reader
		// never passes; the truncation is for the next start's scan.
		if n > 0 {
			if terr := s.w.Truncate(seg.end); terr != nil {
				s.bytes.Add(int64(n))
			}
		}
		s.closeWriter()
		return fmt.Errorf("eventlog: spool: write: %w", err)
	}
	s.mu.Lock()
	seg.end += int64(n)
	seg.size = seg.end
	seg.last = last
	s.dirty = true
	s.mu.Unlock()
	s.bytes.Add(int64(n))
	return nil
}

// roll starts a segment whose first record will be first. It does not
// wait for the disk: the segment it replaces, and the folder entry of the
// new one, are the syncer's to fsync (and close), so that events keep
// reaching the page cache meanwhile. A last segment left empty by a failed
// write is started again rather than given a second file of the same name.
func (s *spool) roll(first uint64) error {
	s.mu.Lock()
	if s.w != nil {
		s.retired = append(s.retired, s.w)
		s.wseg.sealed = true
		s.w, s.wseg = nil, nil
	}
	var reuse *segment
	if n := len(s.segs); n > 0 && s.segs[n-1].last == 0 && s.segs[n-1].first <= first {
		reuse = s.segs[n-1]
	}
	s.mu.Unlock()
	path := filepath.Join(s.dir, segName(first))
	if reuse != nil {
		path = reuse.path
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("eventlog: spool: %w", err)
	}
	if _, err := f.WriteString(segmentMagic); err != nil {
		f.Close()
		return fmt.Errorf("eventlog: spool: %w", err)
	}
	magic := int64(len(segmentMagic))
	s.mu.Lock()
	if reuse != nil {
		s.bytes.Add(magic - reuse.size)
		reuse.end, reuse.size, reuse.sealed = magic, magic, false
		s.wseg = reuse
	} else {
		s.wseg = &segment{first: first, path: path, end: magic, size: magic}
		s.segs = append(s.segs, s.wseg)
		s.bytes.Add(magic)
	}
	s.w = f
	s.dirty = true
	s.newDirEntry = true // its name must survive a power cut like its records
	s.mu.Unlock()
	return nil
}

// closeWriter fsyncs and closes the open segment and those rolled away
// from.
func (s *spool) closeWriter() error {
	s.mu.Lock()
	f := s.w
	if s.wseg != nil {
		s.wseg.sealed = true
	}
	s.w, s.wseg, s.dirty = nil, nil, false
	s.mu.Unlock()
	err := s.sync()
	if f != nil {
		if serr := s.fsync(f); err == nil && serr != nil {
			err = fmt.Errorf("eventlog: spool: fsync: %w", serr)
		}
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("eventlog: spool: close segment: %w", cerr)
		}
	}
	return err
}

func (s *spool) fsync(f *os.File) error {
	start := time.Now()
	err := f.Sync()
	if err == nil {
		s.syncs.Add(1)
		s.syncTime.Add(int64(time.Since(start)))
	}
	return err
}

// sync fsyncs what was written since the last sync: first the segments
// rolled away from (closing them), then the folder if it has a new
// segment, then the open segment. It may run beside write and roll.
func (s *spool) sync() error {
	s.mu.Lock()
	f, dirty, retired, dir := s.w, s.dirty, s.retired, s.newDirEntry
	s.dirty, s.retired, s.newDirEntry = false, nil, false
	s.mu.Unlock()
	var errs []error
	for _, r := range retired {
		if err := s.fsync(r); err != nil {
			errs = append(errs, fmt.Errorf("eventlog: spool: fsync: %w", err))
		}
		r.Close()
	}
	if dir {
		if err := syncDir(s.dir); err != nil {
			errs = append(errs, err)
			dirty = true
		}
	}
	if f != nil && dirty {
		err := s.fsync(f)
		switch {
		case errors.Is(err, os.ErrClosed):
			// closeWriter took it meanwhile, and fsyncs it itself.
		case err != nil:
			errs = append(errs, fmt.Errorf("eventlog: spool: fsync: %w", err))
		}
	}
	if len(errs) > 0 {
		s.mu.Lock()
		s.dirty, s.newDirEntry = true, s.newDirEntry || dir
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}

// read returns the next records after the reader's position, in order: at
// most maxN, and stopping once about maxBytes are in memory.
func (s *spool) read(maxN int, maxBytes int64, now time.Time) []rec {
	var out []rec
	var total int64
	for len(out) < maxN && total < maxBytes {
		s.mu.Lock()
		if s.rseg == nil {
			if len(s.segs) == 0 {
				s.mu.Unlock()
				break
			}
			s.rseg, s.roff = s.segs[0], 0
		}
		seg := s.rseg
		end, sealed := seg.end, seg.sealed
		var next *segment
		if i := slices.Index(s.segs, seg); i >= 0 && i+1 < len(s.segs) {
			next = s.segs[i+1]
		}
		s.mu.Unlock()
		if s.roff < int64(len(segmentMagic)) {
			s.roff = int64(len(segmentMagic))
		}
		if s.roff >= end {
			if !sealed || next == nil {
				break // caught up with the writer
			}
			s.closeReader()
			s.mu.Lock()
			s.rseg, s.roff = next, 0
			s.mu.Unlock()
			continue
		}
		if s.rf == nil {
			f, err := os.Open(seg.path)
			if err != nil {
				s.log.Error("event spool: cannot open a segment; its events are skipped", "path", seg.path, "err", err)
				s.roff = end
				continue
			}
			s.rf = f
		}
		sec := io.NewSectionReader(s.rf, s.roff, end-s.roff)
		if s.rbuf == nil {
			s.rbuf = bufio.NewReaderSize(sec, 64<<10)
		} else {
			s.rbuf.Reset(sec)
		}
		rr := recordReader{r: s.rbuf, left: end - s.roff, last: s.rlast}
		for len(out) < maxN && total < maxBytes {
			seq, payload, n, err := rr.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				// Checked when the spool was opened or written by this
				// process: the disk changed under it. Skip the rest
				// rather than stop every event behind it.
				s.log.Error("event spool: damaged segment; the rest of it is skipped", "path", seg.path, "offset", s.roff, "err", err)
				s.roff = end
				break
			}
			s.roff += n
			s.rlast = seq
			if seq <= s.skipTo {
				continue
			}
			e, err := decodeEvent(payload, now)
			if err != nil {
				s.log.Error("event spool: undecodable record; storing a placeholder", "seq", seq, "err", err)
				e = event.Event{Time: now, Kind: event.KindGateway, Message: "Spooled event could not be decoded"}
			}
			r := rec{seq: seq, size: size(&e), ev: e}
			out = append(out, r)
			total += r.size
		}
	}
	return out
}

func (s *spool) closeReader() {
	if s.rf != nil {
		s.rf.Close()
		s.rf = nil
	}
}

// ack records that every record up to seq is taken care of, and deletes
// the segments that held only such records.
func (s *spool) ack(seq uint64) error {
	var drop []*segment
	s.mu.Lock()
	for len(s.segs) > 0 {
		seg := s.segs[0]
		if seg == s.rseg || !seg.sealed || seg.last > seq {
			break
		}
		drop = append(drop, seg)
		s.segs = s.segs[1:]
	}
	s.mu.Unlock()
	err := s.writeAck(seq)
	for _, seg := range drop {
		if rerr := os.Remove(seg.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
			err = fmt.Errorf("eventlog: spool: trim: %w", rerr)
		}
		s.bytes.Add(-seg.size)
	}
	return err
}

func (s *spool) writeAck(seq uint64) error {
	if s.ackf == nil {
		f, err := os.OpenFile(filepath.Join(s.dir, ackName), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("eventlog: spool: ack: %w", err)
		}
		s.ackf = f
	}
	var b [ackSize]byte
	copy(b[:], ackMagic)
	binary.LittleEndian.PutUint64(b[len(ackMagic):], seq)
	binary.LittleEndian.PutUint32(b[len(ackMagic)+8:], crc32.Checksum(b[:len(ackMagic)+8], crcTable))
	if _, err := s.ackf.WriteAt(b[:], 0); err != nil {
		return fmt.Errorf("eventlog: spool: ack: %w", err)
	}
	return nil
}

// readAck returns the acknowledged sequence, or 0 (deliver everything
// again) when the file is missing or damaged.
func readAck(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < ackSize || string(b[:len(ackMagic)]) != ackMagic ||
		crc32.Checksum(b[:len(ackMagic)+8], crcTable) != binary.LittleEndian.Uint32(b[len(ackMagic)+8:]) {
		return 0
	}
	return binary.LittleEndian.Uint64(b[len(ackMagic):])
}

// closeFiles closes the reader's files; the ack is fsynced, so that an
// orderly stop followed by a power cut delivers nothing twice.
func (s *spool) closeFiles() error {
	s.closeReader()
	if s.ackf == nil {
		return nil
	}
	err := s.ackf.Sync()
	if cerr := s.ackf.Close(); err == nil {
		err = cerr
	}
	s.ackf = nil
	if err != nil {
		return fmt.Errorf("eventlog: spool: ack: %w", err)
	}
	return nil
}

// importLegacy converts a JSON-lines spool of the previous format into the
// first segment, numbering its events from first. The segment is written
// under a temporary name and renamed when complete, so a crash leaves
// either the old file or the converted segment.
func (s *spool) importLegacy(path string, first uint64, now time.Time) (int, error) {
	in, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("eventlog: spool: %w", err)
	}
	defer in.Close()
	tmp := filepath.Join(s.dir, importName)
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, fmt.Errorf("eventlog: spool: %w", err)
	}
	defer out.Close()
	w := bufio.NewWriter(out)
	w.WriteString(segmentMagic)
	br := bufio.NewReaderSize(in, 64<<10)
	seq, skipped := first, 0
	var rbuf []byte
	for {
		line, ok, err := readLine(br, maxLegacyLine)
		if err != nil {
			return 0, fmt.Errorf("eventlog: spool: read old spool: %w", err)
		}
		if !ok {
			break
		}
		if line == nil {
			skipped++
			continue
		}
		if len(line) == 0 {
			continue
		}
		var e event.Event
		if err := json.Unmarshal(line, &e); err != nil {
			skipped++ // the old format's torn last line, or damage
			continue
		}
		sanitize(&e, func() time.Time { return now })
		if rbuf, err = appendRecord(rbuf[:0], seq, &e); err != nil {
			skipped++
			continue
		}
		w.Write(rbuf)
		seq++
	}
	n := int(seq - first)
	if skipped > 0 {
		s.log.Warn("event spool of an earlier version: unreadable or oversized lines skipped", "lines", skipped)
	}
	if n == 0 {
		return 0, nil
	}
	if err := w.Flush(); err != nil {
		return 0, fmt.Errorf("eventlog: spool: convert: %w", err)
	}
	if err := out.Sync(); err != nil {
		return 0, fmt.Errorf("eventlog: spool: convert: %w", err)
	}
	fi, err := out.Stat()
	if err != nil {
		return 0, fmt.Errorf("eventlog: spool: convert: %w", err)
	}
	final := filepath.Join(s.dir, segName(first))
	if err := os.Rename(tmp, final); err != nil {
		return 0, fmt.Errorf("eventlog: spool: convert: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return 0, err
	}
	seg := &segment{first: first, path: final, end: fi.Size(), size: fi.Size(), last: seq - 1, sealed: true}
	s.segs = append(s.segs, seg)
	s.bytes.Add(seg.size)
	return n, nil
}

// readLine returns the next line, trimmed; ok is false at the end of the
// input. A line longer than limit is consumed and returned as nil.
func readLine(br *bufio.Reader, limit int) (line []byte, ok bool, err error) {
	long, got := false, false
	for {
		chunk, err := br.ReadSlice('\n')
		got = got || len(chunk) > 0
		if !long {
			if len(line)+len(chunk) > limit {
				long, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF:
			if !got {
				return nil, false, nil
			}
		case err != nil:
			return nil, false, err
		}
		if long {
			return nil, true, nil
		}
		return append([]byte{}, bytes.TrimSpace(line)...), true, nil
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("eventlog: spool: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("eventlog: spool: fsync folder: %w", err)
	}
	return nil
}
