package peertest

import (
	"context"
	"log/slog"
	"sync"
)

// Logs records what a peer logs. Some outcomes (a refusal the agent only
// retries after, a local dial that failed) show nowhere else.
type Logs struct {
	mu   sync.Mutex
	recs []LogRecord
}

// LogRecord is one logged record, with its attributes (those of the logger
// and of the call) as strings.
type LogRecord struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

// Logger is a logger that records into l.
func (l *Logs) Logger() *slog.Logger { return slog.New(&recordHandler{l: l}) }

// Find is the first record with exactly msg, if any.
func (l *Logs) Find(msg string) (LogRecord, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		if r.Msg == msg {
			return r, true
		}
	}
	return LogRecord{}, false
}

type recordHandler struct {
	l     *Logs
	attrs []slog.Attr
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	rec := LogRecord{Level: r.Level, Msg: r.Message, Attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.Attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.String()
		return true
	})
	h.l.mu.Lock()
	h.l.recs = append(h.l.recs, rec)
	h.l.mu.Unlock()
	return nil
}

func (h *recordHandler) WithAttrs(as []slog.Attr) slog.Handler {
	// A copy, so that two loggers derived from one do not share attributes.
	return &recordHandler{l: h.l, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

// WithGroup ignores groups: the peers log flat attributes, and tests look
// them up by key alone.
func (h *recordHandler) WithGroup(string) slog.Handler { return h }

// FindAll is every record with exactly msg, in order.
func (l *Logs) FindAll(msg string) []LogRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []LogRecord
	for _, r := range l.recs {
		if r.Msg == msg {
			out = append(out, r)
		}
	}
	return out
}
