package gateway

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/internal/peer/agent"
	"github.com/switchboard/switchboard/internal/peer/control"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
	"github.com/switchboard/switchboard/relay/wire"
)

const presenceKey = "presence-test-key"

func presenceNode(t *testing.T, url, name string) *Gateway {
	cfg := nodeConfig(t, url, name, NodeBalanced)
	cfg.GatewayKeys = []string{presenceKey}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("gw", name)
	}
	return mustStartNode(t, cfg)
}

func dialerOf(t *testing.T, g *Gateway) peer.Dialer {
	t.Helper()
	gw, err := peer.ParseGateway("http://" + g.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	return peer.Dialer{Gateway: gw, Timeout: 5 * time.Second}
}

// runAgent runs Client name against g until the returned stop is called.
func runAgent(t *testing.T, g *Gateway, name string) (stop func()) {
	t.Helper()
	a, err := agent.New(agent.Config{Dialer: dialerOf(t, g), Key: presenceKey, Name: name,
		Services: map[string]string{"ssh": "127.0.0.1:1"}, Logger: slog.New(slog.DiscardHandler),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	waitUntil(t, name+" to connect", a.Connected)
	return stop
}

// browse lists what a Control sees through g, by name.
func browse(t *testing.T, g *Gateway) map[string]wire.ClientInfo {
	t.Helper()
	c := &control.Control{Dialer: dialerOf(t, g), Key: presenceKey, Name: "op"}
	list, err := c.Browse(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]wire.ClientInfo{}
	for _, ci := range list {
		if _, dup := out[ci.Name]; dup {
			t.Errorf("browse through %s lists %s twice", g.cfg.Node, ci.Name)
		}
		out[ci.Name] = ci
	}
	return out
}

func onNode(t *testing.T, g *Gateway, client, node string) func() bool {
	return func() bool {
		ci, ok := browse(t, g)[client]
		if node == "" {
			return !ok
		}
		return ok && ci.Node == node
	}
}

func localConn(g *Gateway, client string) string {
	for _, r := range g.Relay().Registrations() {
		if r.Name == client {
			return r.ConnID
		}
	}
	return ""
}

// TestPresenceCluster runs two gateways on one database: each browses the
// other's Clients, a Client that moves leaves no ghost, a stale connection
// is dropped, an orderly stop and a lost node take their Clients along.
func TestPresenceCluster(t *testing.T) {
	url := pgtest.MustURL(t)
	a := presenceNode(t, url, "gw-a")
	b := presenceNode(t, url, "gw-b")
	ctx := context.Background()
	st := a.DB()

	// A Client on B is seen through A, with B's name; through B too.
	stop1 := runAgent(t, b, "pc-1")
	waitUntil(t, "pc-1 on gw-b in a browse through gw-a", onNode(t, a, "pc-1", "gw-b"))
	if ci := browse(t, b)["pc-1"]; ci.Node != "gw-b" || len(ci.Services) != 1 {
		t.Fatalf("through gw-b: %+v", ci)
	}

	// It moves to A: no ghost on B.
	stop1()
	runAgent(t, a, "pc-1")
	waitUntil(t, "pc-1 on gw-a through gw-b", onNode(t, b, "pc-1", "gw-a"))
	if ci := browse(t, a)["pc-1"]; ci.Node != "gw-a" {
		t.Fatalf("through gw-a: %+v", ci)
	}
	if len(b.Relay().Clients()) != 0 {
		t.Fatalf("gw-b still holds %+v", b.Relay().Clients())
	}

	// A newer connection of pc-1 shows up on another node (as when A's
	// connection went stale without A noticing): A drops its own within a
	// poll. (Not on gw-b: gw-b knows it holds no such connection, and
	// would remove the row.)
	old := localConn(a, "pc-1")
	if err := st.ApplyPresence(ctx, []db.PresenceOp{{P: db.Presence{Name: "pc-1", KeyID: a.Relay().Registrations()[0].KeyID,
		Node: "gw-x", ConnectedAt: time.Now().Add(time.Second), ConnID: "newer"}}}); err != nil {
		t.Fatal(err)
	}
	dropped := time.Now()
	waitUntil(t, "gw-a to drop its stale connection", func() bool { return localConn(a, "pc-1") != old })
	if d := time.Since(dropped); d > 2500*time.Millisecond {
		t.Errorf("stale connection dropped after %s", d)
	}
	// The agent comes back to A, newer still, and holds the row again.
	waitUntil(t, "pc-1 back on gw-a", onNode(t, b, "pc-1", "gw-a"))

	// An orderly stop takes its Clients along.
	c := presenceNode(t, url, "gw-c")
	runAgent(t, c, "pc-3")
	waitUntil(t, "pc-3 on gw-c through gw-a", onNode(t, a, "pc-3", "gw-c"))
	c.Shutdown()
	if ps, err := st.AllPresence(ctx); err != nil {
		t.Fatal(err)
	} else {
		for _, p := range ps {
			if p.Node == "gw-c" {
				t.Errorf("row left by gw-c's stop: %+v", p)
			}
		}
	}

	// A lost node's Clients disappear.
	runAgent(t, b, "pc-2")
	waitUntil(t, "pc-2 on gw-b through gw-a", onNode(t, a, "pc-2", "gw-b"))
	b.stopHeartbeat()
	if _, err := st.Pool().Exec(ctx, "UPDATE nodes SET last_seen = now() - interval '1 minute' WHERE name = 'gw-b'"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "pc-2 of the lost gw-b to disappear", onNode(t, a, "pc-2", ""))
	// Listings leave out a lapsed node's rows at once; marking it lost is
	// the next sweep's, a moment later.
	waitUntil(t, "gw-b to be marked lost", func() bool {
		n, err := st.Node(ctx, "gw-b")
		return err == nil && !n.LostAt.IsZero()
	})
}

// TestPresenceRestart: a run's rows that its previous run left (kill -9)
// are removed at its start.
func TestPresenceRestart(t *testing.T) {
	url := pgtest.MustURL(t)
	a := presenceNode(t, url, "gw-a")
	if err := a.DB().ApplyPresence(context.Background(), []db.PresenceOp{{P: db.Presence{Name: "ghost", KeyID: "k",
		Node: "gw-r", ConnectedAt: time.Now(), ConnID: "x"}}}); err != nil {
		t.Fatal(err)
	}
	presenceNode(t, url, "gw-r")
	ps, err := a.DB().AllPresence(context.Background())
	if err != nil || len(ps) != 0 {
		t.Fatalf("rows after gw-r's start: %+v, %v", ps, err)
	}
}
