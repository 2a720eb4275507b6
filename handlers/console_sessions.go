package handlers

import (
	"context"
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/web"
)

func (c *Console) sessionsView() web.SessionsView {
	ss := c.Relay.Sessions()
	rows := make([]web.SessionRow, len(ss))
	for i, s := range ss {
		op := s.Operator
		if op == "" {
			// No operators existed when it started: the key alone admitted it.
			op = "key only"
		}
		rows[i] = web.SessionRow{
			ID: s.ID, Control: s.Control, ControlIP: s.ControlIP, Client: s.Client, Service: s.Service,
			Operator: op,
			Started:  s.Started, BytesUp: s.BytesUp, BytesDown: s.BytesDown,
		}
	}
	return web.SessionsView{Rows: rows, Now: c.now()}
}

func (c *Console) sessionsPage(w http.ResponseWriter, r *http.Request) {
	c.page(w, r, "Active Sessions", "sessions", "/console/sessions/stream", web.SessionsPage(c.sessionsView()))
}

// sessionsStream re-renders every second: durations and byte counts move
// even when no session comes or goes.
func (c *Console) sessionsStream(w http.ResponseWriter, r *http.Request) {
	tick := 0
	seen := c.Relay.Version()
	c.stream(w, r, func(context.Context) ([]sseEvent, error) {
		tick++
		v := c.Relay.Version()
		if v == seen && tick%2 != 0 {
			return nil, nil
		}
		seen = v
		return []sseEvent{
			{"sessions", web.SessionsTable(c.sessionsView())},
			{"count", web.Count(c.Relay.Stats().Clients)},
		}, nil
	})
}

func (c *Console) terminateSession(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	var found bool
	var client, control string
	for _, s := range c.Relay.Sessions() {
		if s.ID == id {
			found, client, control = true, s.Client, s.Control
		}
	}
	if !found || !c.Relay.TerminateSession(id) {
		c.fail(w, r, &Error{Status: http.StatusNotFound, Message: "That session has already ended."})
		return
	}
	op := operatorOf(r).Name
	c.emit(r, event.KindSessionEnd, fmt.Sprintf("Session between Control %s and Client %s terminated by operator %s", control, client, op))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	flash := fmt.Sprintf("Terminated the session of Control %s with Client %s.", control, client)
	// The live table drops the row within a second; the message stays.
	_ = web.OKFragment(flash).Render(r.Context(), w)
}
