package eventlog

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/audit/event"
)

func TestEveryEventIsOnDiskWhileTheStoreIsUp(t *testing.T) {
	t.Parallel()
	// The spool is not an overflow: an event waits on disk from the start,
	// so a crash cannot take one that only sat in memory.
	spool := filepath.Join(t.TempDir(), "events.spool")
	st := &memStore{hang: true}
	l, err := New(Config{Store: st, SpoolPath: spool, finalTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	for i := range 3 {
		l.Emit(event.Event{Message: msg(i)})
	}
	waitUntil(t, "the events to reach the spool", func() bool {
		return len(readSpool(t, spool)) == 3
	})
	for i, e := range readSpool(t, spool) {
		if e.Message != msg(i) {
			t.Errorf("spooled event %d = %q", i, e.Message)
		}
	}
}

// readSpool returns the events in the spool's segments, as a restart
// would find them (acknowledgements aside).
func readSpool(t *testing.T, spool string) []event.Event {
	t.Helper()
	var out []event.Event
	for _, seg := range segments(t, spool) {
		f, err := os.Open(seg)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		rr := recordReader{r: bufio.NewReader(f), left: fi.Size()}
		var magic [len(segmentMagic)]byte
		if _, err := io.ReadFull(rr.r, magic[:]); err != nil || string(magic[:]) != segmentMagic {
			f.Close()
			continue
		}
		rr.left -= int64(len(magic))
		for {
			_, payload, _, err := rr.next()
			if err != nil {
				break
			}
			var e event.Event
			if err := json.Unmarshal(payload, &e); err != nil {
				t.Fatal(err)
			}
			out = append(out, e)
		}
		f.Close()
	}
	return out
}

func TestATornLastRecordIsIgnoredAndBlocksNothing(t *testing.T) {
	spool := filepath.Join(t.TempDir(), "events.spool")
	st := &memStore{down: true}
	l, err := New(Config{Store: st, SpoolPath: spool})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, l)
	for i := range 10 {
		l.Emit(event.Event{Message: msg(i)})
	}
	stop()
	// A crash in the middle of the next record: half a header, then half
	// of a record with a valid header.
	segs := segments(t, spool)
	last := segs[len(segs)-1]
	rec, err := appendRecord(nil, 1000, &event.Event{Message: "torn"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(rec[:len(rec)-3])
	f.Close()

	st.set(false)
	l2, err := New(Config{Store: st, SpoolPath: spool})
	if err != nil {
		t.Fatal(err)
	}
	if p := l2.Pending(); p != 10 {
		t.Fatalf("Pending = %d after the restart, want the 10 whole records", p)
	}
	start(t, l2)
	l2.Emit(event.Event{Message: msg(10)})
	flush(t, l2)
	wantInOrder(t, st.messages(), 11)
}

func TestARestartDeliversNothingTwice(t *testing.T) {
	t.Parallel()
	spool := filepath.Join(t.TempDir(), "events.spool")
	st := &memStore{}
	l, err := New(Config{Store: st, SpoolPath: spool})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, l)
	for i := range 700 {
		l.Emit(event.Event{Message: msg(i)})
	}
	flush(t, l)
	stop()
	for i := range 3 {
		l, err := New(Config{Store: st, SpoolPath: spool})
		if err != nil {
			t.Fatal(err)
		}
		if p := l.Pending(); p != 0 {
			t.Fatalf("restart %d: Pending = %d, want 0", i, p)
		}
		stop := start(t, l)
		l.Emit(event.Event{Message: msg(700 + i)})
		flush(t, l)
		stop()
	}
	wantInOrder(t, st.messages(), 703)
}

func TestASpoolOfThePreviousFormatIsConverted(t *testing.T) {
	spool := filepath.Join(t.TempDir(), "events.spool")
	var old strings.Builder
	enc := json.NewEncoder(&old)
	for i := range 5 {
		enc.Encode(event.Event{Message: msg(i)})
	}
	// The poison of the attack: a 2,720-character name, bounded now.
	enc.Encode(event.Event{Message: msg(5), Client: strings.Repeat("c", 2720)})
	old.WriteString(`{"Message":"torn`) // the old format's torn last line
	if err := os.WriteFile(spool, []byte(old.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	st := &memStore{}
	l, err := New(Config{Store: st, SpoolPath: spool})
	if err != nil {
		t.Fatal(err)
	}
	if p := l.Pending(); p != 6 {
		t.Fatalf("Pending = %d from the old spool, want 6", p)
	}
	start(t, l)
	l.Emit(event.Event{Message: msg(6)})
	flush(t, l)
	wantInOrder(t, st.messages(), 7)
	if c := st.evs[5].Client; len(c) > MaxFieldBytes {
		t.Errorf("converted client name is %d bytes", len(c))
	}
	if _, err := os.Stat(spool + legacyExt); !os.IsNotExist(err) {
		t.Errorf("old spool kept: %v", err)
	}
}

func TestMemoryStaysBoundedInBytesWithHugeEvents(t *testing.T) {
	const maxBytes = 256 << 10
	dir := t.TempDir()
	st := &memStore{down: true}
	l, err := New(Config{Store: st, Dir: dir, SpoolPath: filepath.Join(dir, "events.spool"), MaxPendingBytes: maxBytes, finalTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// Run has not started, as if the spool's disk stalled: nothing drains.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 100
	for i := range n {
		// A fresh 1 MiB name each time, so that an event still pointing
		// into one would show in the heap.
		name := strings.Repeat(string(rune('a'+i%26)), 1<<20)
		l.Emit(event.Event{Kind: event.KindSecurity, Message: "Security check failed for Client " + name, Client: name, PublicIP: name})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 4*maxBytes {
		t.Errorf("heap grew %d KiB for a bound of %d KiB", grew>>10, maxBytes>>10)
	}
	l.mu.Lock()
	queued, qb, fb := len(l.queue), l.queueBytes, l.fileBytes
	l.mu.Unlock()
	if qb > maxBytes || fb > maxBytes {
		t.Errorf("queue %d bytes, file queue %d bytes, bound %d", qb, fb, maxBytes)
	}
	if d := l.Dropped(); d == 0 || int(d)+queued != n || l.Pending() != queued {
		t.Errorf("Dropped %d, queued %d, Pending %d of %d", d, queued, l.Pending(), n)
	}
	if l.FileDropped() == 0 {
		t.Error("no log line dropped")
	}

	// Once running, with the store still down, they go to disk: bounded
	// too (2 MB of names took the old spool 2 GB), and nothing waits in
	// memory.
	start(t, l)
	waitUntil(t, "the queue to drain to the spool", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.queueBytes == 0
	})
	if sb := l.spool.bytes.Load(); sb > 2*maxBytes {
		t.Errorf("spool %d bytes for %d queued events", sb, queued)
	}
	if p := l.Pending(); p != queued {
		t.Errorf("Pending %d, want %d", p, queued)
	}
}

func TestWithoutASpoolMemoryIsBoundedWhileTheStoreIsDown(t *testing.T) {
	const maxBytes = 64 << 10
	st := &memStore{down: true}
	l, err := New(Config{Store: st, MaxPendingBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	huge := strings.Repeat("x", 1<<20)
	for range 100 {
		l.Emit(event.Event{Message: huge, Client: huge})
	}
	l.mu.Lock()
	qb := l.queueBytes
	l.mu.Unlock()
	if qb > maxBytes || l.Dropped() == 0 || int(l.Dropped())+l.Pending() != 100 {
		t.Errorf("queue %d bytes (bound %d), Dropped %d, Pending %d", qb, maxBytes, l.Dropped(), l.Pending())
	}
	st.set(false)
	flush(t, l)
	if got := len(st.messages()); got != l.Pending()+int(l.Written()) || got == 0 {
		t.Errorf("stored %d", got)
	}
}

func TestAFullSpoolDropsNewEventsAndCountsThem(t *testing.T) {
	spool := filepath.Join(t.TempDir(), "events.spool")
	st := &memStore{down: true}
	l, err := New(Config{Store: st, SpoolPath: spool, MaxSpoolBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	for i := range 2000 {
		l.Emit(event.Event{Message: msg(i)})
	}
	waitUntil(t, "the queue to drain", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.queueBytes == 0
	})
	if l.Dropped() == 0 || l.spool.bytes.Load() > 128<<10 {
		t.Fatalf("Dropped %d, spool %d bytes", l.Dropped(), l.spool.bytes.Load())
	}
	kept := l.Pending()
	if kept+int(l.Dropped()) != 2000 {
		t.Fatalf("Pending %d + Dropped %d, want 2000", kept, l.Dropped())
	}
	st.set(false)
	flush(t, l)
	got := st.messages()
	if len(got) != kept {
		t.Fatalf("%d stored, want the %d kept", len(got), kept)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("stored out of order: %q after %q", got[i], got[i-1])
		}
	}
}
