package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

// waitFor bounds every wait for something the gateway does in reaction to
// a peer. It is far longer than any of them takes, so that a loaded machine
// (-race, parallel packages) never turns a slow pass into a failure; it only
// keeps a broken relay from hanging the test binary.
const waitFor = 5 * time.Second

// testSalt is fixed so that key IDs, and with them the fuzz corpora, are
// stable from run to run.
var testSalt = []byte("switchboard relay test salt 32b!")

// keyFor is what the gateway stores for secret: never the secret itself.
func keyFor(secret string) relay.Key {
	v := wire.Verifier(testSalt, secret)
	return relay.Key{KeyID: wire.KeyID(v), Label: "label of " + secret, Verifier: v}
}

func keysFor(secrets ...string) []relay.Key {
	out := make([]relay.Key, len(secrets))
	for i, s := range secrets {
		out[i] = keyFor(s)
	}
	return out
}

// MustEventually polls cond until it holds; what describes it for the
// failure message.
func MustEventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("gave up after %s waiting for %s", waitFor, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// eventSink records every event the relay emits, in order.
type eventSink struct {
	mu  sync.Mutex
	evs []event.Event
}

func (s *eventSink) Emit(e event.Event) {
	s.mu.Lock()
	s.evs = append(s.evs, e)
	s.mu.Unlock()
}

func (s *eventSink) Events() []event.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]event.Event(nil), s.evs...)
}

func (s *eventSink) Messages() []string {
	var out []string
	for _, e := range s.Events() {
		out = append(out, e.Message)
	}
	return out
}

// Count is how many events carry exactly msg.
func (s *eventSink) Count(msg string) int {
	n := 0
	for _, e := range s.Events() {
		if e.Message == msg {
			n++
		}
	}
	return n
}

// MustWait waits for an event whose message is exactly msg and returns it.
func (s *eventSink) MustWait(tb testing.TB, msg string) event.Event {
	tb.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		for _, e := range s.Events() {
			if e.Message == msg {
				return e
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no event %q within %s; events:\n  %s", msg, waitFor, strings.Join(s.Messages(), "\n  "))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// MustNotHave fails if an event carries exactly msg. Callers use it only
// after something that would have come after that event, so that absence
// means something.
func (s *eventSink) MustNotHave(tb testing.TB, msg string) {
	tb.Helper()
	if s.Count(msg) > 0 {
		tb.Fatalf("unexpected event %q; events:\n  %s", msg, strings.Join(s.Messages(), "\n  "))
	}
}

// testGateway is a relay.Server with its connections made in process: over
// loopback TCP (so half-closes and resets behave as in production) or over
// net.Pipe (for synctest bubbles, where sockets are not allowed).
type testGateway struct {
	*relay.Server
	Events *eventSink

	ln net.Listener // nil for pipe gateways
	// dialMu pairs each dialled connection with the one Accept returns, so
	// that every test connection has its own public address.
	dialMu sync.Mutex
}

const testNode = "node-test"

// MustStartGateway starts a relay with the given keys, reached over
// loopback TCP.
func MustStartGateway(tb testing.TB, keys []string, opts ...func(*relay.Config)) *testGateway {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	return startGateway(tb, ln, keys, opts)
}

// MustStartPipeGateway starts a relay reached over net.Pipe.
func MustStartPipeGateway(tb testing.TB, keys []string, opts ...func(*relay.Config)) *testGateway {
	tb.Helper()
	return startGateway(tb, nil, keys, opts)
}

func startGateway(tb testing.TB, ln net.Listener, keys []string, opts []func(*relay.Config)) *testGateway {
	tb.Helper()
	sink := &eventSink{}
	cfg := relay.Config{Node: testNode, Salt: testSalt, Events: sink}
	for _, o := range opts {
		o(&cfg)
	}
	g := &testGateway{Server: relay.New(cfg), Events: sink, ln: ln}
	if len(keys) > 0 {
		g.SetKeys(keysFor(keys...))
	}
	// Registered before any peer's cleanup, so it runs after them: the
	// peers are gone and Wait has nothing left to wait for but the relay.
	tb.Cleanup(func() {
		g.Close()
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := g.Wait(ctx); err != nil {
			tb.Errorf("relay did not finish serving after Close: %v", err)
		}
	})
	return g
}

// connPair returns the two ends of a fresh connection to the gateway.
func (g *testGateway) connPair(tb testing.TB) (peerSide, serverSide net.Conn) {
	tb.Helper()
	if g.ln == nil {
		return net.Pipe()
	}
	g.dialMu.Lock()
	defer g.dialMu.Unlock()
	c, err := net.Dial("tcp", g.ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	s, err := g.ln.Accept()
	if err != nil {
		c.Close()
		tb.Fatal(err)
	}
	return c, s
}

// testPeer is one connection as a Client or Control sees it once the
// gateway has upgraded it.
type testPeer struct {
	net.Conn
	r         *bufio.Reader
	Challenge wire.Challenge
	PublicIP  string
}

// Read drains what the frame reader buffered past the last frame first:
// the raw bytes of a session may have arrived with Ready.
func (p *testPeer) Read(b []byte) (int, error) { return p.r.Read(b) }

// MustDialRaw connects and hands the gateway's side to Accept, as the HTTP
// layer does after a 101, and reads nothing: for peers that misbehave from
// the first byte.
func (g *testGateway) MustDialRaw(tb testing.TB, publicIP string) *testPeer {
	tb.Helper()
	peerSide, serverSide := g.connPair(tb)
	tb.Cleanup(func() { peerSide.Close() })
	// The HTTP layer hands over a small reader of its own; do the same so
	// that the relay's handling of buffered handshake bytes is exercised.
	g.Accept(context.Background(), serverSide, bufio.NewReaderSize(serverSide, 512), publicIP)
	return &testPeer{Conn: peerSide, r: bufio.NewReader(peerSide), PublicIP: publicIP}
}

// MustDial connects and reads the gateway's challenge.
func (g *testGateway) MustDial(tb testing.TB, publicIP string) *testPeer {
	tb.Helper()
	p := g.MustDialRaw(tb, publicIP)
	if err := p.Expect(wire.TypeChallenge, &p.Challenge); err != nil {
		tb.Fatalf("reading the challenge: %v", err)
	}
	if !bytes.Equal(p.Challenge.Salt, testSalt) || len(p.Challenge.Nonce) != 32 || p.Challenge.Node != testNode {
		tb.Fatalf("challenge = %+v, want the installation's salt, a 32-byte nonce and node %q", p.Challenge, testNode)
	}
	return p
}

// SendHello proves secret for this connection's challenge.
func (p *testPeer) SendHello(secret, role, name, target string, fill func(*wire.Hello)) error {
	h := wire.NewHello(p.Challenge, secret, role, name, target)
	if fill != nil {
		fill(&h)
	}
	_ = p.SetWriteDeadline(time.Now().Add(waitFor))
	return wire.WriteFrame(p.Conn, wire.TypeHello, h)
}

func (p *testPeer) MustSendHello(tb testing.TB, secret, role, name, target string, fill func(*wire.Hello)) {
	tb.Helper()
	if err := p.SendHello(secret, role, name, target, fill); err != nil {
		tb.Fatalf("sending hello: %v", err)
	}
}

// Expect reads one frame of type want (an Error frame comes back as
// *wire.Error).
func (p *testPeer) Expect(want wire.Type, v any) error {
	_ = p.SetReadDeadline(time.Now().Add(waitFor))
	defer p.SetReadDeadline(time.Time{})
	return wire.Expect(p.r, want, v)
}

func (p *testPeer) MustExpect(tb testing.TB, want wire.Type, v any) {
	tb.Helper()
	if err := p.Expect(want, v); err != nil {
		tb.Fatalf("waiting for %s: %v", want, err)
	}
}

// MustBeRefused expects an Error frame with code and then the end of the
// connection.
func (p *testPeer) MustBeRefused(tb testing.TB, want wire.Type, code string) *wire.Error {
	tb.Helper()
	var v any = new(struct{})
	err := p.Expect(want, v)
	var we *wire.Error
	if !errors.As(err, &we) {
		tb.Fatalf("got %v (%+v), want an error frame with code %q", err, v, code)
	}
	if we.Code != code {
		tb.Fatalf("error code = %q (%s), want %q", we.Code, we.Message, code)
	}
	p.MustBeClosed(tb)
	return we
}

// MustBeClosed expects the gateway to have closed (or half-closed) the
// connection: nothing more to read.
func (p *testPeer) MustBeClosed(tb testing.TB) {
	tb.Helper()
	_ = p.SetReadDeadline(time.Now().Add(waitFor))
	defer p.SetReadDeadline(time.Time{})
	n, err := io.Copy(io.Discard, p)
	if isTimeout(err) {
		tb.Fatalf("connection still open after %s (read %d more bytes)", waitFor, n)
	}
	if n > 0 {
		tb.Fatalf("read %d unexpected bytes before the connection ended", n)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// MustCloseWrite half-closes the peer's side.
func (p *testPeer) MustCloseWrite(tb testing.TB) {
	tb.Helper()
	cw, ok := p.Conn.(interface{ CloseWrite() error })
	if !ok {
		tb.Fatalf("%T cannot half-close", p.Conn)
	}
	if err := cw.CloseWrite(); err != nil {
		tb.Fatal(err)
	}
}

// MustReset closes the peer's side with a TCP reset instead of a FIN: what
// a crashed peer or a middlebox timing out looks like.
func (p *testPeer) MustReset(tb testing.TB) {
	tb.Helper()
	tc, ok := p.Conn.(*net.TCPConn)
	if !ok {
		tb.Fatalf("%T cannot reset", p.Conn)
	}
	if err := tc.SetLinger(0); err != nil {
		tb.Fatal(err)
	}
	tc.Close()
}

// testClient is a registered Client: its control channel, read by a
// goroutine of its own as the agent does, so that the gateway's writes
// (heartbeat acks, opens, goodbye) never block on the test.
type testClient struct {
	*testPeer
	Name, Secret, RealIP string
	Welcome              wire.Welcome

	wmu     sync.Mutex
	acks    atomic.Int64
	frames  chan clientFrame // everything but heartbeat acks
	ended   chan struct{}    // closed when the channel's reader stops
	readErr error            // why it stopped; read after ended
}

type clientFrame struct {
	t       wire.Type
	payload []byte
}

// Register registers a Client; the error is the gateway's refusal.
func (g *testGateway) Register(tb testing.TB, secret, name, realIP, publicIP string, services ...string) (*testClient, error) {
	tb.Helper()
	p := g.MustDial(tb, publicIP)
	c := &testClient{testPeer: p, Name: name, Secret: secret, RealIP: realIP,
		frames: make(chan clientFrame, 64), ended: make(chan struct{})}
	err := p.SendHello(secret, wire.RoleClient, name, "", func(h *wire.Hello) {
		h.RealIP, h.OS, h.Version = realIP, "linux/amd64", "test"
		for _, s := range services {
			h.Services = append(h.Services, wire.Service{Name: s})
		}
	})
	if err != nil {
		return nil, err
	}
	if err := p.Expect(wire.TypeWelcome, &c.Welcome); err != nil {
		return nil, err
	}
	go c.read()
	return c, nil
}

func (g *testGateway) MustRegister(tb testing.TB, secret, name, realIP, publicIP string, services ...string) *testClient {
	tb.Helper()
	c, err := g.Register(tb, secret, name, realIP, publicIP, services...)
	if err != nil {
		tb.Fatalf("registering Client %s: %v", name, err)
	}
	return c
}

func (c *testClient) read() {
	defer close(c.ended)
	for {
		t, payload, err := wire.ReadFrame(c.r)
		if err != nil {
			c.readErr = err
			return
		}
		if t == wire.TypeHeartbeatAck {
			c.acks.Add(1)
			continue
		}
		c.frames <- clientFrame{t, payload}
	}
}

// Heartbeat confirms the Client is alive, as the agent does every CMPI.
func (c *testClient) Heartbeat() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.SetWriteDeadline(time.Now().Add(waitFor))
	return wire.WriteFrame(c.Conn, wire.TypeHeartbeat, wire.Empty{})
}

func (c *testClient) Send(t wire.Type, v any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.SetWriteDeadline(time.Now().Add(waitFor))
	return wire.WriteFrame(c.Conn, t, v)
}

// Acks is the number of heartbeat acks received.
func (c *testClient) Acks() int64 { return c.acks.Load() }

// Alive reports whether the gateway still holds the channel open.
func (c *testClient) Alive() bool {
	select {
	case <-c.ended:
		return false
	default:
		return true
	}
}

// MustNextFrame waits for the next frame other than a heartbeat ack. A
// Config frame may come at any time (SetCMPI); the agent takes it in
// passing, and so does this unless it is the one wanted.
func (c *testClient) MustNextFrame(tb testing.TB, want wire.Type, v any) {
	tb.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case f := <-c.frames:
			if f.t == wire.TypeConfig && want != wire.TypeConfig {
				continue
			}
			if f.t != want {
				tb.Fatalf("Client %s got a %s frame %s, want %s", c.Name, f.t, f.payload, want)
			}
			if err := wire.Decode(f.t, f.payload, v); err != nil {
				tb.Fatal(err)
			}
			return
		case <-c.ended:
			tb.Fatalf("Client %s: channel ended (%v) while waiting for %s", c.Name, c.readErr, want)
		case <-timeout:
			tb.Fatalf("Client %s: no %s frame within %s", c.Name, want, waitFor)
		}
	}
}

func (c *testClient) MustNextOpen(tb testing.TB) wire.Open {
	tb.Helper()
	var o wire.Open
	c.MustNextFrame(tb, wire.TypeOpen, &o)
	return o
}

// MustBeDropped waits for the gateway to close the channel and returns
// the reason it gave in a Goodbye, if it sent one.
func (c *testClient) MustBeDropped(tb testing.TB) (goodbye string) {
	tb.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case f := <-c.frames:
			if f.t == wire.TypeGoodbye {
				var g wire.Goodbye
				_ = wire.Decode(f.t, f.payload, &g)
				goodbye = g.Reason
			}
		case <-c.ended:
			for {
				select {
				case f := <-c.frames:
					if f.t == wire.TypeGoodbye {
						var g wire.Goodbye
						_ = wire.Decode(f.t, f.payload, &g)
						goodbye = g.Reason
					}
				default:
					return goodbye
				}
			}
		case <-deadline:
			tb.Fatalf("Client %s still connected after %s", c.Name, waitFor)
		}
	}
}

// MustBeAlive proves the channel works now: a heartbeat is answered.
func (c *testClient) MustBeAlive(tb testing.TB) {
	tb.Helper()
	before := c.Acks()
	if err := c.Heartbeat(); err != nil {
		tb.Fatalf("Client %s: heartbeat: %v", c.Name, err)
	}
	MustEventually(tb, "a heartbeat ack for Client "+c.Name, func() bool {
		return c.Acks() > before || !c.Alive()
	})
	if !c.Alive() {
		tb.Fatalf("Client %s: channel ended: %v", c.Name, c.readErr)
	}
}

// MustOpenSession brokers a session from a Control holding controlKey to
// c, playing both the Control and the Client's accept side.
func (g *testGateway) MustOpenSession(tb testing.TB, c *testClient, controlKey, control, target, controlIP string) (ctl, acc *testPeer) {
	tb.Helper()
	ctl = g.MustDial(tb, controlIP)
	ctl.MustSendHello(tb, controlKey, wire.RoleConnect, control, target, nil)
	open := c.MustNextOpen(tb)
	if open.Control != control || open.SessionID == "" {
		tb.Fatalf("open = %+v, want one from Control %s with a session ID", open, control)
	}
	if _, service, ok := strings.Cut(target, "/"); ok && open.Service != service {
		tb.Fatalf("open asks for service %q, want %q", open.Service, service)
	}
	acc = g.MustDial(tb, c.PublicIP)
	acc.MustSendHello(tb, c.Secret, wire.RoleAccept, c.Name, open.SessionID, nil)
	var r1, r2 wire.Ready
	acc.MustExpect(tb, wire.TypeReady, &r1)
	ctl.MustExpect(tb, wire.TypeReady, &r2)
	if r1.SessionID != open.SessionID || r2.SessionID != open.SessionID {
		tb.Fatalf("ready frames name sessions %q and %q, want %q", r1.SessionID, r2.SessionID, open.SessionID)
	}
	return ctl, acc
}

// MustConnectRefused asks for a session and expects the gateway to refuse
// it with code.
func (g *testGateway) MustConnectRefused(tb testing.TB, controlKey, control, target, controlIP, code string) {
	tb.Helper()
	ctl := g.MustDial(tb, controlIP)
	ctl.MustSendHello(tb, controlKey, wire.RoleConnect, control, target, nil)
	ctl.MustBeRefused(tb, wire.TypeReady, code)
}

// Browse lists the Clients a Control holding secret sees.
func (g *testGateway) Browse(tb testing.TB, secret, control, publicIP string) ([]wire.ClientInfo, error) {
	tb.Helper()
	p := g.MustDial(tb, publicIP)
	if err := p.SendHello(secret, wire.RoleBrowse, control, "", nil); err != nil {
		return nil, err
	}
	var all []wire.ClientInfo
	for {
		var l wire.ClientList
		if err := p.Expect(wire.TypeClientList, &l); err != nil {
			return all, err
		}
		all = append(all, l.Clients...)
		if !l.More {
			break
		}
	}
	p.MustBeClosed(tb)
	return all, nil
}

func names(cs []wire.ClientInfo) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// randomBytes is reproducible, so a failure can be replayed.
func randomBytes(n int, seed uint64) []byte {
	var s [32]byte
	s[0] = byte(seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}

// MustExchange sends up from ctl to acc and down from acc to ctl at the
// same time and checks that both arrive byte for byte.
func MustExchange(tb testing.TB, ctl, acc *testPeer, up, down []byte) {
	tb.Helper()
	errs := make(chan error, 4)
	send := func(p *testPeer, b []byte) {
		_ = p.SetWriteDeadline(time.Now().Add(6 * waitFor))
		_, err := p.Write(b)
		errs <- err
	}
	recv := func(p *testPeer, want []byte, dir string) {
		_ = p.SetReadDeadline(time.Now().Add(6 * waitFor))
		got := make([]byte, len(want))
		_, err := io.ReadFull(p, got)
		if err == nil && !bytes.Equal(got, want) {
			err = fmt.Errorf("%s: %d bytes arrived but differ from what was sent", dir, len(got))
		}
		_ = p.SetReadDeadline(time.Time{})
		errs <- err
	}
	go send(ctl, up)
	go send(acc, down)
	go recv(acc, up, "Control to Client")
	go recv(ctl, down, "Client to Control")
	for range 4 {
		if err := <-errs; err != nil {
			tb.Fatal(err)
		}
	}
}
