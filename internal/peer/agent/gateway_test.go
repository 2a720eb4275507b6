package agent_test

// An in-process gateway for the agent's tests: the real relay core behind the
// real HTTP upgrade handler (handlers.Handlers), on a loopback listener, with
// no database. control's tests carry a copy of these helpers: test files
// cannot be shared between packages.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/handlers"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

// wait is how long any condition may take to become true.
const wait = 5 * time.Second

var testSalt = []byte("0123456789abcdef0123456789abcdef")

// keysOf is the relay's view of gateway keys.
func keysOf(keys ...string) []relay.Key {
	out := make([]relay.Key, 0, len(keys))
	for _, k := range keys {
		v := wire.Verifier(testSalt, k)
		out = append(out, relay.Key{KeyID: wire.KeyID(v), Label: k, Verifier: v})
	}
	return out
}

// sink collects the relay's events.
type sink struct {
	mu  sync.Mutex
	evs []event.Event
}

func (s *sink) Emit(e event.Event) {
	s.mu.Lock()
	s.evs = append(s.evs, e)
	s.mu.Unlock()
}

// count is how many events carry exactly msg.
func (s *sink) count(msg string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.evs {
		if e.Message == msg {
			n++
		}
	}
	return n
}

func (s *sink) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.evs))
	for i, e := range s.evs {
		out[i] = e.Message
	}
	return out
}

type gatewayConfig struct {
	keys []string
	cmpi time.Duration
	addr string // "" picks a free loopback port
}

// testGateway is one running gateway: relay plus HTTP server.
type testGateway struct {
	Relay  *relay.Server
	Events *sink
	Addr   string

	srv      *http.Server
	served   chan struct{}
	stopOnce sync.Once
}

func startGateway(t testing.TB, cfg gatewayConfig) *testGateway {
	t.Helper()
	addr := cfg.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	events := &sink{}
	rs := relay.New(relay.Config{Node: "test-node", Salt: testSalt, CMPI: cfg.cmpi, Events: events})
	rs.SetKeys(keysOf(cfg.keys...))
	h := &handlers.Handlers{Relay: rs, Logger: slog.New(slog.DiscardHandler)}
	g := &testGateway{
		Relay: rs, Events: events, Addr: ln.Addr().String(),
		srv:    &http.Server{Handler: h.Routes(), ReadHeaderTimeout: wait},
		served: make(chan struct{}),
	}
	go func() {
		defer close(g.served)
		_ = g.srv.Serve(ln)
	}()
	t.Cleanup(func() { g.stop(t) })
	return g
}

// stop closes the listener and every connection, and waits until the relay
// has finished serving them.
func (g *testGateway) stop(t testing.TB) {
	t.Helper()
	g.stopOnce.Do(func() {
		_ = g.srv.Close()
		g.Relay.Close()
		<-g.served
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := g.Relay.Wait(ctx); err != nil {
			t.Errorf("gateway stop: %v", err)
		}
	})
}

func (g *testGateway) dialer() peer.Dialer {
	return peer.Dialer{Gateway: peer.Gateway{Host: g.Addr}, UserAgent: "agent-test", Timeout: wait}
}

// client is the relay's entry for the Client called name, if connected.
func (g *testGateway) client(name string) (relay.ClientInfo, bool) {
	for _, c := range g.Relay.Clients() {
		if c.Name == name {
			return c, true
		}
	}
	return relay.ClientInfo{}, false
}

// connect opens a session the way a Control does, with the peer package
// alone so that the agent's tests do not depend on the control package.
func (g *testGateway) connect(ctx context.Context, key, control, target string) (net.Conn, error) {
	d := g.dialer()
	conn, err := d.Dial(ctx)
	if err != nil {
		return nil, err
	}
	if err := conn.Send(key, wire.RoleConnect, control, target, nil); err != nil {
		conn.Close()
		return nil, err
	}
	var r wire.Ready
	if err := wire.Expect(conn.Reader(), wire.TypeReady, &r); err != nil {
		conn.Close()
		return nil, err
	}
	conn.ClearDeadline()
	return conn.Stream(), nil
}

func (g *testGateway) mustConnect(t testing.TB, key, control, target string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, err := g.connect(ctx, key, control, target)
	if err != nil {
		t.Fatalf("connect %s: %v", target, err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(wait))
	return conn
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", wait, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (g *testGateway) waitEvent(t testing.TB, msg string) {
	t.Helper()
	waitFor(t, "event "+quote(msg), func() bool { return g.Events.count(msg) > 0 })
}

func quote(s string) string { return "\"" + s + "\"" }

// serveTCP runs handle for every connection to a fresh loopback listener
// until the test ends, and waits for the handlers to return.
func serveTCP(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// echoServer echoes until EOF and then half-closes.
func echoServer(t testing.TB) string {
	t.Helper()
	return serveTCP(t, func(c net.Conn) {
		_, _ = io.Copy(c, c)
		_ = c.(*net.TCPConn).CloseWrite()
		_, _ = io.Copy(io.Discard, c)
	})
}

// digestServer reads until EOF, and only then answers with the SHA-256 of
// what it read: a session that does not pass on the Control's half-close
// never gets an answer.
func digestServer(t testing.TB) string {
	t.Helper()
	return serveTCP(t, func(c net.Conn) {
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			return
		}
		_, _ = c.Write(h.Sum(nil))
	})
}

// closedAddr is a loopback address where nothing listens.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// echoBothWays writes n bytes while reading the echo, and compares them
// byte for byte. It may run on any goroutine.
func echoBothWays(conn net.Conn, n int) error {
	msg := make([]byte, n)
	for i := range msg {
		msg[i] = byte(i*7 + i>>8 + 13)
	}
	werr := make(chan error, 1)
	go func() {
		_, err := conn.Write(msg)
		werr <- err
	}()
	got := make([]byte, n)
	if _, err := io.ReadFull(conn, got); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo differs from what was sent (%d bytes)", n)
	}
	return nil
}

func mustEchoBothWays(t testing.TB, conn net.Conn, n int) {
	t.Helper()
	if err := echoBothWays(conn, n); err != nil {
		t.Fatal(err)
	}
}

// mustHalfClose sends payload, half-closes and expects the digest server's
// answer followed by EOF.
func mustHalfClose(t testing.TB, conn net.Conn, payload []byte) {
	t.Helper()
	if _, err := conn.Write(payload); err != nil {
		t.Fatalf("write: %v", err)
	}
	cw, ok := conn.(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("session connection %T cannot half-close", conn)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read answer after half-close: %v", err)
	}
	want := sha256.Sum256(payload)
	if !bytes.Equal(got, want[:]) {
		t.Fatalf("answer after half-close = %x, want %x", got, want)
	}
}

func wireError(t testing.TB, err error, code, msgPart string) {
	t.Helper()
	var we *wire.Error
	if !errors.As(err, &we) {
		t.Fatalf("err = %v (%T), want a *wire.Error %s", err, err, code)
	}
	if we.Code != code || !strings.Contains(we.Message, msgPart) {
		t.Fatalf("err = %s %q, want %s containing %q", we.Code, we.Message, code, msgPart)
	}
}

// logRecords records what the agent logs.
type logRecords struct {
	mu   sync.Mutex
	recs []logRecord
}

type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (l *logRecords) logger() *slog.Logger { return slog.New(&recordHandler{l: l}) }

func (l *logRecords) find(msg string) (logRecord, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		if r.msg == msg {
			return r, true
		}
	}
	return logRecord{}, false
}

type recordHandler struct {
	l     *logRecords
	attrs []slog.Attr
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	h.l.mu.Lock()
	h.l.recs = append(h.l.recs, rec)
	h.l.mu.Unlock()
	return nil
}

func (h *recordHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &recordHandler{l: h.l, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *recordHandler) WithGroup(string) slog.Handler { return h }
