package handlers

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/web"
)

// ClusterSessions is the sessions of a whole cluster.
type ClusterSessions interface {
	// ClusterSessions lists every node's sessions, each with its Node;
	// unreachable names the nodes that did not answer.
	ClusterSessions(ctx context.Context) (all []relay.SessionInfo, unreachable []string)
	// TerminateClusterSession ends the session id that node brokers; by
	// is the operator asking.
	TerminateClusterSession(ctx context.Context, node, id, by string) error
}

// sessions lists the sessions the page shows: the cluster's when there
// is one.
func (c *Console) sessions(ctx context.Context) (ss []relay.SessionInfo, note string) {
	if c.Cluster == nil {
		return c.Relay.Sessions(), ""
	}
	ss, unreachable := c.Cluster.ClusterSessions(ctx)
	if len(unreachable) > 0 {
		note = "Sessions of " + strings.Join(unreachable, ", ") + " cannot be listed now: this list leaves them out."
	}
	return ss, note
}

func (c *Console) sessionsView(ctx context.Context) web.SessionsView {
	ss, note := c.sessions(ctx)
	rows := make([]web.SessionRow, len(ss))
	for i, s := range ss {
		rows[i] = sessionRow(s)
	}
	return web.SessionsView{Rows: rows, Now: c.now(), Cluster: c.Cluster != nil, Note: note}
}

func sessionRow(s relay.SessionInfo) web.SessionRow {
	op := s.Operator
	if op == "" {
		// No operators existed when it started: the key alone admitted it.
		op = "key only"
	}
	return web.SessionRow{
		ID: s.ID, Control: s.Control, ControlIP: s.ControlIP, Client: s.Client, Service: s.Service,
		Operator: op, Node: s.Node, ClientNode: s.ClientNode,
		Started: s.Started, BytesUp: s.BytesUp, BytesDown: s.BytesDown,
	}
}

func (c *Console) sessionsPage(w http.ResponseWriter, r *http.Request) {
	c.page(w, r, "Active Sessions", "sessions", "/console/sessions/stream", web.SessionsPage(c.sessionsView(r.Context())))
}

// sessionsStream re-renders every second: durations and byte counts move
// even when no session comes or goes. The other nodes' sessions come and
// go unseen by this relay's Version: with a cluster the table is rendered
// every two seconds whatever happens here.
func (c *Console) sessionsStream(w http.ResponseWriter, r *http.Request) {
	tick := 0
	seen := c.Relay.Version()
	c.stream(w, r, func(ctx context.Context) ([]sseEvent, error) {
		tick++
		v := c.Relay.Version()
		if v == seen && tick%2 != 0 {
			return nil, nil
		}
		seen = v
		return []sseEvent{
			{name: "sessions", content: web.SessionsTable(c.sessionsView(ctx))},
			{name: "count", content: web.Count(c.Relay.Stats().Clients)},
		}, nil
	})
}

func (c *Console) terminateSession(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	node := r.URL.Query().Get("node")
	op := operatorOf(r).Name
	var found bool
	var client, control string
	ss, _ := c.sessions(r.Context())
	for _, s := range ss {
		if s.ID == id && (node == "" || s.Node == node) {
			found, client, control, node = true, s.Client, s.Control, s.Node
		}
	}
	var ended bool
	switch {
	case !found:
	case c.Cluster != nil:
		err := c.Cluster.TerminateClusterSession(r.Context(), node, id, op)
		if err != nil && c.Logger != nil {
			c.Logger.Warn("console: cannot terminate a session", "node", node, "session", id, "err", err)
		}
		ended = err == nil
	default:
		ended = c.Relay.TerminateSessionBy(id, op)
	}
	if !ended {
		c.fail(w, r, &Error{Status: http.StatusNotFound, Message: "That session has already ended, or its node cannot be reached now."})
		return
	}
	ev := event.SessionTerminated(control, client, op)
	ev.Time, ev.PublicIP = c.now(), remoteIP(r)
	c.Events.Emit(ev)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	flash := fmt.Sprintf("Terminated the session of Control %s with Client %s.", control, client)
	// The live table drops the row within a second; the message stays.
	_ = web.OKFragment(flash).Render(r.Context(), w)
}
