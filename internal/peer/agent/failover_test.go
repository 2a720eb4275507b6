package agent_test

// Primary / Secondary: a Client falls back to its secondary gateway while the
// primary is unreachable, returns to the primary when it answers again, and
// never cuts a session in progress doing either.
//
// The helpers here are this file's own (prefixed fo), so that they do not
// depend on the shape of agent_test.go's.

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/internal/peer/agent"
	"github.com/switchboard/switchboard/internal/peer/peertest"
	"github.com/switchboard/switchboard/relay/wire"
)

// foDeadline is the generous bound on a failover or a fail-back. The times
// measured are logged; the target (well under 5 s) is not asserted, so that
// a loaded machine does not fail the test.
const foDeadline = 15 * time.Second

const foKey = "failover-test-key"

type foAgent struct {
	*agent.Agent
	logs *peertest.Logs
}

// foStart runs a Client of primary with secondary as its secondary until
// the test ends. The backoffs are the defaults, so the times measured are
// the ones a real Client sees.
func foStart(t *testing.T, primary, secondary peer.Dialer, services map[string]string, edit func(*agent.Config)) *foAgent {
	t.Helper()
	logs := &peertest.Logs{}
	cfg := agent.Config{
		Dialer: primary, Secondary: &secondary, Key: foKey, Name: "pc", Services: services,
		Version: "test-1.0", Logger: logs.Logger(), ProbeInterval: 300 * time.Millisecond,
	}
	if edit != nil {
		edit(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(peertest.Wait):
			t.Errorf("Run did not return within %s of its context ending", peertest.Wait)
		}
	})
	return &foAgent{Agent: a, logs: logs}
}

// foWait polls cond for up to foDeadline and returns how long it took.
func foWait(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > foDeadline {
			t.Fatalf("timed out after %s waiting for %s", foDeadline, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

func gwURL(g *peertest.Gateway) string { return "http://" + g.Addr }

// on reports whether the agent is on g and g holds it.
func on(a *foAgent, g *peertest.Gateway) func() bool {
	return func() bool {
		_, ok := g.Client("pc")
		return ok && a.Gateway() == gwURL(g)
	}
}

// foConnect opens a session to pc/echo through g, with no deadline: the
// session must stay usable for as long as the test needs it.
func foConnect(t *testing.T, g *peertest.Gateway) net.Conn {
	t.Helper()
	conn := g.MustConnect(t, foKey, "ctl", "pc/echo")
	_ = conn.SetDeadline(time.Time{})
	return conn
}

// stream echoes chunks through conn until stop is closed, and then at
// least min more bytes, so that traffic flows before, during and after
// what the test does meanwhile. It returns the bytes echoed each way.
func stream(conn net.Conn, stop <-chan struct{}, minAfter int) (int, error) {
	const chunk = 256 << 10
	total, after := 0, 0
	stopped := false
	for {
		_ = conn.SetDeadline(time.Now().Add(peertest.Wait))
		if err := peertest.EchoBothWays(conn, chunk); err != nil {
			return total, err
		}
		total += chunk
		if !stopped {
			select {
			case <-stop:
				stopped = true
			default:
			}
			continue
		}
		if after += chunk; after >= minAfter {
			return total, nil
		}
	}
}

func TestSecondaryMustNotBeThePrimary(t *testing.T) {
	t.Parallel()
	for _, pair := range [][2]string{
		{"http://127.0.0.1:3085", "http://127.0.0.1:3085"},
		{"https://gw.example.com", "gw.example.com:443"},
		{"http://GW.example.com:3085", "https://gw.example.com:3085"},
	} {
		p, err := peer.ParseGateway(pair[0])
		if err != nil {
			t.Fatal(err)
		}
		s, err := peer.ParseGateway(pair[1])
		if err != nil {
			t.Fatal(err)
		}
		_, err = agent.New(agent.Config{Dialer: peer.Dialer{Gateway: p}, Secondary: &peer.Dialer{Gateway: s}, Key: foKey, Name: "pc"})
		if err == nil || !strings.Contains(err.Error(), "is the primary gateway") {
			t.Errorf("primary %s, secondary %s: err = %v, want a refusal naming the secondary as the primary", pair[0], pair[1], err)
		}
	}
	other := peer.Dialer{Gateway: peer.Gateway{Host: "127.0.0.1:3086"}}
	if _, err := agent.New(agent.Config{Dialer: peer.Dialer{Gateway: peer.Gateway{Host: "127.0.0.1:3085"}}, Secondary: &other, Key: foKey, Name: "pc"}); err != nil {
		t.Fatalf("two gateways: %v", err)
	}
}

// The primary dies with the Client and a session on it; the Client is on
// the secondary well within the deadline. The primary comes back on the
// same port; the Client returns to it, and a session opened through the
// secondary keeps flowing, byte-exact, across the return.
func TestFailoverAndFailBack(t *testing.T) {
	t.Parallel()
	echo := peertest.EchoServer(t)
	p1 := peertest.Start(t, peertest.Config{Keys: []string{foKey}, CMPI: time.Second})
	s := peertest.Start(t, peertest.Config{Keys: []string{foKey}, CMPI: time.Second})
	a := foStart(t, p1.Dialer(), s.Dialer(), map[string]string{"echo": echo}, nil)
	foWait(t, "the Client to register on the primary", on(a, p1))
	if _, ok := s.Client("pc"); ok {
		t.Fatal("the Client is on the secondary too while the primary is up")
	}
	onPrimary := foConnect(t, p1)
	peertest.MustEchoBothWays(t, onPrimary, 64<<10)

	// Kill the primary.
	p1.Stop(t)
	took := foWait(t, "the Client on the secondary", on(a, s))
	t.Logf("failover: the Client was on the secondary %s after the primary stopped", took.Round(time.Millisecond))
	rec, ok := a.logs.Find("switched to the secondary gateway")
	if !ok || rec.Attrs["gateway"] != gwURL(s) || rec.Attrs["primary"] != gwURL(p1) || !strings.Contains(rec.Attrs["reason"], "primary unreachable") {
		t.Errorf("switch logged as %+v (found %v)", rec, ok)
	}
	// The primary relayed that session's bytes: it went with it, and its
	// Control hears so instead of hanging.
	_ = onPrimary.SetReadDeadline(time.Now().Add(peertest.Wait))
	if _, err := io.Copy(io.Discard, onPrimary); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("a session through the stopped primary still hangs open")
	}
	onSecondary := foConnect(t, s)
	peertest.MustEchoBothWays(t, onSecondary, 64<<10)

	// Traffic flows on the secondary's session throughout the return.
	stop := make(chan struct{})
	type result struct {
		n   int
		err error
	}
	streamed := make(chan result, 1)
	go func() {
		n, err := stream(onSecondary, stop, 2<<20)
		streamed <- result{n, err}
	}()
	time.Sleep(100 * time.Millisecond)
	p2 := peertest.Start(t, peertest.Config{Keys: []string{foKey}, CMPI: time.Second, Addr: p1.Addr})
	took = foWait(t, "the Client back on the primary", on(a, p2))
	t.Logf("fail-back: the Client was on the primary %s after it restarted (probe interval 300ms)", took.Round(time.Millisecond))
	s.WaitEvent(t, "Client pc Disconnected")
	if _, ok := s.Client("pc"); ok {
		t.Error("the secondary still holds the Client after it returned to the primary")
	}
	if _, ok := a.logs.Find("returned to the primary gateway"); !ok {
		t.Error("the return was not logged")
	}
	close(stop)
	r := <-streamed
	if r.err != nil {
		t.Fatalf("the session through the secondary broke across the return after %d bytes: %v", r.n, r.err)
	}
	t.Logf("%d MiB echoed each way through the secondary's session across the return", r.n>>20)
	if n := len(s.Relay.Sessions()); n != 1 {
		t.Errorf("the secondary relays %d sessions, want the one in progress", n)
	}
	peertest.MustEchoBothWays(t, foConnect(t, p2), 64<<10)
	if n := p2.Events.Count("Client pc connected"); n != 1 {
		t.Errorf("the Client registered %d times on the restarted primary, want once", n)
	}
}

// A primary that stops gracefully tells its Clients first and lets its
// sessions finish: the Client moves to the secondary at once, and the
// session the primary relays goes on, byte-exact, after the move.
func TestFailoverKeepsTheSessionsOfThePrimary(t *testing.T) {
	t.Parallel()
	echo := peertest.EchoServer(t)
	p := peertest.Start(t, peertest.Config{Keys: []string{foKey}, CMPI: time.Second})
	s := peertest.Start(t, peertest.Config{Keys: []string{foKey}, CMPI: time.Second})
	a := foStart(t, p.Dialer(), s.Dialer(), map[string]string{"echo": echo}, nil)
	foWait(t, "the Client to register on the primary", on(a, p))
	conn := foConnect(t, p)
	peertest.MustEchoBothWays(t, conn, 64<<10)

	shutdown := make(chan struct{})
	go func() {
		defer close(shutdown)
		ctx, cancel := context.WithTimeout(context.Background(), 2*foDeadline)
		defer cancel()
		p.Relay.Shutdown(ctx)
	}()
	took := foWait(t, "the Client on the secondary", on(a, s))
	t.Logf("failover: the Client was on the secondary %s after the primary began to shut down", took.Round(time.Millisecond))
	stop := make(chan struct{})
	close(stop)
	n, err := stream(conn, stop, 4<<20)
	if err != nil {
		t.Fatalf("the primary's session broke after the Client moved, after %d bytes: %v", n, err)
	}
	conn.Close()
	select {
	case <-shutdown:
	case <-time.After(foDeadline):
		t.Fatal("the primary's shutdown did not end with its last session")
	}
	// And a session through the secondary.
	peertest.MustEchoBothWays(t, foConnect(t, s), 64<<10)
}

// A primary that stops answering heartbeats (its TCP connection still
// open) is given up after three CMPIs.
func TestFailoverWhenThePrimaryGoesSilent(t *testing.T) {
	t.Parallel()
	var conns atomic.Int32
	silent := peertest.FakeGateway(t, func(conn net.Conn, br *bufio.Reader, h wire.Hello) {
		if h.Role != wire.RoleClient || conns.Add(1) > 1 {
			return // later registrations: closed at once
		}
		_ = conn.SetDeadline(time.Time{})
		_ = wire.WriteFrame(conn, wire.TypeWelcome, wire.Welcome{CMPISeconds: 1})
		_, _ = io.Copy(io.Discard, br) // heartbeats, never answered
	})
	s := peertest.Start(t, peertest.Config{Keys: []string{foKey}, CMPI: time.Second})
	a := foStart(t, silent, s.Dialer(), nil, nil)
	foWait(t, "the Client to register on the silent primary", func() bool { return a.Gateway() == silent.Gateway.String() })
	took := foWait(t, "the Client on the secondary", on(a, s))
	t.Logf("failover: the Client was on the secondary %s after registering on a primary that never answers (3 CMPI = 3 s)", took.Round(time.Millisecond))
}

// A primary that refuses the Client's key sends it to the secondary at
// once, and is asked again with backoff, not every probe: no ping-pong, and
// not a security event every few seconds. Once the key is added there, the
// Client returns.
func TestPrimaryRefusingTheKey(t *testing.T) {
	t.Parallel()
	p := peertest.Start(t, peertest.Config{Keys: []string{"another-gateway-key"}, CMPI: time.Second})
	s := peertest.Start(t, peertest.Config{Keys: []string{foKey}, CMPI: time.Second})
	a := foStart(t, p.Dialer(), s.Dialer(), nil, func(c *agent.Config) {
		c.ProbeInterval = 50 * time.Millisecond
		c.MaxBackoff = time.Second
	})
	took := foWait(t, "the Client on the secondary", on(a, s))
	t.Logf("the Client was on the secondary %s after starting", took.Round(time.Millisecond))
	rec, ok := a.logs.Find("switched to the secondary gateway")
	if !ok || !strings.Contains(rec.Attrs["reason"], "primary refused the Client") {
		t.Errorf("switch logged as %+v (found %v), want the refusal as the reason", rec, ok)
	}
	refused := "Security check failed for Client pc (127.0.0.1). Terminating connection from 127.0.0.1"
	p.WaitEvent(t, refused)
	foWait(t, "the refusing primary to be probed again", func() bool {
		_, ok := a.logs.Find("the primary gateway refused the Client; staying on the secondary")
		return ok
	})
	time.Sleep(1500 * time.Millisecond)
	// Probed every 50 ms that would be 30 refusals; with the backoff
	// (100, 200, 400, 800 ms, then 1 s) it is a handful.
	if n := p.Events.Count(refused); n > 7 {
		t.Errorf("the primary refused the Client %d times in 1.5 s: the refusals are not backed off", n)
	}
	if a.Gateway() != gwURL(s) {
		t.Fatalf("the Client left the secondary for %q", a.Gateway())
	}
	p.Relay.SetKeys(peertest.Keys("another-gateway-key", foKey))
	took = foWait(t, "the Client back on the primary", on(a, p))
	t.Logf("the Client was on the primary %s after its key was added there (backoff at most 1 s)", took.Round(time.Millisecond))
}
