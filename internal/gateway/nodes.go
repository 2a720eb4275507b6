package gateway

// The node registry: every gateway node of a cluster (every process on
// the same PostgreSQL) has a row in the nodes table.
//
//   - At start a node compares its clock with the database's (MaxClockSkew)
//     and claims its name (--node). A row of that name renewed within the
//     lease (db.NodeLease, 15 s) by another process run refuses the start,
//     unless this process gets the name's advisory lock, which PostgreSQL
//     frees the moment the connection of the process that held it closes:
//     a run killed with kill -9 can be restarted at once.
//   - Every Config.Heartbeat (2 s) it renews last_seen (the database's
//     now(), never the node's clock) with its Clients and sessions counts.
//     The renewal names the row's nonce, random per process run, so a
//     stale writer cannot renew a row another run took over. When that
//     happens the node logs an error, keeps relaying, answers /readyz with
//     503 (so a load balancer sends it nothing new), and tries to claim the
//     name again on every heartbeat: it gets it back once the other run is
//     gone.
//   - A database that is away is logged once and retried on every
//     heartbeat; the relay keeps relaying.
//   - In the same loop it marks every other node whose lease ran out as
//     lost, with a conditional UPDATE: exactly one node of the cluster wins
//     each lost node and writes "Node NAME lost".
//   - An orderly stop deletes the row and writes "Node NAME left the cluster".

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/internal/config"
)

// MaxClockSkew is how far the node's clock may be from the database
// server's at start. Leases are measured with the database's clock alone,
// but events carry the node's time, and a node whose clock is off by more
// would write a history out of order: it refuses to start instead.
const MaxClockSkew = 5 * time.Second

// Node roles as --role and the node registry name them.
const (
	NodeStandalone = "standalone"
	NodePrimary    = "primary"
	NodeSecondary  = "secondary"
	NodeBalanced   = "balanced"
)

// NodeRoles lists the values of --role.
var NodeRoles = []string{NodeStandalone, NodePrimary, NodeSecondary, NodeBalanced}

// CheckRole reports whether role is a value of --role ("" is: the stored one).
func CheckRole(role string) error {
	switch role {
	case "", NodeStandalone, NodePrimary, NodeSecondary, NodeBalanced:
		return nil
	}
	return fmt.Errorf("--role must be one of standalone, primary, secondary, balanced (got %q)", role)
}

// roleSetting is the stored server role for a --role value.
func roleSetting(role string) string {
	switch role {
	case "":
		return config.RoleStandalone
	case NodeBalanced:
		return config.RoleMember
	}
	return role
}

// roleWord is the node registry's word for a stored server role.
func roleWord(setting string) string {
	if setting == config.RoleMember {
		return NodeBalanced
	}
	return setting
}

// explicitSettings is cfg.Explicit, but --role counts as given only when
// it has a value.
func (cfg Config) explicitSettings() func(string) bool {
	return func(flag string) bool {
		if flag == "role" && cfg.Role == "" {
			return false
		}
		return cfg.Explicit == nil || cfg.Explicit(flag)
	}
}

// advertiseURL is the URL other nodes reach this one at: --advertise, or
// the listen address addr (host:port), with the node's name as host when
// it listens on all interfaces.
func advertiseURL(cfg Config, addr string) string {
	if cfg.Advertise != "" {
		return cfg.Advertise
	}
	scheme := "https"
	if cfg.NoTLS {
		scheme = "http"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = addr, "443"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = cfg.Node
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// nodeReg is this process's hold on its row.
type nodeReg struct {
	nonce string
	lock  *db.NodeLock // nil when another session held it at start

	mu     sync.Mutex
	url    string
	taken  bool // another process run holds the row now
	joined bool // the joined event is written
	left   bool // leaveNode ran
	stop   context.CancelFunc
	done   chan struct{} // closed when the heartbeat loop has ended

	// forgot is when the heartbeat loop last removed long-lost nodes:
	// a day's grace needs no check every heartbeat.
	forgot time.Time
}

// checkClock refuses a start on a clock more than MaxClockSkew away from
// the database server's.
func (g *Gateway) checkClock(ctx context.Context, st *db.DB) error {
	before := g.cfg.Now()
	dbNow, err := st.Now(ctx)
	if err != nil {
		return err
	}
	after := g.cfg.Now()
	local := before.Add(after.Sub(before) / 2)
	skew := local.Sub(dbNow)
	if skew.Abs() > MaxClockSkew {
		dir := "ahead of"
		if skew < 0 {
			dir = "behind"
		}
		return fmt.Errorf("this machine's clock is %s %s the database server's (PostgreSQL now()); nodes may differ by at most %s: synchronise the clocks (NTP) and start again",
			skew.Abs().Round(100*time.Millisecond), dir, MaxClockSkew)
	}
	return nil
}

// claimNode takes this node's name in the registry, or says who holds it.
func (g *Gateway) claimNode(ctx context.Context, st *db.DB) error {
	var b [16]byte
	_, _ = rand.Read(b[:])
	reg := &nodeReg{nonce: hex.EncodeToString(b[:])}
	if len(g.cfg.Listen) > 0 {
		reg.url = advertiseURL(g.cfg, g.cfg.Listen[0])
	}
	lock, err := st.LockNodeName(ctx, g.cfg.Node)
	if err != nil {
		return err
	}
	reg.lock = lock
	g.node = reg
	row := g.nodeRow()
	if _, err := st.ClaimNode(ctx, row, db.NodeLease, lock != nil); err != nil {
		if live := (*db.NodeLiveError)(nil); errors.As(err, &live) {
			return fmt.Errorf("%s; give this gateway another --node", live.Error())
		}
		return err
	}
	return nil
}

// loadNodeConfig is loadRuntimeConfig for a node of a cluster: rc is what
// this node runs, stored what is stored. Listen addresses given at start
// are stored, as other settings, by the first node of a cluster; a node
// that joins while other nodes are live listens where it is told but
// leaves the stored addresses alone, which would otherwise move the live
// nodes onto its own. A change made in the console still applies to every
// node.
func (g *Gateway) loadNodeConfig(ctx context.Context, st *db.DB) (rc, stored config.Config, err error) {
	explicit := g.cfg.explicitSettings()
	pin := false
	if explicit("listen") && len(g.cfg.Listen) > 0 {
		nodes, err := st.Nodes(ctx)
		if err != nil {
			return config.Config{}, config.Config{}, err
		}
		for _, n := range nodes {
			if n.Name != g.cfg.Node && n.LostAt.IsZero() && n.Age <= db.NodeLease {
				pin = true
			}
		}
	}
	if pin {
		explicit = func(flag string) bool { return flag != "listen" && g.cfg.explicitSettings()(flag) }
	}
	stored, err = loadRuntimeConfig(ctx, st, g.cfg.runtimeConfig(), explicit)
	if err != nil {
		return config.Config{}, config.Config{}, err
	}
	rc = stored
	if pin {
		rc.Listen = append([]string(nil), g.cfg.Listen...)
		if !config.SameListen(rc, stored) {
			g.log.Info("node registry: other nodes are live; this node listens on its --listen addresses and leaves the stored ones alone",
				"listen", rc.Listen, "stored", stored.Listen)
		}
	}
	return rc, stored, nil
}

// nodeRow is this node's row as it is now.
func (g *Gateway) nodeRow() db.Node {
	reg := g.node
	reg.mu.Lock()
	n := db.Node{Name: g.cfg.Node, Nonce: reg.nonce, AdvertiseURL: reg.url, Version: g.cfg.Version}
	reg.mu.Unlock()
	n.Fingerprint = g.Fingerprint()
	n.Role = g.nodeRole()
	if g.relay != nil {
		s := g.relay.Stats()
		n.Clients, n.Sessions = s.Clients, s.Sessions
	}
	return n
}

// nodeRole is --role if given, else the stored server role, which the
// console may change while the node runs.
func (g *Gateway) nodeRole() string {
	if g.cfg.Role != "" {
		return g.cfg.Role
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.runtime.ServerRole == "" { // claimed before the settings are read
		return NodeStandalone
	}
	return roleWord(g.runtime.ServerRole)
}

// joinNode runs once the node listens: the advertised URL with the port
// really bound, a first heartbeat, the joined event, and the heartbeat loop.
func (g *Gateway) joinNode(ctx context.Context) {
	reg := g.node
	if addrs := g.Addrs(); len(addrs) > 0 {
		reg.mu.Lock()
		reg.url = advertiseURL(g.cfg, addrs[0].String())
		reg.mu.Unlock()
	}
	// Before the first heartbeat, which tells a secondary that this node
	// is back (and its Clients come): the placer knows the cluster and
	// who was where by then. Each is bounded; a database that is away
	// leaves them to their loops.
	g.presence.waitPolled(ctx, 2*time.Second)
	g.placer.prime(ctx)
	if err := g.DB().HeartbeatNode(ctx, g.nodeRow()); err != nil {
		g.log.Warn("node registry: first heartbeat", "err", err)
	} else if err := g.DB().Notify(ctx, db.WakeNodes, g.cfg.Node); err != nil {
		g.log.Debug("node registry: cannot notify the other nodes; they see this one at their next poll", "err", err)
	}
	row := g.nodeRow()
	g.events.Emit(event.NodeJoined(row.Name, row.Role, row.AdvertiseURL))
	reg.mu.Lock()
	reg.joined = true
	reg.mu.Unlock()

	hbCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	reg.stop, reg.done = stop, make(chan struct{})
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		defer close(reg.done)
		g.heartbeat(hbCtx)
	}()
}

// stopHeartbeat ends the heartbeat loop and waits for it (Shutdown, and
// tests that simulate a node that vanished).
func (g *Gateway) stopHeartbeat() {
	if g.node != nil && g.node.stop != nil {
		g.node.stop()
		<-g.node.done
	}
}

func (g *Gateway) heartbeat(ctx context.Context) {
	t := time.NewTicker(g.cfg.Heartbeat)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := g.heartbeatOnce(ctx)
		g.leaseRenewed(err == nil)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil && !failing:
			g.log.Warn("node registry: cannot renew this node's lease; relaying goes on, retrying", "node", g.cfg.Node, "err", err)
			failing = true
		case err == nil && failing:
			g.log.Info("node registry: lease renewed again", "node", g.cfg.Node)
			failing = false
		}
	}
}

func (g *Gateway) heartbeatOnce(ctx context.Context) error {
	st, reg := g.DB(), g.node
	row := g.nodeRow()
	reg.mu.Lock()
	taken := reg.taken
	reg.mu.Unlock()
	if taken {
		_, err := st.ClaimNode(ctx, row, db.NodeLease, false)
		if errors.Is(err, db.ErrNodeLive) {
			return nil // still held by the other run; said so already
		}
		if err != nil {
			return err
		}
		g.log.Info("node registry: this process holds its node name again", "node", g.cfg.Node)
		reg.mu.Lock()
		reg.taken = false
		reg.mu.Unlock()
	} else {
		err := st.HeartbeatNode(ctx, row)
		if errors.Is(err, db.ErrNodeTaken) {
			g.log.Error("node registry: another process took this node's name; it keeps relaying but reports not ready: give one of them another --node",
				"node", g.cfg.Node)
			reg.mu.Lock()
			reg.taken = true
			reg.mu.Unlock()
			return nil
		}
		if err != nil {
			return err
		}
		if err := g.presence.heartbeat(ctx, st); err != nil {
			return err
		}
	}
	g.keepLock(ctx, st)
	lost, err := st.MarkLostNodes(ctx, g.cfg.Node, db.NodeLease)
	if err != nil {
		return err
	}
	for _, n := range lost {
		g.log.Warn("node registry: node lost", "node", n.Name, "url", n.AdvertiseURL, "last_seen_ago", n.Age.Round(time.Second))
		g.events.Emit(event.NodeLost(n.Name))
	}
	if time.Since(reg.forgot) >= time.Minute {
		reg.forgot = time.Now()
		if forgotten, err := st.ForgetLostNodes(ctx, db.LostNodeKept); err == nil {
			for _, name := range forgotten {
				g.log.Info("node registry: a node lost for a day is off the list", "node", name)
			}
		}
	}
	if len(lost) > 0 {
		// Its Clients are gone from presence with it: the other nodes
		// (and their Clients' lists of nodes) should know now.
		if err := st.Notify(ctx, db.WakeNodes, g.cfg.Node); err != nil {
			return err
		}
		g.placer.poke()
	}
	return nil
}

// keepLock takes the name's lock again when it was lost with its
// connection (a database outage), or was held by a gone process at
// start, so that a second process started with this name while this one
// runs is refused rather than let in. Only the heartbeat loop calls it.
func (g *Gateway) keepLock(ctx context.Context, st *db.DB) {
	reg := g.node
	if reg.lock.Held(ctx) {
		return
	}
	if reg.lock != nil {
		reg.lock.Release()
		reg.lock = nil
	}
	lock, err := st.LockNodeName(ctx, g.cfg.Node)
	if err != nil {
		return // the next heartbeat tries again
	}
	reg.lock = lock
}

// leaveNode gives the name up on an orderly stop: the row goes, and the
// event says so. A database that is away leaves the row, which the other
// nodes then report lost. Only the first call does anything.
func (g *Gateway) leaveNode() {
	reg := g.node
	if reg == nil {
		return
	}
	reg.mu.Lock()
	done := reg.left
	reg.left = true
	reg.mu.Unlock()
	if done {
		return
	}
	g.stopHeartbeat()
	g.presence.stopPresence()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	left, err := g.DB().LeaveNode(ctx, g.cfg.Node, reg.nonce)
	if err != nil {
		g.log.Warn("node registry: cannot remove this node's row; the other nodes will report it lost", "err", err)
	}
	if left {
		if _, err := g.DB().DeleteNodePresence(ctx, g.cfg.Node); err != nil {
			g.log.Warn("presence: cannot remove this node's Clients; the other nodes remove them when they report it lost", "err", err)
		}
	}
	reg.mu.Lock()
	joined := reg.joined
	reg.mu.Unlock()
	if left && joined {
		g.events.Emit(event.NodeLeft(g.cfg.Node))
	}
	reg.lock.Release()
	reg.lock = nil
}

// nodeState is what /readyz says of a ready node: standby for a secondary
// that holds no Clients, active otherwise.
func (g *Gateway) nodeState() string {
	if g.nodeRole() == NodeSecondary && (g.relay == nil || g.relay.Stats().Clients == 0) {
		return "standby"
	}
	return "active"
}

// nodeTaken is the readiness error of a node whose name another process
// took over.
func (g *Gateway) nodeTaken() error {
	if g.node == nil {
		return nil
	}
	g.node.mu.Lock()
	defer g.node.mu.Unlock()
	if g.node.taken {
		return errors.New("node " + strconv.Quote(g.cfg.Node) + " is held by another process; give one of them another --node")
	}
	return nil
}
