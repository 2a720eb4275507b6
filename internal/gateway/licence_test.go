package gateway

import (
	"context"
	"errors"
	"testing"

	"github.com/switchboard/switchboard/internal/pg/pgtest"
	"github.com/switchboard/switchboard/relay/wire"
)

// registerOnce registers Client name on g once, as an agent's first try
// does, and keeps the channel open until the test ends. The error is the
// gateway's refusal.
func registerOnce(t *testing.T, g *Gateway, name, realIP string) error {
	t.Helper()
	d := dialerOf(t, g)
	conn, err := d.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.Send(presenceKey, wire.RoleClient, name, "", func(h *wire.Hello) {
		h.RealIP, h.OS, h.Version = realIP, "linux/amd64", "test"
	}); err != nil {
		return err
	}
	var w wire.Welcome
	return wire.Expect(conn.Reader(), wire.TypeWelcome, &w)
}

// licenceEvents counts the licence refusals of Client name that node
// recorded.
func licenceEvents(t *testing.T, g *Gateway, node, name, realIP string) int {
	t.Helper()
	if err := g.FlushEvents(context.Background()); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := g.DB().Pool().QueryRow(context.Background(),
		"SELECT count(DISTINCT time) FROM events WHERE node = $1 AND message LIKE $2", node,
		"Licence exceed. Rejecting connection from Client "+name+" ("+realIP+", %").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func mustBeOverLicence(t *testing.T, g *Gateway, name, realIP string) {
	t.Helper()
	err := registerOnce(t, g, name, realIP)
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeLicence {
		t.Fatalf("%s on %s: %v, want a licence refusal", name, g.cfg.Node, err)
	}
}

// TestClusterLicence runs two gateways on one database with a licence of
// two Clients: it holds for the cluster, the refusing node records it, and
// a Client moving between nodes is counted once.
func TestClusterLicence(t *testing.T) {
	url := pgtest.MustURL(t)
	start := func(name string) *Gateway {
		cfg := nodeConfig(t, url, name, NodeBalanced)
		cfg.GatewayKeys = []string{presenceKey}
		cfg.MaxClients = 2
		return mustStartNode(t, cfg)
	}
	a, b := start("gw-a"), start("gw-b")

	runAgent(t, a, "pc-1")
	stop2 := runAgent(t, b, "pc-2")
	keyID := a.Relay().Registrations()[0].KeyID
	// Each node's snapshot of the other's Clients, refreshed every poll.
	others := func(g *Gateway, n int) func() bool {
		return func() bool { return g.presence.OtherClients("someone-else", keyID) == n }
	}
	waitUntil(t, "gw-a to count pc-2 on gw-b", others(a, 1))
	waitUntil(t, "gw-b to count pc-1 on gw-a", others(b, 1))

	// A third Client is refused on either node, and the refusal is that
	// node's event alone.
	mustBeOverLicence(t, b, "pc-3", "10.0.0.3")
	if n := licenceEvents(t, b, "gw-b", "pc-3", "10.0.0.3"); n != 1 {
		t.Fatalf("%d licence events of pc-3 on gw-b, want 1", n)
	}
	if n := licenceEvents(t, a, "gw-a", "pc-3", "10.0.0.3"); n != 0 {
		t.Fatalf("%d licence events of pc-3 on gw-a, want 0", n)
	}
	mustBeOverLicence(t, a, "pc-4", "10.0.0.4")
	if n := licenceEvents(t, a, "gw-a", "pc-4", "10.0.0.4"); n != 1 {
		t.Fatalf("%d licence events of pc-4 on gw-a, want 1", n)
	}
	if n := licenceEvents(t, b, "gw-b", "pc-4", "10.0.0.4"); n != 0 {
		t.Fatalf("%d licence events of pc-4 on gw-b, want 0", n)
	}

	// pc-2 moves to gw-a: the same Client, no new licence, even while
	// gw-a's snapshot still lists it on gw-b.
	stop2()
	runAgent(t, a, "pc-2")
	if n := licenceEvents(t, a, "gw-a", "pc-2", "%"); n != 0 {
		t.Fatalf("%d licence events of pc-2 on gw-a, want 0", n)
	}
	// Once its row has moved it counts once: on gw-a, not on gw-b too.
	waitUntil(t, "gw-a to count no Client elsewhere", others(a, 0))
	waitUntil(t, "gw-b to count pc-1 and pc-2 on gw-a", others(b, 2))
	if n := a.presence.OtherClients("pc-2", keyID); n != 0 {
		t.Fatalf("gw-a counts %d other Clients for pc-2, want 0", n)
	}
	if n := len(a.Relay().Registrations()); n != 2 {
		t.Fatalf("gw-a holds %d Clients, want 2", n)
	}
	// The cluster is full still: 2 on gw-a, none on gw-b.
	mustBeOverLicence(t, b, "pc-5", "10.0.0.5")
	mustBeOverLicence(t, a, "pc-5", "10.0.0.5")
}
