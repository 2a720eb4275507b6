package gateway

// A node cut off from PostgreSQL keeps relaying what it holds (its Clients,
// their sessions, Controls admitted by the sign-ins it has in memory) and
// queues its events and presence changes, as a single gateway does. But
// once its lease has run out (db.NodeLease without a renewal) the other
// nodes count it lost and drop its Clients from presence: a Client it
// admitted then would be invisible to them, outside the cluster's licence,
// and unreachable from their Controls. So a node of a cluster (one that
// saw another live node at its last renewal) stops admitting new Clients
// from that moment, telling them to go elsewhere (wire.CodeUnavailable:
// an agent with a secondary, or with the cluster's other nodes learned,
// goes there at once) until a renewal succeeds again. A node alone keeps
// admitting: there is nowhere else to go, and nobody to disagree with.

import (
	"sync"
	"time"

	"github.com/switchboard/switchboard/db"
)

// notAdmitting is what a Client refused during an outage is told.
const notAdmitting = "this gateway cannot reach its database, so the other nodes of its cluster cannot see new Clients here: connect to another node"

// leaseWatch follows the renewals of this node's lease.
type leaseWatch struct {
	mu      sync.Mutex
	renewed time.Time // the last renewal that succeeded
	others  bool      // other live nodes at that renewal
	closed  bool      // the relay refuses new Clients
}

// leaseRenewed records a renewal's outcome. Whether other nodes are live
// is the placer's last read of the nodes table (it reads it anyway).
func (g *Gateway) leaseRenewed(ok bool) {
	w := &g.lease
	now := time.Now()
	others := false
	if v := g.placer.view.Load(); v != nil {
		others = v.othersLive
	}
	w.mu.Lock()
	if ok {
		w.renewed, w.others = now, others
	}
	if w.renewed.IsZero() {
		w.renewed = now // not renewed yet: count from the start
	}
	close := !ok && w.others && now.Sub(w.renewed) > db.NodeLease
	changed := close != w.closed
	w.closed = close
	w.mu.Unlock()
	if !changed {
		return
	}
	if close {
		g.log.Error("node registry: the lease ran out without the database; not admitting new Clients until it is back (those connected stay)",
			"node", g.cfg.Node, "last_renewal_ago", now.Sub(w.renewed).Round(time.Second))
		g.relay.SetAdmitClients(false, notAdmitting)
		return
	}
	g.log.Info("node registry: the database is back; admitting new Clients again", "node", g.cfg.Node)
	g.relay.SetAdmitClients(true, "")
}
