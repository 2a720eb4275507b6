package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
)

func nodeConfig(t *testing.T, url, name, role string) Config {
	return Config{
		Store:     Store{DatabaseURL: url, DataDir: t.TempDir()},
		Listen:    []string{"127.0.0.1:0"},
		NoTLS:     true,
		Node:      name,
		Role:      role,
		Grace:     time.Second,
		Heartbeat: 50 * time.Millisecond,
		Version:   "test",
		Logger:    slog.New(slog.DiscardHandler),
	}
}

func mustStartNode(t *testing.T, cfg Config) *Gateway {
	t.Helper()
	g, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start %s: %v", cfg.Node, err)
	}
	t.Cleanup(g.Shutdown)
	return g
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countEvents counts the events emitted with msg. Emitted: the event log
// may store one event twice when it stops in the middle of a write (same
// time, same text; seen with "Failed to start Gateway" too), which is not
// what these tests are about.
func countEvents(t *testing.T, st *db.DB, msg string) int {
	t.Helper()
	var n int
	if err := st.Pool().QueryRow(context.Background(), "SELECT count(DISTINCT (time, node)) FROM events WHERE message = $1", msg).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func readyz(t *testing.T, g *Gateway) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + g.Addrs()[0].String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestNodeRegistry runs three gateways on one database: all are listed,
// a second start of a live name is refused, a node that vanished without
// its stop is reported lost exactly once, an orderly stop leaves.
func TestNodeRegistry(t *testing.T) {
	url := pgtest.MustURL(t)
	a := mustStartNode(t, nodeConfig(t, url, "gw-a", NodePrimary))
	b := mustStartNode(t, nodeConfig(t, url, "gw-b", NodeSecondary))
	st := a.DB()
	ctx := context.Background()

	nodes, err := st.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 {
		t.Fatalf("%d nodes listed, want 2: %+v", len(nodes), nodes)
	}
	for i, g := range []*Gateway{a, b} {
		n := nodes[i]
		want := "http://" + g.Addrs()[0].String()
		if n.Name != g.cfg.Node || n.AdvertiseURL != want || n.Role != g.cfg.Role || n.Version != "test" || !n.LostAt.IsZero() {
			t.Errorf("node %d = %+v, want %s at %s as %s", i, n, g.cfg.Node, want, g.cfg.Role)
		}
	}
	if code, body := readyz(t, a); code != 200 || body != "ready: active\n" {
		t.Errorf("primary /readyz = %d %q", code, body)
	}
	if code, body := readyz(t, b); code != 200 || body != "ready: standby\n" {
		t.Errorf("secondary without Clients /readyz = %d %q", code, body)
	}
	// --role is stored, as other settings given at start.
	if rc, err := b.StoredConfig(ctx); err != nil || rc.ServerRole != config.RoleSecondary {
		t.Errorf("stored role %q, %v", rc.ServerRole, err)
	}
	if err := a.FlushEvents(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countEvents(t, st, "Node gw-a joined the cluster as primary (http://"+a.Addrs()[0].String()+")"); n != 1 {
		t.Errorf("joined event of gw-a written %d times", n)
	}

	// The name of a live node is refused.
	dup := nodeConfig(t, url, "gw-a", NodeBalanced)
	if g, err := Start(ctx, dup); err == nil {
		g.Shutdown()
		t.Fatal("a second gw-a started")
	} else if want := "node gw-a is already running (last seen "; !strings.Contains(err.Error(), want) ||
		!strings.Contains(err.Error(), "s ago at http://"+a.Addrs()[0].String()+"); give this gateway another --node") {
		t.Fatalf("second gw-a: %v", err)
	}
	if n, err := st.Node(ctx, "gw-a"); err != nil || n.Role != NodePrimary {
		t.Fatalf("the refused start changed the row: %+v, %v", n, err)
	}

	// gw-b vanishes without its stop: two nodes look, one reports it.
	c := mustStartNode(t, nodeConfig(t, url, "gw-c", NodeBalanced))
	b.stopHeartbeat()
	if _, err := st.Pool().Exec(ctx, "UPDATE nodes SET last_seen = now() - interval '1 minute' WHERE name = 'gw-b'"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "gw-b to be marked lost", func() bool {
		n, err := st.Node(ctx, "gw-b")
		return err == nil && !n.LostAt.IsZero()
	})
	time.Sleep(300 * time.Millisecond) // several more heartbeats of both
	for _, g := range []*Gateway{a, c} {
		if err := g.FlushEvents(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := countEvents(t, st, "Node gw-b lost"); n != 1 {
		t.Errorf("Node gw-b lost written %d times, want once", n)
	}

	// Orderly stops leave the registry.
	c.Shutdown()
	if _, err := st.Node(ctx, "gw-c"); err == nil {
		t.Error("gw-c still listed after its stop")
	}
	if n := countEvents(t, st, "Node gw-c left the cluster"); n != 1 {
		t.Errorf("Node gw-c left the cluster written %d times", n)
	}
}

// TestNodeTakenOver: a node whose row another process took keeps relaying
// but reports not ready, and takes the name back once it is free.
func TestNodeTakenOver(t *testing.T) {
	a := mustStartNode(t, nodeConfig(t, pgtest.MustURL(t), "gw-a", ""))
	ctx := context.Background()
	if code, body := readyz(t, a); code != 200 || body != "ready: active\n" {
		t.Fatalf("/readyz = %d %q", code, body)
	}
	if n, err := a.DB().Node(ctx, "gw-a"); err != nil || n.Role != NodeStandalone {
		t.Fatalf("row %+v, %v; want the stored role standalone", n, err)
	}
	if _, err := a.DB().Pool().Exec(ctx, "UPDATE nodes SET nonce = 'another run' WHERE name = 'gw-a'"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "/readyz to say not ready", func() bool {
		code, body := readyz(t, a)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "held by another process")
	})
	if _, err := a.DB().Pool().Exec(ctx, "DELETE FROM nodes WHERE name = 'gw-a'"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the name to be taken back", func() bool {
		code, _ := readyz(t, a)
		return code == http.StatusOK
	})
	if n, err := a.DB().Node(ctx, "gw-a"); err != nil || n.Nonce != a.node.nonce {
		t.Fatalf("row %+v, %v after taking the name back", n, err)
	}
}

// TestClockSkewRefused: a node whose clock is off by more than
// MaxClockSkew does not start.
func TestClockSkewRefused(t *testing.T) {
	url := pgtest.MustURL(t)
	for _, tc := range []struct {
		skew time.Duration
		want string
	}{{time.Minute, "1m0s ahead of the database server's"}, {-10 * time.Second, "10s behind the database server's"}} {
		cfg := nodeConfig(t, url, "gw-skewed", "")
		cfg.Now = func() time.Time { return time.Now().Add(tc.skew) }
		g, err := Start(context.Background(), cfg)
		if err == nil {
			g.Shutdown()
			t.Fatalf("started with a clock %s off", tc.skew)
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "at most 5s") {
			t.Errorf("skew %s: %v", tc.skew, err)
		}
	}
	// Within the limit it starts.
	cfg := nodeConfig(t, url, "gw-skewed", "")
	cfg.Now = func() time.Time { return time.Now().Add(2 * time.Second) }
	mustStartNode(t, cfg)
}

func TestAdvertiseURL(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		addr string
		want string
	}{
		{Config{Node: "gw1"}, ":443", "https://gw1:443"},
		{Config{Node: "gw1"}, "0.0.0.0:3085", "https://gw1:3085"},
		{Config{Node: "gw1"}, "[::]:3085", "https://gw1:3085"},
		{Config{Node: "gw1", NoTLS: true}, "10.0.0.5:8080", "http://10.0.0.5:8080"},
		{Config{Node: "gw1"}, "[2001:db8::1]:443", "https://[2001:db8::1]:443"},
		{Config{Node: "gw1", Advertise: "https://gw1.example.com"}, ":443", "https://gw1.example.com"},
	} {
		if got := advertiseURL(tc.cfg, tc.addr); got != tc.want {
			t.Errorf("advertiseURL(%+v, %q) = %q, want %q", tc.cfg, tc.addr, got, tc.want)
		}
	}
}

// TestRestartAfterCrash: a run whose process is gone (its lock freed with
// its connection, as after kill -9) is replaced at once, without waiting
// for its lease.
func TestRestartAfterCrash(t *testing.T) {
	url := pgtest.MustURL(t)
	a := mustStartNode(t, nodeConfig(t, url, "gw-a", ""))
	a.stopHeartbeat()
	a.node.lock.Release() // what PostgreSQL does when the process dies
	a.node.lock = nil
	again := mustStartNode(t, nodeConfig(t, url, "gw-a", ""))
	n, err := again.DB().Node(context.Background(), "gw-a")
	if err != nil || n.Nonce != again.node.nonce {
		t.Fatalf("row %+v, %v; want the new run's", n, err)
	}
	// The old run's stop does not remove the new run's row.
	a.Shutdown()
	if _, err := again.DB().Node(context.Background(), "gw-a"); err != nil {
		t.Fatalf("the old run's stop removed the row: %v", err)
	}
}
