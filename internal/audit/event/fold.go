package event

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Folder is a Sink that folds repeats of one refusal into one event, so
// that a Client retrying with a removed key, or a licence that stays
// full, cannot flood the log, while nothing is hidden:
//
//   - Foldable events are the refusals of peers: security checks of
//     Clients and Controls (not operator sign-ins, which have lockouts of
//     their own) and licence rejections. Two are the same refusal when
//     their text and public address are the same.
//   - The first of a refusal is passed on at once and opens a window of
//     Window (10 minutes). Repeats within the window are counted, not
//     passed on. When the window ends, one event with the same text is
//     passed on, its Reason saying how many more times it happened and
//     between when ("repeated 37 more times from 10:02:11 to 10:11:58").
//     The next repeat opens a new window, so a refusal that goes on for
//     ever costs at most two events per window.
//   - Memory is bounded: at most MaxFoldBytes of open windows (text and
//     address); past that, refusals pass through unfolded.
//   - A node killed during a window loses that window's count (its first
//     event is written); an orderly stop (Run's ctx ending) passes on
//     every count first.
type Folder struct {
	next   Sink
	window time.Duration

	mu    sync.Mutex
	open  map[foldKey]*fold
	bytes int
}

// MaxFoldBytes bounds the open windows of a Folder.
const MaxFoldBytes = 4 << 20

// FoldWindow is the window of NewFolder with a zero window.
const FoldWindow = 10 * time.Minute

type foldKey struct{ msg, ip string }

type fold struct {
	first       Event
	until, last time.Time
	n           int
}

// NewFolder folds what it is given into next; window 0 is FoldWindow.
// Run must run for windows to close.
func NewFolder(next Sink, window time.Duration) *Folder {
	if window <= 0 {
		window = FoldWindow
	}
	return &Folder{next: next, window: window, open: make(map[foldKey]*fold)}
}

func foldable(e Event) bool {
	switch e.Kind {
	case KindLicence:
		return true
	case KindSecurity:
		return e.Check != CheckSignin && e.Check != ""
	}
	return false
}

// Emit is Sink.
func (f *Folder) Emit(e Event) {
	if !foldable(e) {
		f.next.Emit(e)
		return
	}
	k := foldKey{e.Message, e.PublicIP}
	f.mu.Lock()
	if o := f.open[k]; o != nil {
		o.n++
		o.last = e.Time
		f.mu.Unlock()
		return
	}
	size := len(k.msg) + len(k.ip) + 256
	if f.bytes+size <= MaxFoldBytes {
		f.open[k] = &fold{first: e, until: e.Time.Add(f.window)}
		f.bytes += size
	}
	f.mu.Unlock()
	f.next.Emit(e)
}

// Run closes the windows as they end, until ctx ends; then it passes on
// the counts of the windows still open.
func (f *Folder) Run(ctx context.Context) {
	t := time.NewTicker(min(f.window/10, 5*time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			f.flush(time.Time{})
			return
		case now := <-t.C:
			f.flush(now)
		}
	}
}

// flush closes the windows that ended by now (all of them for zero).
func (f *Folder) flush(now time.Time) {
	var out []Event
	f.mu.Lock()
	for k, o := range f.open {
		if !now.IsZero() && now.Before(o.until) {
			continue
		}
		delete(f.open, k)
		f.bytes -= len(k.msg) + len(k.ip) + 256
		if o.n == 0 {
			continue
		}
		e := o.first
		e.ID = 0
		e.Time = o.last
		e.Reason = fmt.Sprintf("repeated %d more %s from %s to %s", o.n, times(o.n),
			o.first.Time.Format(time.TimeOnly), o.last.Format(time.TimeOnly))
		out = append(out, e)
	}
	f.mu.Unlock()
	for _, e := range out {
		f.next.Emit(e)
	}
}

func times(n int) string {
	if n == 1 {
		return "time"
	}
	return "times"
}
