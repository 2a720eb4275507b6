package handlers

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/a-h/templ"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/web"
)

// sseEvent is one named server-sent event carrying rendered HTML, which
// the htmx SSE extension swaps into the element with a matching sse-swap.
type sseEvent struct {
	name    string
	content templ.Component
	// id, when set, is the stream's position after this event: a browser
	// reconnecting sends it back as Last-Event-ID.
	id string
}

// liveTick is how often a live view looks for changes: fast enough to feel
// instant, and each look is an in-memory comparison (or one indexed query
// for the event log).
const liveTick = 500 * time.Millisecond

// liveCheckEvery is how often, unless Console.LiveCheck says otherwise, an
// open stream re-reads its session and operator: two indexed queries.
const liveCheckEvery = 2 * time.Second

func (c *Console) liveCheck() time.Duration {
	if c.LiveCheck > 0 {
		return c.LiveCheck
	}
	return liveCheckEvery
}

// A live stream lasts as long as the browser keeps it open, so admitting
// it once, when it starts, is not enough: it must end when its console
// session ends (signed out in another tab, idle timeout, absolute
// lifetime, token renewed by a new sign-in) or its operator may no longer
// see it (removed, disabled, no longer an admin). The session data that
// scs loads at the start of a request never changes during it, so a stream
// re-reads the session from the store every liveCheck.
//
// Streams are served outside LoadAndSave and never write the session:
//   - an open stream is no activity. The idle deadline is the store's
//     expiry of the session, which scs moves on only when a request
//     commits it; a stream does not, so a console left open on a live page
//     still times out, and an EventSource that keeps reconnecting does not
//     keep it alive either. The store finds nothing past that expiry.
//   - a stream cannot write back a session that was signed out while it
//     started, which LoadAndSave's commit would do.

type liveKey struct{}

// liveAuth is what a stream re-checks: the cookie's session token, the
// operator it was admitted for, and whether its page is an admin's.
type liveAuth struct {
	token    string
	operator string
	admin    bool
}

// requireLive admits a live stream as requireOperator admits a page, from
// a fresh read of the session. A stream it does not admit gets the LiveEnd
// event at once, so an EventSource reconnecting after its session ended
// sends its page to sign-in rather than retrying.
func (c *Console) requireLive(admin bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var token string
			if ck, err := r.Cookie(c.Sessions.Cookie.Name); err == nil {
				token = ck.Value
			}
			op, ok, err := c.liveAdmits(r.Context(), liveAuth{token: token, admin: admin})
			if err != nil {
				c.fail(w, r, err)
				return
			}
			if !ok {
				if startSSE(w) == nil {
					_ = c.endLive(w, r)
				}
				return
			}
			ctx := context.WithValue(r.Context(), liveKey{}, liveAuth{token: token, operator: op.Name, admin: admin})
			ctx = context.WithValue(ctx, ctxKey{}, op)
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// liveAdmits reads the session a.token names from the store, and its
// operator from the database, and reports whether they still admit a.
func (c *Console) liveAdmits(ctx context.Context, a liveAuth) (db.Operator, bool, error) {
	op, _, ok, err := c.liveSession(ctx, a)
	return op, ok, err
}

// liveSession is liveAdmits with the session it read, for the values a
// caller needs beyond the operator.
func (c *Console) liveSession(ctx context.Context, a liveAuth) (db.Operator, context.Context, bool, error) {
	if a.token == "" {
		return db.Operator{}, nil, false, nil
	}
	// Load reads the store only when ctx carries no session already; a
	// context without values makes sure of it wherever this is called.
	sctx, err := c.Sessions.Load(noValues{ctx}, a.token)
	if err != nil {
		return db.Operator{}, nil, false, err
	}
	name := c.Sessions.GetString(sctx, sessionOperator)
	switch {
	case c.Sessions.Token(sctx) == "":
		// Not in the store: destroyed (signed out), renewed, or past its
		// expiry, which is the idle deadline or the absolute one.
		return db.Operator{}, nil, false, nil
	case name == "", a.operator != "" && name != a.operator:
		return db.Operator{}, nil, false, nil
	case !time.Now().Before(c.Sessions.Deadline(sctx)):
		// The absolute lifetime, checked here too rather than trusting the
		// store's expiry alone. scs's deadlines are on time.Now, not c.now.
		return db.Operator{}, nil, false, nil
	}
	op, err := c.Store.Operator(ctx, name)
	switch {
	case errors.Is(err, db.ErrNotFound), err == nil && (op.Disabled || c.stalePassword(sctx, op)):
		// Removed, disabled or its password changed: end the session, as
		// requireOperator does.
		return db.Operator{}, nil, false, c.Sessions.Destroy(sctx)
	case err != nil:
		return db.Operator{}, nil, false, err
	case a.admin && !op.IsAdmin():
		return db.Operator{}, nil, false, nil
	}
	return op, sctx, true, nil
}

// noValues is a context's cancellation and deadline without its values.
type noValues struct{ context.Context }

func (noValues) Value(any) any { return nil }

// startSSE sends the headers of an event stream and a first comment, so
// the browser's EventSource opens at once.
func startSSE(w http.ResponseWriter) error {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // reverse proxies must not hold events back
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write([]byte(": live\n\n")); err != nil {
		return err
	}
	return http.NewResponseController(w).Flush()
}

// endLive sends the LiveEnd event: its data is the sign-in page, to come
// back to the page of r's stream.
func (c *Console) endLive(w http.ResponseWriter, r *http.Request) error {
	page := strings.TrimSuffix(r.URL.Path, "/stream")
	if r.URL.RawQuery != "" {
		page += "?" + r.URL.RawQuery
	}
	if err := writeSSE(w, web.LiveEnd, "/console/signin?next="+url.QueryEscape(page)); err != nil {
		return err
	}
	return http.NewResponseController(w).Flush()
}

// stream serves server-sent events until the browser goes away, the
// gateway stops or the stream's session no longer admits it. next is
// called every tick and returns the events to send, if any.
func (c *Console) stream(w http.ResponseWriter, r *http.Request, next func(ctx context.Context) ([]sseEvent, error)) {
	auth, ok := r.Context().Value(liveKey{}).(liveAuth)
	if !ok {
		// Not routed behind requireLive: nothing admitted it.
		if startSSE(w) == nil {
			_ = c.endLive(w, r)
		}
		return
	}
	rc := http.NewResponseController(w)
	if startSSE(w) != nil {
		return
	}
	t := time.NewTicker(liveTick)
	defer t.Stop()
	check := time.NewTicker(c.liveCheck())
	defer check.Stop()
	ctx := r.Context()
	var buf bytes.Buffer
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.Stopping:
			return
		case <-check.C:
			_, ok, err := c.liveAdmits(ctx, auth)
			switch {
			case err != nil:
				// Fail closed; the browser's EventSource reconnects and is
				// admitted, or not, afresh.
				if ctx.Err() == nil {
					c.Logger.Warn("live view: session check", "path", r.URL.Path, "err", err)
				}
				return
			case !ok:
				_ = c.endLive(w, r)
				return
			}
			continue
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
			if err := writeSSEID(w, e.name, e.id, buf.String()); err != nil {
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
	return writeSSEID(w, name, "", data)
}

func writeSSEID(w http.ResponseWriter, name, id, data string) error {
	var b strings.Builder
	if id != "" {
		b.WriteString("id: ")
		b.WriteString(id)
		b.WriteByte('\n')
	}
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
