package handlers

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/a-h/templ"
)

// sseEvent is one named server-sent event carrying rendered HTML, which
// the htmx SSE extension swaps into the element with a matching sse-swap.
type sseEvent struct {
	name    string
	content templ.Component
}

// liveTick is how often a live view looks for changes: fast enough to feel
// instant, and each look is an in-memory comparison (or one indexed query
// for the event log).
const liveTick = 500 * time.Millisecond

// stream serves server-sent events until the browser goes away or the
// gateway stops. next is called every tick and returns the events to send,
// if any.
func (c *Console) stream(w http.ResponseWriter, r *http.Request, next func(ctx context.Context) ([]sseEvent, error)) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // reverse proxies must not hold events back
	w.WriteHeader(http.StatusOK)
	// A comment first, so the browser's EventSource opens at once.
	if _, err := w.Write([]byte(": live\n\n")); err != nil || rc.Flush() != nil {
		return
	}
	t := time.NewTicker(liveTick)
	defer t.Stop()
	ctx := r.Context()
	var buf bytes.Buffer
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.Stopping:
			return
		case <-t.C:
		}
		evs, err := next(ctx)
		if err != nil {
			// The stream has started: no status can be sent any more. Log,
			// and let the browser's EventSource reconnect.
			if ctx.Err() == nil {
				c.Logger.Warn("live view", "path", r.URL.Path, "err", err)
			}
			return
		}
		for _, e := range evs {
			buf.Reset()
			if err := e.content.Render(ctx, &buf); err != nil {
				return
			}
			if err := writeSSE(w, e.name, buf.String()); err != nil {
				return
			}
		}
		if len(evs) > 0 {
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}

func writeSSE(w http.ResponseWriter, name, data string) error {
	var b strings.Builder
	b.WriteString("event: ")
	b.WriteString(name)
	b.WriteByte('\n')
	for _, line := range strings.Split(data, "\n") {
		b.WriteString("data: ")
		b.WriteString(line)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	_, err := w.Write([]byte(b.String()))
	return err
}
