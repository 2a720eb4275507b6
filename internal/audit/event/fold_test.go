package event

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type recorder struct {
	mu sync.Mutex
	ev []Event
}

func (r *recorder) Emit(e Event) {
	r.mu.Lock()
	r.ev = append(r.ev, e)
	r.mu.Unlock()
}

func (r *recorder) all() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.ev...)
}

func TestFolderFoldsRepeatedRefusals(t *testing.T) {
	rec := &recorder{}
	f := NewFolder(rec, time.Minute)
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	refused := func(at time.Duration, ip string) Event {
		e := ClientSecurityFailed("pc-1", "10.0.0.2", ip)
		e.Time = t0.Add(at)
		return e
	}
	for i := range 5 {
		f.Emit(refused(time.Duration(i)*10*time.Second, "203.0.113.7"))
	}
	f.Emit(refused(time.Second, "198.51.100.1")) // another address: its own
	signin := SigninFailed("root", "203.0.113.7")
	f.Emit(signin)
	f.Emit(signin) // sign-ins are never folded
	if got := len(rec.all()); got != 4 {
		t.Fatalf("passed on %d events before any window closed, want 4: %+v", got, rec.all())
	}
	f.flush(t0.Add(30 * time.Second))
	if got := len(rec.all()); got != 4 {
		t.Fatalf("a window closed early: %+v", rec.all())
	}
	f.flush(t0.Add(61 * time.Second))
	ev := rec.all()
	if len(ev) != 5 {
		t.Fatalf("after the window: %d events, want 5: %+v", len(ev), ev)
	}
	sum := ev[4]
	if sum.Message != refused(0, "203.0.113.7").Message || sum.Reason != "repeated 4 more times from 10:00:00 to 10:00:40" ||
		!sum.Time.Equal(t0.Add(40*time.Second)) || sum.PublicIP != "203.0.113.7" {
		t.Fatalf("summary = %+v", sum)
	}
	// The next repeat opens a new window and is written at once.
	f.Emit(refused(2*time.Minute, "203.0.113.7"))
	if got := len(rec.all()); got != 6 {
		t.Fatalf("the first refusal of a new window was held back")
	}
}

func TestFolderStopPassesCountsOn(t *testing.T) {
	rec := &recorder{}
	f := NewFolder(rec, time.Hour)
	e := LicenceExceeded("pc-2", "10.0.0.3", "192.0.2.9")
	f.Emit(e)
	f.Emit(e)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	cancel()
	<-done
	ev := rec.all()
	if len(ev) != 2 || !strings.HasPrefix(ev[1].Reason, "repeated 1 more time from ") {
		t.Fatalf("after an orderly stop: %+v", ev)
	}
}

func TestFolderMemoryIsBounded(t *testing.T) {
	rec := &recorder{}
	f := NewFolder(rec, time.Hour)
	// Distinct refusals until one no longer opens a window.
	for n := 0; ; n++ {
		before := f.bytes
		f.Emit(ClientSecurityFailed(strings.Repeat("x", 120), "10.0.0.1", "192.0.2.1:"+strconv.Itoa(n)))
		if f.bytes == before {
			break
		}
		if n > MaxFoldBytes {
			t.Fatal("the open windows grow without bound")
		}
	}
	if f.bytes > MaxFoldBytes {
		t.Fatalf("open windows hold %d bytes, bound %d", f.bytes, MaxFoldBytes)
	}
	before := len(rec.all())
	// Past the bound, repeats are no longer folded: all of them are written.
	over := ClientSecurityFailed("pc-over", "10.0.0.1", "192.0.2.200")
	for range 3 {
		f.Emit(over)
	}
	if got := len(rec.all()) - before; got != 3 {
		t.Fatalf("past the bound %d of 3 refusals were written", got)
	}
}
