// Package peertest runs an in-process gateway for the peers' tests: the real
// relay core behind the real HTTP upgrade handler (handlers.Handlers), on a
// loopback listener, with no database. With it come what the agent's and the
// Control's tests both need around it: a recorder for the relay's events and
// one for a peer's logs, local services to reach through a session (echo,
// digest), a fake gateway to script a handshake by hand, and polling helpers.
//
// It lives in a package of its own, and not in _test.go files, because test
// files cannot be shared between packages: both peers' tests carried a copy.
// Only tests import it.
package peertest

import (
	"bufio"
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

// Wait is how long any condition may take to become true. It bounds every
// helper here, so that a broken peer fails its test instead of hanging it.
const Wait = 5 * time.Second

// Salt is every test gateway's salt. A fixed one lets Keys compute the
// relay's view of a key without a gateway, and fake gateways send the same.
var Salt = []byte("0123456789abcdef0123456789abcdef")

// Keys is the relay's view of gateway keys, for Gateway.Relay.SetKeys.
func Keys(keys ...string) []relay.Key {
	out := make([]relay.Key, 0, len(keys))
	for _, k := range keys {
		v := wire.Verifier(Salt, k)
		out = append(out, relay.Key{KeyID: wire.KeyID(v), Label: k, Verifier: v})
	}
	return out
}

// Events collects the relay's events; tests wait for them because they are
// the gateway's account of what a peer did.
type Events struct {
	mu  sync.Mutex
	evs []event.Event
}

// Emit records e; it makes Events a relay.Config.Events.
func (s *Events) Emit(e event.Event) {
	s.mu.Lock()
	s.evs = append(s.evs, e)
	s.mu.Unlock()
}

// Count is how many events carry exactly msg.
func (s *Events) Count(msg string) int {
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

// Messages is every event's message so far, in order, for failure messages.
func (s *Events) Messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.evs))
	for i, e := range s.evs {
		out[i] = e.Message
	}
	return out
}

// Config is what a test gateway differs in.
type Config struct {
	Keys        []string            // the gateway keys it accepts
	CMPI        time.Duration       // relay.Config.CMPI; 0 is the relay's default
	Addr        string              // "" picks a free loopback port
	Auth        relay.Authenticator // nil admits Controls by key alone
	OpenTimeout time.Duration       // relay.Config.OpenTimeout; 0 is the relay's 15 s
}

// Gateway is one running gateway: relay plus HTTP server.
type Gateway struct {
	Relay  *relay.Server
	Events *Events
	Addr   string

	srv      *http.Server
	served   chan struct{}
	stopOnce sync.Once
}

// Start runs a gateway until the test ends.
func Start(t testing.TB, cfg Config) *Gateway {
	t.Helper()
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	events := &Events{}
	rs := relay.New(relay.Config{Node: "test-node", Salt: Salt, CMPI: cfg.CMPI, Events: events, Auth: cfg.Auth, OpenTimeout: cfg.OpenTimeout})
	rs.SetKeys(Keys(cfg.Keys...))
	h := &handlers.Handlers{Relay: rs, Logger: slog.New(slog.DiscardHandler)}
	g := &Gateway{
		Relay: rs, Events: events, Addr: ln.Addr().String(),
		srv:    &http.Server{Handler: h.Routes(), ReadHeaderTimeout: Wait},
		served: make(chan struct{}),
	}
	go func() {
		defer close(g.served)
		_ = g.srv.Serve(ln)
	}()
	t.Cleanup(func() { g.Stop(t) })
	return g
}

// Stop closes the listener and every connection, and waits until the relay
// has finished serving them. It runs once, whether a test calls it (to take
// the gateway away from a peer) or the test's cleanup does.
func (g *Gateway) Stop(t testing.TB) {
	t.Helper()
	g.stopOnce.Do(func() {
		_ = g.srv.Close()
		g.Relay.Close()
		<-g.served
		ctx, cancel := context.WithTimeout(context.Background(), Wait)
		defer cancel()
		if err := g.Relay.Wait(ctx); err != nil {
			t.Errorf("gateway stop: %v", err)
		}
	})
}

// Dialer reaches the gateway.
func (g *Gateway) Dialer() peer.Dialer {
	return peer.Dialer{Gateway: peer.Gateway{Host: g.Addr}, UserAgent: "peertest", Timeout: Wait}
}

// Client is the relay's entry for the Client called name, if connected.
func (g *Gateway) Client(name string) (relay.ClientInfo, bool) {
	for _, c := range g.Relay.Clients() {
		if c.Name == name {
			return c, true
		}
	}
	return relay.ClientInfo{}, false
}

// Connect opens a session the way a Control does, with the peer package
// alone: the agent's tests need a Control's side of a session without
// depending on the package they would then also test.
func (g *Gateway) Connect(ctx context.Context, key, control, target string) (net.Conn, error) {
	d := g.Dialer()
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

// MustConnect is Connect within Wait, failing the test if it cannot. The
// session closes when the test ends and may not take longer than Wait.
func (g *Gateway) MustConnect(t testing.TB, key, control, target string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	conn, err := g.Connect(ctx, key, control, target)
	if err != nil {
		t.Fatalf("connect %s: %v", target, err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(Wait))
	return conn
}

// WaitEvent waits until the relay has emitted an event with exactly msg.
func (g *Gateway) WaitEvent(t testing.TB, msg string) {
	t.Helper()
	WaitFor(t, "event "+quote(msg), func() bool { return g.Events.Count(msg) > 0 })
}

func quote(s string) string { return "\"" + s + "\"" }

// WaitFor polls cond until it is true, and fails the test if that takes
// longer than Wait. Peers report their state asynchronously, so tests poll.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", Wait, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Serve runs handle for every connection to a fresh loopback listener
// until the test ends, and waits for the handlers to return, so that none
// outlives its test. It returns the listener's address.
func Serve(t testing.TB, handle func(net.Conn)) string {
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

// EchoServer echoes until EOF and then half-closes.
func EchoServer(t testing.TB) string {
	t.Helper()
	return Serve(t, func(c net.Conn) {
		_, _ = io.Copy(c, c)
		_ = c.(*net.TCPConn).CloseWrite()
		_, _ = io.Copy(io.Discard, c)
	})
}

// DigestServer reads until EOF, and only then answers with the SHA-256 of
// what it read: a session that does not pass on the Control's half-close
// never gets an answer.
func DigestServer(t testing.TB) string {
	t.Helper()
	return Serve(t, func(c net.Conn) {
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			return
		}
		_, _ = c.Write(h.Sum(nil))
	})
}

// ClosedAddr is a loopback address where nothing listens.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// FakeGateway upgrades every connection, sends a challenge, reads the
// Hello and lets script answer; then it closes. It stands in for the relay
// where a test needs frames the relay would never send, or in an order it
// would not.
func FakeGateway(t testing.TB, script func(conn net.Conn, br *bufio.Reader, h wire.Hello)) peer.Dialer {
	t.Helper()
	addr := Serve(t, func(conn net.Conn) {
		_ = conn.SetDeadline(time.Now().Add(Wait))
		br := bufio.NewReader(conn)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+wire.Protocol+"\r\n\r\n")
		_ = wire.WriteFrame(conn, wire.TypeChallenge, wire.Challenge{Version: wire.HandshakeVersion, Nonce: make([]byte, 32), Salt: Salt})
		var h wire.Hello
		if err := wire.Expect(br, wire.TypeHello, &h); err != nil {
			return
		}
		script(conn, br, h)
	})
	return peer.Dialer{Gateway: peer.Gateway{Host: addr}, Timeout: Wait}
}

// EchoBothWays writes n bytes while reading the echo, and compares them
// byte for byte. Writing and reading at once keeps a large n from
// deadlocking on full buffers. It returns an error rather than failing a
// test, so that it may run on any goroutine.
func EchoBothWays(conn net.Conn, n int) error {
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

// MustEchoBothWays is EchoBothWays on the test's goroutine.
func MustEchoBothWays(t testing.TB, conn net.Conn, n int) {
	t.Helper()
	if err := EchoBothWays(conn, n); err != nil {
		t.Fatal(err)
	}
}

// MustHalfClose sends payload, half-closes and expects the digest server's
// answer followed by EOF.
func MustHalfClose(t testing.TB, conn net.Conn, payload []byte) {
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

// WireError fails the test unless err is (or wraps) the gateway's answer
// code with msgPart in its message: what a peer was told is part of the
// behaviour under test, not only that it failed.
func WireError(t testing.TB, err error, code, msgPart string) {
	t.Helper()
	var we *wire.Error
	if !errors.As(err, &we) {
		t.Fatalf("err = %v (%T), want a *wire.Error %s", err, err, code)
	}
	if we.Code != code || !strings.Contains(we.Message, msgPart) {
		t.Fatalf("err = %s %q, want %s containing %q", we.Code, we.Message, code, msgPart)
	}
}
