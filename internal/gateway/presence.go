package gateway

// Presence: which Client is connected to which node, in the presence
// table, so that a browse on any node lists the Clients of every node.
//
//   - The relay reports each Client connection as it registers and ends
//     (relay.Presence). That must not block the relay: the reports queue
//     here and one goroutine writes them in batches, in order, each batch
//     in one transaction; a database that is away keeps them queued.
//   - A Client has one row per key space; the newest connection wins (by
//     its connected_at), and an unregister removes the row only while it
//     still holds that connection (conn_id).
//   - The rows' last_heartbeat is renewed with the node lease, in one
//     UPDATE per Config.Heartbeat for all of the node's rows (nodes.go).
//     When the count it reports disagrees with the relay's while nothing
//     is queued (the rows were removed while this node was reported lost,
//     or a full queue dropped changes), the node replaces its rows with
//     what it holds.
//   - Every Config.PresencePoll (1 s) the node reads the rows of the other
//     nodes that started since its last poll (all of them every 30 polls)
//     and drops each of its own connections that a newer connection of
//     the same Client on another node replaced: a Client is in one place.
//   - A node reported lost loses its rows in the same transaction (a
//     trigger on nodes.lost_at, migration 00008); a node deletes its rows
//     at its orderly stop, and at its start what its previous run left.
//   - Browse and the console read the rows through relay.Directory; with
//     the database away they list this node's Clients alone.
//   - The licence limit (max-clients) holds for the whole cluster: the
//     relay admits a Client while its own Clients plus the other nodes'
//     stay below it (relay.Cluster). Each poll reads the (name, key) of
//     the other nodes' fresh rows (renewed within db.NodeLease) into a
//     snapshot in memory, which the relay reads without waiting; a Client
//     that this node holds too is counted once, here, and a Client's own
//     row elsewhere does not count against it (it is moving, and uses no
//     new licence). A Client connecting elsewhere shows here within a
//     poll, so two nodes admitting at once may go past the limit by a few
//     for that long. With the database away the last snapshot stands.
//     The snapshot also says which node holds each of those Clients, and
//     how many each node holds: the placer (placement.go) reads it to
//     tell a Client returning from the secondary, and to count the load
//     of the balanced nodes.
//   - The poll runs at once, not at its next tick, when another node's
//     presence changed or a node joined or left (the LISTEN connection,
//     notify.go), but at most once per presenceWakeGap: a storm of
//     connections on other nodes costs each node four reads a second at
//     most. A lost notification delays a change until the next tick,
//     never loses it.

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

const (
	// presenceBatch is the most changes written in one transaction.
	presenceBatch = 1000
	// presenceQueueMax bounds the queue while the database is away; past
	// it the queue is dropped and the node's rows are replaced when the
	// database is back.
	presenceQueueMax = 1 << 20
	// presenceFullPoll is how many polls go by between full reads of the
	// other nodes' rows; the polls between read only rows that started
	// within presenceSlack of the last one.
	presenceFullPoll = 30
	presenceSlack    = 30 * time.Second
	// presenceWakeGap is the least time between two polls that
	// notifications asked for.
	presenceWakeGap = 250 * time.Millisecond
)

type presence struct {
	g    *Gateway
	node string
	log  *slog.Logger

	mu       sync.Mutex
	queue    []db.PresenceOp
	seq      uint64 // bumped for every change queued
	inflight bool   // a batch is being written
	resync   bool   // replace this node's rows with what the relay holds
	wake     chan struct{}
	// pollNow asks for a poll before the next tick (a notification);
	// fullNext makes it read every row (the listener reconnected, and
	// may have missed changes).
	pollNow  chan struct{}
	fullNext atomic.Bool
	// polled is closed once the first poll has run (or failed).
	polled chan struct{}

	// remote is the snapshot of the other nodes' Clients (relay.Cluster),
	// replaced whole at each poll.
	remote atomic.Pointer[remoteClients]

	// Only the loop uses these.
	lastPoll time.Time
	polls    int
	failing  bool

	stop context.CancelFunc
	done chan struct{}
}

func newPresence(g *Gateway) *presence {
	return &presence{g: g, node: g.cfg.Node, log: g.log, wake: make(chan struct{}, 1),
		pollNow: make(chan struct{}, 1), polled: make(chan struct{})}
}

func toRow(r relay.Registration) db.Presence {
	return db.Presence{
		Name: r.Name, KeyID: r.KeyID, Node: r.Node, RealIP: r.RealIP, PublicIP: r.PublicIP, OS: r.OS,
		Version: r.Version, Services: r.Services, ServiceKinds: r.ServiceKinds, ConnectedAt: r.ConnectedSince, ConnID: r.ConnID,
	}
}

func (p *presence) push(op db.PresenceOp) {
	p.mu.Lock()
	p.seq++
	if len(p.queue) >= presenceQueueMax {
		p.queue, p.resync = nil, true
	} else {
		p.queue = append(p.queue, op)
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Registered is relay.Presence: it queues and returns.
func (p *presence) Registered(r relay.Registration) {
	row := toRow(r)
	row.Node = p.node
	p.push(db.PresenceOp{P: row})
}

// Unregistered is relay.Presence: it queues and returns.
func (p *presence) Unregistered(name, keyID, connID string) {
	// Node serves only the notification the write sends: it names the sender.
	p.push(db.PresenceOp{Delete: true, P: db.Presence{Name: name, KeyID: keyID, ConnID: connID, Node: p.node}})
}

func infoOf(r db.Presence) wire.ClientInfo {
	return wire.ClientInfo{
		Name: r.Name, RealIP: r.RealIP, PublicIP: r.PublicIP, OS: r.OS, Version: r.Version,
		ConnectedSince: r.ConnectedAt, LastHeartbeat: r.LastHeartbeat, Services: r.Services, ServiceKinds: r.ServiceKinds, Node: r.Node,
	}
}

// ClientsForKey is relay.Directory.
func (p *presence) ClientsForKey(ctx context.Context, keyID string) ([]wire.ClientInfo, error) {
	rows, err := p.g.DB().PresenceForKey(ctx, keyID)
	if err != nil {
		return nil, err
	}
	out := make([]wire.ClientInfo, 0, len(rows))
	for _, r := range rows {
		out = append(out, infoOf(r))
	}
	return out, nil
}

// Clients is relay.Directory.
func (p *presence) Clients(ctx context.Context) ([]relay.ClientInfo, error) {
	rows, err := p.g.DB().AllPresence(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]relay.ClientInfo, 0, len(rows))
	for _, r := range rows {
		out = append(out, relay.ClientInfo{ClientInfo: infoOf(r), KeyID: r.KeyID})
	}
	return out, nil
}

// clientID is a Client in the cluster: its name within its key space.
type clientID struct{ name, keyID string }

// remoteClients is the Clients the other nodes hold, as of one poll. At
// 100,000 Clients the map is a few MB, read once a poll.
type remoteClients struct {
	// where is every fresh row of another node: the node holding it.
	where map[clientID]remoteRow
	// others counts the rows of where that this node does not hold too.
	others int
	// perNode counts the rows of where by node.
	perNode map[string]int
}

type remoteRow struct {
	node string
	// held: this node holds a connection of the Client too (it is moving
	// here or away); the licence counts it here only.
	held bool
}

// OtherClients is relay.Cluster: how many Clients the other nodes hold, as
// of the last poll, leaving out name/keyID itself. It reads the snapshot
// only and never waits for the database: during an outage the last
// snapshot read stands (none read yet: zero, this node's count alone).
func (p *presence) OtherClients(name, keyID string) int {
	r := p.remote.Load()
	if r == nil {
		return 0
	}
	n := r.others
	if row, ok := r.where[clientID{name, keyID}]; ok && !row.held {
		n--
	}
	return n
}

// nodeOf is the other node whose row held name/keyID at the last poll, or
// "" when none did.
func (p *presence) nodeOf(name, keyID string) string {
	r := p.remote.Load()
	if r == nil {
		return ""
	}
	return r.where[clientID{name, keyID}].node
}

// clientsOn is how many Clients node held at the last poll (another node
// than this one).
func (p *presence) clientsOn(node string) int {
	r := p.remote.Load()
	if r == nil {
		return 0
	}
	return r.perNode[node]
}

// refreshRemote replaces the snapshot of the other nodes' Clients with the
// fresh rows the database holds now, marking the Clients this node holds
// too (counted here for the licence; the other node is dropping or has
// dropped its connection). Only the names, keys and nodes are read.
func (p *presence) refreshRemote(ctx context.Context) error {
	rows, err := p.g.DB().Pool().Query(ctx, `SELECT name, key_id, node FROM presence
WHERE node <> $1 AND last_heartbeat > now() - make_interval(secs => $2)`, p.node, db.NodeLease.Seconds())
	if err != nil {
		return err
	}
	// Node names repeat in every row: one string each.
	names := make(map[string]string)
	rc := &remoteClients{where: make(map[clientID]remoteRow), perNode: make(map[string]int)}
	var id clientID
	var node string
	_, err = pgx.ForEachRow(rows, []any{&id.name, &id.keyID, &node}, func() error {
		n, ok := names[node]
		if !ok {
			n = node
			names[node] = n
		}
		rc.where[id] = remoteRow{node: n}
		rc.perNode[n]++
		return nil
	})
	if err != nil {
		return err
	}
	rc.others = len(rc.where)
	for _, r := range p.g.relay.Registrations() {
		k := clientID{r.Name, r.KeyID}
		if row, ok := rc.where[k]; ok {
			row.held = true
			rc.where[k] = row
			rc.others--
		}
	}
	p.remote.Store(rc)
	if p.g.placer != nil {
		p.g.placer.poke()
	}
	return nil
}

// pollSoon asks for a poll now (a notification); full makes it read every
// row rather than the recent ones.
func (p *presence) pollSoon(full bool) {
	if full {
		p.fullNext.Store(true)
	}
	select {
	case p.pollNow <- struct{}{}:
	default:
	}
}

// start runs the writer and poller until stopPresence.
func (p *presence) start(ctx context.Context) {
	ctx, p.stop = context.WithCancel(context.WithoutCancel(ctx))
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		p.run(ctx)
	}()
}

// stopPresence ends the loop and waits for it; safe when it never ran.
func (p *presence) stopPresence() {
	if p == nil || p.stop == nil {
		return
	}
	p.stop()
	<-p.done
}

func (p *presence) run(ctx context.Context) {
	t := time.NewTicker(p.g.cfg.PresencePoll)
	defer t.Stop()
	// A first poll at once: the placer needs the snapshot before the node
	// joins (a Client returning from the secondary is told by it).
	p.report(ctx, p.pollOnce(ctx))
	close(p.polled)
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
			// Let a burst of connections gather into one batch.
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
			p.report(ctx, p.flush(ctx))
			continue
		case <-p.pollNow:
			if wait := presenceWakeGap - time.Since(p.lastPoll); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		case <-t.C:
		}
		err := p.flush(ctx)
		if err == nil {
			err = p.pollOnce(ctx)
		}
		p.report(ctx, err)
	}
}

// waitPolled waits for the first poll, at most d.
func (p *presence) waitPolled(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.polled:
	case <-t.C:
	case <-ctx.Done():
	}
}

func (p *presence) report(ctx context.Context, err error) {
	switch {
	case err != nil && !p.failing && ctx.Err() == nil:
		p.log.Warn("presence: cannot write or read which Client is on which node; relaying goes on, retrying", "err", err)
		p.failing = true
	case err == nil && p.failing:
		p.log.Info("presence: written and read again")
		p.failing = false
	}
}

// flush writes what is queued, in order, a batch at a time. A batch that
// fails stays at the head of the queue for the next try.
func (p *presence) flush(ctx context.Context) error {
	st := p.g.DB()
	for {
		p.mu.Lock()
		if p.resync {
			p.resync, p.queue, p.inflight = false, nil, true
			p.mu.Unlock()
			err := p.replace(ctx, st)
			p.mu.Lock()
			p.inflight = false
			if err != nil {
				p.resync = true
			}
			p.mu.Unlock()
			if err != nil {
				return err
			}
			continue
		}
		n := min(len(p.queue), presenceBatch)
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		batch := p.queue[:n:n]
		p.inflight = true
		p.mu.Unlock()
		err := st.ApplyPresence(ctx, batch)
		p.mu.Lock()
		p.inflight = false
		if err == nil && !p.resync && len(p.queue) >= n {
			p.queue = p.queue[n:]
		}
		p.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// replace makes this node's rows what the relay holds now.
func (p *presence) replace(ctx context.Context, st *db.DB) error {
	regs := p.g.relay.Registrations()
	rows := make([]db.Presence, 0, len(regs))
	for _, r := range regs {
		row := toRow(r)
		row.Node = p.node
		rows = append(rows, row)
	}
	if err := st.ReplaceNodePresence(ctx, p.node, rows); err != nil {
		return err
	}
	p.log.Debug("presence: this node's rows replaced with the Clients it holds", "clients", len(rows))
	return nil
}

// heartbeat renews the rows' last_heartbeat with the node lease, and asks
// for a resync when they do not match the relay's Clients.
func (p *presence) heartbeat(ctx context.Context, st *db.DB) error {
	p.mu.Lock()
	seq, idle := p.seq, !p.inflight && len(p.queue) == 0 && !p.resync
	p.mu.Unlock()
	held := int64(p.g.relay.Stats().Clients)
	n, err := st.HeartbeatPresence(ctx, p.node)
	if err != nil {
		return err
	}
	if n == held || !idle {
		return nil
	}
	p.mu.Lock()
	if p.seq == seq && !p.inflight && len(p.queue) == 0 {
		p.resync = true
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return nil
}

// pollOnce drops this node's connections of Clients that connected to
// another node since.
func (p *presence) pollOnce(ctx context.Context) error {
	start := time.Now()
	since := time.Time{}
	full := p.fullNext.Swap(false)
	if !full && !p.lastPoll.IsZero() && p.polls%presenceFullPoll != 0 {
		since = p.lastPoll.Add(-presenceSlack)
	}
	rows, err := p.g.DB().PresenceElsewhere(ctx, p.node, since)
	if err != nil {
		if full {
			p.fullNext.Store(true)
		}
		return err
	}
	p.lastPoll = start
	p.polls++
	if len(rows) > 0 {
		p.dropMoved(rows)
	}
	// After the drops, so that a Client that moved away is counted there.
	return p.refreshRemote(ctx)
}

// dropMoved drops this node's connections of Clients whose row another
// node now holds with a newer connection.
func (p *presence) dropMoved(rows []db.Presence) {
	mine := make(map[clientID]relay.Registration)
	for _, r := range p.g.relay.Registrations() {
		mine[clientID{r.Name, r.KeyID}] = r
	}
	for _, row := range rows {
		r, ok := mine[clientID{row.Name, row.KeyID}]
		// The newer connection wins, as the upsert decides: one of ours
		// not written yet may be the newer one.
		if !ok || row.ConnectedAt.Before(r.ConnectedSince.Truncate(time.Microsecond)) {
			continue
		}
		if p.g.relay.DropClient(row.Name, row.KeyID, r.ConnID, "Client "+row.Name+" is connected to node "+row.Node+" now") {
			p.log.Info("presence: Client connected to another node; dropping its connection here", "client", row.Name, "node", row.Node)
		}
	}
}
