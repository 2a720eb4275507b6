package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/internal/peer/agent"
	"github.com/switchboard/switchboard/internal/peer/control"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
	"github.com/switchboard/switchboard/internal/transport"
	"github.com/switchboard/switchboard/relay/wire"
)

const testKey = "correct-horse-battery"

// testGateway is a gateway started in-process on a loopback port, with its
// own fresh database.
type testGateway struct {
	*gateway.Gateway
	cfg    gateway.Config
	t      testing.TB
	cancel context.CancelFunc
	done   chan error
	url    string
}

type gwOption func(*gateway.Config)

func withKeys(keys ...string) gwOption { return func(c *gateway.Config) { c.GatewayKeys = keys } }
func withMaxClients(n int) gwOption    { return func(c *gateway.Config) { c.MaxClients = n } }
func withCMPI(d time.Duration) gwOption {
	return func(c *gateway.Config) { c.CMPI = d }
}
func withLogMaxKB(n int) gwOption { return func(c *gateway.Config) { c.LogMaxKB = n } }

// baseConfig is a gateway configuration on a fresh database and data dir.
func baseConfig(t testing.TB) gateway.Config {
	t.Helper()
	return gateway.Config{
		Store:        gateway.Store{DatabaseURL: pgtest.MustURL(t), DataDir: t.TempDir()},
		Listen:       []string{"127.0.0.1:0"},
		CMPI:         time.Minute,
		LogMaxKB:     1000,
		Node:         "test-node",
		Grace:        2 * time.Second,
		KeyPoll:      100 * time.Millisecond,
		MetricsAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Product:      product,
		Version:      version,
	}
}

func mustStartGateway(t testing.TB, opts ...gwOption) *testGateway {
	t.Helper()
	cfg := baseConfig(t)
	cfg.GatewayKeys = []string{testKey}
	for _, o := range opts {
		o(&cfg)
	}
	return mustStartGatewayConfig(t, cfg)
}

func mustStartGatewayConfig(t testing.TB, cfg gateway.Config) *testGateway {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Logger = testLogger(t)
	g, err := gateway.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("start gateway: %v", err)
	}
	tg := &testGateway{Gateway: g, cfg: cfg, t: t, cancel: cancel, done: make(chan error, 1), url: "http://" + g.Addrs()[0].String()}
	go func() { tg.done <- g.Run(ctx) }()
	t.Cleanup(tg.stop)
	return tg
}

// stop shuts the gateway down and waits for it; safe to call twice.
func (g *testGateway) stop() {
	g.cancel()
	select {
	case <-g.done:
		g.done <- nil
	case <-time.After(30 * time.Second):
		g.t.Error("gateway did not stop within 30 s")
	}
}

// testWriter sends logs to the test log, and drops them after the test ends.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }() // a log line racing the end of the test
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (g *testGateway) dialer() peer.Dialer {
	gw, err := peer.ParseGateway(g.url)
	if err != nil {
		g.t.Fatal(err)
	}
	return peer.Dialer{Gateway: gw, Timeout: 5 * time.Second}
}

func (g *testGateway) control(key, name string) *control.Control {
	return &control.Control{Dialer: g.dialer(), Key: key, Name: name}
}

// signedControl is a Control that signs in as the console's admin, for
// gateways that have operators.
func (g *testGateway) signedControl(key, name string) *control.Control {
	c := g.control(key, name)
	c.Operator = adminName
	c.Password = func(context.Context) (string, error) { return adminPassword, nil }
	return c
}

// startAgent runs a Client agent until the test ends.
func (g *testGateway) startAgent(t testing.TB, key, name string, services map[string]string) *agent.Agent {
	t.Helper()
	return g.startAgentCtx(t, context.Background(), key, name, services)
}

// startAgentCtx runs a Client agent until ctx is done or the test ends.
func (g *testGateway) startAgentCtx(t testing.TB, parent context.Context, key, name string, services map[string]string) *agent.Agent {
	t.Helper()
	return g.startAgentWith(t, parent, g.dialer(), key, name, services)
}

// startAgentDialer runs a Client agent that dials with d.
func (g *testGateway) startAgentDialer(t testing.TB, d peer.Dialer, key, name string, services map[string]string) *agent.Agent {
	t.Helper()
	return g.startAgentWith(t, context.Background(), d, key, name, services)
}

func (g *testGateway) startAgentWith(t testing.TB, parent context.Context, d peer.Dialer, key, name string, services map[string]string) *agent.Agent {
	t.Helper()
	a, err := agent.New(agent.Config{
		Dialer: d, Key: key, Name: name, Services: services, Version: "test",
		Logger:     testLogger(t),
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return a
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *testGateway) waitConnected(t testing.TB, a *agent.Agent) {
	t.Helper()
	waitFor(t, "the Client to register", 10*time.Second, a.Connected)
}

// events returns the stored events (oldest first) once the log is flushed.
func (g *testGateway) events(t testing.TB, f db.EventFilter) []event.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.FlushEvents(ctx); err != nil {
		t.Fatalf("flush events: %v", err)
	}
	if f.Limit == 0 {
		f.Limit = 1000
	}
	evs, err := g.DB().Events(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
	return evs
}

// waitEvent waits until an event with exactly msg is stored.
func (g *testGateway) waitEvent(t testing.TB, msg string) event.Event {
	t.Helper()
	var found event.Event
	waitFor(t, fmt.Sprintf("event %q", msg), 10*time.Second, func() bool {
		for _, e := range g.events(t, db.EventFilter{}) {
			if e.Message == msg {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

func messages(evs []event.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Message
	}
	return out
}

// logFileText is everything in the gateway's GW*.log files, in order.
func (g *testGateway) logFileText(t testing.TB) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(g.LogDir(), "GW*.log"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
	}
	return buf.String()
}

// echoServer is a local service that echoes and passes half-close on.
func echoServer(t testing.TB) string {
	t.Helper()
	return serveTCP(t, func(c net.Conn) {
		_, _ = io.Copy(c, c)
		_ = c.(*net.TCPConn).CloseWrite()
	})
}

// serveTCP runs handle for every connection on a loopback listener until the
// test ends, and waits for the handlers.
func serveTCP(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func wireCode(err error) string {
	var we *wire.Error
	if errors.As(err, &we) {
		return we.Code
	}
	return ""
}

// testLogger logs warnings and errors to the test log; the info lines of
// hundreds of sessions would bury them.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// https is the gateway's address for https (the same port as http).
func (g *testGateway) https() string { return "https://" + g.Addrs()[0].String() }

// httpsClient trusts exactly the gateway's certificate, by fingerprint.
func (g *testGateway) httpsClient() *http.Client {
	pin := g.Fingerprint()
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if transport.Fingerprint(cs.PeerCertificates[0].Raw) != pin {
				return errors.New("not the test gateway's certificate")
			}
			return nil
		},
	}}}
}
