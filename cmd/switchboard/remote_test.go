package main

// Browser tests of remote control (issue 16): a Client's desktop (noVNC)
// and terminal (xterm.js, the gateway being the SSH client) in real
// Chromium, against a real gateway, a real Client agent and real servers
// from Debian (remote_servers_test.go).

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/db"
)

// remoteWait is how long a remote page may take to connect.
const remoteWait = 30 * time.Second

// runLong is run with a longer deadline, for what waits on a remote.
func (b *browser) runLong(what string, d time.Duration, actions ...chromedp.Action) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		var status, state string
		sctx, scancel := context.WithTimeout(b.ctx, 5*time.Second)
		_ = chromedp.Run(sctx, chromedp.Evaluate(`(document.getElementById("remote-status") || {}).textContent || ""`, &status),
			chromedp.Evaluate(`document.body.dataset.remoteState || ""`, &state))
		scancel()
		b.t.Fatalf("%s: %v (the page's state %q, status %q)", what, err, state, status)
	}
}

// tab opens another tab of the same browser (the same cookies); close
// closes it.
func (b *browser) tab() (tab *browser, close func()) {
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	nb := &browser{t: b.t, ctx: ctx}
	// The first Run on the tab's own context: a Run's deadline on it
	// would close the tab.
	if err := chromedp.Run(ctx); err != nil {
		b.t.Fatalf("open a tab: %v", err)
	}
	return nb, cancel
}

// httpCookies are the browser's cookies, for a client of the test's own.
func (b *browser) httpCookies() []*http.Cookie {
	b.t.Helper()
	var cookies []*network.Cookie
	b.run("read cookies", chromedp.ActionFunc(func(ctx context.Context) error {
		var err error
		cookies, err = network.GetCookies().Do(ctx)
		return err
	}))
	var out []*http.Cookie
	for _, c := range cookies {
		out = append(out, &http.Cookie{Name: c.Name, Value: c.Value})
	}
	return out
}

// dialRemote opens a remote socket of the gateway as a browser on origin
// would, with cookies; it returns the socket or the HTTP answer refusing
// it.
func dialRemote(t *testing.T, g *testGateway, path, origin string, cookies []*http.Cookie) (*websocket.Conn, int, error) {
	t.Helper()
	h := http.Header{}
	h.Set("Origin", origin)
	for _, c := range cookies {
		h.Add("Cookie", c.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := "wss://" + g.Addrs()[0].String() + path
	client := g.httpsClient()
	// No connection kept for later: the test counts goroutines.
	client.Transport.(*http.Transport).DisableKeepAlives = true
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: client, HTTPHeader: h})
	code := 0
	if resp != nil {
		code = resp.StatusCode
	}
	return ws, code, err
}

// screenshotDoc writes docs/screenshots/name when -update-screenshots is
// given (see TestConsoleScreenshots).
func (b *browser) screenshotDoc(name string) {
	b.t.Helper()
	if !*updateScreenshots {
		return
	}
	dir := filepath.Join("..", "..", "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	var png []byte
	b.run("screenshot "+name, chromedp.Evaluate(`window.scrollTo(0, 0)`, nil), chromedp.Sleep(400*time.Millisecond), chromedp.CaptureScreenshot(&png))
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// remoteState waits until the remote page's state is state.
func remoteState(state string) chromedp.Action {
	return chromedp.WaitVisible(`body[data-remote-state="`+state+`"]`, chromedp.ByQuery)
}

// canvasJS reads the noVNC canvas's size and the colours at some points
// away from the xterm in the top-left corner.
const canvasJS = `(() => {
  const c = document.querySelector("#remote-desktop canvas");
  if (!c) { return { w: 0, h: 0, px: [] }; }
  const x = c.getContext("2d");
  const at = (a, b) => Array.from(x.getImageData(a, b, 1, 1).data.slice(0, 3));
  return { w: c.width, h: c.height, px: c.width < 800 ? [] : [at(700, 500), at(790, 590), at(500, 100), at(100, 550), at(400, 300)] };
})()`

type canvasState struct {
	W  int     `json:"w"`
	H  int     `json:"h"`
	Px [][]int `json:"px"`
}

func (c canvasState) painted() bool {
	if c.W != desktopW || c.H != desktopH || len(c.Px) == 0 {
		return false
	}
	for _, p := range c.Px {
		if len(p) != 3 || p[0] != desktopR || p[1] != desktopG || p[2] != desktopB {
			return false
		}
	}
	return true
}

// TestRemoteDesktop: an admin opens a Client's VNC desktop (x11vnc on
// Xvfb, with a VNC password the page asks for); the canvas reaches the
// server's geometry and shows the root window's colour; keys typed in the
// page reach an xterm on the display. The session shows in Active
// Sessions as the console's, an admin terminates it there and the page
// says by whom. A socket from another origin is refused, one from the
// console's own carries RFB unchanged; signing out of the console ends a
// desktop with a message saying so; and the gateway's goroutines return
// to their level.
func TestRemoteDesktop(t *testing.T) {
	const vncPassword = "vncpass1"
	d := startDesktop(t, vncPassword)
	g := consoleGateway(t)
	g.waitConnected(t, g.startAgent(t, testKey, "pc", map[string]string{"vnc": d.addr}))
	b := newBrowser(t)
	b.signIn(g)
	base := goroutineLevel()

	b.runLong("open the desktop", remoteWait,
		chromedp.Navigate(g.https()+"/console/clients/pc/desktop/vnc"),
		chromedp.WaitVisible(`#vnc-password`, chromedp.ByQuery),
	)
	if got := b.text(`#remote-status`); !strings.Contains(got, "password") {
		t.Errorf("while asking for the VNC password the page says %q", got)
	}
	b.runLong("give the VNC password", remoteWait,
		chromedp.SendKeys(`#vnc-password`, vncPassword, chromedp.ByQuery),
		// A click, not Submit: form.submit() fires no submit event.
		chromedp.Click(`#vnc-password-form button[type=submit]`, chromedp.ByQuery),
		remoteState("connected"),
	)
	var c canvasState
	deadline := time.Now().Add(15 * time.Second)
	for {
		b.run("read the canvas", chromedp.Evaluate(canvasJS, &c))
		if c.painted() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the canvas is %d×%d with colours %v, want %d×%d of #3366cc", c.W, c.H, c.Px, desktopW, desktopH)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.screenshotDoc("remote-desktop.png")

	word := randomWord("vnc")
	b.run("type into the remote xterm",
		chromedp.Evaluate(`window.switchboardRFB.focus()`, nil),
		chromedp.KeyEvent(word),
		chromedp.KeyEvent("\r"),
	)
	waitFor(t, "the typed word to reach the xterm", 15*time.Second, func() bool { return d.typed() != "" })
	if got := d.typed(); got != word {
		t.Fatalf("the xterm read %q, the page typed %q", got, word)
	}

	// Active Sessions lists it as the console's, and an admin ends it.
	s, closeTab := b.tab()
	s.acceptDialogs()
	s.run("open Active Sessions",
		chromedp.Navigate(g.https()+"/console/sessions"),
		chromedp.WaitVisible(`tr[data-session]`, chromedp.ByQuery),
	)
	row := s.text(`tr[data-session]`)
	for _, want := range []string{"console:" + adminName, "pc", "vnc"} {
		if !strings.Contains(row, want) {
			t.Errorf("session row %q lacks %q", row, want)
		}
	}
	s.clickLive("terminate it", `tr[data-session] button.danger`)
	s.run("see it terminated", chromedp.WaitNotPresent(`tr[data-session]`, chromedp.ByQuery))
	b.runLong("the desktop page ends", remoteWait, remoteState("disconnected"))
	b.waitText("the page says who ended it", `#remote-status`, "Session ended by admin "+adminName+".")
	g.waitEvent(t, "Control console:"+adminName+" connected to Client pc")
	g.waitEvent(t, "Control console:"+adminName+" disconnected from Client pc")

	// The socket itself: not from another origin; from the console's own
	// origin its binary messages are the VNC server's bytes, unchanged.
	cookies := b.httpCookies()
	if ws, code, err := dialRemote(t, g, "/console/remote/pc/vnc", "https://evil.example", cookies); err == nil || code != http.StatusForbidden {
		if ws != nil {
			ws.CloseNow()
		}
		t.Errorf("a socket from another origin: %d %v, want 403 and no socket", code, err)
	}
	ws, code, err := dialRemote(t, g, "/console/remote/pc/vnc", g.https(), cookies)
	if err != nil {
		t.Fatalf("a socket from the console's origin: %d %v", code, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	typ, msg, err := ws.Read(ctx)
	cancel()
	if err != nil || typ != websocket.MessageBinary || !strings.HasPrefix(string(msg), "RFB 003.") {
		t.Errorf("the socket's first message: %v %q %v, want the server's RFB version", typ, msg, err)
	}
	ws.Close(websocket.StatusNormalClosure, "")

	// Signing out of the console in another tab ends the desktop, and
	// the page says why.
	b.runLong("open the desktop again", remoteWait,
		chromedp.Navigate(g.https()+"/console/clients/pc/desktop/vnc"),
		chromedp.WaitVisible(`#vnc-password`, chromedp.ByQuery),
		chromedp.SendKeys(`#vnc-password`, vncPassword, chromedp.ByQuery),
		chromedp.Click(`#vnc-password-form button[type=submit]`, chromedp.ByQuery),
		remoteState("connected"),
	)
	s.signOut()
	b.runLong("the desktop ends with the sign-in", remoteWait, remoteState("disconnected"))
	b.waitText("the page says why", `#remote-status`, "Your console session ended (signed out or expired): the remote session was closed.")

	// Everything of the sessions goes: the page too.
	closeTab()
	b.run("leave the desktop", chromedp.Navigate(g.https()+"/console/clients"), chromedp.WaitVisible(`input[name=password]`, chromedp.ByQuery))
	waitGoroutines(t, base)
}

// termTextJS is the terminal's buffer, a line a line.
const termTextJS = `(() => {
  const t = window.switchboardTerm;
  if (!t) { return ""; }
  const b = t.buffer.active, out = [];
  for (let i = 0; i < b.length; i++) { const l = b.getLine(i); out.push(l ? l.translateToString(true) : ""); }
  return out.join("\n");
})()`

// termLines is what the terminal shows, one line each.
func (b *browser) termLines() []string {
	b.t.Helper()
	var s string
	b.run("read the terminal", chromedp.Evaluate(termTextJS, &s))
	return strings.Split(s, "\n")
}

// waitTermLine waits until a line of the terminal matches re, returning it.
func (b *browser) waitTermLine(what string, re *regexp.Regexp) string {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		lines := b.termLines()
		for _, l := range lines {
			if re.MatchString(strings.TrimSpace(l)) {
				return strings.TrimSpace(l)
			}
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: no line of the terminal matches %s:\n%s", what, re, strings.Join(lines, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// typeTerm types s into the terminal as keys.
func (b *browser) typeTerm(s string) {
	b.t.Helper()
	b.run("type "+strconv.Quote(s), chromedp.Evaluate(`window.switchboardTerm.focus()`, nil), typeKeys(s))
}

// typeKeys types s into the focused element as a keyboard does, a key
// down that carries its text and a key up for each character, as
// Puppeteer's keyboard.type does. (chromedp.KeyEvent sends the text in a
// separate "char" event, whose input event xterm.js takes as a second
// keystroke: every character would arrive twice.)
func typeKeys(s string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		for _, r := range s {
			if r == '\n' {
				r = '\r'
			}
			v, ok := kb.Keys[r]
			if !ok {
				return fmt.Errorf("no key for %q", r)
			}
			down := input.DispatchKeyEvent(input.KeyRawDown).WithKey(v.Key).WithCode(v.Code).
				WithWindowsVirtualKeyCode(v.Windows).WithNativeVirtualKeyCode(v.Native)
			if v.Shift {
				down = down.WithModifiers(input.ModifierShift)
			}
			if v.Print || r == '\r' {
				down.Type = input.KeyDown
				down = down.WithText(v.Text).WithUnmodifiedText(v.Unmodified)
			}
			if err := down.Do(ctx); err != nil {
				return err
			}
			up := input.DispatchKeyEvent(input.KeyUp).WithKey(v.Key).WithCode(v.Code).
				WithWindowsVirtualKeyCode(v.Windows).WithNativeVirtualKeyCode(v.Native)
			if err := up.Do(ctx); err != nil {
				return err
			}
		}
		return nil
	})
}

type termSize struct {
	Cols int `json:"cols"`
	Rows int `json:"rows"`
}

func (b *browser) termSize() termSize {
	b.t.Helper()
	var s termSize
	b.run("read the terminal's size", chromedp.Evaluate(`({ cols: window.switchboardTerm.cols, rows: window.switchboardTerm.rows })`, &s))
	return s
}

// signInTerminal opens the terminal page and sends the sign-in form with
// a password or a key.
func (b *browser) signInTerminal(g *testGateway, path, user, password, key string) {
	b.t.Helper()
	actions := []chromedp.Action{
		chromedp.Navigate(g.https() + path),
		chromedp.WaitVisible(`#ssh-user`, chromedp.ByQuery),
		chromedp.Poll(`!!window.switchboardTerm`, nil),
		chromedp.SendKeys(`#ssh-user`, user, chromedp.ByQuery),
	}
	if password != "" {
		actions = append(actions, chromedp.SendKeys(`#ssh-password`, password, chromedp.ByQuery))
	}
	if key != "" {
		actions = append(actions, chromedp.SetValue(`#ssh-key`, key, chromedp.ByQuery))
	}
	actions = append(actions, chromedp.Click(`#ssh-login button[type=submit]`, chromedp.ByQuery))
	b.run("sign in to "+path, actions...)
}

// TestRemoteTerminal: an admin opens a terminal on a Client's sshd
// (OpenSSH, a temporary host key and user): signs in with a password,
// sees the host key's fingerprint pinned, echoes a word and reads it back
// from the terminal, resizes the window and checks the remote pty's size;
// the recording of that session is listed and replays in the player.
// Then a private key signs in, a wrong password is refused, a changed host
// key refuses the terminal with a warning and an event, and the gateway's
// goroutines return to their level.
func TestRemoteTerminal(t *testing.T) {
	sshd := startSSHD(t)
	const userPassword = "a user's password 7"
	user := tempUser(t, userPassword)
	g := consoleGateway(t)
	g.waitConnected(t, g.startAgent(t, testKey, "pc", map[string]string{"ssh": sshd.addr}))
	b := newBrowser(t)
	b.signIn(g)
	base := goroutineLevel()
	const page = "/console/clients/pc/terminal/ssh"

	// A password; the host key is pinned on first use.
	b.signInTerminal(g, page, user, userPassword, "")
	b.runLong("the terminal connects", remoteWait, remoteState("connected"))
	fp := sshd.fingerprint()
	if got := b.text(`#ssh-hostkey`); !strings.Contains(got, fp) || !strings.Contains(got, "pinned") {
		t.Errorf("#ssh-hostkey says %q, want the new key %s pinned", got, fp)
	}
	word := randomWord("ssh")
	b.typeTerm("echo " + word + "\r")
	b.waitTermLine("the echoed word", regexp.MustCompile(`^`+word+`$`))
	b.screenshotDoc("remote-terminal.png")

	// A smaller window: the terminal fits it and the remote pty follows.
	before := b.termSize()
	b.run("resize the window", chromedp.EmulateViewport(900, 600))
	var after termSize
	waitFor(t, "the terminal to fit the smaller window", 10*time.Second, func() bool {
		after = b.termSize()
		return after.Cols < before.Cols && after.Rows < before.Rows && after.Cols > 10 && after.Rows > 3
	})
	b.typeTerm("stty size\r")
	got := b.waitTermLine("stty size", regexp.MustCompile(`^\d+ \d+$`))
	now := b.termSize()
	if want := fmt.Sprintf("%d %d", now.Rows, now.Cols); got != want {
		t.Errorf("stty size says %q, the page's terminal is %s (was %dx%d)", got, want, before.Rows, before.Cols)
	}
	t.Logf("the terminal went from %d×%d to %d×%d; stty size says %s", before.Rows, before.Cols, now.Rows, now.Cols, got)
	b.run("the window back", chromedp.EmulateViewport(1400, 900))
	b.typeTerm("exit\r")
	b.runLong("the shell exits", remoteWait, remoteState("ended"))

	// The recording of that session.
	r, closeTab := b.tab()
	var row string
	waitFor(t, "the recording to be listed", 15*time.Second, func() bool {
		r.run("open Recordings", chromedp.Navigate(g.https()+"/console/recordings"), chromedp.WaitVisible(`main h1`, chromedp.ByQuery))
		var n int
		r.run("count replays", chromedp.Evaluate(`document.querySelectorAll("tr[data-recording] a.button").length`, &n))
		return n == 1
	})
	row = r.text(`tr[data-recording]`)
	for _, want := range []string{adminName, "pc", "ssh", user, "terminal"} {
		if !strings.Contains(row, want) {
			t.Errorf("recording row %q lacks %q", row, want)
		}
	}
	r.screenshotDoc("recordings.png")
	r.run("open the replay",
		chromedp.Click(`tr[data-recording] a.button`, chromedp.ByQuery),
		chromedp.WaitVisible(`#recording-player`, chromedp.ByQuery),
		chromedp.Poll(`!!window.switchboardPlayer`, nil),
	)
	var shown bool
	deadline := time.Now().Add(20 * time.Second)
	for !shown {
		var text string
		r.run("play to the end", chromedp.Evaluate(`(async () => {
		  const p = window.switchboardPlayer;
		  try { await p.play(); const d = await p.getDuration(); if (d) { await p.seek(d); } } catch (e) {}
		  return document.getElementById("recording-player").innerText;
		})()`, &text, shellAwait))
		shown = strings.Contains(text, word)
		if !shown && time.Now().After(deadline) {
			t.Fatalf("the player shows no %q:\n%s", word, text)
		}
		time.Sleep(200 * time.Millisecond)
	}
	closeTab()

	// A private key; the host key matches its pin.
	pem := sshd.authorizeNewKey()
	b.signInTerminal(g, page, user, "", pem)
	b.runLong("the terminal connects with the key", remoteWait, remoteState("connected"))
	if got := b.text(`#ssh-hostkey`); !strings.Contains(got, fp) || !strings.Contains(got, "matches") {
		t.Errorf("#ssh-hostkey says %q, want %s matching its pin", got, fp)
	}
	var left string
	b.run("the key is not left in the page", chromedp.Value(`#ssh-key`, &left, chromedp.ByQuery))
	if left != "" {
		t.Error("the private key stays in its field after sign-in")
	}
	word2 := randomWord("key")
	b.typeTerm("echo " + word2 + "\r")
	b.waitTermLine("the echoed word", regexp.MustCompile(`^`+word2+`$`))
	// An admin ends it from Active Sessions: the terminal says by whom,
	// not that the shell ended.
	as, closeSessions := b.tab()
	as.acceptDialogs()
	as.run("open Active Sessions",
		chromedp.Navigate(g.https()+"/console/sessions"),
		chromedp.WaitVisible(`tr[data-session]`, chromedp.ByQuery),
	)
	as.clickLive("terminate the terminal", `tr[data-session] button.danger`)
	as.run("see it terminated", chromedp.WaitNotPresent(`tr[data-session]`, chromedp.ByQuery))
	closeSessions()
	b.runLong("the terminal ends", remoteWait, remoteState("ended"))
	b.waitText("the terminal says who ended it", `#remote-status`, "Session ended by admin "+adminName+".")

	// A wrong password.
	b.signInTerminal(g, page, user, "not the password", "")
	b.runLong("a wrong password is refused", remoteWait, remoteState("error"))
	if got := b.text(`#remote-status`); !strings.Contains(got, "refused the user name or the password") {
		t.Errorf("after a wrong password the page says %q", got)
	}

	// Another host key on the same address: refused before any sign-in.
	sshd.restartWithNewKey()
	fp2 := sshd.fingerprint()
	b.signInTerminal(g, page, user, userPassword, "")
	b.runLong("a changed host key is refused", remoteWait, remoteState("error"), chromedp.WaitVisible(`#ssh-warning`, chromedp.ByQuery))
	warning := b.text(`#ssh-warning`)
	for _, want := range []string{"has changed", fp2, fp} {
		if !strings.Contains(warning, want) {
			t.Errorf("#ssh-warning %q lacks %q", warning, want)
		}
	}
	e := g.waitEvent(t, fmt.Sprintf("SSH host key of Client pc service ssh changed (now %s, pinned %s). Refused the terminal of Control console:%s from 127.0.0.1", fp2, fp, adminName))
	if e.Client != "pc" || e.Operator != adminName {
		t.Errorf("host key event = %+v", e)
	}

	b.run("leave the terminal", chromedp.Navigate(g.https()+"/console/clients"), chromedp.WaitVisible(`#clients-table`, chromedp.ByQuery))
	waitGoroutines(t, base)
}

// TestRemotePermissions: an operator whose allow-list is empty cannot open
// a Client's terminal: the page says so and the socket is refused with 403
// and no socket (an event says so); once an admin lets them reach the
// Client in the Operators tab, they open it.
func TestRemotePermissions(t *testing.T) {
	sshd := startSSHD(t)
	const userPassword = "a user's password 8"
	user := tempUser(t, userPassword)
	g := consoleGateway(t)
	g.waitConnected(t, g.startAgent(t, testKey, "pc", map[string]string{"ssh": sshd.addr}))
	addOperator(t, g, opName, opPassword, db.RoleOperator)
	const page = "/console/clients/pc/terminal/ssh"

	o := newBrowser(t)
	o.run("sign in as an operator",
		chromedp.Navigate(g.https()+page),
		chromedp.WaitVisible(`form[action="/console/signin"] input[name=name]`, chromedp.ByQuery),
		chromedp.SendKeys(`input[name=name]`, opName, chromedp.ByQuery),
		chromedp.SendKeys(`input[name=password]`, opPassword, chromedp.ByQuery),
		chromedp.Submit(`input[name=password]`, chromedp.ByQuery),
		chromedp.WaitVisible(`//nav/a[normalize-space()="Account"]`),
	)
	o.run("open the terminal page", chromedp.Navigate(g.https()+page), chromedp.WaitVisible(`main`, chromedp.ByQuery))
	o.waitText("the page says the Client cannot be reached", `.error-page .message`, "No Client pc that you may reach is connected.")
	if ws, code, err := dialRemote(t, g, "/console/terminal/pc/ssh", g.https(), o.httpCookies()); err == nil || code != http.StatusForbidden {
		if ws != nil {
			ws.CloseNow()
		}
		t.Errorf("the operator's terminal socket: %d %v, want 403 and no socket", code, err)
	}
	if ws, code, err := dialRemote(t, g, "/console/remote/pc/ssh", g.https(), o.httpCookies()); err == nil || code != http.StatusForbidden {
		if ws != nil {
			ws.CloseNow()
		}
		t.Errorf("the operator's desktop socket: %d %v, want 403 and no socket", code, err)
	}
	// From the page too: the browser's WebSocket never opens.
	var opened string
	o.run("open the socket from the page", chromedp.Evaluate(`new Promise((resolve) => {
	  const ws = new WebSocket("wss://" + location.host + "/console/terminal/pc/ssh");
	  ws.onopen = () => { resolve("opened"); ws.close(); };
	  ws.onclose = (e) => resolve("closed " + e.code);
	})`, &opened, shellAwait))
	if opened != "closed 1006" {
		t.Errorf("the page's WebSocket: %s, want closed 1006 (refused)", opened)
	}
	g.waitEvent(t, fmt.Sprintf("Operator %s may not reach Client pc service ssh. Refused the browser session from 127.0.0.1", opName))

	// An admin lets the operator reach pc.
	a := newBrowser(t)
	a.signIn(g)
	form := `form[action="/console/config/operators/` + opName + `"]`
	a.run("allow the operator to reach pc",
		chromedp.Navigate(g.https()+"/console/config/operators"),
		chromedp.WaitVisible(form+` textarea[name=remote_access]`, chromedp.ByQuery),
		chromedp.SetValue(form+` textarea[name=remote_access]`, "client:pc", chromedp.ByQuery),
		chromedp.Click(form+` button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible(`.flash.ok`, chromedp.ByQuery),
	)
	op, err := g.DB().Operator(context.Background(), opName)
	if err != nil || len(op.RemoteAccess) != 1 || op.RemoteAccess[0] != "client:pc" {
		t.Fatalf("the operator's remote access: %v %v", op.RemoteAccess, err)
	}
	o.signInTerminal(g, page, user, userPassword, "")
	o.runLong("the operator's terminal connects", remoteWait, remoteState("connected"))
	word := randomWord("op")
	o.typeTerm("echo " + word + "\r")
	o.waitTermLine("the echoed word", regexp.MustCompile(`^`+word+`$`))
	g.waitEvent(t, "Control console:"+opName+" connected to Client pc")
	// And still not by a page of another origin.
	if ws, code, err := dialRemote(t, g, "/console/terminal/pc/ssh", "https://evil.example", o.httpCookies()); err == nil || code != http.StatusForbidden {
		if ws != nil {
			ws.CloseNow()
		}
		t.Errorf("a terminal socket from another origin: %d %v, want 403", code, err)
	}
	o.typeTerm("exit\r")
	o.runLong("the shell exits", remoteWait, remoteState("ended"))
}
