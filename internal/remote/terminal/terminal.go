// Package terminal is the gateway's side of a browser terminal: the
// gateway is the SSH client, over a relayed session's byte stream to a
// Client's sshd, and bridges the shell to the browser over a WebSocket.
//
// # Protocol
//
// Control messages are JSON text messages; terminal data travels in
// binary messages, both ways. The browser opens with one message, within
// Options.AuthTimeout:
//
//	{"type":"auth","user":"…","password":"…","key":"PEM","passphrase":"…","cols":N,"rows":M}
//
// (password and/or key). The gateway answers with, in order:
//
//	{"type":"hostkey","algorithm":"ssh-ed25519","fingerprint":"SHA256:…","new":true|false}
//	{"type":"ready"}
//
// then binary output, until
//
//	{"type":"ended","message":"…"}
//
// and a normal close. Or, at any point before ready, with
//
//	{"type":"error","code":"…","message":"…"}
//
// and a close (or with ended, if ctx is cancelled first); code is one of
// the Reason constants that are errors
// (bad_request, timeout, unreachable, hostkey_changed, auth_failed,
// bad_key, ssh_failed, internal). Once ready, the browser sends the
// keyboard as binary messages and {"type":"resize","cols":N,"rows":M}
// when its terminal changes size; a malformed message is logged and
// ignored, one over Options.MaxMessage closes the socket with
// StatusMessageTooBig.
//
// # Host keys
//
// The host key of each Client's service is pinned on first use and must
// match afterwards: a changed key refuses the connection before any
// credential is sent. Credentials are never logged nor returned in an
// error, and neither is anything the browser sent (a JSON syntax error
// quotes the input).
package terminal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/coder/websocket"
	"golang.org/x/crypto/ssh"

	"github.com/switchboard/switchboard/internal/remote/recording"
)

// HostKeys keeps the pinned host keys, by Client and service. key is
// ssh.PublicKey.Marshal(). Pin must not replace an existing pin (two first
// connections may race; the second must then be checked against the
// first's key, not win).
type HostKeys interface {
	Pinned(ctx context.Context, client, service string) (key []byte, ok bool, err error)
	Pin(ctx context.Context, client, service string, key []byte, fingerprint string) error
}

// Options configure one terminal session.
type Options struct {
	// Client and Service name the Client and its SSH service: they key the
	// pinned host key and appear in messages.
	Client, Service string
	HostKeys        HostKeys
	// Record, when set, is called once the user is signed in, before the
	// shell starts, with the terminal's size. An error refuses the session
	// (code internal): a session that must be recorded is not run
	// unrecorded. Serve closes the Writer (closing it again is harmless).
	Record func(cols, rows int) (*recording.Writer, error)
	// Logger defaults to discarding.
	Logger *slog.Logger
	// MaxMessage is the WebSocket read limit; zero means 64 KiB. The auth
	// message, with a 16 KiB key, must fit.
	MaxMessage int64
	// AuthTimeout bounds the wait for the browser's auth message; zero
	// means 60 s.
	AuthTimeout time.Duration
	// HandshakeTimeout bounds the SSH handshake and sign-in; zero means
	// 20 s.
	HandshakeTimeout time.Duration
	// OnHostKeyRefused is told of a refused host key (the caller emits an
	// event): the key offered and the pinned one, as SHA256 fingerprints.
	OnHostKeyRefused func(fingerprint, pinned string)
	// EndMessage, when set and not empty, is the ended message sent when
	// ctx is cancelled (an admin terminated the session).
	EndMessage func() string
}

// Result describes a session once Serve returns.
type Result struct {
	// User is the SSH user name the browser sent (empty if its auth
	// message was refused).
	User string
	// Started is when the shell started (zero if it never did); Ended when
	// Serve finished.
	Started, Ended time.Time
	// Recorded says a recording was made (Options.Record returned one).
	Recorded bool
	// Reason is one of the Reason constants.
	Reason string
}

// Reasons a session ended. The first three follow a started shell; the
// others are the error codes sent to the browser.
const (
	ReasonShellExited    = "shell_exited"    // the remote shell ended
	ReasonConnLost       = "conn_lost"       // the session's connection broke (terminated, the Client gone)
	ReasonCancelled      = "cancelled"       // ctx was cancelled
	ReasonBrowserGone    = "browser_gone"    // the WebSocket closed or failed
	ReasonBadRequest     = "bad_request"     // the auth message was malformed
	ReasonTimeout        = "timeout"         // no auth message in time
	ReasonUnreachable    = "unreachable"     // dial failed
	ReasonHostKeyChanged = "hostkey_changed" // the host key differs from the pinned one
	ReasonAuthFailed     = "auth_failed"     // the SSH server refused the credentials
	ReasonBadKey         = "bad_key"         // the private key or its passphrase is unusable
	ReasonSSHFailed      = "ssh_failed"      // the SSH handshake or session failed otherwise
	ReasonInternal       = "internal"        // the host keys or the recording failed
)

const (
	defaultMaxMessage       = 64 << 10
	defaultAuthTimeout      = 60 * time.Second
	defaultHandshakeTimeout = 20 * time.Second

	maxUser       = 64
	maxPassword   = 1 << 10
	maxKey        = 16 << 10
	maxPassphrase = 1 << 10
	maxSize       = 1000

	outputBuffer = 32 << 10
	// writeTimeout bounds one write to the browser: one that cannot take
	// 32 KiB in that time is gone.
	writeTimeout = 30 * time.Second
	// pingInterval keeps the WebSocket checked, so that a browser that
	// vanished without a close (a laptop lid) does not hold a session.
	pingInterval = 30 * time.Second
	// drainTimeout is how long the output still in flight may take to
	// reach the browser once the session is over.
	drainTimeout = 2 * time.Second
	// finalTimeout bounds the last message and the close handshake.
	finalTimeout = 5 * time.Second
)

// authMessage is the browser's first message. Its String never shows the
// secrets.
type authMessage struct {
	Type       string `json:"type"`
	User       string `json:"user"`
	Password   string `json:"password"`
	Key        string `json:"key"`
	Passphrase string `json:"passphrase"`
	Cols       int    `json:"cols"`
	Rows       int    `json:"rows"`
}

func (a *authMessage) String() string { return "auth(" + a.User + ")" }

// controlMessage is any text message after ready.
type controlMessage struct {
	Type string `json:"type"`
	Cols int    `json:"cols"`
	Rows int    `json:"rows"`
}

// failure ends a session before or instead of its shell: code becomes the
// Reason and, with message, is sent to the browser; err (never holding a
// secret) is returned by Serve.
type failure struct {
	code, message string
	err           error
}

func (f *failure) Error() string { return f.code + ": " + f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// cancelled is the failure of a session whose ctx ended before its shell
// started.
func cancelled(ctx context.Context) *failure {
	return &failure{code: ReasonCancelled, err: fmt.Errorf("terminal session cancelled before its shell started: %w", context.Cause(ctx))}
}

func fail(code, message string, err error) *failure {
	if err == nil {
		err = errors.New(message)
	}
	return &failure{code: code, message: message, err: err}
}

// wsMessage is one message read from the browser.
type wsMessage struct {
	typ  websocket.MessageType
	data []byte
}

// Serve runs one terminal session over ws (already accepted) and returns
// once it is over, every goroutine it started returned and every
// connection closed; ws is closed too. dial opens the byte stream to the
// Client's SSH service. The error is nil for a shell that started and
// ended (Reason says how); otherwise it says what failed, the browser
// having been told.
func Serve(ctx context.Context, ws *websocket.Conn, dial func(ctx context.Context) (net.Conn, error), o Options) (Result, error) {
	o = o.withDefaults()
	s := &session{
		ws:   ws,
		o:    o,
		log:  o.Logger.With("client", o.Client, "service", o.Service),
		msgs: make(chan wsMessage),
		done: make(chan struct{}),
	}
	// The socket's reads and writes must not use ctx: coder/websocket
	// closes the connection when an operation's context ends, and a
	// cancelled ctx must still let the ended message out.
	ws.SetReadLimit(o.MaxMessage)
	s.goroutine(s.readBrowser)
	s.goroutine(s.ping)

	res, err := s.run(ctx, dial)
	res.Ended = time.Now()
	s.log.Info("terminal session over", "reason", res.Reason, "recorded", res.Recorded)
	return res, err
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxMessage <= 0 {
		o.MaxMessage = defaultMaxMessage
	}
	if o.AuthTimeout <= 0 {
		o.AuthTimeout = defaultAuthTimeout
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = defaultHandshakeTimeout
	}
	return o
}

// session is the state of one Serve.
type session struct {
	ws  *websocket.Conn
	o   Options
	log *slog.Logger

	msgs    chan wsMessage // from readBrowser; closed when it returns
	readErr error          // why readBrowser returned; read after msgs is closed
	done    chan struct{}  // closed when the session is being torn down
	wg      sync.WaitGroup

	ssh sync.WaitGroup // the goroutines of the shell: output pumps, wait, input

	rec *recording.Writer
}

func (s *session) goroutine(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// run does the work of Serve; whatever it returns, it has torn down.
func (s *session) run(ctx context.Context, dial func(ctx context.Context) (net.Conn, error)) (res Result, err error) {
	var client *ssh.Client
	defer func() {
		var f *failure
		if errors.As(err, &f) {
			res.Reason = f.code
		}
		var last any
		switch {
		case res.Reason == ReasonShellExited:
			last = map[string]any{"type": "ended", "message": "The remote shell ended."}
		case res.Reason == ReasonConnLost:
			// The caller knows why the session's bytes stopped (an admin
			// terminated it, the sign-in ended) when it was not the Client.
			msg := "The connection to the Client was lost: the Client went away, or the session was ended."
			if s.o.EndMessage != nil {
				if m := s.o.EndMessage(); m != "" {
					msg = m
				}
			}
			last = map[string]any{"type": "ended", "message": msg}
		case res.Reason == ReasonCancelled:
			msg := "The session was ended."
			if s.o.EndMessage != nil {
				if m := s.o.EndMessage(); m != "" {
					msg = m
				}
			}
			last = map[string]any{"type": "ended", "message": msg}
		case f != nil && f.message != "":
			last = map[string]any{"type": "error", "code": f.code, "message": f.message}
		}
		s.finish(client, last)
		if s.rec != nil {
			res.Recorded = true
			d, n, cerr := s.rec.Close()
			if cerr != nil {
				s.log.Error("terminal recording", "err", cerr)
			} else {
				s.log.Info("terminal recorded", "duration", d, "bytes", n)
			}
		}
	}()

	auth, err := s.readAuth(ctx)
	if err != nil {
		return res, err
	}
	res.User = auth.User
	s.log = s.log.With("user", auth.User)

	if s.o.HostKeys == nil {
		return res, fail(ReasonInternal, "The gateway cannot check host keys.", errors.New("terminal: Options.HostKeys is nil"))
	}
	methods, err := authMethods(auth)
	if err != nil {
		return res, err
	}

	conn, err := dial(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return res, cancelled(ctx)
		}
		return res, fail(ReasonUnreachable, err.Error(), fmt.Errorf("dialing %s/%s: %w", s.o.Client, s.o.Service, err))
	}
	client, err = s.handshake(ctx, conn, auth.User, methods)
	if err != nil {
		return res, err
	}

	sess, stdin, out, err := s.startShell(client, auth)
	if err != nil {
		return res, err
	}
	res.Started = time.Now()
	if err := s.send(map[string]any{"type": "ready"}); err != nil {
		res.Reason = ReasonBrowserGone
		return res, nil
	}
	s.log.Info("terminal session started")
	res.Reason = s.bridge(ctx, sess, stdin, out)
	return res, nil
}

// finish tears down what run left: it stops the input, closes the SSH
// connection, gives the output in flight drainTimeout to reach the
// browser, sends the last message (if any) and closes the socket. It
// returns once every goroutine has.
func (s *session) finish(client *ssh.Client, last any) {
	close(s.done)
	if client != nil {
		client.Close()
	}
	if !waitTimeout(&s.ssh, drainTimeout) {
		// The browser does not take the output: cut it off.
		_ = s.ws.CloseNow()
		s.ssh.Wait()
	}
	if last != nil {
		if err := s.send(last); err != nil {
			s.log.Debug("terminal: last message not sent", "err", err)
		}
	}
	_ = s.ws.Close(websocket.StatusNormalClosure, "")
	s.wg.Wait()
}

// waitTimeout waits for wg, at most d; it reports whether wg is done.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		// The goroutine above returns once the caller's second Wait does.
		return false
	}
}

// readBrowser reads every message from the browser into s.msgs, until the
// socket closes.
func (s *session) readBrowser() {
	defer close(s.msgs)
	for {
		typ, data, err := s.ws.Read(context.Background())
		if err != nil {
			s.readErr = err
			return
		}
		select {
		case s.msgs <- wsMessage{typ, data}:
		case <-s.done:
			// Keep reading, and dropping, until the socket closes: the
			// close handshake needs a reader.
		}
	}
}

// ping checks the socket every pingInterval; a failed ping closes it.
func (s *session) ping() {
	t := time.NewTicker(pingInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
		err := s.ws.Ping(ctx)
		cancel()
		if err != nil {
			return // the socket is closed: the reader reports it
		}
	}
}

// send writes a control message.
func (s *session) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.write(websocket.MessageText, b)
}

func (s *session) write(typ websocket.MessageType, b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	return s.ws.Write(ctx, typ, b)
}

// readAuth waits for the browser's auth message and checks it.
func (s *session) readAuth(ctx context.Context) (*authMessage, error) {
	t := time.NewTimer(s.o.AuthTimeout)
	defer t.Stop()
	var m wsMessage
	select {
	case <-ctx.Done():
		return nil, cancelled(ctx)
	case <-t.C:
		return nil, fail(ReasonTimeout, fmt.Sprintf("No sign-in arrived within %v.", s.o.AuthTimeout), nil)
	case msg, ok := <-s.msgs:
		if !ok {
			if errors.Is(s.readErr, websocket.ErrMessageTooBig) {
				// The socket is closed already (StatusMessageTooBig).
				return nil, &failure{code: ReasonBadRequest, err: fmt.Errorf("auth message: %w", websocket.ErrMessageTooBig)}
			}
			return nil, &failure{code: ReasonBrowserGone, err: fmt.Errorf("the browser left before signing in: %w", s.readErr)}
		}
		m = msg
	}
	return parseAuth(m)
}

// parseAuth checks an auth message. Its errors quote nothing of it: a
// JSON syntax error would quote the input, which may be the password.
func parseAuth(m wsMessage) (*authMessage, error) {
	bad := func(message string) error {
		return fail(ReasonBadRequest, message, errors.New("auth message: "+message))
	}
	var a authMessage
	if m.typ != websocket.MessageText || json.Unmarshal(m.data, &a) != nil || a.Type != "auth" {
		return nil, bad("The first message must be the sign-in ({\"type\":\"auth\",…}).")
	}
	switch {
	case !validUser(a.User):
		return nil, bad(fmt.Sprintf("The user name must be 1 to %d printable characters.", maxUser))
	case len(a.Password) > maxPassword:
		return nil, bad("The password is too long (at most 1 KiB).")
	case len(a.Key) > maxKey:
		return nil, bad("The private key is too large (at most 16 KiB).")
	case len(a.Passphrase) > maxPassphrase:
		return nil, bad("The passphrase is too long (at most 1 KiB).")
	case a.Password == "" && a.Key == "":
		return nil, bad("A password or a private key is needed.")
	case !validSize(a.Cols, a.Rows):
		return nil, bad(fmt.Sprintf("The terminal size must be 1 to %d columns and rows.", maxSize))
	}
	return &a, nil
}

func validUser(u string) bool {
	if len(u) == 0 || len(u) > maxUser || !utf8.ValidString(u) {
		return false
	}
	for _, r := range u {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func validSize(cols, rows int) bool {
	return cols >= 1 && cols <= maxSize && rows >= 1 && rows <= maxSize
}

// errKeyboardRetry stops a keyboard-interactive sign-in that asks again:
// the password was refused, and sending it again would only count as
// more failed attempts against the account.
var errKeyboardRetry = errors.New("keyboard-interactive: the server asked again")

// authMethods turns the auth message into SSH auth methods: the key
// first, then the password, which keyboard-interactive answers too (PAM
// setups often accept nothing else).
func authMethods(a *authMessage) ([]ssh.AuthMethod, error) {
	var methods []ssh.AuthMethod
	if a.Key != "" {
		signer, err := parseKey([]byte(a.Key), []byte(a.Passphrase))
		if err != nil {
			return nil, err
		}
		methods = append(methods, ssh.PublicKeys(signer))
	}
	if a.Password != "" {
		pw := a.Password
		answered := false
		methods = append(methods, ssh.Password(pw), ssh.KeyboardInteractive(
			func(_, _ string, questions []string, echos []bool) ([]string, error) {
				if len(questions) == 0 {
					return nil, nil
				}
				if answered {
					return nil, errKeyboardRetry
				}
				answered = true
				answers := make([]string, len(questions))
				for i := range questions {
					if !echos[i] {
						answers[i] = pw
					}
				}
				return answers, nil
			}))
	}
	return methods, nil
}

// parseKey reads a private key, with its passphrase if it has one. The
// parser's errors are not passed on: they might describe the key.
func parseKey(pem, passphrase []byte) (ssh.Signer, error) {
	signer, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		if len(passphrase) == 0 {
			return nil, fail(ReasonBadKey, "The private key is encrypted: its passphrase is needed.", nil)
		}
		signer, err = ssh.ParsePrivateKeyWithPassphrase(pem, passphrase)
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, fail(ReasonBadKey, "The passphrase of the private key is wrong.", nil)
		}
	}
	if err != nil {
		return nil, fail(ReasonBadKey, "The private key could not be read: it must be a private key in OpenSSH or PEM format.", nil)
	}
	return signer, nil
}

// hostKeyCheck is what the host key callback found; the callback runs
// again, on the SSH connection's goroutine, at each re-key.
type hostKeyCheck struct {
	mu       sync.Mutex
	accepted []byte   // the key of the first key exchange, once accepted
	failure  *failure // why a key was refused
}

// checkHostKey accepts the key the server presented if it is the pinned
// one or, without a pin, pins it; it tells the browser which it was.
func (s *session) checkHostKey(ctx context.Context, hk *hostKeyCheck, key ssh.PublicKey) error {
	hk.mu.Lock()
	defer hk.mu.Unlock()
	wire := key.Marshal()
	fp := ssh.FingerprintSHA256(key)
	if hk.accepted != nil {
		// A re-key: the server must present the same key.
		if bytes.Equal(hk.accepted, wire) {
			return nil
		}
		return s.refuseHostKey(hk, fp, fingerprint(hk.accepted))
	}
	pinned, ok, err := s.o.HostKeys.Pinned(ctx, s.o.Client, s.o.Service)
	if err != nil {
		hk.failure = fail(ReasonInternal, "The pinned host key could not be read.", fmt.Errorf("reading the pinned host key: %w", err))
		return hk.failure
	}
	if ok && !bytes.Equal(pinned, wire) {
		return s.refuseHostKey(hk, fp, fingerprint(pinned))
	}
	if !ok {
		if err := s.o.HostKeys.Pin(ctx, s.o.Client, s.o.Service, wire, fp); err != nil {
			hk.failure = fail(ReasonInternal, "The host key could not be pinned.", fmt.Errorf("pinning the host key: %w", err))
			return hk.failure
		}
		s.log.Info("terminal: host key pinned on first use", "fingerprint", fp)
	}
	hk.accepted = wire
	// A browser gone shows in the session's next write; the handshake
	// need not stop for it here.
	_ = s.send(map[string]any{"type": "hostkey", "algorithm": key.Type(), "fingerprint": fp, "new": !ok})
	return nil
}

func (s *session) refuseHostKey(hk *hostKeyCheck, fp, pinned string) error {
	s.log.Warn("terminal: host key changed, connection refused", "fingerprint", fp, "pinned", pinned)
	if s.o.OnHostKeyRefused != nil {
		s.o.OnHostKeyRefused(fp, pinned)
	}
	hk.failure = fail(ReasonHostKeyChanged,
		fmt.Sprintf("The host key of %s/%s has changed (now %s, pinned %s). This may be an attack; the connection was refused. An admin can clear the pinned key on the Client's page.",
			s.o.Client, s.o.Service, fp, pinned),
		fmt.Errorf("host key of %s/%s changed: now %s, pinned %s", s.o.Client, s.o.Service, fp, pinned))
	return hk.failure
}

// fingerprint is ssh.FingerprintSHA256 of a marshalled key.
func fingerprint(wire []byte) string {
	sum := sha256.Sum256(wire)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// handshake runs the SSH handshake and sign-in over conn, within
// HandshakeTimeout. conn is closed when it fails.
func (s *session) handshake(ctx context.Context, conn net.Conn, user string, methods []ssh.AuthMethod) (*ssh.Client, error) {
	hctx, cancel := context.WithTimeout(ctx, s.o.HandshakeTimeout)
	defer cancel()
	// ssh.NewClientConn takes no context: closing conn is what stops it.
	stop := context.AfterFunc(hctx, func() { conn.Close() })
	hk := &hostKeyCheck{}
	cfg := &ssh.ClientConfig{
		User: user,
		Auth: methods,
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			return s.checkHostKey(hctx, hk, key)
		},
		ClientVersion: "SSH-2.0-Switchboard",
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, s.o.Client+"/"+s.o.Service, cfg)
	if !stop() {
		// hctx ended: conn is closed, whatever the handshake returned.
		if err == nil {
			c.Close()
		}
		if ctx.Err() != nil {
			return nil, cancelled(ctx)
		}
		return nil, fail(ReasonSSHFailed, fmt.Sprintf("The SSH server of %s/%s did not complete the sign-in within %v.", s.o.Client, s.o.Service, s.o.HandshakeTimeout),
			fmt.Errorf("ssh handshake with %s/%s: timed out after %v", s.o.Client, s.o.Service, s.o.HandshakeTimeout))
	}
	if err != nil {
		conn.Close()
		hk.mu.Lock()
		f := hk.failure
		hk.mu.Unlock()
		if f != nil {
			return nil, f
		}
		msg := err.Error()
		if errors.Is(err, errKeyboardRetry) || strings.Contains(msg, "unable to authenticate") || strings.Contains(msg, "too many authentication attempts") {
			return nil, fail(ReasonAuthFailed, "The SSH server refused the user name or the password/key.", fmt.Errorf("ssh sign-in to %s/%s as %q: %w", s.o.Client, s.o.Service, user, err))
		}
		return nil, fail(ReasonSSHFailed, fmt.Sprintf("The SSH handshake with %s/%s failed: %v", s.o.Client, s.o.Service, err),
			fmt.Errorf("ssh handshake with %s/%s: %w", s.o.Client, s.o.Service, err))
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// startShell opens the session, requests the pty, starts the shell and
// the recording.
func (s *session) startShell(client *ssh.Client, a *authMessage) (*ssh.Session, io.WriteCloser, [2]io.Reader, error) {
	var out [2]io.Reader
	sess, err := client.NewSession()
	if err != nil {
		return nil, nil, out, fail(ReasonSSHFailed, "The SSH server refused to open a session.", fmt.Errorf("ssh session: %w", err))
	}
	modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 38400, ssh.TTY_OP_OSPEED: 38400}
	if err := sess.RequestPty("xterm-256color", a.Rows, a.Cols, modes); err != nil {
		return nil, nil, out, fail(ReasonSSHFailed, "The SSH server refused a terminal.", fmt.Errorf("ssh pty request: %w", err))
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		return nil, nil, out, fail(ReasonSSHFailed, "The SSH session failed.", fmt.Errorf("ssh stdin: %w", err))
	}
	if out[0], err = sess.StdoutPipe(); err != nil {
		return nil, nil, out, fail(ReasonSSHFailed, "The SSH session failed.", fmt.Errorf("ssh stdout: %w", err))
	}
	if out[1], err = sess.StderrPipe(); err != nil {
		return nil, nil, out, fail(ReasonSSHFailed, "The SSH session failed.", fmt.Errorf("ssh stderr: %w", err))
	}
	if err := sess.Shell(); err != nil {
		return nil, nil, out, fail(ReasonSSHFailed, "The SSH server refused to start a shell.", fmt.Errorf("ssh shell: %w", err))
	}
	// The recording starts now, before anything of the shell's output is
	// read, so that nothing shown is missing from it; and not before, so
	// that a refused session leaves no empty recording behind.
	if s.o.Record != nil {
		rec, err := s.o.Record(a.Cols, a.Rows)
		if err != nil {
			return nil, nil, out, fail(ReasonInternal, "The session could not be recorded, so it was ended.", fmt.Errorf("starting the recording: %w", err))
		}
		s.rec = rec
	}
	return sess, stdin, out, nil
}

// bridge runs the shell until it exits, ctx is cancelled or the browser
// goes away, and returns which (a Reason).
func (s *session) bridge(ctx context.Context, sess *ssh.Session, stdin io.Writer, out [2]io.Reader) string {
	pumped := make(chan struct{}, len(out))
	for _, r := range out {
		s.sshGoroutine(func() {
			defer func() { pumped <- struct{}{} }()
			s.pump(r)
		})
	}
	exited := make(chan struct{})
	var waitErr error // read once exited is closed
	s.sshGoroutine(func() {
		defer close(exited)
		waitErr = sess.Wait()
		s.log.Debug("terminal: remote shell ended", "err", waitErr)
	})
	gone := make(chan struct{})
	s.sshGoroutine(func() {
		defer close(gone)
		s.input(sess, stdin)
	})

	select {
	case <-ctx.Done():
		return ReasonCancelled
	case <-gone:
		return ReasonBrowserGone
	case <-exited:
	}
	// A shell that exits reports its status (OpenSSH always does); a
	// channel that closes without one is the connection breaking under
	// it (ExitMissingError), as when the relay session was terminated.
	var exit *ssh.ExitError
	if waitErr != nil && !errors.As(waitErr, &exit) {
		return ReasonConnLost
	}
	// The shell ended; what it printed last is still on its way.
	for range out {
		select {
		case <-ctx.Done():
			return ReasonCancelled
		case <-gone:
			return ReasonBrowserGone
		case <-pumped:
		}
	}
	return ReasonShellExited
}

func (s *session) sshGoroutine(f func()) {
	s.ssh.Add(1)
	go func() {
		defer s.ssh.Done()
		f()
	}()
}

// pump copies the shell's output to the browser and the recording, one
// message per read.
func (s *session) pump(r io.Reader) {
	buf := make([]byte, outputBuffer)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			select {
			case <-s.done:
				// Cancelled or the browser gone: what is left of the
				// output is nobody's to see.
				return
			default:
			}
			if s.rec != nil {
				s.rec.Output(buf[:n])
			}
			if werr := s.write(websocket.MessageBinary, buf[:n]); werr != nil {
				s.log.Debug("terminal: writing to the browser", "err", werr)
				// Make sure the reader sees it too, and the session ends.
				_ = s.ws.CloseNow()
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// input takes the browser's messages after ready: the keyboard to the
// shell, resizes to the pty. It returns when the browser is gone or the
// session torn down.
func (s *session) input(sess *ssh.Session, stdin io.Writer) {
	stdinOK := true
	for {
		var m wsMessage
		select {
		case <-s.done:
			return
		case msg, ok := <-s.msgs:
			if !ok {
				if errors.Is(s.readErr, websocket.ErrMessageTooBig) {
					s.log.Warn("terminal: message from the browser over the limit; socket closed", "limit", s.o.MaxMessage)
				}
				return
			}
			m = msg
		}
		if m.typ == websocket.MessageBinary {
			if !stdinOK {
				continue
			}
			if _, err := stdin.Write(m.data); err != nil {
				// The shell is going; its end is reported by Wait.
				s.log.Debug("terminal: writing to the shell", "err", err)
				stdinOK = false
			}
			continue
		}
		var c controlMessage
		if err := json.Unmarshal(m.data, &c); err != nil {
			s.log.Warn("terminal: malformed message from the browser ignored", "bytes", len(m.data))
			continue
		}
		switch c.Type {
		case "resize":
			if !validSize(c.Cols, c.Rows) {
				s.log.Warn("terminal: resize out of bounds ignored", "cols", c.Cols, "rows", c.Rows)
				continue
			}
			if err := sess.WindowChange(c.Rows, c.Cols); err != nil {
				s.log.Debug("terminal: window change", "err", err)
				continue
			}
			if s.rec != nil {
				s.rec.Resize(c.Cols, c.Rows)
			}
		default:
			s.log.Warn("terminal: unknown message from the browser ignored", "bytes", len(m.data))
		}
	}
}
