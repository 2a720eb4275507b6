package gateway

import (
	"bytes"
	"context"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard/switchboard/handlers"
	"github.com/switchboard/switchboard/internal/peer/agent"
	"github.com/switchboard/switchboard/internal/peer/control"
	"github.com/switchboard/switchboard/internal/peer/peertest"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

// crossAgent runs Client name on g with an echo and a digest service;
// logs gets the agent's log records.
func crossAgent(t *testing.T, g *Gateway, name string, logs *peertest.Logs) *agent.Agent {
	t.Helper()
	a, err := agent.New(agent.Config{Dialer: dialerOf(t, g), Key: presenceKey, Name: name,
		Services:   map[string]string{"echo": peertest.EchoServer(t), "digest": peertest.DigestServer(t)},
		Logger:     logs.Logger(),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitUntil(t, name+" to connect", a.Connected)
	return a
}

func crossControl(t *testing.T, g *Gateway, key string) *control.Control {
	return &control.Control{Dialer: dialerOf(t, g), Key: key, Name: "ctl"}
}

// TestCrossNodeSession: a Control on node A reaches a Client on node B,
// byte-exact both ways, with half-close and teardown as on one node, the
// key rules of the design, and the session A's to list and record. The
// Client dials A itself (no extra hop); when it cannot reach A (node C
// advertises an address nobody listens on), B relays.
func TestCrossNodeSession(t *testing.T) {
	url := pgtest.MustURL(t)
	a := presenceNode(t, url, "gw-a")
	b := presenceNode(t, url, "gw-b")
	ccfg := nodeConfig(t, url, "gw-c", NodeBalanced)
	ccfg.GatewayKeys = []string{presenceKey, "another-gateway-key"}
	ccfg.Advertise = "http://" + peertest.ClosedAddr(t)
	clogs := &peertest.Logs{}
	ccfg.Logger = clogs.Logger()
	c := mustStartNode(t, ccfg)
	waitUntil(t, "gw-c to warn of its dead --advertise", func() bool {
		_, ok := clogs.Find("cluster: this node's --advertise URL does not answer here; other nodes and their Clients must reach this node at it (sessions to this node's Clients from other nodes are relayed meanwhile)")
		return ok
	})
	// A node advertising another node's URL is told so.
	dcfg := nodeConfig(t, url, "gw-d", NodeBalanced)
	dcfg.Advertise = "http://" + a.Addrs()[0].String()
	dlogs := &peertest.Logs{}
	dcfg.Logger = dlogs.Logger()
	d := mustStartNode(t, dcfg)
	waitUntil(t, "gw-d to warn that its --advertise reaches gw-a", func() bool {
		r, ok := dlogs.Find("cluster: this node's --advertise URL reaches another gateway; give each node a URL of its own")
		return ok && r.Attrs["answered_by"] == "gw-a"
	})
	d.Shutdown()
	logs := &peertest.Logs{}
	crossAgent(t, b, "pc-x", logs)
	waitUntil(t, "pc-x on gw-b through gw-a", onNode(t, a, "pc-x", "gw-b"))
	waitUntil(t, "pc-x on gw-b through gw-c", onNode(t, c, "pc-x", "gw-b"))
	ctx := context.Background()

	// Direct: the Client's accept connection goes to A.
	conn, err := crossControl(t, a, presenceKey).Connect(ctx, "pc-x/echo")
	if err != nil {
		t.Fatalf("connect through gw-a: %v", err)
	}
	peertest.MustEchoBothWays(t, conn, 1<<20)
	ss := a.Relay().Sessions()
	if len(ss) != 1 || ss[0].Client != "pc-x" || ss[0].ClientNode != "gw-b" {
		t.Fatalf("gw-a lists %+v", ss)
	}
	if n := b.Relay().Stats().Sessions; n != 0 {
		t.Fatalf("gw-b counts %d sessions of its own", n)
	}
	if _, ok := logs.Find("cannot reach the node that brokers the session; accepting through this gateway"); ok {
		t.Fatal("the Client did not reach gw-a directly")
	}
	conn.Close()
	waitUntil(t, "the session to end on gw-a", func() bool { return a.Relay().Stats().Sessions == 0 })

	// After a session brokered by A, the Client keeps a standby on A:
	// the next session there opens on it, with no link to B at all.
	waitUntil(t, "pc-x's standby on gw-a", func() bool { return a.Relay().Stats().Standbys == 1 })

	// Half-close passes across nodes, both ways of the data path.
	for _, g := range []*Gateway{a, c} {
		conn, err := crossControl(t, g, presenceKey).Connect(ctx, "pc-x/digest")
		if err != nil {
			t.Fatalf("connect through %s: %v", g.cfg.Node, err)
		}
		peertest.MustHalfClose(t, conn, bytes.Repeat([]byte("cross-node "), 100_000))
		conn.Close()
	}
	if n := a.Relay().Stats().OpensOnStandby; n != 1 {
		t.Fatalf("gw-a sent %d Opens on a standby, want the second session's", n)
	}

	// Relayed: C's advertised address is dead, so the Client accepts on
	// B, which relays to C.
	conn, err = crossControl(t, c, presenceKey).Connect(ctx, "pc-x/echo")
	if err != nil {
		t.Fatalf("connect through gw-c: %v", err)
	}
	peertest.MustEchoBothWays(t, conn, 4<<20)
	if _, ok := logs.Find("cannot reach the node that brokers the session; accepting through this gateway"); !ok {
		t.Fatal("the session through gw-c did not take the relayed way")
	}
	if ss := c.Relay().Sessions(); len(ss) != 1 || ss[0].ClientNode != "gw-b" {
		t.Fatalf("gw-c lists %+v", ss)
	}
	if ss := b.Relay().Sessions(); len(ss) != 0 {
		t.Fatalf("gw-b lists the relayed session as its own: %+v", ss)
	}
	// Teardown from the Client's side: its node goes, the session ends.
	conn.Close()
	waitUntil(t, "the relayed session to end", func() bool { return c.Relay().Stats().Sessions == 0 })

	// The key rules hold across nodes: the other key is a mismatch, a
	// name nobody holds is not found, and a service the Client lacks is
	// named as such.
	_, err = crossControl(t, c, "another-gateway-key").Connect(ctx, "pc-x/echo")
	peertest.WireError(t, err, wire.CodeKeyMismatch, `Client "pc-x" does not hold this Control's gateway key`)
	_, err = crossControl(t, a, presenceKey).Connect(ctx, "nobody/echo")
	peertest.WireError(t, err, wire.CodeNotFound, `no Client named "nobody" is connected`)
	_, err = crossControl(t, a, presenceKey).Connect(ctx, "pc-x/vnc")
	peertest.WireError(t, err, wire.CodeNotFound, `does not offer service "vnc"`)
	_, err = crossControl(t, a, presenceKey).Connect(ctx, "pc-x")
	peertest.WireError(t, err, wire.CodeBadRequest, "name one as CLIENT/SERVICE")

	// The console of A opens a Client of B as a browser session would:
	// a local Control, the same brokering across nodes.
	lctx, cancelLocal := context.WithCancel(ctx)
	ls, err := a.Relay().ConnectLocal(lctx, relay.LocalControl{Name: "console:alice", Operator: "alice",
		KeyID: keyIDOf(b, "pc-x"), PublicIP: "192.0.2.7"}, "pc-x/echo")
	if err != nil {
		t.Fatalf("console session through gw-a: %v", err)
	}
	peertest.MustEchoBothWays(t, ls, 256<<10)
	if ss := a.Relay().Sessions(); len(ss) != 1 || ss[0].Control != "console:alice" || ss[0].ClientNode != "gw-b" {
		t.Fatalf("gw-a lists %+v", ss)
	}
	cancelLocal()
	waitUntil(t, "the console session to end on gw-a", func() bool { return a.Relay().Stats().Sessions == 0 })
	waitUntil(t, "its events on gw-a", func() bool {
		return countEvents(t, a.DB(), "Control console:alice connected to Client pc-x") == 1 &&
			countEvents(t, a.DB(), "Control console:alice disconnected from Client pc-x") == 1
	})

	// A's events record the sessions, with A's node.
	waitUntil(t, "the session events on gw-a", func() bool {
		return countEvents(t, a.DB(), "Control ctl connected to Client pc-x") >= 4 &&
			countEvents(t, a.DB(), "Control ctl disconnected from Client pc-x") >= 4
	})
}

// TestClusterSessionsAndTerminate: a console on A lists the sessions of
// B, with B's name, and ends one of them.
func TestClusterSessionsAndTerminate(t *testing.T) {
	url := pgtest.MustURL(t)
	a := presenceNode(t, url, "gw-a")
	b := presenceNode(t, url, "gw-b")
	crossAgent(t, b, "pc-t", &peertest.Logs{})
	ctx := context.Background()
	conn, err := crossControl(t, b, presenceKey).Connect(ctx, "pc-t/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peertest.MustEchoBothWays(t, conn, 1000)

	all, unreachable := a.peers.ClusterSessions(ctx)
	if len(unreachable) != 0 || len(all) != 1 || all[0].Node != "gw-b" || all[0].Client != "pc-t" || all[0].BytesUp != 1000 {
		t.Fatalf("ClusterSessions on gw-a = %+v, unreachable %v", all, unreachable)
	}
	if err := a.peers.TerminateClusterSession(ctx, "gw-b", all[0].ID, "admin"); err != nil {
		t.Fatalf("terminate from gw-a: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("the session still carries bytes after its termination")
	}
	waitUntil(t, "the session to end on gw-b", func() bool { return b.Relay().Stats().Sessions == 0 })
	if err := a.peers.TerminateClusterSession(ctx, "gw-b", all[0].ID, "admin"); err == nil {
		t.Fatal("terminating an ended session succeeded")
	}
}

// TestNodeLinkRefusesStrangers: without the cluster secret a link gets
// 403 and nothing else; a captured request cannot be replayed.
func TestNodeLinkRefusesStrangers(t *testing.T) {
	url := pgtest.MustURL(t)
	cfg := nodeConfig(t, url, "gw-a", NodeBalanced)
	cfg.GatewayKeys = []string{presenceKey}
	cfg.Logger = slog.New(slog.DiscardHandler)
	a := mustStartNode(t, cfg)
	base := "http://" + a.Addrs()[0].String() + handlers.NodeLinkPath

	send := func(hdr http.Header) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base, nil)
		req.Header = hdr
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", wire.NodeProtocol)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	signed := func(secret []byte, nonce string) http.Header {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		p := &peers{secret: secret}
		h := http.Header{}
		h.Set(hdrNodeFrom, "gw-x")
		h.Set(hdrNodeTo, "gw-a")
		h.Set(hdrNodeTime, ts)
		h.Set(hdrNodeNonce, nonce)
		h.Set(hdrNodeMAC, hex.EncodeToString(p.requestMAC("gw-x", "gw-a", ts, nonce)))
		return h
	}
	const nonce = "00112233445566778899aabbccddeeff"
	if code := send(signed(bytes.Repeat([]byte{7}, 32), nonce)); code != http.StatusForbidden {
		t.Fatalf("a link with the wrong secret: %d", code)
	}
	if code := send(http.Header{}); code != http.StatusForbidden {
		t.Fatalf("a link with no proof: %d", code)
	}
	good := signed(a.peers.secret, nonce)
	if code := send(good); code != http.StatusSwitchingProtocols {
		t.Fatalf("a link with the secret: %d", code)
	}
	if code := send(good); code != http.StatusForbidden {
		t.Fatalf("the same link request again: %d", code)
	}
	// Not an upgrade at all.
	resp, err := http.Get(base)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("plain GET: %d", resp.StatusCode)
	}
}
