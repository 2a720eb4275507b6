package control_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/internal/peer/agent"
	"github.com/switchboard/switchboard/internal/peer/control"
	"github.com/switchboard/switchboard/internal/peer/peertest"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

const (
	keyA = "control-test-key-a"
	keyB = "control-test-key-b"
	keyC = "control-test-key-c" // on the gateway, held by no Client
	// wrongKey is on no gateway. Every key costs the handshake's KDF once
	// per process, so the tests share these few.
	wrongKey = "not-a-gateway-key"
)

// newControl is a Control of g named ctl, the name the events below expect.
func newControl(g *peertest.Gateway, key string) *control.Control {
	return &control.Control{Dialer: g.Dialer(), Key: key, Name: "ctl"}
}

// startAgent runs a real Client until the test ends and waits until it is
// registered.
func startAgent(t testing.TB, g *peertest.Gateway, key, name string, services map[string]string) {
	t.Helper()
	a, err := agent.New(agent.Config{
		Dialer: g.Dialer(), Key: key, Name: name, Services: services,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	})
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
			t.Errorf("agent %s did not stop", name)
		}
	})
	peertest.WaitFor(t, "Client "+name+" to register", a.Connected)
}

func ctxWait(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), peertest.Wait)
	t.Cleanup(cancel)
	return ctx
}

func mustConnect(t testing.TB, c *control.Control, target string) net.Conn {
	t.Helper()
	conn, err := c.Connect(ctxWait(t), target)
	if err != nil {
		t.Fatalf("Connect %s: %v", target, err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(peertest.Wait))
	return conn
}

func names(cs []wire.ClientInfo) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}

func TestBrowseListsExactlyTheClientsOfItsKey(t *testing.T) {
	t.Parallel()
	g := peertest.Start(t, peertest.Config{Keys: []string{keyA, keyB, keyC}})
	echo := peertest.EchoServer(t)
	startAgent(t, g, keyA, "a2", map[string]string{"vnc": echo})
	startAgent(t, g, keyA, "a1", map[string]string{"vnc": echo, "ssh": echo})
	startAgent(t, g, keyB, "b1", map[string]string{"rdp": echo})

	tests := []struct {
		key  string
		want []string
	}{
		{keyA, []string{"a1", "a2"}},
		{keyB, []string{"b1"}},
		{keyC, []string{}},
	}
	for _, tt := range tests {
		got, err := newControl(g, tt.key).Browse(ctxWait(t))
		if err != nil {
			t.Fatalf("Browse with %s: %v", tt.key, err)
		}
		if !slices.Equal(names(got), tt.want) {
			t.Errorf("Browse with %s = %v, want %v", tt.key, names(got), tt.want)
		}
		for _, c := range got {
			if c.Name == "a1" && !slices.Equal(c.Services, []string{"ssh", "vnc"}) {
				t.Errorf("a1 services = %v, want [ssh vnc]", c.Services)
			}
			if c.RealIP != "127.0.0.1" || c.ConnectedSince.IsZero() {
				t.Errorf("%s: real IP %q, connected since %v", c.Name, c.RealIP, c.ConnectedSince)
			}
		}
	}
}

func TestBrowseReadsEveryPage(t *testing.T) {
	t.Parallel()
	page := func(more bool, ns ...string) wire.ClientList {
		l := wire.ClientList{More: more}
		for _, n := range ns {
			l.Clients = append(l.Clients, wire.ClientInfo{Name: n})
		}
		return l
	}
	tests := []struct {
		name    string
		frames  []any // wire.ClientList or wire.Ready
		want    []string
		wantErr string
	}{
		{"three pages", []any{page(true, "c1", "c2"), page(true, "c3"), page(false, "c4")}, []string{"c1", "c2", "c3", "c4"}, ""},
		{"empty", []any{page(false)}, nil, ""},
		{"cut after a page that promised more", []any{page(true, "c1")}, nil, "read header"},
		{"wrong frame", []any{page(true, "c1"), wire.Ready{SessionID: "x"}}, nil, "got ready frame, want client-list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := peertest.FakeGateway(t, func(conn net.Conn, _ *bufio.Reader, h wire.Hello) {
				if h.Role != wire.RoleBrowse {
					return
				}
				for _, f := range tt.frames {
					typ := wire.TypeClientList
					if _, ok := f.(wire.Ready); ok {
						typ = wire.TypeReady
					}
					_ = wire.WriteFrame(conn, typ, f)
				}
			})
			c := &control.Control{Dialer: d, Key: keyA, Name: "ctl"}
			got, err := c.Browse(ctxWait(t))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Browse = %v, %v; want an error containing %q", names(got), err, tt.wantErr)
				}
				if got != nil {
					t.Errorf("Browse returned a partial list %v with its error", names(got))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(names(got), tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Fatalf("Browse = %v, want %v", names(got), tt.want)
			}
		})
	}
}

func TestConnectCarriesBytes(t *testing.T) {
	t.Parallel()
	g := peertest.Start(t, peertest.Config{Keys: []string{keyA}})
	startAgent(t, g, keyA, "pc", map[string]string{"echo": peertest.EchoServer(t), "digest": peertest.DigestServer(t)})
	startAgent(t, g, keyA, "solo", map[string]string{"echo": peertest.EchoServer(t)})
	c := newControl(g, keyA)

	t.Run("byte-exact both ways", func(t *testing.T) {
		conn := mustConnect(t, c, "pc/echo")
		peertest.MustEchoBothWays(t, conn, 1<<20)
		peertest.MustEchoBothWays(t, conn, 1)
	})
	t.Run("half-close", func(t *testing.T) {
		conn := mustConnect(t, c, "pc/digest")
		peertest.MustHalfClose(t, conn, []byte(strings.Repeat("0123456789", 100_000)))
	})
	t.Run("the only service by default", func(t *testing.T) {
		conn := mustConnect(t, c, "solo")
		peertest.MustEchoBothWays(t, conn, 1000)
	})
	t.Run("events name the Control", func(t *testing.T) {
		g.WaitEvent(t, "Control ctl connected to Client pc")
		g.WaitEvent(t, "Control ctl connected to Client solo")
	})
}

// A service that speaks first (SSH, VNC) may have its first bytes arrive
// with Ready, in the Control's handshake buffer: they must not be lost.
func TestConnectKeepsBytesThatCameWithReady(t *testing.T) {
	t.Parallel()
	const banner = "SSH-2.0-OpenSSH_9.6\r\n"
	d := peertest.FakeGateway(t, func(conn net.Conn, br *bufio.Reader, h wire.Hello) {
		if h.Role != wire.RoleConnect {
			return
		}
		var b bytes.Buffer
		_ = wire.WriteFrame(&b, wire.TypeReady, wire.Ready{SessionID: "s1"})
		b.WriteString(banner)
		if _, err := conn.Write(b.Bytes()); err != nil { // one segment
			return
		}
		_, _ = io.Copy(conn, br)
		_ = conn.(*net.TCPConn).CloseWrite()
	})
	c := &control.Control{Dialer: d, Key: keyA, Name: "ctl"}
	conn := mustConnect(t, c, "pc/ssh")
	got := make([]byte, len(banner))
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != banner {
		t.Fatalf("first bytes %q, %v; want the banner %q", got, err, banner)
	}
	peertest.MustEchoBothWays(t, conn, 10_000)
	cw, ok := conn.(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("%T cannot half-close", conn)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(conn); err != nil || len(rest) != 0 {
		t.Fatalf("after half-close read %q, %v; want EOF", rest, err)
	}
}

func TestConnectRefusals(t *testing.T) {
	t.Parallel()
	g := peertest.Start(t, peertest.Config{Keys: []string{keyA, keyB}})
	echo := peertest.EchoServer(t)
	startAgent(t, g, keyA, "pc", map[string]string{"echo": echo, "down": peertest.ClosedAddr(t)})
	startAgent(t, g, keyB, "other", map[string]string{"echo": echo})

	tests := []struct {
		target, code, msg string
	}{
		{"ghost", wire.CodeNotFound, `no Client named "ghost" is connected`},
		{"ghost/echo", wire.CodeNotFound, `no Client named "ghost" is connected`},
		{"pc/ftp", wire.CodeNotFound, `Client "pc" does not offer service "ftp" (it offers down, echo)`},
		{"pc", wire.CodeBadRequest, `Client "pc" offers down, echo: name one as CLIENT/SERVICE`},
		{"other/echo", wire.CodeKeyMismatch, `Client "other" does not hold this Control's gateway key`},
		{"pc/down", wire.CodeUnavailable, `Client "pc" could not open service "down": the service is not reachable on the Client`},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			conn, err := newControl(g, keyA).Connect(ctxWait(t), tt.target)
			if err == nil {
				conn.Close()
				t.Fatalf("Connect %s succeeded", tt.target)
			}
			peertest.WireError(t, err, tt.code, tt.msg)
			if want := "connect to " + tt.target + " via http://" + g.Addr + ": "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
		})
	}
	g.WaitEvent(t, "Client/Control security check failed for Control ctl. Rejecting connection request to Client other from 127.0.0.1")
	// The Client is still reachable after all that.
	peertest.MustEchoBothWays(t, mustConnect(t, newControl(g, keyA), "pc/echo"), 100)
}

// muteClient registers a Client that offers vnc and never answers a
// session request. The returned channel gets each Open the gateway sends.
func muteClient(t testing.TB, g *peertest.Gateway, name string) <-chan wire.Open {
	t.Helper()
	d := g.Dialer()
	conn, err := d.Dial(ctxWait(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.Send(keyA, wire.RoleClient, name, "", func(h *wire.Hello) { h.Services = []wire.Service{{Name: "vnc"}} }); err != nil {
		t.Fatal(err)
	}
	if err := wire.Expect(conn.Reader(), wire.TypeWelcome, &wire.Welcome{}); err != nil {
		t.Fatal(err)
	}
	conn.ClearDeadline()
	opens := make(chan wire.Open, 10)
	go func() {
		for {
			var o wire.Open
			if err := wire.Expect(conn.Reader(), wire.TypeOpen, &o); err != nil {
				return
			}
			opens <- o
		}
	}()
	return opens
}

func TestConnectEndsWithItsContext(t *testing.T) {
	t.Parallel()
	// A short open timeout only so that the gateway's side of the
	// abandoned request ends before the test's gateway stops; the Control
	// gives up long before it.
	g := peertest.Start(t, peertest.Config{Keys: []string{keyA}, OpenTimeout: 2 * time.Second})
	opens := muteClient(t, g, "mute")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		c, err := newControl(g, keyA).Connect(ctx, "mute/vnc")
		if c != nil {
			c.Close()
		}
		done <- err
	}()
	// Once the gateway has asked the Client, Connect waits for an answer
	// that will not come.
	select {
	case <-opens:
	case <-time.After(peertest.Wait):
		t.Fatal("the gateway did not ask the Client")
	}
	cancel()
	select {
	case err := <-done:
		var we *wire.Error
		if err == nil || errors.As(err, &we) {
			t.Fatalf("Connect = %v, want it cut short by its context, not the gateway's answer", err)
		}
	case <-time.After(peertest.Wait):
		t.Fatalf("Connect went on %s after its context ended", peertest.Wait)
	}
}

func TestGatewayCloseEndsPendingConnect(t *testing.T) {
	t.Parallel()
	// Close must end a connect that waits for its Client to accept, at
	// once and with "shutdown", not at the open timeout (15 s) with
	// "did not answer"; Relay.Wait (the test gateway's stop) then returns.
	g := peertest.Start(t, peertest.Config{Keys: []string{keyA}})
	opens := muteClient(t, g, "mute")
	done := make(chan error, 1)
	go func() {
		c, err := newControl(g, keyA).Connect(context.Background(), "mute/vnc")
		if c != nil {
			c.Close()
		}
		done <- err
	}()
	select {
	case <-opens:
	case <-time.After(peertest.Wait):
		t.Fatal("the gateway did not ask the Client")
	}
	g.Relay.Close()
	select {
	case err := <-done:
		peertest.WireError(t, err, wire.CodeShutdown, "shutting down")
	case <-time.After(peertest.Wait):
		t.Fatalf("Connect still waiting %s after the gateway closed", peertest.Wait)
	}
}

func TestWrongKeyIsRefused(t *testing.T) {
	t.Parallel()
	t.Run("key not on the gateway", func(t *testing.T) {
		t.Parallel()
		g := peertest.Start(t, peertest.Config{Keys: []string{keyA}})
		startAgent(t, g, keyA, "pc", map[string]string{"echo": peertest.EchoServer(t)})
		c := newControl(g, wrongKey)
		_, err := c.Browse(ctxWait(t))
		peertest.WireError(t, err, wire.CodeUnauthorized, "the gateway key is not valid on this gateway")
		g.WaitEvent(t, "Security check failed for Control browse. Terminating connection from 127.0.0.1")
		_, err = c.Connect(ctxWait(t), "pc/echo")
		peertest.WireError(t, err, wire.CodeUnauthorized, "the gateway key is not valid on this gateway")
		g.WaitEvent(t, "Security check failed for Control ctl. Rejecting connection request to Client pc from 127.0.0.1")
	})
	t.Run("no keys on the gateway", func(t *testing.T) {
		t.Parallel()
		g := peertest.Start(t, peertest.Config{})
		c := newControl(g, keyA)
		_, err := c.Browse(ctxWait(t))
		peertest.WireError(t, err, wire.CodeNoKeys, "no gateway key is configured")
		_, err = c.Connect(ctxWait(t), "pc/echo")
		peertest.WireError(t, err, wire.CodeNoKeys, "no gateway key is configured")
	})
}

func TestForward(t *testing.T) {
	t.Parallel()
	g := peertest.Start(t, peertest.Config{Keys: []string{keyA}})
	startAgent(t, g, keyA, "pc", map[string]string{"echo": peertest.EchoServer(t)})

	run := func(t *testing.T, target string, onError func(error)) (addr string, stop func() error) {
		t.Helper()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- newControl(g, keyA).Forward(ctx, ln, target, onError) }()
		var once sync.Once
		var ferr error
		stop = func() error {
			once.Do(func() {
				cancel()
				select {
				case ferr = <-done:
				case <-time.After(peertest.Wait):
					ferr = fmt.Errorf("Forward did not return within %s of its context ending", peertest.Wait)
				}
			})
			return ferr
		}
		t.Cleanup(func() { _ = stop() })
		return ln.Addr().String(), stop
	}

	t.Run("sessions", func(t *testing.T) {
		addr, stop := run(t, "pc/echo", func(err error) { t.Errorf("onError: %v", err) })
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				local, err := net.Dial("tcp", addr)
				if err != nil {
					t.Error(err)
					return
				}
				defer local.Close()
				_ = local.SetDeadline(time.Now().Add(peertest.Wait))
				if err := peertest.EchoBothWays(local, 100<<10); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if err := stop(); err != nil {
			t.Fatalf("Forward = %v, want nil after its context ended", err)
		}
		if _, err := net.Dial("tcp", addr); err == nil {
			t.Error("the listener still accepts after Forward returned")
		}
	})
	t.Run("a session that cannot open", func(t *testing.T) {
		errs := make(chan error, 1)
		addr, _ := run(t, "ghost/echo", func(err error) { errs <- err })
		local, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer local.Close()
		_ = local.SetDeadline(time.Now().Add(peertest.Wait))
		if n, err := local.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Fatalf("local connection read %d bytes, %v; want it closed", n, err)
		}
		select {
		case err := <-errs:
			peertest.WireError(t, err, wire.CodeNotFound, `no Client named "ghost"`)
		case <-time.After(peertest.Wait):
			t.Fatal("onError was not called")
		}
		// The listener keeps going.
		again, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("listener stopped after a failed session: %v", err)
		}
		again.Close()
		select {
		case err := <-errs:
			peertest.WireError(t, err, wire.CodeNotFound, `no Client named "ghost"`)
		case <-time.After(peertest.Wait):
			t.Fatal("the second connection was not tried")
		}
	})
}

// fakeAuth is an operator store with one operator, alice, for relay.Config.Auth.
type fakeAuth struct {
	factor string // "", wire.FactorTOTP or wire.FactorDuo

	mu     sync.Mutex
	reqs   []relay.AuthRequest
	tokens map[string]string // token → Control name
	issued int
}

const (
	operator = "alice"
	password = "correct horse"
	totpCode = "123456"
)

func (f *fakeAuth) Authenticate(ctx context.Context, req relay.AuthRequest, ch relay.AuthChannel) (relay.AuthResult, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	if req.Operator == "" || (req.Password == "" && req.Token == "") {
		return relay.AuthResult{}, &wire.Error{Code: wire.CodeAuthRequired, Message: "this gateway has operators: sign in"}
	}
	if req.Token != "" {
		f.mu.Lock()
		control, ok := f.tokens[req.Token]
		f.mu.Unlock()
		if !ok || control != req.Control || req.Operator != operator {
			return relay.AuthResult{}, &wire.Error{Code: wire.CodeTokenInvalid, Message: "sign in again"}
		}
		return relay.AuthResult{Operator: operator}, nil
	}
	if req.Operator != operator || req.Password != password {
		return relay.AuthResult{}, &wire.Error{Code: wire.CodeUnauthorized, Message: "wrong operator or password"}
	}
	switch f.factor {
	case wire.FactorTOTP:
		code, err := ch.Ask(ctx, wire.FactorTOTP, "Enter the code from your authenticator app", time.Minute)
		if err != nil {
			return relay.AuthResult{}, err
		}
		if code != totpCode {
			return relay.AuthResult{}, &wire.Error{Code: wire.CodeUnauthorized, Message: "wrong code"}
		}
	case wire.FactorDuo:
		if err := ch.Tell(wire.FactorDuo, "Approve the Duo Push on your phone", time.Minute); err != nil {
			return relay.AuthResult{}, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.issued++
	token := fmt.Sprintf("token-%d", f.issued)
	if f.tokens == nil {
		f.tokens = map[string]string{}
	}
	f.tokens[token] = req.Control
	return relay.AuthResult{Operator: operator, Token: token, Expires: time.Now().Add(time.Hour)}, nil
}

func (f *fakeAuth) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

func (f *fakeAuth) last() relay.AuthRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[len(f.reqs)-1]
}

// signingIn is a Control that signs in as alice and counts what it is asked.
type signingIn struct {
	*control.Control
	passwords, codes atomic.Int32
	mu               sync.Mutex
	saved            []string // tokens told to SaveToken
	notes            []string // messages told to Notify
}

func newSigningIn(g *peertest.Gateway, pw string) *signingIn {
	s := &signingIn{Control: newControl(g, keyA)}
	s.Operator = operator
	s.Password = func(context.Context) (string, error) {
		s.passwords.Add(1)
		return pw, nil
	}
	s.Code = func(_ context.Context, prompt string) (string, error) {
		s.codes.Add(1)
		if !strings.Contains(prompt, "authenticator app") {
			return "", fmt.Errorf("unexpected prompt %q", prompt)
		}
		return totpCode, nil
	}
	s.Notify = func(msg string) {
		s.mu.Lock()
		s.notes = append(s.notes, msg)
		s.mu.Unlock()
	}
	s.SaveToken = func(ok wire.AuthOK) {
		s.mu.Lock()
		s.saved = append(s.saved, ok.Token)
		s.mu.Unlock()
		if ok.Token != "" && (ok.Operator != operator || ok.Expires.IsZero()) {
			panic(fmt.Sprintf("SaveToken(%+v): want operator and expiry", ok))
		}
	}
	return s
}

func (s *signingIn) savedTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.saved)
}

func TestOperatorSignIn(t *testing.T) {
	t.Parallel()
	gateway := func(t *testing.T, factor string) (*peertest.Gateway, *fakeAuth) {
		t.Helper()
		auth := &fakeAuth{factor: factor}
		g := peertest.Start(t, peertest.Config{Keys: []string{keyA}, Auth: auth})
		return g, auth
	}

	t.Run("a Control without an operator is refused", func(t *testing.T) {
		t.Parallel()
		g, _ := gateway(t, "")
		startAgent(t, g, keyA, "pc", map[string]string{"echo": peertest.EchoServer(t)})
		c := newSigningIn(g, password)
		c.Operator = ""
		_, err := c.Browse(ctxWait(t))
		peertest.WireError(t, err, wire.CodeAuthRequired, "sign in")
		_, err = c.Connect(ctxWait(t), "pc/echo")
		peertest.WireError(t, err, wire.CodeAuthRequired, "sign in")
		if n := c.passwords.Load(); n != 0 {
			t.Errorf("asked for a password %d times without an operator", n)
		}
	})

	t.Run("the key is checked before the operator", func(t *testing.T) {
		t.Parallel()
		g, auth := gateway(t, "")
		c := newSigningIn(g, password)
		c.Key = wrongKey
		_, err := c.Browse(ctxWait(t))
		peertest.WireError(t, err, wire.CodeUnauthorized, "the gateway key is not valid")
		if n := auth.count(); n != 0 {
			t.Error("the Authenticator was asked about a Control without a valid key")
		}
	})

	t.Run("password, then the token", func(t *testing.T) {
		t.Parallel()
		g, auth := gateway(t, "")
		startAgent(t, g, keyA, "pc", map[string]string{"echo": peertest.EchoServer(t)})
		c := newSigningIn(g, password)
		got, err := c.Browse(ctxWait(t))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(names(got), []string{"pc"}) {
			t.Fatalf("Browse = %v, want [pc]", names(got))
		}
		if r := auth.last(); r.Operator != operator || r.Password != password || r.Token != "" || r.Role != wire.RoleBrowse || r.Control != "ctl" {
			t.Fatalf("first sign-in sent %+v", r)
		}
		if c.Token != "token-1" || !slices.Equal(c.savedTokens(), []string{"token-1"}) {
			t.Fatalf("token %q, saved %v; want token-1", c.Token, c.savedTokens())
		}

		conn := mustConnect(t, c.Control, "pc/echo")
		peertest.MustEchoBothWays(t, conn, 1000)
		if r := auth.last(); r.Password != "" || r.Token != "token-1" || r.Role != wire.RoleConnect || r.Target != "pc/echo" {
			t.Fatalf("second sign-in sent %+v, want the token alone", r)
		}
		if n := c.passwords.Load(); n != 1 {
			t.Fatalf("asked for the password %d times, want once", n)
		}
		if ss := g.Relay.Sessions(); len(ss) != 1 || ss[0].Operator != operator {
			t.Fatalf("sessions = %+v, want one by %s", ss, operator)
		}
	})

	t.Run("a refused token is forgotten and the password asked for", func(t *testing.T) {
		t.Parallel()
		g, _ := gateway(t, "")
		c := newSigningIn(g, password)
		c.Token = "revoked"
		if _, err := c.Browse(ctxWait(t)); err != nil {
			t.Fatal(err)
		}
		if got := c.savedTokens(); !slices.Equal(got, []string{"", "token-1"}) {
			t.Fatalf("SaveToken saw %q, want the refused token dropped and then token-1", got)
		}
		if n := c.passwords.Load(); n != 1 {
			t.Fatalf("asked for the password %d times, want once", n)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		g, _ := gateway(t, "")
		c := newSigningIn(g, "wrong")
		_, err := c.Browse(ctxWait(t))
		peertest.WireError(t, err, wire.CodeUnauthorized, "wrong operator or password")
		if c.Token != "" || len(c.savedTokens()) != 0 {
			t.Fatal("a refused sign-in left a token")
		}
	})

	t.Run("TOTP", func(t *testing.T) {
		t.Parallel()
		g, _ := gateway(t, wire.FactorTOTP)
		c := newSigningIn(g, password)
		if _, err := c.Browse(ctxWait(t)); err != nil {
			t.Fatal(err)
		}
		if n := c.codes.Load(); n != 1 {
			t.Fatalf("asked for a code %d times, want once", n)
		}
		if c.Token == "" {
			t.Fatal("no token after signing in with TOTP")
		}

		wrong := newSigningIn(g, password)
		wrong.Code = func(context.Context, string) (string, error) { return "000000", nil }
		_, err := wrong.Browse(ctxWait(t))
		peertest.WireError(t, err, wire.CodeUnauthorized, "wrong code")

		none := newSigningIn(g, password)
		none.Code = nil
		_, err = none.Browse(ctxWait(t))
		if err == nil || !strings.Contains(err.Error(), "asks for a totp code and none can be asked for") {
			t.Fatalf("err = %v, want that no code can be asked for", err)
		}
	})

	t.Run("Duo Push", func(t *testing.T) {
		t.Parallel()
		g, _ := gateway(t, wire.FactorDuo)
		c := newSigningIn(g, password)
		if _, err := c.Browse(ctxWait(t)); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		notes := slices.Clone(c.notes)
		c.mu.Unlock()
		if !slices.Equal(notes, []string{"Approve the Duo Push on your phone"}) {
			t.Fatalf("Notify saw %q", notes)
		}
	})

	t.Run("no way to ask for a password", func(t *testing.T) {
		t.Parallel()
		g, _ := gateway(t, "")
		c := newSigningIn(g, password)
		c.Password = nil
		_, err := c.Browse(ctxWait(t))
		if err == nil || !strings.Contains(err.Error(), "operator alice needs a password") {
			t.Fatalf("err = %v, want that alice needs a password", err)
		}
	})

	t.Run("no password over plain http to another machine", func(t *testing.T) {
		t.Parallel()
		c := &control.Control{
			Dialer: peer.Dialer{
				Gateway: peer.Gateway{Host: "192.0.2.1:3085"},
				// Nothing may be dialled: fail instead of reaching out.
				Proxy: func(peer.Gateway) (*url.URL, error) { return nil, errors.New("test: the Control dialled") },
			},
			Key: keyA, Name: "ctl", Operator: operator,
			Password: func(context.Context) (string, error) { return password, nil },
		}
		_, err := c.Browse(ctxWait(t))
		if !errors.Is(err, control.ErrCleartextPassword) {
			t.Fatalf("err = %v, want ErrCleartextPassword", err)
		}
	})

	t.Run("Forward signs in once for concurrent sessions", func(t *testing.T) {
		t.Parallel()
		g, _ := gateway(t, wire.FactorTOTP)
		startAgent(t, g, keyA, "pc", map[string]string{"echo": peertest.EchoServer(t)})
		c := newSigningIn(g, password)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Forward(ctx, ln, "pc/echo", func(err error) { t.Errorf("onError: %v", err) }) }()
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				local, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Error(err)
					return
				}
				defer local.Close()
				_ = local.SetDeadline(time.Now().Add(peertest.Wait))
				if err := peertest.EchoBothWays(local, 1000); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		cancel()
		select {
		case <-done:
		case <-time.After(peertest.Wait):
			t.Fatal("Forward did not return")
		}
		if p, k := c.passwords.Load(), c.codes.Load(); p != 1 || k != 1 {
			t.Fatalf("asked for the password %d and a code %d times, want once each", p, k)
		}
	})
}
