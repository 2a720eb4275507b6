package handlers

import (
	"cmp"
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/web"
)

// clientsPerPage keeps a page quick to render and read even with 10,000
// Clients connected: the filtering and sorting happen on the server.
const clientsPerPage = 50

// clientsQuery is the Clients page's state, carried in its URL.
type clientsQuery struct {
	q    string
	sort string
	desc bool
	page int
}

var clientSorts = []string{"name", "node", "real_ip", "public_ip", "key", "since", "heartbeat"}

func parseClientsQuery(v url.Values) clientsQuery {
	q := clientsQuery{q: strings.TrimSpace(v.Get("q")), sort: v.Get("sort"), desc: v.Get("desc") == "1"}
	if !slices.Contains(clientSorts, q.sort) {
		q.sort = "name"
	}
	q.page, _ = strconv.Atoi(v.Get("page"))
	return q
}

func (q clientsQuery) encode() string {
	v := url.Values{}
	v.Set("q", q.q)
	v.Set("sort", q.sort)
	if q.desc {
		v.Set("desc", "1")
	}
	v.Set("page", strconv.Itoa(q.page))
	return v.Encode()
}

// clientsView filters, sorts and pages the connected Clients.
func clientsView(all []relay.ClientInfo, q clientsQuery, now time.Time) web.ClientsView {
	needle := strings.ToLower(q.q)
	rows := make([]web.ClientRow, 0, min(len(all), clientsPerPage))
	var matched []relay.ClientInfo
	for _, c := range all {
		if needle == "" || clientMatches(c, needle) {
			matched = append(matched, c)
		}
	}
	slices.SortStableFunc(matched, func(a, b relay.ClientInfo) int {
		var r int
		switch q.sort {
		case "node":
			r = cmp.Compare(a.Node, b.Node)
		case "real_ip":
			r = cmp.Compare(a.RealIP, b.RealIP)
		case "public_ip":
			r = cmp.Compare(a.PublicIP, b.PublicIP)
		case "key":
			r = cmp.Compare(a.KeyLabel, b.KeyLabel)
		case "since":
			r = a.ConnectedSince.Compare(b.ConnectedSince)
		case "heartbeat":
			r = a.LastHeartbeat.Compare(b.LastHeartbeat)
		}
		if r == 0 {
			r = cmp.Compare(a.Name, b.Name)
		}
		if q.desc {
			r = -r
		}
		return r
	})
	pages := max(1, (len(matched)+clientsPerPage-1)/clientsPerPage)
	page := min(max(q.page, 1), pages)
	for _, c := range matched[min((page-1)*clientsPerPage, len(matched)):min(page*clientsPerPage, len(matched))] {
		rows = append(rows, web.ClientRow{
			Name: c.Name, Node: c.Node, RealIP: c.RealIP, PublicIP: c.PublicIP, KeyLabel: keyLabel(c), OS: c.OS, Version: c.Version,
			Services: c.Services, Since: c.ConnectedSince, LastHeartbeat: c.LastHeartbeat, KeyID: c.KeyID,
			Remote: web.RemoteLinks(c.Name, c.KeyID, c.Services, c.ServiceKinds),
		})
	}
	return web.ClientsView{
		Rows: rows, Query: q.q, Sort: q.sort, Desc: q.desc, Page: page, Pages: pages,
		Total: len(matched), PerPage: clientsPerPage, Now: now,
	}
}

// keyLabel names a Client's key without ever showing it.
func keyLabel(c relay.ClientInfo) string {
	if c.KeyLabel != "" {
		return c.KeyLabel
	}
	return "key " + c.KeyID
}

func clientMatches(c relay.ClientInfo, needle string) bool {
	for _, s := range []string{c.Name, c.Node, c.RealIP, c.PublicIP, c.KeyLabel, c.KeyID, c.OS} {
		if strings.Contains(strings.ToLower(s), needle) {
			return true
		}
	}
	for _, s := range c.Services {
		if strings.Contains(strings.ToLower(s), needle) {
			return true
		}
	}
	return false
}

// clusterRelay is a relay that also lists the Clients of the other nodes
// of its cluster (relay.Server with a Directory).
type clusterRelay interface {
	ClusterClients(ctx context.Context) ([]relay.ClientInfo, error)
}

// outageNote is shown above the list while only this node's Clients can
// be listed.
const outageNote = "The database cannot be read now: this list shows the Clients connected to this node only."

// allClients lists the Clients of the whole cluster when the relay can
// (each with its node), else this node's; note says when the list is
// this node's alone because the other nodes' could not be read.
func (c *Console) allClients(ctx context.Context) (all []relay.ClientInfo, note string) {
	cr, ok := c.Relay.(clusterRelay)
	if !ok {
		return c.Relay.Clients(), ""
	}
	all, err := cr.ClusterClients(ctx)
	if err != nil {
		if c.Logger != nil {
			c.Logger.Warn("console: cannot list the other nodes' Clients; showing this node's", "err", err)
		}
		return all, outageNote
	}
	return all, ""
}

func (c *Console) clientsPage(w http.ResponseWriter, r *http.Request) {
	q := parseClientsQuery(r.URL.Query())
	all, note := c.allClients(r.Context())
	v := clientsView(all, q, c.now())
	v.Note = note
	if ks, ok := c.Store.(KnownClients); ok {
		if _, err := ks.PruneKnownClients(r.Context()); err != nil {
			c.Logger.Warn("console: cannot prune the known Clients", "err", err)
		}
	}
	c.addOffline(r.Context(), &v, q)
	q.page = v.Page
	c.page(w, r, "Clients", "clients", "/console/clients/stream?"+q.encode(), web.ClientsPage(v))
}

// clientsStream re-renders the table when Clients come or go, and every few
// seconds anyway so "last heartbeat" stays true. The other nodes' Clients
// come and go unseen by this relay's Version: with a cluster the table is
// read again every clusterRefresh.
func (c *Console) clientsStream(w http.ResponseWriter, r *http.Request) {
	q := parseClientsQuery(r.URL.Query())
	seen, forgotten := c.Relay.Version(), c.knownChanged.Load()
	last := time.Now()
	var offline web.ClientsView // the offline list last read, and when
	var lastOffline time.Time
	refresh := 5 * time.Second
	if _, ok := c.Relay.(clusterRelay); ok {
		refresh = clusterRefresh
	}
	c.stream(w, r, func(ctx context.Context) ([]sseEvent, error) {
		v, k := c.Relay.Version(), c.knownChanged.Load()
		if v == seen && k == forgotten && time.Since(last) < refresh {
			return nil, nil
		}
		// The offline list is a database query of its own: at most every
		// offlineRefresh, however often Clients come and go, unless one
		// was forgotten.
		offlineDue := k != forgotten || time.Since(lastOffline) >= offlineRefresh
		seen, forgotten, last = v, k, time.Now()
		all, note := c.allClients(ctx)
		view := clientsView(all, q, c.now())
		view.Note = note
		if offlineDue {
			c.addOffline(ctx, &view, q)
			offline, lastOffline = view, time.Now()
		} else {
			view.Offline, view.OfflineTotal, view.OfflineError = offline.Offline, offline.OfflineTotal, offline.OfflineError
		}
		return []sseEvent{
			{name: "clients", content: web.ClientsTable(view)},
			{name: "count", content: web.Count(len(all))},
		}, nil
	})
}

// offlineRefresh is how often an open Clients page reads its offline
// Clients again.
const offlineRefresh = 5 * time.Second

// clusterRefresh is how often an open Clients page of a cluster node
// reads the other nodes' Clients again.
const clusterRefresh = 2 * time.Second
