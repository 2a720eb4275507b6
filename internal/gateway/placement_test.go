package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/peer/agent"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

// Test thresholds: a share of 60 Clients over three nodes is 20, and a
// node is over it from 25 (more than 10 % and at least 5 over the mean).
const (
	testSlack = 5
	testRate  = 50
)

func balancedNode(t *testing.T, url, name string) *Gateway {
	g := presenceNode(t, url, name)
	g.placer.setBalance(testSlack, testRate)
	return g
}

func urlOf(g *Gateway) string { return "http://" + g.Addrs()[0].String() }

// agents runs n Clients named prefix-i against g, all at once, until the
// test ends; cfg adjusts each agent's configuration.
func agents(t *testing.T, g *Gateway, prefix string, n int, cfg func(*agent.Config)) []*agent.Agent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	out := make([]*agent.Agent, n)
	for i := range out {
		c := agent.Config{Dialer: dialerOf(t, g), Key: presenceKey, Name: fmt.Sprintf("%s-%02d", prefix, i),
			Services: map[string]string{"ssh": "127.0.0.1:1"}, Logger: slog.New(slog.DiscardHandler),
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
		if cfg != nil {
			cfg(&c)
		}
		a, err := agent.New(c)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = a
		wg.Add(1)
		go func() { defer wg.Done(); _ = a.Run(ctx) }()
	}
	return out
}

// spread counts the agents by the node URL they are registered with.
func spread(as []*agent.Agent) map[string]int {
	m := map[string]int{}
	for _, a := range as {
		if a.Connected() {
			m[a.Gateway()]++
		}
	}
	return m
}

// overShare is the placer's rule, for the test's thresholds.
func overShare(n int, mean float64) bool {
	return loads{self: float64(n), mean: mean}.over(testSlack)
}

// evenlyOn reports whether all of as are registered, on nodes alone, and
// none of them holds more than its share (by the Clients' own view and by
// the nodes' relays).
func evenlyOn(as []*agent.Agent, nodes ...*Gateway) func() bool {
	return func() bool { return evenly(as, nodes...) == "" }
}

// evenly is "" when evenlyOn holds, else what does not.
func evenly(as []*agent.Agent, nodes ...*Gateway) string {
	m := spread(as)
	mean := float64(len(as)) / float64(len(nodes))
	total := 0
	var state string
	bad := false
	for _, g := range nodes {
		n, held := m[urlOf(g)], g.Relay().Stats().Clients
		state += fmt.Sprintf(" %s: %d (relay %d)", g.cfg.Node, n, held)
		if n != held || overShare(n, mean) {
			bad = true
		}
		total += n
	}
	if bad || total != len(as) {
		return fmt.Sprintf("%d of %d Clients on the nodes:%s; all: %v", total, len(as), state, m)
	}
	return ""
}

// waitEvenly waits until evenlyOn holds, and says how it stood if not.
func waitEvenly(t *testing.T, what string, as []*agent.Agent, nodes ...*Gateway) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := evenly(as, nodes...)
		if s == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func countNodeEvents(t *testing.T, st *db.DB, node, like string) int {
	t.Helper()
	var n int
	if err := st.Pool().QueryRow(context.Background(), "SELECT count(*) FROM events WHERE node = $1 AND message LIKE $2", node, like).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBalancedNodesSpreadClients: 60 Clients all given the first of three
// balanced nodes end up spread, none over its share, moved by the first
// node (which says so); when that node goes, its Clients find the other
// two from the Nodes list they were sent, and spread over them.
func TestBalancedNodesSpreadClients(t *testing.T) {
	url := pgtest.MustURL(t)
	a := balancedNode(t, url, "gw-a")
	b := balancedNode(t, url, "gw-b")
	c := balancedNode(t, url, "gw-c")
	waitUntil(t, "gw-a to know gw-b and gw-c", func() bool {
		v := a.placer.view.Load()
		return v != nil && len(v.targets) == 2
	})

	start := time.Now()
	as := agents(t, a, "pc", 60, nil)
	waitEvenly(t, "the 60 Clients spread over three nodes", as, a, b, c)
	t.Logf("60 Clients spread over three nodes in %s: %v", time.Since(start).Round(time.Millisecond), spread(as))

	// A Client of gw-a is told the other two, with their URLs.
	pl := a.placer.Place(relay.Registration{ClientInfo: relay.ClientInfo{ClientInfo: wire.ClientInfo{Name: "probe"}}})
	if pl.Nodes == nil || len(pl.Nodes.Nodes) != 2 || pl.Nodes.Nodes[0].URL != urlOf(b) || pl.Nodes.Nodes[1].URL != urlOf(c) {
		t.Fatalf("Nodes for a Client of gw-a: %+v", pl.Nodes)
	}
	if err := pl.Nodes.Check(); err != nil {
		t.Fatal(err)
	}
	if err := a.FlushEvents(context.Background()); err != nil {
		t.Fatal(err)
	}
	moved := countNodeEvents(t, a.DB(), "gw-a", "Client pc-% moved to node gw-_ for load balancing")
	if moved < 30 {
		t.Errorf("gw-a wrote %d move events, want one per Client it sent away (about 40)", moved)
	}

	// gw-a goes: the Clients it held know gw-b and gw-c only from it.
	a.Shutdown()
	start = time.Now()
	waitEvenly(t, "the 60 Clients spread over the two nodes left", as, b, c)
	t.Logf("after gw-a stopped, its Clients spread over gw-b and gw-c in %s: %v", time.Since(start).Round(time.Millisecond), spread(as))
}

// TestRebalanceToJoiningNode: a node that joins gets Clients over time,
// at the rebalance rate, from the node over its share, and none go back.
func TestRebalanceToJoiningNode(t *testing.T) {
	url := pgtest.MustURL(t)
	a := balancedNode(t, url, "gw-a")
	const rate = 10
	a.placer.setBalance(testSlack, rate)
	as := agents(t, a, "pc", 40, nil)
	waitUntil(t, "40 Clients on gw-a alone", func() bool { return a.Relay().Stats().Clients == 40 })

	b := balancedNode(t, url, "gw-b")
	b.placer.setBalance(testSlack, rate)
	joined := time.Now()
	type sample struct {
		at time.Duration
		n  int
	}
	var samples []sample
	waitUntil(t, "gw-b to take its share", func() bool {
		n := b.Relay().Stats().Clients
		samples = append(samples, sample{time.Since(joined), n})
		return evenlyOn(as, a, b)() && n >= 19
	})
	took := time.Since(joined)
	t.Logf("gw-b took %d Clients in %s", b.Relay().Stats().Clients, took.Round(time.Millisecond))
	// 20 Clients at 10 a second: two seconds at least; the bucket starts
	// empty and holds a second's worth at most.
	if took < 1500*time.Millisecond {
		t.Errorf("20 Clients moved in %s, faster than %d a second", took, rate)
	}
	for i, s := range samples {
		for _, later := range samples[i:] {
			if later.at-s.at <= time.Second && later.n-s.n > 2*rate {
				t.Fatalf("gw-b took %d Clients between %s and %s, more than %d a second", later.n-s.n, s.at, later.at, rate)
			}
		}
	}
	// Settled: nothing more moves either way.
	time.Sleep(time.Second)
	if na, nb := a.Relay().Stats().Clients, b.Relay().Stats().Clients; na+nb != 40 || na < 19 || nb < 19 {
		t.Errorf("after a second more: gw-a %d, gw-b %d", na, nb)
	}
	for _, g := range []*Gateway{a, b} {
		if err := g.FlushEvents(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := countNodeEvents(t, a.DB(), "gw-b", "% for load balancing"); n != 0 {
		t.Errorf("gw-b moved %d Clients back", n)
	}
	if n := countNodeEvents(t, a.DB(), "gw-a", "% moved to node gw-b for load balancing"); n < 19 || n > 25 {
		t.Errorf("gw-a wrote %d move events for about 20 Clients", n)
	}
}

// restartable starts a node that can be started again on the same port.
func restartable(t *testing.T, url, name, role string, addr string) *Gateway {
	cfg := nodeConfig(t, url, name, role)
	cfg.GatewayKeys = []string{presenceKey}
	if addr != "" {
		cfg.Listen = []string{addr}
	}
	return mustStartNode(t, cfg)
}

// TestPrimarySecondaryPlacement: a Client switching to the secondary and
// returning to the primary is recorded by the node it went to, and the
// secondary tells its Clients when the primary is back, well before their
// own probe would.
func TestPrimarySecondaryPlacement(t *testing.T) {
	url := pgtest.MustURL(t)
	p := restartable(t, url, "gw-p", NodePrimary, "")
	s := restartable(t, url, "gw-s", NodeSecondary, "")
	paddr := p.Addrs()[0].String()
	sd := dialerOf(t, s)
	as := agents(t, p, "pc", 3, func(c *agent.Config) {
		c.Secondary = &sd
		c.ProbeInterval = time.Minute // only PrimaryAlive brings them back within the test
	})
	onP := func() bool { return spread(as)[urlOf(p)] == 3 }
	waitUntil(t, "3 Clients on the primary", onP)
	// Placement on a primary or secondary sends no Nodes list.
	if pl := p.placer.Place(relay.Registration{}); pl.Nodes != nil || pl.Move != nil {
		t.Errorf("primary placement: %+v", pl)
	}

	p.Shutdown()
	waitUntil(t, "3 Clients on the secondary", func() bool { return spread(as)[urlOf(s)] == 3 })
	waitUntil(t, "the switch events", func() bool {
		_ = s.FlushEvents(context.Background())
		return countNodeEvents(t, s.DB(), "gw-s", "Client pc-__ switched to the Secondary") == 3
	})

	// The primary again, on its port (just freed; nothing else takes
	// ports from 127.0.0.1:0 that fast).
	p2 := restartable(t, url, "gw-p", NodePrimary, paddr)
	start := time.Now()
	waitUntil(t, "3 Clients back on the primary", func() bool { return spread(as)[urlOf(p2)] == 3 })
	took := time.Since(start)
	t.Logf("Clients back on the restarted primary %s after its start", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("fail-back took %s: PrimaryAlive did not reach the Clients", took)
	}
	waitUntil(t, "the return events", func() bool {
		_ = p2.FlushEvents(context.Background())
		return countNodeEvents(t, p2.DB(), "gw-p", "Client pc-__ returned to the Primary") == 3
	})
	if n := countNodeEvents(t, p2.DB(), "gw-s", "% returned to the Primary"); n != 0 {
		t.Errorf("the secondary wrote %d return events", n)
	}
}

// TestPlacementIgnoresBadRows: a node row whose URL or fingerprint a
// Client would refuse is not listed, nor a node that has not joined yet,
// and a node that renews no lease takes no Clients.
func TestPlacementIgnoresBadRows(t *testing.T) {
	url := pgtest.MustURL(t)
	a := balancedNode(t, url, "gw-a")
	b := balancedNode(t, url, "gw-b")
	ctx := context.Background()
	st := a.DB()
	for _, n := range []db.Node{
		{Name: "gw-bad-url", AdvertiseURL: "ftp://x\n", Role: NodeBalanced, Nonce: "n1"},
		{Name: "gw-bad-fp", AdvertiseURL: "http://127.0.0.1:9", Fingerprint: "zz", Role: NodeBalanced, Nonce: "n2"},
		{Name: "gw-old", AdvertiseURL: "http://127.0.0.1:9", Role: NodeBalanced, Nonce: "n3"},
		// Claimed, not joined: its URL may still name port 0.
		{Name: "gw-new", AdvertiseURL: "http://127.0.0.1:0", Role: NodeBalanced, Nonce: "n4"},
	} {
		if _, err := st.ClaimNode(ctx, n, db.NodeLease, false); err != nil {
			t.Fatal(err)
		}
	}
	// They joined a minute ago; gw-old renewed its lease 10 s ago: listed
	// (its lease holds), but too stale to send Clients to.
	if _, err := st.Pool().Exec(ctx, `UPDATE nodes SET started_at = now() - interval '1 minute',
	last_seen = CASE name WHEN 'gw-old' THEN now() - interval '10 seconds' ELSE now() END WHERE name LIKE 'gw-%-%' OR name = 'gw-old'`); err != nil {
		t.Fatal(err)
	}
	a.placer.poke()
	waitUntil(t, "gw-a to read the rows", func() bool {
		v := a.placer.view.Load()
		return v != nil && len(v.list.Nodes) == 2
	})
	v := a.placer.view.Load()
	if v.list.Nodes[0].Name != "gw-b" || v.list.Nodes[0].URL != urlOf(b) || v.list.Nodes[1].Name != "gw-old" {
		t.Errorf("listed %+v", v.list.Nodes)
	}
	if len(v.targets) != 1 || v.targets[0].Name != "gw-b" {
		t.Errorf("targets %+v", v.targets)
	}
	if err := v.list.Check(); err != nil {
		t.Error(err)
	}
}

// TestLoadsRule pins the share rule: over the mean by 10 % and by the
// slack, and a target below the mean.
func TestLoadsRule(t *testing.T) {
	for _, tc := range []struct {
		name       string
		self, mean float64
		slack      int64
		over       bool
	}{
		{"at the mean", 100, 100, 50, false},
		{"over by the slack, under 10 %", 1050, 1000, 50, false},
		{"over by 10 %, under the slack", 130, 100, 50, false},
		{"over by both", 160, 100, 50, true},
		{"over by both, exactly the slack", 25, 20, 5, true},
		{"small numbers never move", 3, 1, 50, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := (loads{self: tc.self, mean: tc.mean}).over(tc.slack); got != tc.over {
				t.Errorf("over = %v", got)
			}
		})
	}
	l := loads{self: 30, mean: 20, nodes: []nodeLoad{{addr: wire.NodeAddr{Name: "b"}, clients: 19.5}, {addr: wire.NodeAddr{Name: "c"}, clients: 10}}}
	if n, ok := l.target(); !ok || n.addr.Name != "c" {
		t.Errorf("target %+v, %v", n, ok)
	}
	l.nodes = []nodeLoad{{addr: wire.NodeAddr{Name: "b"}, clients: 19.5}}
	if n, ok := l.target(); ok {
		t.Errorf("target %+v above mean-1", n)
	}
}
