package eventlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/audit/event"
)

// memStore is a Store in memory that can be made to fail or hang.
type memStore struct {
	mu     sync.Mutex
	evs    []event.Event
	down   bool
	hang   bool
	broken chan struct{}
}

var errDown = errors.New("store down")

func (m *memStore) InsertEvents(ctx context.Context, evs []event.Event) error {
	m.mu.Lock()
	down, hang := m.down, m.hang
	m.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	if down {
		return errDown
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.evs = append(m.evs, evs...)
	return nil
}

func (m *memStore) set(down bool) {
	m.mu.Lock()
	m.down = down
	m.mu.Unlock()
}

func (m *memStore) messages() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, len(m.evs))
	for i, e := range m.evs {
		out[i] = e.Message
	}
	return out
}

func msg(i int) string { return fmt.Sprintf("event %05d", i) }

// start runs l until the test ends (or stop is called) and returns stop.
func start(t *testing.T, l *Log) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := l.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func flush(t *testing.T, l *Log) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func wantInOrder(t *testing.T, got []string, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%d events stored, want %d", len(got), n)
	}
	for i, m := range got {
		if m != msg(i) {
			t.Fatalf("event %d is %q, want %q (order or duplicates broken)", i, m, msg(i))
		}
	}
}

func TestLinesInOrderInTheDesignFormat(t *testing.T) {
	dir := t.TempDir()
	st := &memStore{}
	l, err := New(Config{Dir: dir, Store: st, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	when := time.Date(2022, 6, 29, 16, 11, 20, 0, time.Local)
	l.Emit(event.Event{Time: when, Message: "Connectivity Server started, Max. Licensed connections: 5, Listening port: 443"})
	for i := range 3 {
		l.Emit(event.Event{Message: msg(i)})
	}
	flush(t, l)
	b, err := os.ReadFile(filepath.Join(dir, "GW001.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if lines[0] != "29-Jun-22, 16:11:20, Connectivity Server started, Max. Licensed connections: 5, Listening port: 443" {
		t.Errorf("first line %q", lines[0])
	}
	for i := range 3 {
		if !strings.HasSuffix(lines[i+1], ", "+msg(i)) {
			t.Errorf("line %d = %q", i+1, lines[i+1])
		}
	}
	if st.evs[1].Node != "n1" || st.evs[1].Time.IsZero() {
		t.Errorf("stored event not stamped: %+v", st.evs[1])
	}
}

func TestRotationKeepsEveryLineUnderTheLimit(t *testing.T) {
	dir := t.TempDir()
	l, err := New(Config{Dir: dir, MaxKB: 1, Store: &memStore{}})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, l)
	for i := range 200 {
		l.Emit(event.Event{Message: msg(i)})
	}
	flush(t, l)
	stop()
	got := readAll(t, dir)
	if len(got.files) < 5 {
		t.Fatalf("%d files, want rotation: %v", len(got.files), got.files)
	}
	for i, m := range got.lines {
		if !strings.HasSuffix(m, msg(i)) {
			t.Fatalf("line %d = %q, want %s", i, m, msg(i))
		}
	}
	if len(got.lines) != 200 {
		t.Fatalf("%d lines, want 200", len(got.lines))
	}

	// A restart continues in the newest file rather than starting GW001 again.
	last := got.files[len(got.files)-1]
	l2, err := New(Config{Dir: dir, MaxKB: 1, Store: &memStore{}})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l2)
	l2.Emit(event.Event{Message: "after restart"})
	flush(t, l2)
	b, _ := os.ReadFile(last)
	again := readAll(t, dir)
	if !strings.Contains(string(b), "after restart") && !strings.HasSuffix(again.files[len(again.files)-1], fmt.Sprintf("GW%03d.log", len(got.files)+1)) {
		t.Fatalf("restart wrote elsewhere: files %v", again.files)
	}
}

type logFiles struct {
	files []string
	lines []string
}

func readAll(t *testing.T, dir string) logFiles {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "GW*.log"))
	var out logFiles
	out.files = files
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 1024 {
			t.Errorf("%s is %d bytes, over 1 KB", f, len(b))
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			if line != "" {
				out.lines = append(out.lines, line)
			}
		}
	}
	return out
}

func TestStoreOutageDeliversEverythingOnceInOrder(t *testing.T) {
	t.Parallel()
	st := &memStore{down: true}
	l, err := New(Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	for i := range 1200 {
		l.Emit(event.Event{Message: msg(i)})
	}
	time.Sleep(300 * time.Millisecond) // a few failed attempts
	if p := l.Pending(); p != 1200 {
		t.Fatalf("Pending = %d during the outage, want 1200", p)
	}
	st.set(false)
	flush(t, l)
	wantInOrder(t, st.messages(), 1200)
	if l.Pending() != 0 || l.Written() != 1200 {
		t.Fatalf("Pending %d, Written %d after recovery", l.Pending(), l.Written())
	}
}

func TestLongOutageWaitsOnDiskAndTheSpoolIsTrimmedAfterwards(t *testing.T) {
	t.Parallel()
	spool := filepath.Join(t.TempDir(), "events.spool")
	st := &memStore{down: true}
	l, err := New(Config{Store: st, SpoolPath: spool, segmentBytes: 16 << 10, maxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	for i := range 5000 {
		l.Emit(event.Event{Message: msg(i)})
	}
	waitUntil(t, "the spool to take every event", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.queue) == 0 && l.queueBytes == 0
	})
	if p := l.Pending(); p != 5000 {
		t.Fatalf("Pending = %d during the outage, want 5000", p)
	}
	if segs := segments(t, spool); len(segs) < 5 {
		t.Fatalf("%d spool segments during the outage, want several of 16 KiB", len(segs))
	}
	st.set(false)
	flush(t, l)
	wantInOrder(t, st.messages(), 5000)
	// Trimmed: at most the segment being appended to is left.
	if segs := segments(t, spool); len(segs) > 1 {
		t.Errorf("%d spool segments after delivery, want at most 1: %v", len(segs), segs)
	}
}

// segments lists the spool's segment files.
func segments(t *testing.T, spool string) []string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(spool, "*"+segmentExt))
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

func TestShutdownDuringOutageSpoolsForTheNextStart(t *testing.T) {
	spool := filepath.Join(t.TempDir(), "events.spool")
	st := &memStore{down: true}
	l, err := New(Config{Store: st, SpoolPath: spool})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, l)
	for i := range 300 {
		l.Emit(event.Event{Message: msg(i)})
	}
	stop()
	l.Emit(event.Event{Message: msg(300)}) // after Run: spooled directly

	st.set(false)
	l2, err := New(Config{Store: st, SpoolPath: spool})
	if err != nil {
		t.Fatal(err)
	}
	if p := l2.Pending(); p != 301 {
		t.Fatalf("new log has %d pending from the spool, want 301", p)
	}
	start(t, l2)
	l2.Emit(event.Event{Message: msg(301)})
	flush(t, l2)
	wantInOrder(t, st.messages(), 302)
}

func TestEmitNeverBlocksOnAHungStore(t *testing.T) {
	t.Parallel()
	st := &memStore{hang: true}
	dir := t.TempDir()
	l, err := New(Config{Store: st, Dir: dir, SpoolPath: filepath.Join(dir, "spool"), MaxPending: 1000, finalTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20_000 {
			l.Emit(event.Event{Message: msg(i)})
		}
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("Emit blocked behind a hung store")
	}
	if p := l.Pending(); p != 20_000 {
		t.Fatalf("Pending = %d, want 20000", p)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
