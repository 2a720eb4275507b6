package handlers

import (
	"context"
	"net/http"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/web"
)

// ClientTrends reads the sampled Client counts of the cluster (db.DB has
// them: migration 00010 says how they are kept).
type ClientTrends interface {
	ClientTrend(ctx context.Context, since time.Time) ([]db.ClientSample, error)
}

// nodeNamer names this gateway node; the gateway's cluster links have it.
type nodeNamer interface {
	NodeName() string
}

// trendStep and trendSpan shape the dashboard's trend: a quarter hour
// each (the samples' bucket), over the last day.
const (
	trendStep   = 15 * time.Minute
	trendPoints = 96
)

// dashboardHome is /console/: the dashboard for admins, their Account
// page for the other operators.
func (c *Console) dashboardHome(w http.ResponseWriter, r *http.Request) {
	if !operatorOf(r).IsAdmin() {
		http.Redirect(w, r, "/console/account", http.StatusSeeOther)
		return
	}
	c.dashboardPage(w, r)
}

func (c *Console) dashboardPage(w http.ResponseWriter, r *http.Request) {
	c.page(w, r, "Dashboard", "dashboard", "/console/dashboard/stream", web.DashboardPage(c.dashboardView(r.Context())))
}

// dashboardStream re-renders the dashboard every 2 s: its figures come
// from several nodes and the database, which this relay's Version does
// not follow.
func (c *Console) dashboardStream(w http.ResponseWriter, r *http.Request) {
	var last time.Time
	c.stream(w, r, func(ctx context.Context) ([]sseEvent, error) {
		if time.Since(last) < 2*time.Second {
			return nil, nil
		}
		last = time.Now()
		return []sseEvent{
			{name: "dashboard", content: web.Dashboard(c.dashboardView(ctx))},
			{name: "count", content: web.Count(c.Relay.Stats().Clients)},
		}, nil
	})
}

// dashboardView gathers the dashboard's figures. Each source that fails
// leaves its figure out and says so; the page is still shown.
func (c *Console) dashboardView(ctx context.Context) web.DashboardView {
	now := c.now()
	all, note := c.allClients(ctx)
	v := web.DashboardView{Now: now, Clients: len(all), Note: note}
	if c.Certificate != nil {
		v.Cert, v.CertShown = c.Certificate(), true
	}
	if cfg, err := c.Config.Config(ctx); err == nil {
		v.MaxClients = cfg.MaxClients
	} else {
		c.Logger.Warn("console: dashboard: cannot read the configuration", "err", err)
	}
	n, err := c.Store.CountEvents(ctx, db.EventFilter{Kind: event.KindSecurity, Since: now.Add(-time.Hour)})
	if err == nil {
		v.SecurityFailures = n
	}
	if ks, ok := c.Store.(KnownClients); ok {
		if _, total, err := ks.OfflineClients(ctx, db.OfflineFilter{Limit: 1}); err == nil {
			v.Offline = total
		}
	}
	v.Trend = c.trend(ctx, now, v.Clients)

	// Sessions: this node's from the relay, the other live nodes' from the
	// node registry (renewed every 2 s), which costs no round trip to them.
	v.Sessions = c.Relay.Stats().Sessions
	if nn, ok := c.Cluster.(nodeNamer); ok {
		v.ThisNode = nn.NodeName()
	} else if nn, ok := c.Relay.(nodeNamer); ok {
		v.ThisNode = nn.NodeName()
	}
	nl, ok := c.Store.(NodeLister)
	if !ok {
		return v
	}
	nodes, err := nl.Nodes(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.Logger.Warn("console: dashboard: cannot read the node registry", "err", err)
		}
		v.NodesError = "The list of nodes cannot be read now; the figures are this node's."
		return v
	}
	if v.ThisNode == "" && len(nodes) == 1 {
		v.ThisNode = nodes[0].Name
	}
	for _, n := range nodes {
		state := NodeState(n)
		up := "–"
		if state != NodeLost {
			up = web.Duration(n.LastSeen.Sub(n.StartedAt) + max(n.Age, 0))
		}
		v.Nodes = append(v.Nodes, web.DashNode{Name: n.Name, Role: n.Role, Version: n.Version, State: state,
			Clients: n.Clients, Sessions: n.Sessions, Up: up, LastSeen: web.Duration(max(n.Age, 0)) + " ago"})
		switch {
		case n.Name == v.ThisNode:
			v.Version = n.Version
			v.Uptime, v.UptimeKnown = n.LastSeen.Sub(n.StartedAt)+max(n.Age, 0), true
		case state != NodeLost:
			v.Sessions += n.Sessions
		}
	}
	return v
}

// trend is the Clients of the last day, a value per quarter hour: the
// cluster's peak in it. Quarters before the first sample are unknown
// (-1); a quarter without samples after it had no node reporting, and
// so no Client (0). The current quarter is at least the Clients now.
func (c *Console) trend(ctx context.Context, now time.Time, clientsNow int) web.Trend {
	start := now.Truncate(trendStep).Add(-(trendPoints - 1) * trendStep)
	t := web.Trend{Values: make([]int, trendPoints), Start: start}
	for i := range t.Values {
		t.Values[i] = -1
	}
	if ct, ok := c.Store.(ClientTrends); ok {
		samples, err := ct.ClientTrend(ctx, start)
		if err != nil && ctx.Err() == nil {
			c.Logger.Warn("console: dashboard: cannot read the Client trend", "err", err)
		}
		first := trendPoints - 1
		for _, s := range samples {
			i := int(s.Bucket.Sub(start) / trendStep)
			if i < 0 || i >= trendPoints {
				continue
			}
			t.Values[i] = s.Peak
			first = min(first, i)
		}
		for i := first; i < trendPoints; i++ {
			t.Values[i] = max(t.Values[i], 0)
		}
	}
	t.Values[trendPoints-1] = max(t.Values[trendPoints-1], clientsNow)
	for _, x := range t.Values {
		t.Peak = max(t.Peak, x)
	}
	return t
}
