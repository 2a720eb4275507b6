package gateway

// Placement: where the Clients of a cluster belong (relay.Placer).
//
//   - What the placer knows it reads in its loop, never in Place: the nodes
//     table (every Config.Heartbeat, at most every second, and at once
//     when a notification or a presence poll wakes it) and the presence
//     snapshot (presence.go). Place answers from that and the relay's own
//     count.
//   - Nodes lists. A Client of a balanced node is told the other balanced
//     nodes whose lease is live and that are not marked lost (name,
//     advertised URL, certificate fingerprint), after its Welcome and
//     again, to every Client of the node, whenever that list changes: so
//     a Client given one URL can fail over when that URL is gone. Rows
//     whose URL or fingerprint would not pass the Client's checks are left
//     out, and so are nodes that have not joined yet (renewed their lease
//     since their claim: before that the URL may name port 0). Primary,
//     secondary and standalone nodes send no list: a Client of a pair has
//     its secondary configured (--secondary), and the list would only add
//     a third way for it to go.
//   - Share. Among the balanced nodes that renewed their lease within
//     three heartbeats (at least 2 s; a node that misses more gets no
//     Clients sent to it and does not count), the mean is their Clients
//     together divided by their number, this node included. A node holds
//     more than its share when it holds more than the mean by 10 % AND by
//     at least the slack (defaultBalanceSlack, 50 Clients; setBalance): a
//     handful of Clients never moves anyone. Counts are the presence
//     snapshot's rows per node (each node writes a Client's row within
//     milliseconds of its registration, and notifies) and this node's live
//     count, each corrected by the moves in flight: a Client told to move
//     counts at its target, and not here, until the snapshot shows it
//     there, or for moveTimeout (it did not go). The nodes table's clients
//     column would be up to a heartbeat (2 s) old, long enough to send
//     one node every Client of a storm.
//   - A Client registering on a node over its share is told to Move to
//     the least-loaded balanced node, if that one is below the mean; the
//     node that sends the Move writes "Client NAME moved to node NODE for
//     load balancing". A Client that, by the snapshot, comes from another
//     balanced node (moved, or failed over from a node that died) is not
//     moved on at once: that could bounce it between nodes whose counts
//     are a poll apart; the rebalance below evens such loads out.
//   - Rebalance. A node over its share moves Clients to the least-loaded
//     node, at most defaultBalanceRate (20) a second (a token bucket that
//     starts empty when the node starts moving and holds a second's worth
//     at most), the most recently connected first, until it holds no more
//     than the mean (or no node is below it). A node that joins so fills
//     over time, without a reconnect storm; a node never moves Clients to
//     a node at or above the mean, so two nodes do not trade Clients back
//     and forth. A node killed moments ago may still be named in a Move:
//     the Client stays where it is, and counts as moving for moveTimeout.
//   - With the database away the placer keeps its last view for Place,
//     and moves nothing in its loop until it reads the nodes again.
//   - Primary and secondary. A node of role secondary writes "Client NAME
//     switched to the Secondary" for every Client that registers there. A
//     node of role primary writes "Client NAME returned to the Primary"
//     for a Client whose row, at its last presence poll, was on a node of
//     role secondary. A secondary holding Clients that sees a primary's
//     row renewed by a run that has joined (its lease renewed after its
//     claim) when that node was lost, absent, or another run before, sends
//     PrimaryAlive to its Clients, so that they go back at once rather
//     than at their next probe.

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

const (
	// defaultBalanceSlack is how many Clients over the mean a balanced
	// node may hold before it moves any (with balanceSlackPercent).
	defaultBalanceSlack = 50
	// balanceSlackPercent is how far over the mean, in per cent, a node
	// may be before it moves any.
	balanceSlackPercent = 10
	// defaultBalanceRate is how many Clients a second a node over its
	// share moves away: 20 a second empties 1,000 surplus Clients in a
	// minute, and costs the receiving node 20 handshakes a second.
	defaultBalanceRate = 20
	// moveTimeout is how long a Client told to move counts as moving:
	// longer than a registration elsewhere takes (a dial, TLS and the
	// handshake, well under a second), after which it evidently stayed
	// (the node named is gone, or refused it). Short, because until then
	// a move that failed skews the counts.
	moveTimeout = 5 * time.Second
	// placerWakeGap is the least time between two ticks that wake-ups
	// asked for: a storm of notifications costs a read a tenth of a
	// second at most.
	placerWakeGap = 100 * time.Millisecond
	// placerTickMax bounds the placer loop's period.
	placerTickMax = time.Second
	// placerFreshMin is the least freshness asked of a node's lease for
	// it to take Clients (three heartbeats otherwise).
	placerFreshMin = 2 * time.Second
	// placerReadTimeout bounds one read of the nodes table.
	placerReadTimeout = 5 * time.Second
)

// placer is relay.Placer for this node.
type placer struct {
	g    *Gateway
	node string
	log  *slog.Logger

	// slack and rate are defaultBalanceSlack and defaultBalanceRate
	// unless set (setBalance).
	slack atomic.Int64
	rate  atomic.Int64

	// view is the cluster as last read, for Place.
	view atomic.Pointer[clusterView]

	mu sync.Mutex
	// moves are the Clients told to move and not seen arrived yet.
	moves map[clientID]pendingMove
	// inbound counts moves by target node, and here those whose Client
	// this node still holds.
	inbound map[string]int
	here    int

	// wake asks the loop for a tick now.
	wake chan struct{}

	// Only the loop (and prime, before it) uses these.
	sentNodes *wire.Nodes
	primaries map[string]primarySeen
	primed    bool
	tokens    float64
	lastTick  time.Time
	draining  bool
	failing   bool

	listener *listener
	stop     context.CancelFunc
	done     chan struct{}
}

// pendingMove is a Client told to register at node to.
type pendingMove struct {
	to string
	at time.Time
	// left: this node no longer holds the Client (it counts at to alone).
	left bool
}

// primarySeen is a primary node's row as last read.
type primarySeen struct {
	live  bool
	nonce string
}

// clusterView is the other nodes as of one read of the nodes table.
type clusterView struct {
	// roles is every other node's role.
	roles map[string]string
	// list is the Nodes frame a Client of a balanced node gets.
	list wire.Nodes
	// targets are the balanced nodes fresh enough to take Clients.
	targets []wire.NodeAddr
	// othersLive: another node holds a live lease (outage.go).
	othersLive bool
}

func (v *clusterView) isTarget(node string) bool {
	return slices.ContainsFunc(v.targets, func(a wire.NodeAddr) bool { return a.Name == node })
}

func newPlacer(g *Gateway) *placer {
	p := &placer{g: g, node: g.cfg.Node, log: g.log, moves: make(map[clientID]pendingMove),
		inbound: make(map[string]int), wake: make(chan struct{}, 1), primaries: make(map[string]primarySeen)}
	p.slack.Store(defaultBalanceSlack)
	p.rate.Store(defaultBalanceRate)
	p.setBalance(g.cfg.BalanceSlack, 0)
	p.listener = newListener(g, p)
	return p
}

// setBalance sets the slack (Clients over the mean) and the rebalance rate
// (Clients a second); zero or less keeps the current value.
func (p *placer) setBalance(slack, rate int) {
	if slack > 0 {
		p.slack.Store(int64(slack))
	}
	if rate > 0 {
		p.rate.Store(int64(rate))
	}
}

// poke asks the loop for a tick now; it never blocks.
func (p *placer) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Place is relay.Placer.
func (p *placer) Place(r relay.Registration) relay.Placement {
	var pl relay.Placement
	v := p.view.Load()
	switch p.g.nodeRole() {
	case NodeSecondary:
		pl.Events = []event.Event{event.ClientSwitchedToSecondary(r.Name, r.RealIP, r.PublicIP)}
	case NodePrimary:
		if from := p.g.presence.nodeOf(r.Name, r.KeyID); from != "" && v != nil && v.roles[from] == NodeSecondary {
			pl.Events = []event.Event{event.ClientReturnedToPrimary(r.Name, r.RealIP, r.PublicIP)}
		}
	case NodeBalanced:
		if v == nil {
			return pl // not read yet: the first tick sends the list
		}
		list := v.list
		pl.Nodes = &list
		if m, to, ok := p.placeOne(r, v); ok {
			pl.Move = &m
			pl.Events = []event.Event{event.ClientMoved(r.Name, to, r.RealIP, r.PublicIP)}
		}
	}
	return pl
}

// placeOne decides whether the Client just registered should move, and
// counts the move when it should.
func (p *placer) placeOne(r relay.Registration, v *clusterView) (wire.Move, string, bool) {
	if from := p.g.presence.nodeOf(r.Name, r.KeyID); from != "" && v.isTarget(from) {
		return wire.Move{}, "", false
	}
	held := p.g.relay.Stats().Clients
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.loadsLocked(v, held)
	if !l.over(p.slack.Load()) {
		return wire.Move{}, "", false
	}
	t, ok := l.target()
	if !ok {
		return wire.Move{}, "", false
	}
	p.addMoveLocked(clientID{r.Name, r.KeyID}, t.addr.Name, time.Now())
	return l.move(p.node, t), t.addr.Name, true
}

// nodeLoad is one balanced node's Clients, moves in flight included.
type nodeLoad struct {
	addr    wire.NodeAddr
	clients float64
}

// loads is this node's load and the other balanced nodes'.
type loads struct {
	self  float64
	mean  float64
	nodes []nodeLoad
}

// loadsLocked counts the loads; held is the relay's count of Clients.
// p.mu is held.
func (p *placer) loadsLocked(v *clusterView, held int) loads {
	l := loads{self: math.Max(0, float64(held-p.here))}
	total := l.self
	for _, a := range v.targets {
		n := nodeLoad{addr: a, clients: float64(p.g.presence.clientsOn(a.Name) + p.inbound[a.Name])}
		l.nodes = append(l.nodes, n)
		total += n.clients
	}
	l.mean = total / float64(len(l.nodes)+1)
	return l
}

// over reports whether this node holds more than its share.
func (l loads) over(slack int64) bool {
	return l.self > l.mean*(1+balanceSlackPercent/100.0) && l.self-l.mean >= float64(slack)
}

// target is the least-loaded node, when it is below the mean by one
// Client at least (so that a move never lifts it over).
func (l loads) target() (nodeLoad, bool) {
	var best nodeLoad
	found := false
	for _, n := range l.nodes {
		if !found || n.clients < best.clients {
			best, found = n, true
		}
	}
	return best, found && best.clients+1 <= l.mean
}

func (l loads) move(self string, t nodeLoad) wire.Move {
	return wire.Move{Gateway: t.addr.URL, Fingerprint: t.addr.Fingerprint,
		Reason: fmt.Sprintf("load balancing: node %s holds %.0f Clients, the balanced nodes %.0f on average", self, l.self, l.mean)}
}

// addMoveLocked counts a move in flight; a Client told again counts once.
func (p *placer) addMoveLocked(id clientID, to string, now time.Time) bool {
	if _, ok := p.moves[id]; ok {
		return false
	}
	p.moves[id] = pendingMove{to: to, at: now}
	p.inbound[to]++
	p.here++
	return true
}

// prune forgets the moves the presence snapshot shows arrived, and those
// that timed out, and marks those whose Client this node no longer holds
// (so that it does not count twice as gone from here). Registrations is
// read only while Clients are moving.
func (p *placer) prune(now time.Time) {
	p.mu.Lock()
	n := len(p.moves)
	p.mu.Unlock()
	if n == 0 {
		return
	}
	held := make(map[clientID]bool)
	for _, r := range p.g.relay.Registrations() {
		held[clientID{r.Name, r.KeyID}] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, m := range p.moves {
		if !m.left && !held[id] {
			m.left = true
			p.moves[id] = m
			p.here--
		}
		if p.g.presence.nodeOf(id.name, id.keyID) == m.to || now.Sub(m.at) > moveTimeout {
			delete(p.moves, id)
			if !m.left {
				p.here--
			}
			if p.inbound[m.to]--; p.inbound[m.to] <= 0 {
				delete(p.inbound, m.to)
			}
		}
	}
}

// start runs the placer's loop and the LISTEN connection until stopPlacer.
func (p *placer) start(ctx context.Context) {
	ctx, p.stop = context.WithCancel(context.WithoutCancel(ctx))
	p.done = make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.listener.run(ctx)
	}()
	go func() {
		defer wg.Done()
		p.run(ctx)
	}()
	go func() {
		wg.Wait()
		close(p.done)
	}()
}

// stopPlacer ends the loops and waits for them; safe when they never ran.
func (p *placer) stopPlacer() {
	if p == nil || p.stop == nil {
		return
	}
	p.stop()
	<-p.done
}

// prime reads the cluster once before the node joins, so that the first
// Clients are placed knowing it. Only joinNode calls it, before start.
func (p *placer) prime(ctx context.Context) {
	p.tick(ctx)
}

func (p *placer) run(ctx context.Context) {
	t := time.NewTicker(min(p.g.cfg.Heartbeat, placerTickMax))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.wake:
			if wait := placerWakeGap - time.Since(p.lastTick); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		p.tick(ctx)
	}
}

// tick reads the nodes table and acts on it.
func (p *placer) tick(ctx context.Context) {
	now := time.Now()
	rows, err := p.refresh(ctx)
	switch {
	case err != nil && !p.failing && ctx.Err() == nil:
		p.log.Warn("placement: cannot read the nodes of the cluster; Clients are placed as last read, retrying", "err", err)
		p.failing = true
	case err == nil && p.failing:
		p.log.Info("placement: nodes of the cluster read again")
		p.failing = false
	}
	dt := now.Sub(p.lastTick)
	if p.lastTick.IsZero() {
		dt = 0
	}
	p.lastTick = now
	if err != nil {
		return
	}
	role := p.g.nodeRole()
	p.sendNodes(role)
	p.watchPrimaries(role, rows)
	p.prune(now)
	if role != NodeBalanced {
		p.draining, p.tokens = false, 0
		return
	}
	rate := float64(p.rate.Load())
	p.tokens = min(p.tokens+rate*dt.Seconds(), rate)
	p.rebalance(now)
}

// freshness is how recently a node must have renewed its lease to take
// Clients.
func (p *placer) freshness() time.Duration {
	return max(3*p.g.cfg.Heartbeat, placerFreshMin)
}

// refresh reads the nodes table into the view.
func (p *placer) refresh(ctx context.Context) ([]db.Node, error) {
	rctx, cancel := context.WithTimeout(ctx, placerReadTimeout)
	defer cancel()
	rows, err := p.g.DB().Nodes(rctx)
	if err != nil {
		return nil, err
	}
	fresh := p.freshness()
	v := &clusterView{roles: make(map[string]string), list: wire.Nodes{Nodes: []wire.NodeAddr{}}}
	for _, n := range rows {
		if n.Name == p.node {
			continue
		}
		v.roles[n.Name] = n.Role
		if n.LostAt.IsZero() && n.Age <= db.NodeLease {
			v.othersLive = true
		}
		// Renewed after its claim: the node has joined, so it listens, and
		// its URL has the port it bound (a claim may name port 0).
		joined := n.LastSeen.After(n.StartedAt)
		if n.Role != NodeBalanced || !joined || !n.LostAt.IsZero() || n.Age > db.NodeLease || len(v.list.Nodes) >= wire.MaxNodes {
			continue
		}
		a := wire.NodeAddr{Name: n.Name, URL: n.AdvertiseURL, Fingerprint: n.Fingerprint}
		// Another node wrote the row: a Client must never be sent
		// something its own checks refuse.
		if err := (&wire.Nodes{Nodes: []wire.NodeAddr{a}}).Check(); err != nil {
			p.log.Debug("placement: a node's row is not fit to send to Clients; leaving it out", "node", n.Name, "err", err)
			continue
		}
		v.list.Nodes = append(v.list.Nodes, a)
		if n.Age <= fresh {
			v.targets = append(v.targets, a)
		}
	}
	p.view.Store(v)
	return rows, nil
}

// sendNodes sends the Nodes list to every Client when it changed.
func (p *placer) sendNodes(role string) {
	if role != NodeBalanced {
		p.sentNodes = nil // a node that becomes balanced again sends it
		return
	}
	v := p.view.Load()
	if p.sentNodes != nil && slices.Equal(p.sentNodes.Nodes, v.list.Nodes) {
		return
	}
	// The first time too: Clients that registered before the first read
	// got no list from Place.
	list := v.list
	p.sentNodes = &list
	p.log.Debug("placement: the other balanced nodes changed; telling every Client", "nodes", len(list.Nodes))
	p.g.relay.SendClients(wire.TypeNodes, list)
}

// watchPrimaries sends PrimaryAlive when a primary node is back.
func (p *placer) watchPrimaries(role string, rows []db.Node) {
	seen := make(map[string]bool)
	for _, n := range rows {
		if n.Name == p.node || n.Role != NodePrimary || wire.CheckName("node", n.Name) != nil {
			continue
		}
		seen[n.Name] = true
		// Renewed after its claim: the run has joined, so it listens.
		live := n.LostAt.IsZero() && n.Age <= db.NodeLease && n.LastSeen.After(n.StartedAt)
		prev, known := p.primaries[n.Name]
		p.primaries[n.Name] = primarySeen{live: live, nonce: n.Nonce}
		if !p.primed || !live || (known && prev.live && prev.nonce == n.Nonce) {
			continue
		}
		if role == NodeSecondary && p.g.relay.Stats().Clients > 0 {
			p.log.Info("placement: the primary is back; telling this secondary's Clients to return", "node", n.Name)
			p.g.relay.SendClients(wire.TypePrimaryAlive, wire.PrimaryAlive{Node: n.Name})
		}
	}
	for name, s := range p.primaries {
		if !seen[name] {
			s.live = false
			p.primaries[name] = s
		}
	}
	p.primed = true
}

// rebalance moves Clients away while this node is over its share, as the
// tokens allow: to one node a tick (MoveClients takes the most recent
// Clients, so two calls in one tick would pick the same ones).
func (p *placer) rebalance(now time.Time) {
	v := p.view.Load()
	held := p.g.relay.Stats().Clients
	p.mu.Lock()
	l := p.loadsLocked(v, held)
	p.mu.Unlock()
	if !p.draining && l.over(p.slack.Load()) {
		p.draining = true
		p.log.Info("placement: this node holds more than its share; moving Clients to the other balanced nodes",
			"clients", l.self, "mean", l.mean)
	}
	if !p.draining {
		p.tokens = 0 // a node that starts moving starts with none saved
		return
	}
	t, ok := l.target()
	if l.self-l.mean < 1 || !ok {
		p.draining, p.tokens = false, 0
		return
	}
	n := int(min(p.tokens, l.self-l.mean, l.mean-t.clients))
	if n < 1 {
		return
	}
	names := p.g.relay.MoveClients(n, l.move(p.node, t))
	p.tokens -= float64(len(names))
	if len(names) == 0 {
		return
	}
	regs := make(map[string]relay.Registration, len(names))
	want := make(map[string]bool, len(names))
	for _, name := range names {
		want[name] = true
	}
	for _, r := range p.g.relay.Registrations() {
		if want[r.Name] {
			if _, dup := regs[r.Name]; !dup {
				regs[r.Name] = r
			}
		}
	}
	var evs []event.Event
	p.mu.Lock()
	for _, name := range names {
		r, ok := regs[name]
		if !ok {
			continue // gone meanwhile
		}
		// A Client told before and still here is told again, and
		// counted once.
		if p.addMoveLocked(clientID{r.Name, r.KeyID}, t.addr.Name, now) {
			evs = append(evs, event.ClientMoved(r.Name, t.addr.Name, r.RealIP, r.PublicIP))
		}
	}
	p.mu.Unlock()
	for _, e := range evs {
		p.g.events.Emit(e)
	}
}
