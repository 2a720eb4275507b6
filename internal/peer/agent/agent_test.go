package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/internal/peer/agent"
	"github.com/switchboard/switchboard/internal/peer/peertest"
	"github.com/switchboard/switchboard/relay/wire"
)

const (
	key      = "agent-test-key"
	wrongKey = "not-this-gateways-key" // also a second key where one is needed
)

// runningAgent is an Agent whose Run goes on until the test ends.
type runningAgent struct {
	*agent.Agent
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
	err      error
}

// agentConfig is a Client of g (nil: set Dialer yourself) that retries quickly.
func agentConfig(g *peertest.Gateway, name string, services map[string]string) agent.Config {
	var d peer.Dialer
	if g != nil {
		d = g.Dialer()
	}
	return agent.Config{
		Dialer:             d,
		Key:                key,
		Name:               name,
		Services:           services,
		Version:            "test-1.0",
		MinBackoff:         10 * time.Millisecond,
		MaxBackoff:         100 * time.Millisecond,
		ServiceDialTimeout: peertest.Wait,
	}
}

func startAgent(t testing.TB, cfg agent.Config) *runningAgent {
	t.Helper()
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{Agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { ra.done <- a.Run(ctx) }()
	t.Cleanup(func() { ra.stop(t) })
	return ra
}

// stop cancels Run's context and waits for Run to return.
func (ra *runningAgent) stop(t testing.TB) error {
	t.Helper()
	ra.stopOnce.Do(func() {
		ra.cancel()
		select {
		case ra.err = <-ra.done:
		case <-time.After(peertest.Wait):
			t.Fatalf("Run did not return within %s of its context ending", peertest.Wait)
		}
	})
	return ra.err
}

func (ra *runningAgent) waitConnected(t testing.TB) {
	t.Helper()
	peertest.WaitFor(t, "the agent to register", ra.Connected)
}

func TestNewChecksConfig(t *testing.T) {
	t.Parallel()
	ok := agent.Config{Key: key, Name: "pc", Services: map[string]string{"vnc": "127.0.0.1:5900"}}
	if _, err := agent.New(ok); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	tests := []struct {
		name string
		edit func(*agent.Config)
		want string
	}{
		{"no name", func(c *agent.Config) { c.Name = "" }, "name is required"},
		{"no key", func(c *agent.Config) { c.Key = "" }, "key is required"},
		{"bad service address", func(c *agent.Config) { c.Services = map[string]string{"vnc": "5900"} }, "service vnc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.edit(&cfg)
			_, err := agent.New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestRegistersNameAndServices(t *testing.T) {
	t.Parallel()
	g := peertest.Start(t, peertest.Config{Keys: []string{key}})
	echo := peertest.EchoServer(t)
	a := startAgent(t, agentConfig(g, "pc-1", map[string]string{"vnc": echo, "ssh": echo, "rdp": echo}))
	a.waitConnected(t)
	g.WaitEvent(t, "Client pc-1 connected")

	c, ok := g.Client("pc-1")
	if !ok {
		t.Fatalf("gateway does not list pc-1; it lists %+v", g.Relay.Clients())
	}
	if want := []string{"rdp", "ssh", "vnc"}; !slices.Equal(c.Services, want) {
		t.Errorf("services = %v, want %v", c.Services, want)
	}
	if want := peertest.Keys(key)[0].KeyID; c.KeyID != want {
		t.Errorf("key ID = %s, want %s", c.KeyID, want)
	}
	if c.Version != "test-1.0" {
		t.Errorf("version = %q, want test-1.0", c.Version)
	}
	if want := runtime.GOOS + "/" + runtime.GOARCH; c.OS != want {
		t.Errorf("OS = %q, want %q", c.OS, want)
	}
	if c.RealIP != "127.0.0.1" {
		t.Errorf("real IP = %q, want the address it reaches the gateway from, 127.0.0.1", c.RealIP)
	}
	if n := len(g.Relay.Clients()); n != 1 {
		t.Errorf("gateway holds %d Clients, want 1", n)
	}
}

// heartbeats collects the distinct times the gateway last heard from the
// Client until it has n of them (each one a frame the Client sent after
// registering, here only heartbeats).
func heartbeats(t testing.TB, g *peertest.Gateway, name string, n int) {
	t.Helper()
	c, ok := g.Client(name)
	if !ok {
		t.Fatalf("%s is not connected", name)
	}
	since := c.ConnectedSince
	seen := map[int64]bool{}
	peertest.WaitFor(t, "heartbeats", func() bool {
		c, ok := g.Client(name)
		if !ok {
			t.Fatalf("%s was dropped; events: %q", name, g.Events.Messages())
		}
		if !c.ConnectedSince.Equal(since) {
			t.Fatalf("%s registered again; events: %q", name, g.Events.Messages())
		}
		if hb := c.LastHeartbeat.UnixNano(); hb > since.UnixNano() {
			seen[hb] = true
		}
		return len(seen) >= n
	})
}

func TestHeartbeatsAtTheGatewaysCMPI(t *testing.T) {
	t.Parallel()
	t.Run("told in welcome", func(t *testing.T) {
		t.Parallel()
		// One second is the shortest CMPI the wire carries. Heartbeats
		// within the 5 s wait, on one registration, show the Client uses
		// it and not the default minute.
		g := peertest.Start(t, peertest.Config{Keys: []string{key}, CMPI: time.Second})
		a := startAgent(t, agentConfig(g, "pc", nil))
		a.waitConnected(t)
		heartbeats(t, g, "pc", 2)
		if n := g.Events.Count("Client pc Disconnected"); n != 0 {
			t.Fatalf("the gateway dropped the Client %d times", n)
		}
	})
	t.Run("changed by config", func(t *testing.T) {
		t.Parallel()
		g := peertest.Start(t, peertest.Config{Keys: []string{key}}) // the default minute
		a := startAgent(t, agentConfig(g, "pc", nil))
		a.waitConnected(t)
		g.Relay.SetCMPI(time.Second)
		heartbeats(t, g, "pc", 2)
	})
}

// The gateway's CMPI is a time.Duration but the wire carries whole seconds.
func TestSubSecondCMPI(t *testing.T) {
	t.Parallel()
	g := peertest.Start(t, peertest.Config{Keys: []string{key}, CMPI: 100 * time.Millisecond})
	a := startAgent(t, agentConfig(g, "pc", nil))
	a.waitConnected(t)
	heartbeats(t, g, "pc", 3)
}

func TestSessionReachesLocalService(t *testing.T) {
	t.Parallel()
	g := peertest.Start(t, peertest.Config{Keys: []string{key}})
	a := startAgent(t, agentConfig(g, "pc", map[string]string{"echo": peertest.EchoServer(t), "digest": peertest.DigestServer(t)}))
	a.waitConnected(t)

	t.Run("byte-exact both ways", func(t *testing.T) {
		conn := g.MustConnect(t, key, "ctl", "pc/echo")
		peertest.MustEchoBothWays(t, conn, 1<<20)
		// And the service's half-close reaches the Control after ours.
		peertest.MustEchoBothWays(t, conn, 1)
		if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if rest, err := io.ReadAll(conn); err != nil || len(rest) != 0 {
			t.Fatalf("after half-close got %q, %v; want EOF", rest, err)
		}
	})
	t.Run("half-close passed on, service answers after it", func(t *testing.T) {
		conn := g.MustConnect(t, key, "ctl", "pc/digest")
		peertest.MustHalfClose(t, conn, bytes.Repeat([]byte("switchboard "), 50_000))
	})
	g.WaitEvent(t, "Control ctl connected to Client pc")
	peertest.WaitFor(t, "the sessions to end", func() bool { return g.Relay.Stats().Sessions == 0 })
	if !a.Connected() {
		t.Fatal("the agent lost its gateway connection")
	}
}

// The Control may speak first (an HTTP request through the session): its
// first bytes can reach the Client in the same read as Ready, and must
// still reach the service.
func TestSessionKeepsBytesThatCameWithReady(t *testing.T) {
	t.Parallel()
	const first = "GET / HTTP/1.0\r\n\r\n"
	echoed := make(chan string, 1)
	d := peertest.FakeGateway(t, func(conn net.Conn, br *bufio.Reader, h wire.Hello) {
		switch h.Role {
		case wire.RoleClient:
			_ = wire.WriteFrame(conn, wire.TypeWelcome, wire.Welcome{CMPISeconds: 60})
			_ = wire.WriteFrame(conn, wire.TypeOpen, wire.Open{SessionID: "5e551011", Service: "echo", Control: "ctl"})
			_, _ = io.Copy(io.Discard, br) // until the agent goes
		case wire.RoleAccept:
			if h.Target != "5e551011" || h.Name != "pc" {
				echoed <- fmt.Sprintf("accept hello %+v", h)
				return
			}
			var b bytes.Buffer
			_ = wire.WriteFrame(&b, wire.TypeReady, wire.Ready{SessionID: "5e551011"})
			b.WriteString(first)
			if _, err := conn.Write(b.Bytes()); err != nil { // one segment
				echoed <- err.Error()
				return
			}
			_ = conn.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(br)
			if err != nil {
				echoed <- err.Error()
				return
			}
			echoed <- string(got)
		}
	})
	cfg := agentConfig(nil, "pc", map[string]string{"echo": peertest.EchoServer(t)})
	cfg.Dialer = d
	startAgent(t, cfg)
	select {
	case got := <-echoed:
		if got != first {
			t.Fatalf("the service echoed %q, want %q", got, first)
		}
	case <-time.After(peertest.Wait):
		t.Fatal("no echo from the service")
	}
}

func TestUnreachableServiceFailsSessionAtOnce(t *testing.T) {
	t.Parallel()
	g := peertest.Start(t, peertest.Config{Keys: []string{key}})
	logs := &peertest.Logs{}
	cfg := agentConfig(g, "pc", map[string]string{"echo": peertest.EchoServer(t), "down": peertest.ClosedAddr(t)})
	cfg.Logger = logs.Logger()
	a := startAgent(t, cfg)
	a.waitConnected(t)

	// The relay waits 15 s for an answer; the Control gives up sooner, so
	// only the Client's own refusal can make this pass.
	ctx, cancel := context.WithTimeout(context.Background(), peertest.Wait)
	defer cancel()
	for range 2 {
		_, err := g.Connect(ctx, key, "ctl", "pc/down")
		peertest.WireError(t, err, wire.CodeUnavailable, `could not open service "down": the service is not reachable on the Client`)
	}
	if _, ok := logs.Find("cannot reach local service"); !ok {
		t.Error("the agent did not log the failed local dial")
	}
	// The Client is still there and still serves.
	conn := g.MustConnect(t, key, "ctl", "pc/echo")
	peertest.MustEchoBothWays(t, conn, 64<<10)
	if !a.Connected() || g.Events.Count("Client pc Disconnected") != 0 {
		t.Fatalf("the Client lost its channel; events: %q", g.Events.Messages())
	}
	if n := g.Events.Count("Client pc connected"); n != 1 {
		t.Fatalf("the Client registered %d times, want once", n)
	}
}

func TestSessionConnectionFailureFailsSessionAtOnce(t *testing.T) {
	t.Parallel()
	g := peertest.Start(t, peertest.Config{Keys: []string{key}})
	cfg := agentConfig(g, "pc", map[string]string{"echo": peertest.EchoServer(t)})
	// The control channel's dial goes through; every later one (the
	// session's) fails before it reaches the network.
	var dials atomic.Int32
	cfg.Dialer.Proxy = func(peer.Gateway) (*url.URL, error) {
		if dials.Add(1) == 1 {
			return nil, nil
		}
		return nil, errors.New("test: no more connections")
	}
	a := startAgent(t, cfg)
	a.waitConnected(t)
	ctx, cancel := context.WithTimeout(context.Background(), peertest.Wait)
	defer cancel()
	_, err := g.Connect(ctx, key, "ctl", "pc/echo")
	peertest.WireError(t, err, wire.CodeUnavailable, `could not open service "echo"`)
}

func TestReconnects(t *testing.T) {
	t.Parallel()
	t.Run("after the gateway restarts on the same port", func(t *testing.T) {
		t.Parallel()
		echo := peertest.EchoServer(t)
		g1 := peertest.Start(t, peertest.Config{Keys: []string{key}})
		a := startAgent(t, agentConfig(g1, "pc", map[string]string{"echo": echo}))
		a.waitConnected(t)

		g1.Stop(t)
		peertest.WaitFor(t, "the agent to notice the gateway went", func() bool { return !a.Connected() })
		g2 := peertest.Start(t, peertest.Config{Keys: []string{key}, Addr: g1.Addr})
		a.waitConnected(t)
		g2.WaitEvent(t, "Client pc connected")
		peertest.MustEchoBothWays(t, g2.MustConnect(t, key, "ctl", "pc/echo"), 4096)
	})
	t.Run("after its key was removed and added again", func(t *testing.T) {
		t.Parallel()
		g := peertest.Start(t, peertest.Config{Keys: []string{key}})
		a := startAgent(t, agentConfig(g, "pc", nil))
		a.waitConnected(t)

		g.Relay.SetKeys(peertest.Keys(wrongKey))
		g.WaitEvent(t, "Client pc Disconnected")
		// Refused while the key is missing, and trying again.
		g.WaitEvent(t, "Security check failed for Client pc (127.0.0.1). Terminating connection from 127.0.0.1")
		g.Relay.SetKeys(peertest.Keys(wrongKey, key))
		a.waitConnected(t)
		peertest.WaitFor(t, "a second registration", func() bool { return g.Events.Count("Client pc connected") == 2 })
	})
}

func TestRefusedWithClearError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		gwKeys    []string
		code      string
		reason    string
		wantEvent string
	}{
		{"wrong key", []string{key}, wire.CodeUnauthorized, "the gateway key is not valid on this gateway",
			"Security check failed for Client pc (127.0.0.1). Terminating connection from 127.0.0.1"},
		{"no keys on the gateway", nil, wire.CodeNoKeys, "no gateway key is configured on this gateway", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := peertest.Start(t, peertest.Config{Keys: tt.gwKeys})
			logs := &peertest.Logs{}
			cfg := agentConfig(g, "pc", nil)
			cfg.Key = wrongKey
			cfg.Logger = logs.Logger()
			a := startAgent(t, cfg)
			var rec peertest.LogRecord
			peertest.WaitFor(t, "the refusal to be logged", func() bool {
				var ok bool
				rec, ok = logs.Find("gateway refused the Client")
				return ok
			})
			if rec.Attrs["code"] != tt.code || !strings.Contains(rec.Attrs["reason"], tt.reason) {
				t.Fatalf("logged code=%q reason=%q, want %s containing %q", rec.Attrs["code"], rec.Attrs["reason"], tt.code, tt.reason)
			}
			if rec.Attrs["gateway"] != "http://"+g.Addr {
				t.Errorf("logged gateway=%q, want http://%s", rec.Attrs["gateway"], g.Addr)
			}
			if tt.wantEvent != "" {
				g.WaitEvent(t, tt.wantEvent)
			}
			if a.Connected() || len(g.Relay.Clients()) != 0 {
				t.Fatal("a refused Client counts as connected")
			}
		})
	}
}

// goroutineStacks is every goroutine's stack, for a failure message.
func goroutineStacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// Not parallel: it counts the process's goroutines.
func TestStopsCleanlyWhenContextEnds(t *testing.T) {
	g := peertest.Start(t, peertest.Config{Keys: []string{key}, CMPI: time.Second})
	echo := peertest.EchoServer(t)
	// Warm up whatever a first upgrade or dial starts lazily, and let it
	// settle before counting.
	b0 := runtime.NumGoroutine()
	d := g.Dialer()
	pc, err := d.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pc.Close()
	ec, err := net.Dial("tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	peertest.MustEchoBothWays(t, ec, 1)
	ec.Close()
	peertest.WaitFor(t, "the warm-up to settle", func() bool { return runtime.NumGoroutine() <= b0 })
	base := runtime.NumGoroutine()

	a := startAgent(t, agentConfig(g, "pc", map[string]string{"echo": echo}))
	a.waitConnected(t)
	conn := g.MustConnect(t, key, "ctl", "pc/echo")
	peertest.MustEchoBothWays(t, conn, 4096) // a session in progress

	if err := a.stop(t); err != nil {
		t.Fatalf("Run returned %v when its context ended, want nil", err)
	}
	if a.Connected() {
		t.Error("Connected after Run returned")
	}
	// The session ended with the agent: the Control sees its end.
	_ = conn.SetReadDeadline(time.Now().Add(peertest.Wait))
	if _, err := io.Copy(io.Discard, conn); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the session outlived the agent")
	}
	conn.Close()
	g.WaitEvent(t, "Client pc Disconnected")
	g.WaitEvent(t, "Control ctl disconnected from Client pc")

	deadline := time.Now().Add(peertest.Wait)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines %s after the agent stopped, %d before it started:\n%s", runtime.NumGoroutine(), peertest.Wait, base, goroutineStacks())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStopsWhileWaitingToReconnect(t *testing.T) {
	t.Parallel()
	logs := &peertest.Logs{}
	a := startAgent(t, agent.Config{
		Dialer:     peer.Dialer{Gateway: peer.Gateway{Host: peertest.ClosedAddr(t)}, Timeout: peertest.Wait},
		Key:        key,
		Name:       "pc",
		Logger:     logs.Logger(),
		MinBackoff: time.Hour, // the first wait is at least half an hour
		MaxBackoff: time.Hour,
	})
	peertest.WaitFor(t, "the first failed attempt", func() bool {
		_, ok := logs.Find("reconnecting")
		return ok
	})
	if rec, _ := logs.Find("connection to gateway lost"); !strings.Contains(rec.Attrs["err"], "connect to gateway") {
		t.Errorf("logged %q, want the dial error", rec.Attrs["err"])
	}
	if err := a.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

// A gateway that refuses the Client's key will refuse it again: the agent
// waits longer after each such refusal, doubling from MaxBackoff up to
// RefusedMaxBackoff, and says so, instead of retrying (and costing the
// gateway a security event) every MaxBackoff.
func TestLastingRefusalBacksOffLonger(t *testing.T) {
	t.Parallel()
	g := peertest.Start(t, peertest.Config{Keys: []string{"a key this agent does not have"}})
	logs := &peertest.Logs{}
	cfg := agentConfig(g, "pc-refused", nil)
	cfg.Logger = logs.Logger()
	cfg.RefusedMaxBackoff = 400 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_ = a.Run(ctx)
	const msg = "the gateway refuses this Client, and asking again soon would not change that; waiting longer before each try"
	recs := logs.FindAll(msg)
	if len(recs) < 4 {
		t.Fatalf("%d long waits logged, want at least 4", len(recs))
	}
	for i, want := range []string{"100ms", "200ms", "400ms", "400ms"} {
		if got := recs[i].Attrs["retry_within"]; got != want {
			t.Errorf("wait %d = %s, want %s", i+1, got, want)
		}
	}
	// Jittered waits of up to 100, 200, 400, 400... ms (half of that on
	// average) in 3 s: at most a score of refusals, where MaxBackoff
	// alone (up to 100 ms) makes about sixty.
	n := 0
	for _, m := range g.Events.Messages() {
		if strings.HasPrefix(m, "Security check failed for Client pc-refused (") {
			n++
		}
	}
	if n < 4 || n > 30 {
		t.Fatalf("the gateway wrote %d refusals in 3 s, want 4 to 30", n)
	}
}
