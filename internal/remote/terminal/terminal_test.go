package terminal

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/ssh"

	"github.com/switchboard/switchboard/internal/remote/recording"
)

// ---- an in-process SSH server ----

// sshServer is a tiny SSH server on loopback: user alice, password
// "secret" or the authorized key. Its shell echoes what it is sent, line
// by line: "noecho" reads the next line without echo (a password
// prompt), "exit" exits; a window change prints "size COLSxROWS".
type sshServer struct {
	ln  net.Listener
	cfg *ssh.ServerConfig
	wg  sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
	pty   ptyRequest

	passwordCalls atomic.Int32
	shells        atomic.Int32
}

type ptyRequest struct {
	Term       string
	Cols, Rows uint32
	W, H       uint32
	Modes      string
}

var (
	hostKeyA, hostKeyB ssh.Signer
	userKey            ed25519.PrivateKey
)

func init() {
	newSigner := func() ssh.Signer {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		s, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			panic(err)
		}
		return s
	}
	hostKeyA, hostKeyB = newSigner(), newSigner()
	var err error
	if _, userKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
}

// pemCache keeps the encoded keys: encrypting one takes a second (bcrypt).
var pemCache sync.Map

func userKeyPEM(t *testing.T, passphrase string) string {
	t.Helper()
	if p, ok := pemCache.Load(passphrase); ok {
		return p.(string)
	}
	var b *pem.Block
	var err error
	if passphrase == "" {
		b, err = ssh.MarshalPrivateKey(userKey, "")
	} else {
		b, err = ssh.MarshalPrivateKeyWithPassphrase(userKey, "", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	p := string(pem.EncodeToMemory(b))
	pemCache.Store(passphrase, p)
	return p
}

type serverOpts struct {
	hostKey     ssh.Signer
	kbdOnly     bool // keyboard-interactive is the only password method
	noPublicKey bool
}

func newSSHServer(t *testing.T, so serverOpts) *sshServer {
	t.Helper()
	if so.hostKey == nil {
		so.hostKey = hostKeyA
	}
	s := &sshServer{}
	s.cfg = &ssh.ServerConfig{}
	if so.kbdOnly {
		s.cfg.KeyboardInteractiveCallback = func(c ssh.ConnMetadata, ask ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			s.passwordCalls.Add(1)
			ans, err := ask("", "", []string{"Password: "}, []bool{false})
			if err != nil {
				return nil, err
			}
			if c.User() == "alice" && len(ans) == 1 && ans[0] == "secret" {
				return nil, nil
			}
			return nil, errors.New("refused")
		}
	} else {
		s.cfg.PasswordCallback = func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			s.passwordCalls.Add(1)
			if c.User() == "alice" && string(pw) == "secret" {
				return nil, nil
			}
			return nil, errors.New("refused")
		}
	}
	if !so.noPublicKey {
		authorized := userKey.Public().(ed25519.PublicKey)
		s.cfg.PublicKeyCallback = func(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			want, _ := ssh.NewPublicKey(authorized)
			if c.User() == "alice" && bytes.Equal(key.Marshal(), want.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("refused")
		}
	}
	s.cfg.AddHostKey(so.hostKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func (s *sshServer) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", s.ln.Addr().String())
}

func (s *sshServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *sshServer) go_(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

func (s *sshServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.go_(func() { s.serve(c) })
	}
}

func (s *sshServer) serve(c net.Conn) {
	defer c.Close()
	sc, chans, reqs, err := ssh.NewServerConn(c, s.cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	s.go_(func() { ssh.DiscardRequests(reqs) })
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "no")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		s.go_(func() { s.session(ch, creqs) })
	}
}

func (s *sshServer) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	shell := make(chan struct{})
	s.go_(func() {
		started := false
		for req := range reqs {
			switch req.Type {
			case "pty-req":
				var p ptyRequest
				if err := ssh.Unmarshal(req.Payload, &p); err != nil {
					req.Reply(false, nil)
					continue
				}
				s.mu.Lock()
				s.pty = p
				s.mu.Unlock()
				req.Reply(true, nil)
			case "shell":
				req.Reply(!started, nil)
				if !started {
					started = true
					s.shells.Add(1)
					close(shell)
				}
			case "window-change":
				var w struct{ Cols, Rows, W, H uint32 }
				if ssh.Unmarshal(req.Payload, &w) == nil {
					fmt.Fprintf(ch, "size %dx%d\r\n", w.Cols, w.Rows)
				}
			default:
				if req.WantReply {
					req.Reply(false, nil)
				}
			}
		}
		if !started {
			close(shell)
		}
	})
	<-shell
	echo, secret := true, false
	var line []byte
	ch.Write([]byte("$ "))
	buf := make([]byte, 256)
	for {
		n, err := ch.Read(buf)
		for _, b := range buf[:n] {
			if b != '\r' {
				line = append(line, b)
				if echo {
					ch.Write([]byte{b})
				}
				continue
			}
			ch.Write([]byte("\r\n"))
			switch {
			case secret:
				secret, echo = false, true
				ch.Write([]byte("ok\r\n"))
			case string(line) == "noecho":
				secret, echo = true, false
				ch.Write([]byte("Password: "))
			case string(line) == "exit":
				ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
				return
			}
			line = line[:0]
			if !secret {
				ch.Write([]byte("$ "))
			}
		}
		if err != nil {
			return
		}
	}
}

// ---- the pinned host keys ----

type memHostKeys struct {
	mu   sync.Mutex
	keys map[string][]byte
	fail error
}

func (m *memHostKeys) Pinned(_ context.Context, client, service string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, false, m.fail
	}
	k, ok := m.keys[client+"/"+service]
	return k, ok, nil
}

func (m *memHostKeys) Pin(_ context.Context, client, service string, key []byte, fp string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if fp != fingerprint(key) {
		return fmt.Errorf("fingerprint %s does not match the key", fp)
	}
	if _, ok := m.keys[client+"/"+service]; ok {
		return errors.New("already pinned")
	}
	if m.keys == nil {
		m.keys = map[string][]byte{}
	}
	m.keys[client+"/"+service] = key
	return nil
}

// ---- the browser ----

type outcome struct {
	res Result
	err error
}

type harness struct {
	t       *testing.T
	ssh     *sshServer
	keys    *memHostKeys
	srv     *httptest.Server
	client  *http.Client
	cancel  context.CancelFunc
	results chan outcome
}

// newHarness starts the SSH server and a web server whose one handler runs
// Serve with o (Client, Service, HostKeys and dial filled in unless set).
// It checks, at the end of the test, that the goroutines are back to what
// they were.
func newHarness(t *testing.T, so serverOpts, o Options, dial func(context.Context) (net.Conn, error)) *harness {
	t.Helper()
	checkGoroutines(t)
	h := &harness{t: t, keys: &memHostKeys{}, results: make(chan outcome, 1)}
	h.ssh = newSSHServer(t, so)
	if dial == nil {
		dial = h.ssh.dial
	}
	if o.Client == "" {
		o.Client, o.Service = "web", "ssh"
	}
	if o.HostKeys == nil {
		o.HostKeys = h.keys
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			h.results <- outcome{err: err}
			return
		}
		res, err := Serve(ctx, ws, dial, o)
		h.results <- outcome{res, err}
	}))
	h.client = &http.Client{Transport: &http.Transport{}}
	t.Cleanup(func() {
		cancel()
		h.srv.Close()
		h.client.CloseIdleConnections()
	})
	return h
}

// checkGoroutines checks at the end of the test that the goroutines are
// back to their number at its start.
func checkGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("%d goroutines, %d at the start:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func (h *harness) dial() *browser {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(h.srv.URL, "http"), &websocket.DialOptions{HTTPClient: h.client})
	if err != nil {
		h.t.Fatal(err)
	}
	c.SetReadLimit(1 << 20)
	b := &browser{t: h.t, c: c}
	h.t.Cleanup(func() { c.CloseNow() })
	return b
}

// result waits for Serve to return.
func (h *harness) result() (Result, error) {
	h.t.Helper()
	select {
	case o := <-h.results:
		return o.res, o.err
	case <-time.After(10 * time.Second):
		h.t.Fatal("Serve did not return")
		return Result{}, nil
	}
}

type browser struct {
	t   *testing.T
	c   *websocket.Conn
	out strings.Builder // the terminal output received
}

type message struct {
	Type        string `json:"type"`
	Code        string `json:"code"`
	Message     string `json:"message"`
	Algorithm   string `json:"algorithm"`
	Fingerprint string `json:"fingerprint"`
	New         bool   `json:"new"`
}

func (b *browser) sendJSON(v any) {
	b.t.Helper()
	p, err := json.Marshal(v)
	if err != nil {
		b.t.Fatal(err)
	}
	b.sendText(string(p))
}

func (b *browser) sendText(s string) {
	b.t.Helper()
	if err := b.c.Write(context.Background(), websocket.MessageText, []byte(s)); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) type_(s string) {
	b.t.Helper()
	if err := b.c.Write(context.Background(), websocket.MessageBinary, []byte(s)); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) auth(extra map[string]any) {
	b.t.Helper()
	m := map[string]any{"type": "auth", "user": "alice", "password": "secret", "cols": 80, "rows": 24}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b.sendJSON(m)
}

// next reads the next control message, collecting the output before it.
func (b *browser) next() message {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		typ, p, err := b.c.Read(ctx)
		if err != nil {
			b.t.Fatalf("reading (output so far %q): %v", b.out.String(), err)
		}
		if typ == websocket.MessageBinary {
			b.out.Write(p)
			continue
		}
		var m message
		if err := json.Unmarshal(p, &m); err != nil {
			b.t.Fatalf("message %q: %v", p, err)
		}
		return m
	}
}

func (b *browser) expect(typ string) message {
	b.t.Helper()
	m := b.next()
	if m.Type != typ {
		b.t.Fatalf("got %+v, want a %s message", m, typ)
	}
	return m
}

// waitOutput reads output until it holds s.
func (b *browser) waitOutput(s string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for !strings.Contains(b.out.String(), s) {
		typ, p, err := b.c.Read(ctx)
		if err != nil {
			b.t.Fatalf("waiting for %q in %q: %v", s, b.out.String(), err)
		}
		if typ != websocket.MessageBinary {
			b.t.Fatalf("waiting for %q in %q: got %s", s, b.out.String(), p)
		}
		b.out.Write(p)
	}
}

// closed checks that the socket is closed, with status.
func (b *browser) closed(status websocket.StatusCode) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		typ, p, err := b.c.Read(ctx)
		if err != nil {
			if got := websocket.CloseStatus(err); got != status {
				b.t.Fatalf("closed with %v (%v), want %v", got, err, status)
			}
			return
		}
		if typ == websocket.MessageBinary {
			b.out.Write(p) // output in flight
			continue
		}
		b.t.Fatalf("after the end: %q", p)
	}
}

// ---- tests ----

func TestPasswordEchoResize(t *testing.T) {
	h := newHarness(t, serverOpts{}, Options{}, nil)
	b := h.dial()
	b.auth(nil)
	hk := b.expect("hostkey")
	if hk.Fingerprint != ssh.FingerprintSHA256(hostKeyA.PublicKey()) || !hk.New || hk.Algorithm != ssh.KeyAlgoED25519 {
		t.Errorf("hostkey %+v", hk)
	}
	b.expect("ready")
	b.waitOutput("$ ")
	b.type_("hello\r")
	b.waitOutput("hello\r\n$ ")

	b.sendJSON(map[string]any{"type": "resize", "cols": 100, "rows": 40})
	b.waitOutput("size 100x40\r\n")
	// Malformed messages are ignored, and the session goes on.
	b.sendText("not json")
	b.sendJSON(map[string]any{"type": "resize", "cols": 0, "rows": 40})
	b.sendJSON(map[string]any{"type": "resize", "cols": 100, "rows": 1001})
	b.sendJSON(map[string]any{"type": "dance"})
	b.sendJSON(map[string]any{"type": "resize", "cols": 120, "rows": 50})
	b.waitOutput("size 120x50\r\n")
	if strings.Count(b.out.String(), "size ") != 2 {
		t.Errorf("output %q", b.out.String())
	}

	h.ssh.mu.Lock()
	pty := h.ssh.pty
	h.ssh.mu.Unlock()
	if pty.Term != "xterm-256color" || pty.Cols != 80 || pty.Rows != 24 {
		t.Errorf("pty %+v", pty)
	}
	if !echoOn(pty.Modes) {
		t.Errorf("modes %x: no ECHO 1", pty.Modes)
	}

	b.type_("exit\r")
	if m := b.expect("ended"); m.Message != "The remote shell ended." {
		t.Errorf("ended %+v", m)
	}
	b.closed(websocket.StatusNormalClosure)
	res, err := h.result()
	if err != nil {
		t.Fatal(err)
	}
	if res.Reason != ReasonShellExited || res.User != "alice" || res.Started.IsZero() || res.Ended.Before(res.Started) || res.Recorded {
		t.Errorf("result %+v", res)
	}
}

// echoOn reports whether encoded terminal modes set ECHO to 1.
func echoOn(modes string) bool {
	for i := 0; i+5 <= len(modes); i += 5 {
		if modes[i] == 0 {
			break
		}
		if modes[i] == ssh.ECHO && modes[i+1:i+5] == "\x00\x00\x00\x01" {
			return true
		}
	}
	return false
}

func TestKeyLogin(t *testing.T) {
	for _, tc := range []struct {
		name, passphrase, given string
		code                    string
	}{
		{name: "plain"},
		{name: "passphrase", passphrase: "open sesame", given: "open sesame"},
		{name: "wrong passphrase", passphrase: "open sesame", given: "sesame", code: ReasonBadKey},
		{name: "no passphrase", passphrase: "open sesame", code: ReasonBadKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, serverOpts{}, Options{}, nil)
			b := h.dial()
			b.auth(map[string]any{"password": nil, "key": userKeyPEM(t, tc.passphrase), "passphrase": tc.given})
			if tc.code != "" {
				m := b.expect("error")
				if m.Code != tc.code || strings.Contains(m.Message, tc.given) && tc.given != "" {
					t.Errorf("error %+v", m)
				}
				b.closed(websocket.StatusNormalClosure)
				if res, err := h.result(); err == nil || res.Reason != tc.code {
					t.Errorf("result %+v, %v", res, err)
				}
				if n := h.ssh.passwordCalls.Load(); n != 0 {
					t.Errorf("%d password calls", n)
				}
				return
			}
			b.expect("hostkey")
			b.expect("ready")
			b.type_("exit\r")
			b.expect("ended")
			b.closed(websocket.StatusNormalClosure)
			if res, err := h.result(); err != nil || res.Reason != ReasonShellExited {
				t.Errorf("result %+v, %v", res, err)
			}
		})
	}
}

func TestKeyboardInteractive(t *testing.T) {
	h := newHarness(t, serverOpts{kbdOnly: true, noPublicKey: true}, Options{}, nil)
	b := h.dial()
	b.auth(nil)
	b.expect("hostkey")
	b.expect("ready")
	b.type_("exit\r")
	b.expect("ended")
	b.closed(websocket.StatusNormalClosure)
	if res, err := h.result(); err != nil || res.Reason != ReasonShellExited {
		t.Errorf("result %+v, %v", res, err)
	}
}

func TestWrongPassword(t *testing.T) {
	for _, kbd := range []bool{false, true} {
		t.Run(fmt.Sprintf("keyboard-interactive=%v", kbd), func(t *testing.T) {
			h := newHarness(t, serverOpts{kbdOnly: kbd}, Options{}, nil)
			b := h.dial()
			b.auth(map[string]any{"password": "hunter2"})
			b.expect("hostkey")
			m := b.expect("error")
			if m.Code != ReasonAuthFailed || m.Message != "The SSH server refused the user name or the password/key." {
				t.Errorf("error %+v", m)
			}
			b.closed(websocket.StatusNormalClosure)
			res, err := h.result()
			if err == nil || res.Reason != ReasonAuthFailed || !res.Started.IsZero() {
				t.Errorf("result %+v, %v", res, err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the password is in the error: %v", err)
			}
			if n := h.ssh.shells.Load(); n != 0 {
				t.Errorf("%d shells", n)
			}
			// Keyboard-interactive answered once, not again and again.
			if n := h.ssh.passwordCalls.Load(); n != 1 {
				t.Errorf("%d password attempts", n)
			}
		})
	}
}

func TestHostKeyPinning(t *testing.T) {
	h := newHarness(t, serverOpts{}, Options{}, nil)
	fp := ssh.FingerprintSHA256(hostKeyA.PublicKey())
	for i, wantNew := range []bool{true, false} {
		b := h.dial()
		b.auth(nil)
		hk := b.expect("hostkey")
		if hk.New != wantNew || hk.Fingerprint != fp {
			t.Errorf("session %d: hostkey %+v", i, hk)
		}
		b.expect("ready")
		b.type_("exit\r")
		b.expect("ended")
		b.closed(websocket.StatusNormalClosure)
		if _, err := h.result(); err != nil {
			t.Fatal(err)
		}
	}
	if k, ok, _ := h.keys.Pinned(context.Background(), "web", "ssh"); !ok || !bytes.Equal(k, hostKeyA.PublicKey().Marshal()) {
		t.Errorf("pinned %x", k)
	}
}

func TestHostKeyChanged(t *testing.T) {
	var refused [][2]string
	var mu sync.Mutex
	h := newHarness(t, serverOpts{hostKey: hostKeyA}, Options{OnHostKeyRefused: func(fp, pinned string) {
		mu.Lock()
		refused = append(refused, [2]string{fp, pinned})
		mu.Unlock()
	}}, nil)
	if err := h.keys.Pin(context.Background(), "web", "ssh", hostKeyB.PublicKey().Marshal(), ssh.FingerprintSHA256(hostKeyB.PublicKey())); err != nil {
		t.Fatal(err)
	}
	b := h.dial()
	b.auth(nil)
	m := b.expect("error")
	now, pinned := ssh.FingerprintSHA256(hostKeyA.PublicKey()), ssh.FingerprintSHA256(hostKeyB.PublicKey())
	want := "The host key of web/ssh has changed (now " + now + ", pinned " + pinned + "). This may be an attack; the connection was refused. An admin can clear the pinned key on the Client's page."
	if m.Code != ReasonHostKeyChanged || m.Message != want {
		t.Errorf("error %+v", m)
	}
	b.closed(websocket.StatusNormalClosure)
	res, err := h.result()
	if err == nil || res.Reason != ReasonHostKeyChanged {
		t.Errorf("result %+v, %v", res, err)
	}
	mu.Lock()
	if len(refused) != 1 || refused[0] != [2]string{now, pinned} {
		t.Errorf("OnHostKeyRefused: %q", refused)
	}
	mu.Unlock()
	// Refused before the password was sent.
	if n := h.ssh.passwordCalls.Load(); n != 0 {
		t.Errorf("%d password calls", n)
	}
	if n := h.ssh.shells.Load(); n != 0 {
		t.Errorf("%d shells", n)
	}
	if k, _, _ := h.keys.Pinned(context.Background(), "web", "ssh"); !bytes.Equal(k, hostKeyB.PublicKey().Marshal()) {
		t.Error("the pin was replaced")
	}
}

func TestHostKeysFail(t *testing.T) {
	h := newHarness(t, serverOpts{}, Options{}, nil)
	h.keys.fail = errors.New("database away")
	b := h.dial()
	b.auth(nil)
	if m := b.expect("error"); m.Code != ReasonInternal {
		t.Errorf("error %+v", m)
	}
	b.closed(websocket.StatusNormalClosure)
	if _, err := h.result(); err == nil || !strings.Contains(err.Error(), "database away") {
		t.Errorf("err %v", err)
	}
	if n := h.ssh.passwordCalls.Load(); n != 0 {
		t.Errorf("%d password calls", n)
	}
}

func TestBadAuth(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  string
		bin  bool
	}{
		{name: "not json", msg: `{"type":"auth","password":"hunter2`},
		{name: "binary", msg: `{"type":"auth","user":"alice","password":"secret","cols":80,"rows":24}`, bin: true},
		{name: "type", msg: `{"type":"resize","cols":80,"rows":24}`},
		{name: "no user", msg: `{"type":"auth","password":"secret","cols":80,"rows":24}`},
		{name: "control in user", msg: `{"type":"auth","user":"al\u001bice","password":"secret","cols":80,"rows":24}`},
		{name: "long user", msg: `{"type":"auth","user":"` + strings.Repeat("a", 65) + `","password":"secret","cols":80,"rows":24}`},
		{name: "no credentials", msg: `{"type":"auth","user":"alice","cols":80,"rows":24}`},
		{name: "long password", msg: `{"type":"auth","user":"alice","password":"` + strings.Repeat("p", 1025) + `","cols":80,"rows":24}`},
		{name: "long key", msg: `{"type":"auth","user":"alice","key":"` + strings.Repeat("k", 16<<10+1) + `","cols":80,"rows":24}`},
		{name: "cols 0", msg: `{"type":"auth","user":"alice","password":"secret","cols":0,"rows":24}`},
		{name: "rows 1001", msg: `{"type":"auth","user":"alice","password":"secret","cols":80,"rows":1001}`},
		{name: "not a key", msg: `{"type":"auth","user":"alice","key":"-----BEGIN hunter2-----","cols":80,"rows":24}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, serverOpts{}, Options{}, nil)
			b := h.dial()
			typ := websocket.MessageText
			if tc.bin {
				typ = websocket.MessageBinary
			}
			if err := b.c.Write(context.Background(), typ, []byte(tc.msg)); err != nil {
				t.Fatal(err)
			}
			m := b.expect("error")
			if m.Code != ReasonBadRequest && m.Code != ReasonBadKey || strings.Contains(m.Message, "hunter2") {
				t.Errorf("error %+v", m)
			}
			b.closed(websocket.StatusNormalClosure)
			res, err := h.result()
			if err == nil || res.Reason != m.Code || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("result %+v, %v", res, err)
			}
			if n := h.ssh.passwordCalls.Load() + h.ssh.shells.Load(); n != 0 {
				t.Error("the SSH server was reached")
			}
		})
	}
}

func TestOversizedMessage(t *testing.T) {
	h := newHarness(t, serverOpts{}, Options{}, nil)
	b := h.dial()
	b.auth(map[string]any{"password": strings.Repeat("p", 70<<10)})
	b.closed(websocket.StatusMessageTooBig)
	if res, err := h.result(); err == nil || res.Reason != ReasonBadRequest {
		t.Errorf("result %+v, %v", res, err)
	}

	// After ready too.
	b = h.dial()
	b.auth(nil)
	b.expect("hostkey")
	b.expect("ready")
	b.type_(strings.Repeat("x", 70<<10))
	b.closed(websocket.StatusMessageTooBig)
	if res, err := h.result(); err != nil || res.Reason != ReasonBrowserGone {
		t.Errorf("result %+v, %v", res, err)
	}
}

func TestAuthTimeout(t *testing.T) {
	h := newHarness(t, serverOpts{}, Options{AuthTimeout: 100 * time.Millisecond}, nil)
	b := h.dial()
	if m := b.expect("error"); m.Code != ReasonTimeout {
		t.Errorf("error %+v", m)
	}
	b.closed(websocket.StatusNormalClosure)
	if res, err := h.result(); err == nil || res.Reason != ReasonTimeout {
		t.Errorf("result %+v, %v", res, err)
	}
}

func TestUnreachable(t *testing.T) {
	h := newHarness(t, serverOpts{}, Options{}, func(context.Context) (net.Conn, error) {
		return nil, errors.New("the Client web is offline")
	})
	b := h.dial()
	b.auth(nil)
	if m := b.expect("error"); m.Code != ReasonUnreachable || m.Message != "the Client web is offline" {
		t.Errorf("error %+v", m)
	}
	b.closed(websocket.StatusNormalClosure)
	if res, err := h.result(); err == nil || res.Reason != ReasonUnreachable {
		t.Errorf("result %+v, %v", res, err)
	}
}

func TestCancel(t *testing.T) {
	var endMessage atomic.Value
	endMessage.Store("")
	h := newHarness(t, serverOpts{}, Options{EndMessage: func() string { return endMessage.Load().(string) }}, nil)
	b := h.dial()
	b.auth(nil)
	b.expect("hostkey")
	b.expect("ready")
	b.waitOutput("$ ")
	endMessage.Store("An admin ended this session.")
	h.cancel()
	if m := b.expect("ended"); m.Message != "An admin ended this session." {
		t.Errorf("ended %+v", m)
	}
	b.closed(websocket.StatusNormalClosure)
	res, err := h.result()
	if err != nil || res.Reason != ReasonCancelled {
		t.Errorf("result %+v, %v", res, err)
	}
}

func TestCancelDefaultMessage(t *testing.T) {
	h := newHarness(t, serverOpts{}, Options{}, nil)
	b := h.dial()
	b.auth(nil)
	b.expect("hostkey")
	b.expect("ready")
	h.cancel()
	if m := b.expect("ended"); m.Message != "The session was ended." {
		t.Errorf("ended %+v", m)
	}
	b.closed(websocket.StatusNormalClosure)
	if res, err := h.result(); err != nil || res.Reason != ReasonCancelled {
		t.Errorf("result %+v, %v", res, err)
	}
}

func TestBrowserGone(t *testing.T) {
	h := newHarness(t, serverOpts{}, Options{}, nil)
	b := h.dial()
	b.auth(nil)
	b.expect("hostkey")
	b.expect("ready")
	b.waitOutput("$ ")
	b.c.CloseNow()
	res, err := h.result()
	if err != nil || res.Reason != ReasonBrowserGone {
		t.Errorf("result %+v, %v", res, err)
	}
}

func TestRecording(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.cast")
	var size [2]int
	h := newHarness(t, serverOpts{}, Options{Record: func(cols, rows int) (*recording.Writer, error) {
		size = [2]int{cols, rows}
		return recording.Create(path, recording.Header{Width: cols, Height: rows})
	}}, nil)
	b := h.dial()
	b.auth(nil)
	b.expect("hostkey")
	b.expect("ready")
	b.type_("echo hi\r")
	b.waitOutput("echo hi\r\n$ ")
	b.type_("noecho\r")
	b.waitOutput("Password: ")
	b.type_("hunter2\r")
	b.waitOutput("ok\r\n$ ")
	b.sendJSON(map[string]any{"type": "resize", "cols": 90, "rows": 30})
	b.waitOutput("size 90x30")
	b.type_("exit\r")
	b.expect("ended")
	b.closed(websocket.StatusNormalClosure)
	res, err := h.result()
	if err != nil || !res.Recorded {
		t.Fatalf("result %+v, %v", res, err)
	}
	if size != [2]int{80, 24} {
		t.Errorf("Record(%v)", size)
	}
	if strings.Contains(b.out.String(), "hunter2") {
		t.Fatal("the test server echoed the password")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out strings.Builder
	var resizes []string
	sc := bufio.NewScanner(f)
	for n := 0; sc.Scan(); n++ {
		if n == 0 {
			continue
		}
		var ev []any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		switch ev[1] {
		case "o":
			out.WriteString(ev[2].(string))
		case "r":
			resizes = append(resizes, ev[2].(string))
		}
	}
	if out.String() != b.out.String() {
		t.Errorf("recorded %q, shown %q", out.String(), b.out.String())
	}
	if strings.Contains(out.String(), "hunter2") {
		t.Error("the password is in the recording")
	}
	if len(resizes) != 1 || resizes[0] != "90x30" {
		t.Errorf("resizes %q", resizes)
	}
}

func TestRecordFails(t *testing.T) {
	h := newHarness(t, serverOpts{}, Options{Record: func(int, int) (*recording.Writer, error) {
		return nil, errors.New("disk full")
	}}, nil)
	b := h.dial()
	b.auth(nil)
	b.expect("hostkey")
	if m := b.expect("error"); m.Code != ReasonInternal {
		t.Errorf("error %+v", m)
	}
	b.closed(websocket.StatusNormalClosure)
	if res, err := h.result(); err == nil || res.Recorded {
		t.Errorf("result %+v, %v", res, err)
	}
}

// TestConnectionLost: the session's bytes stop under a running shell (an
// admin terminated the relay session, the Client went away): the page is
// told so, in the caller's words when it has them, not that the shell
// ended.
func TestConnectionLost(t *testing.T) {
	for _, c := range []struct{ end, want string }{
		{"", "The connection to the Client was lost: the Client went away, or the session was ended."},
		{"Session ended by admin bob.", "Session ended by admin bob."},
	} {
		var mu sync.Mutex
		var conns []net.Conn
		var h *harness
		end := c.end
		h = newHarness(t, serverOpts{}, Options{EndMessage: func() string { return end }}, func(ctx context.Context) (net.Conn, error) {
			conn, err := h.ssh.dial(ctx)
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			return conn, err
		})
		b := h.dial()
		b.auth(nil)
		b.expect("hostkey")
		b.expect("ready")
		b.waitOutput("$ ")
		mu.Lock()
		conns[0].Close()
		mu.Unlock()
		if m := b.expect("ended"); m.Message != c.want {
			t.Errorf("ended %+v, want %q", m, c.want)
		}
		b.closed(websocket.StatusNormalClosure)
		if res, err := h.result(); err != nil || res.Reason != ReasonConnLost {
			t.Errorf("result %+v, %v", res, err)
		}
	}
}
