package handlers

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/web"
)

const eventsPerPage = 50

var eventKinds = []string{
	string(event.KindGateway), string(event.KindClientConnect), string(event.KindClientDisconnect),
	string(event.KindSessionStart), string(event.KindSessionEnd), string(event.KindLicence),
	string(event.KindSecurity), string(event.KindConfig), string(event.KindOperator),
}

// datetime-local inputs carry no zone: they mean the gateway's local time.
const datetimeLocal = "2006-01-02T15:04"

// eventFilter reads the filters of the Events page from its URL. Bad values
// are errors shown to the administrator, never silently dropped filters.
func eventFilter(v url.Values) (db.EventFilter, error) {
	f := db.EventFilter{Kind: event.Kind(v.Get("kind")), Client: v.Get("client"), Control: v.Get("control"), Limit: eventsPerPage}
	if f.Kind != "" && !contains(eventKinds, string(f.Kind)) {
		return f, badRequest("Unknown event kind.")
	}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if s := v.Get(name); s != "" {
			t, err := time.ParseInLocation(datetimeLocal, s, time.Local)
			if err != nil {
				return f, badRequest("The " + name + " time is not a date and time.")
			}
			*dst = t
		}
	}
	for name, dst := range map[string]*int64{"before": &f.BeforeID, "after": &f.AfterID} {
		if s := v.Get(name); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				return f, badRequest("Bad page cursor.")
			}
			*dst = n
		}
	}
	return f, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// filterQuery is the URL query of the filters alone, without the cursors.
func filterQuery(v url.Values) string {
	q := url.Values{}
	for _, k := range []string{"kind", "client", "control", "since", "until"} {
		if s := v.Get(k); s != "" {
			q.Set(k, s)
		}
	}
	return q.Encode()
}

func eventRows(evs []event.Event) []web.EventRow {
	rows := make([]web.EventRow, len(evs))
	for i, e := range evs {
		rows[i] = web.EventRow{ID: e.ID, Time: e.Time, Kind: string(e.Kind), Message: e.Message, Client: e.Client,
			Control: e.Control, Operator: e.Operator, RealIP: e.RealIP, PublicIP: e.PublicIP, Reason: e.Reason}
	}
	return rows
}

func (c *Console) eventsPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := eventFilter(q)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	f.AfterID = 0
	page := f
	page.Limit = eventsPerPage + 1 // one more tells whether an older page exists
	evs, err := c.Store.Events(r.Context(), page)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	count := f
	count.BeforeID = 0
	total, err := c.Store.CountEvents(r.Context(), count)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := web.EventsView{
		Kinds: eventKinds, Kind: string(f.Kind), Client: f.Client, Control: f.Control,
		Since: q.Get("since"), Until: q.Get("until"), Before: f.BeforeID, Total: total,
		Live: f.BeforeID == 0, FilterQ: filterQuery(q),
	}
	if len(evs) > eventsPerPage {
		evs = evs[:eventsPerPage]
		v.Older = evs[len(evs)-1].ID
	}
	v.Rows = eventRows(evs)
	stream := ""
	if v.Live {
		var newest int64
		if len(evs) > 0 {
			newest = evs[0].ID
		}
		sq, _ := url.ParseQuery(v.FilterQ)
		sq.Set("after", strconv.FormatInt(newest, 10))
		stream = "/console/events/stream?" + sq.Encode()
	}
	c.page(w, r, "Events", "events", stream, web.EventsPage(v))
}

// eventsStream tails the event table: events of every gateway node reach
// it, since it reads PostgreSQL rather than this node's memory. The count
// of matching events follows: it is counted once, up to the newest event
// the page shows, and each new row adds one. A browser reconnecting says
// which event it saw last (Last-Event-ID), so no row comes twice.
func (c *Console) eventsStream(w http.ResponseWriter, r *http.Request) {
	f, err := eventFilter(r.URL.Query())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if id, err := strconv.ParseInt(r.Header.Get("Last-Event-ID"), 10, 64); err == nil && id > f.AfterID {
		f.AfterID = id
	}
	f.Limit = eventsPerPage
	count := f
	count.AfterID, count.BeforeID = 0, f.AfterID+1
	total, err := c.Store.CountEvents(r.Context(), count)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.stream(w, r, func(ctx context.Context) ([]sseEvent, error) {
		evs, err := c.Store.Events(ctx, f)
		if err != nil || len(evs) == 0 {
			return nil, err
		}
		// More than a page at once: the page shows the newest, the count
		// all of them, as a reload would.
		n, err := c.Store.CountEvents(ctx, db.EventFilter{Kind: f.Kind, Client: f.Client, Control: f.Control,
			Since: f.Since, Until: f.Until, AfterID: f.AfterID, BeforeID: evs[0].ID + 1})
		if err != nil {
			return nil, err
		}
		total += n
		f.AfterID = evs[0].ID
		return []sseEvent{
			{name: "events", content: web.EventRows(eventRows(evs)), id: strconv.FormatInt(f.AfterID, 10)},
			{name: "events-total", content: web.EventsTotalText(total)},
			{name: "count", content: web.Count(c.Relay.Stats().Clients)},
		}, nil
	})
}
