package main

// More end-to-end tests of remote control (issue 16), beside
// remote_test.go: the fresh second factor before the first remote session,
// the desktop socket's limits, a Client or a VNC server that goes away or
// refuses, terminals not recorded and the retention of recordings, and
// axe-core on the remote pages. Real gateway, agent and servers; Chromium
// where the page matters, plain HTTPS and WebSocket clients with the
// console's cookie where only the server does.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
	"github.com/pquerna/otp/totp"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/handlers"
	"github.com/switchboard/switchboard/internal/auth/signin"
)

// httpSignIn signs in to the console with a plain HTTPS client (no kept
// connections: tests count goroutines) and returns the console's cookies.
func httpSignIn(t *testing.T, g *testGateway, name, password string) []*http.Cookie {
	t.Helper()
	client := g.httpsClient()
	client.Transport.(*http.Transport).DisableKeepAlives = true
	client.Jar, _ = cookiejar.New(nil)
	resp, err := client.PostForm(g.https()+"/console/signin", url.Values{"name": {name}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// An operator required a factor they lack lands on Account instead.
	if p := resp.Request.URL.Path; resp.StatusCode != http.StatusOK || (p != "/console/clients" && p != "/console/account") {
		t.Fatalf("signing in %s over HTTPS ended at %s with %d", name, resp.Request.URL, resp.StatusCode)
	}
	u, _ := url.Parse(g.https())
	return client.Jar.Cookies(u)
}

// httpDo sends a request with the cookies, following no redirect, and
// returns the answer's status, Location and body.
func httpDo(t *testing.T, g *testGateway, method, path string, form url.Values, cookies []*http.Cookie) (int, string, string) {
	t.Helper()
	client := g.httpsClient()
	client.Transport.(*http.Transport).DisableKeepAlives = true
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, g.https()+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

// wantSocketRefused dials a remote socket and wants the HTTP answer code,
// no socket.
func wantSocketRefused(t *testing.T, g *testGateway, path string, cookies []*http.Cookie, code int) {
	t.Helper()
	ws, got, err := dialRemote(t, g, path, g.https(), cookies)
	if ws != nil {
		ws.CloseNow()
	}
	if err == nil || got != code {
		t.Errorf("socket %s: %d %v, want %d and no socket", path, got, err, code)
	}
}

// location is the page's URL.
func (b *browser) location() string {
	b.t.Helper()
	var loc string
	b.run("read the location", chromedp.Location(&loc))
	return loc
}

// countEvents is how many stored events say exactly msg.
func (g *testGateway) countEvents(t testing.TB, msg string) int {
	t.Helper()
	n := 0
	for _, e := range g.events(t, db.EventFilter{}) {
		if e.Message == msg {
			n++
		}
	}
	return n
}

// waitNoSessions waits until Active Sessions is empty, as the relay and
// the page list it.
func (g *testGateway) waitNoSessions(t *testing.T, cookies []*http.Cookie) {
	t.Helper()
	waitFor(t, "Active Sessions to be empty", 15*time.Second, func() bool { return len(g.Relay().Sessions()) == 0 })
	if cookies != nil {
		if code, _, body := httpDo(t, g, http.MethodGet, "/console/sessions", nil, cookies); code != http.StatusOK || strings.Contains(body, "data-session=") {
			t.Errorf("Active Sessions (%d) still lists a session", code)
		}
	}
}

// TestRemoteStepUp: with 2FA required for remote connections (the 2FA
// tab's "Require 2FA for all") and the admin enrolled in TOTP, a terminal
// or desktop page redirects to /console/remote/verify and both sockets
// answer 403; a wrong code is refused with a message, the right one leads
// back to the terminal, whose session then opens (sshd, an echoed word).
// An operator required to use 2FA one by one, with no factor, is told to
// set one up, and their socket stays refused.
func TestRemoteStepUp(t *testing.T) {
	sshd := startSSHD(t)
	const userPassword = "a user's password 10"
	user := tempUser(t, userPassword)
	g := consoleGateway(t)
	// The VNC-kind service is never connected here: its page and socket
	// are refused before that.
	g.waitConnected(t, g.startAgent(t, testKey, "pc", map[string]string{"ssh": sshd.addr, "vnc": echoServer(t)}))
	ctx := context.Background()
	b := newBrowser(t)
	b.signIn(g)
	enrol := enrolTOTP(t, g, adminName)
	b.run("require 2FA for all on the 2FA tab",
		chromedp.Navigate(g.https()+"/console/config/2fa"),
		chromedp.WaitVisible(`#require_all`, chromedp.ByQuery),
		chromedp.Click(`#require_all`, chromedp.ByQuery),
		chromedp.Submit(`#token_ttl`, chromedp.ByQuery),
		chromedp.WaitVisible(`.flash.ok`, chromedp.ByQuery),
	)
	if set, err := signin.LoadSettings(ctx, g.DB()); err != nil || !set.Require2FA {
		t.Fatalf("after the 2FA tab: Require2FA %v, %v", set.Require2FA, err)
	}

	const termPage, deskPage = "/console/clients/pc/terminal/ssh", "/console/clients/pc/desktop/vnc"
	verifyURL := func(next string) string {
		return g.https() + "/console/remote/verify?next=" + url.QueryEscape(next)
	}
	for _, p := range []string{deskPage, termPage} {
		b.run("open "+p, chromedp.Navigate(g.https()+p), chromedp.WaitVisible(`#code`, chromedp.ByQuery))
		if got := b.location(); got != verifyURL(p) {
			t.Errorf("%s led to %s, want %s", p, got, verifyURL(p))
		}
	}
	cookies := b.httpCookies()
	wantSocketRefused(t, g, "/console/terminal/pc/ssh", cookies, http.StatusForbidden)
	wantSocketRefused(t, g, "/console/remote/pc/vnc", cookies, http.StatusForbidden)

	code, err := totp.GenerateCode(enrol.Secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(code)
	wrong := fmt.Sprintf("%06d", (n+500000)%1000000)
	b.run("a wrong code",
		chromedp.SendKeys(`#code`, wrong, chromedp.ByQuery),
		chromedp.Click(`form[action="/console/remote/verify"] button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible(`.flash.error`, chromedp.ByQuery),
	)
	if got := b.text(`.flash.error`); !strings.Contains(got, "That did not confirm it: wrong or already used code") {
		t.Errorf("a wrong code: the page says %q", got)
	}
	var next string
	b.run("the form still leads to the terminal", chromedp.Value(`input[name=next]`, &next, chromedp.ByQuery))
	if next != termPage {
		t.Errorf("after a wrong code the form's next is %q, want %q", next, termPage)
	}
	wantSocketRefused(t, g, "/console/terminal/pc/ssh", b.httpCookies(), http.StatusForbidden)

	b.run("the right code",
		chromedp.SendKeys(`#code`, code, chromedp.ByQuery),
		chromedp.Click(`form[action="/console/remote/verify"] button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#ssh-user`, chromedp.ByQuery),
	)
	if got := b.location(); got != g.https()+termPage {
		t.Errorf("the right code led to %s, want the terminal %s", got, termPage)
	}
	// Verified for the sign-in: the desktop's socket opens too now.
	ws, status, err := dialRemote(t, g, "/console/remote/pc/vnc", g.https(), b.httpCookies())
	if err != nil {
		t.Errorf("the desktop socket once verified: %d %v", status, err)
	} else {
		ws.Close(websocket.StatusNormalClosure, "")
	}
	b.signInTerminal(g, termPage, user, userPassword, "")
	b.runLong("the terminal connects once verified", remoteWait, remoteState("connected"))
	word := randomWord("up")
	b.typeTerm("echo " + word + "\r")
	b.waitTermLine("the echoed word", regexp.MustCompile(`^`+word+`$`))
	b.typeTerm("exit\r")
	b.runLong("the shell exits", remoteWait, remoteState("ended"))

	// One by one: alice is required 2FA (not everyone now) and has none.
	set, err := signin.LoadSettings(ctx, g.DB())
	if err != nil {
		t.Fatal(err)
	}
	set.Require2FA = false
	if err := signin.SaveSettings(ctx, g.DB(), set); err != nil {
		t.Fatal(err)
	}
	addOperator(t, g, opName, opPassword, db.RoleOperator)
	if err := g.DB().SetSecondFactor(ctx, opName, "", true); err != nil {
		t.Fatal(err)
	}
	if err := g.DB().SetRemoteAccess(ctx, opName, []string{"client:pc"}); err != nil {
		t.Fatal(err)
	}
	alice := httpSignIn(t, g, opName, opPassword)
	st, loc, _ := httpDo(t, g, http.MethodGet, termPage, nil, alice)
	if st != http.StatusSeeOther || loc != "/console/remote/verify?next="+url.QueryEscape(termPage) {
		t.Fatalf("alice's terminal page: %d to %q, want 303 to the verify page", st, loc)
	}
	st, _, body := httpDo(t, g, http.MethodGet, loc, nil, alice)
	if want := "Your account has no second factor: set up an authenticator app on your"; st != http.StatusOK || !strings.Contains(body, want) {
		t.Errorf("alice's verify page (%d) lacks %q", st, want)
	}
	st, _, body = httpDo(t, g, http.MethodPost, "/console/remote/verify", url.Values{"next": {termPage}, "code": {"123456"}}, alice)
	if want := "set up an authenticator app on your Account page"; st != http.StatusUnauthorized || !strings.Contains(body, want) {
		t.Errorf("alice confirming without a factor: %d, the page lacks %q", st, want)
	}
	wantSocketRefused(t, g, "/console/terminal/pc/ssh", alice, http.StatusForbidden)
}

// TestRemoteLimits: on a desktop's socket (x11vnc behind a real agent) a
// binary message larger than the gateway takes (256 KiB) closes the
// socket with 1009, and a text message closes it with 1003; each time the
// relay session ends (Active Sessions empty, the disconnected event) and
// the gateway's goroutines return to their level.
func TestRemoteLimits(t *testing.T) {
	const limit = 256 << 10 // handlers' remoteReadLimit
	d := startDesktop(t, "")
	g := consoleGateway(t)
	g.waitConnected(t, g.startAgent(t, testKey, "pc", map[string]string{"vnc": d.addr}))
	cookies := httpSignIn(t, g, adminName, adminPassword)
	base := goroutineLevel()
	connected := "Control console:" + adminName + " connected to Client pc"
	disconnected := "Control console:" + adminName + " disconnected from Client pc"

	for i, c := range []struct {
		what string
		typ  websocket.MessageType
		msg  []byte
		want websocket.StatusCode
		// why is the close's reason, for the page.
		why string
	}{
		{"a message over the limit", websocket.MessageBinary, make([]byte, limit+1), websocket.StatusMessageTooBig,
			"A message from the page was larger than the gateway takes (256 KiB)."},
		{"a text message", websocket.MessageText, []byte("RFB 003.008\n"), websocket.StatusUnsupportedData,
			"The page sent text where the desktop takes binary messages."},
	} {
		ws, code, err := dialRemote(t, g, "/console/remote/pc/vnc", g.https(), cookies)
		if err != nil {
			t.Fatalf("%s: the socket: %d %v", c.what, code, err)
		}
		ws.SetReadLimit(1 << 20)
		rctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		typ, first, err := ws.Read(rctx)
		if err != nil || typ != websocket.MessageBinary || !strings.HasPrefix(string(first), "RFB 003.") {
			t.Fatalf("%s: the first message %v %q %v, want x11vnc's RFB version", c.what, typ, first, err)
		}
		if n := len(g.Relay().Sessions()); n != 1 {
			t.Errorf("%s: %d sessions before, want 1", c.what, n)
		}
		// Written while reading: the gateway may close before the whole
		// message is taken.
		wrote := make(chan error, 1)
		go func() { wrote <- ws.Write(rctx, c.typ, c.msg) }()
		var readErr error
		for readErr == nil {
			_, _, readErr = ws.Read(rctx)
		}
		<-wrote
		cancel()
		var ce websocket.CloseError
		if !errors.As(readErr, &ce) || ce.Code != c.want || ce.Reason != c.why {
			t.Errorf("%s: the socket ended with %v, want %d %q", c.what, readErr, c.want, c.why)
		}
		ws.CloseNow()
		g.waitNoSessions(t, cookies)
		waitFor(t, "the disconnected events", 15*time.Second, func() bool {
			return g.countEvents(t, connected) == i+1 && g.countEvents(t, disconnected) == i+1
		})
	}
	// The desktop sessions are in Recordings: who, when, how long.
	rs, err := g.DB().Recordings(context.Background(), 10)
	if err != nil || len(rs) != 2 {
		t.Fatalf("recordings %+v %v, want the two desktops", rs, err)
	}
	for _, r := range rs {
		if r.Kind != "desktop" || r.Operator != adminName || r.Ended.IsZero() {
			t.Errorf("recording %+v", r)
		}
	}
	waitGoroutines(t, base)
}

// TestRemoteClientGone: a desktop whose Client agent stops mid-session
// ends with a clear message on the page and the disconnected event; a VNC
// server that refuses the password typed (x11vnc -passwd) shows noVNC's
// security failure on the page and the session ends; the goroutines
// return to their level.
func TestRemoteClientGone(t *testing.T) {
	const vncPassword = "vncpass2"
	d := startDesktop(t, vncPassword)
	g := consoleGateway(t)
	actx, stopAgent := context.WithCancel(context.Background())
	defer stopAgent()
	g.waitConnected(t, g.startAgentCtx(t, actx, testKey, "pc", map[string]string{"vnc": d.addr}))
	b := newBrowser(t)
	b.signIn(g)
	base := goroutineLevel()
	const page = "/console/clients/pc/desktop/vnc"
	disconnected := "Control console:" + adminName + " disconnected from Client pc"

	open := func(password string) {
		b.runLong("open the desktop", remoteWait,
			chromedp.Navigate(g.https()+page),
			chromedp.WaitVisible(`#vnc-password`, chromedp.ByQuery),
			chromedp.SendKeys(`#vnc-password`, password, chromedp.ByQuery),
			chromedp.Click(`#vnc-password-form button[type=submit]`, chromedp.ByQuery),
		)
	}
	open(vncPassword)
	b.runLong("the desktop connects", remoteWait, remoteState("connected"))
	stopAgent()
	b.runLong("the desktop ends with its Client", remoteWait, remoteState("disconnected"))
	b.waitText("the page says why", `#remote-status`, "The session ended: the Client's service closed it, or the Client went away.")
	g.waitEvent(t, disconnected)
	g.waitNoSessions(t, nil)

	// The Client again; the VNC server refuses a wrong password.
	g.waitConnected(t, g.startAgent(t, testKey, "pc", map[string]string{"vnc": d.addr}))
	open("not the password")
	b.runLong("a wrong VNC password ends the desktop", remoteWait, remoteState("disconnected"))
	status := b.text(`#remote-status`)
	t.Logf("after a wrong VNC password the page says %q", status)
	if !strings.HasPrefix(status, "Authentication failed") {
		t.Errorf("after a wrong VNC password #remote-status says %q, want noVNC's security failure (Authentication failed: …)", status)
	}
	waitFor(t, "the second disconnected event", 15*time.Second, func() bool { return g.countEvents(t, disconnected) == 2 })
	g.waitNoSessions(t, nil)

	b.run("leave the desktop", chromedp.Navigate(g.https()+"/console/clients"), chromedp.WaitVisible(`#clients-table`, chromedp.ByQuery))
	waitGoroutines(t, base)
}

// TestRemoteRecordingOff: with "Record terminals" unchecked on the
// Security tab, a terminal page says nothing of recording, and its
// session leaves a Recordings row of kind terminal (who, when, how long)
// with no Replay link, no replay page and no cast (404). The retention
// set there (7 days) is what SweepRecordings deletes past.
func TestRemoteRecordingOff(t *testing.T) {
	sshd := startSSHD(t)
	const userPassword = "a user's password 11"
	user := tempUser(t, userPassword)
	g := consoleGateway(t)
	g.waitConnected(t, g.startAgent(t, testKey, "pc", map[string]string{"ssh": sshd.addr}))
	ctx := context.Background()
	b := newBrowser(t)
	b.signIn(g)
	const form = `form[action="/console/config/remote"]`
	b.run("turn recording off on the Security tab",
		chromedp.Navigate(g.https()+"/console/config/security"),
		chromedp.WaitVisible(`#record_terminals:checked`, chromedp.ByQuery),
		chromedp.Click(`#record_terminals`, chromedp.ByQuery),
		chromedp.SetValue(`#retention_days`, "7", chromedp.ByQuery),
		chromedp.Click(form+` button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible(`.flash.ok`, chromedp.ByQuery),
	)
	if rs, err := handlers.LoadRemoteSettings(ctx, g.DB()); err != nil || rs.RecordTerminals || rs.RetentionDays != 7 {
		t.Fatalf("after the Security tab: %+v %v, want recording off, 7 days", rs, err)
	}

	const page = "/console/clients/pc/terminal/ssh"
	b.signInTerminal(g, page, user, userPassword, "")
	var recordedTag bool
	b.run("the page does not say recorded", chromedp.Evaluate(`!!document.getElementById("recorded")`, &recordedTag))
	if recordedTag {
		t.Error("with recording off the terminal page says it is recorded")
	}
	b.runLong("the terminal connects", remoteWait, remoteState("connected"))
	word := randomWord("off")
	b.typeTerm("echo " + word + "\r")
	b.waitTermLine("the echoed word", regexp.MustCompile(`^`+word+`$`))
	time.Sleep(1500 * time.Millisecond) // a length worth measuring
	b.typeTerm("exit\r")
	b.runLong("the shell exits", remoteWait, remoteState("ended"))

	var rec db.Recording
	waitFor(t, "the session's row in recordings", 15*time.Second, func() bool {
		rs, err := g.DB().Recordings(ctx, 10)
		if err != nil || len(rs) != 1 || rs[0].Ended.IsZero() {
			return false
		}
		rec = rs[0]
		return true
	})
	if rec.Kind != "terminal" || rec.Operator != adminName || rec.Client != "pc" || rec.Service != "ssh" || rec.SSHUser != user || rec.CastBytes != 0 {
		t.Errorf("the unrecorded terminal's row: %+v", rec)
	}
	if l := rec.Ended.Sub(rec.Started); l < time.Second {
		t.Errorf("the row says the session lasted %s (%s to %s); it lasted over 1.5 s", l, rec.Started, rec.Ended)
	}
	id := strconv.FormatInt(rec.ID, 10)
	b.run("open Recordings", chromedp.Navigate(g.https()+"/console/recordings"), chromedp.WaitVisible(`tr[data-recording="`+id+`"]`, chromedp.ByQuery))
	row := b.text(`tr[data-recording="` + id + `"]`)
	for _, want := range []string{adminName, "pc", "ssh", user, "terminal"} {
		if !strings.Contains(row, want) {
			t.Errorf("recording row %q lacks %q", row, want)
		}
	}
	var links int
	b.run("count links", chromedp.Evaluate(`document.querySelectorAll('tr[data-recording] a').length`, &links))
	if links != 0 {
		t.Errorf("the unrecorded terminal's row has %d links, want no Replay", links)
	}
	cookies := b.httpCookies()
	for _, p := range []string{"/console/recordings/" + id + "/cast", "/console/recordings/" + id} {
		if st, _, _ := httpDo(t, g, http.MethodGet, p, nil, cookies); st != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, st)
		}
	}

	// Retention: 7 days, as set above.
	now := time.Now()
	if n, err := handlers.SweepRecordings(ctx, g.DB(), g.DB(), now.Add(6*24*time.Hour)); err != nil || n != 0 {
		t.Errorf("a sweep 6 days on deleted %d (%v), want none", n, err)
	}
	if n, err := handlers.SweepRecordings(ctx, g.DB(), g.DB(), now.Add(8*24*time.Hour)); err != nil || n != 1 {
		t.Errorf("a sweep 8 days on deleted %d (%v), want the one row", n, err)
	}
	if rs, err := g.DB().Recordings(ctx, 10); err != nil || len(rs) != 0 {
		t.Errorf("after the sweep: %+v %v", rs, err)
	}
}

// TestRemoteAccessibility runs axe-core (as TestConsoleAccessibility
// does, light and dark) on the terminal page signed in, the Recordings
// page, a recording's replay, the desktop page connected, the Remote
// control list and the second factor's page: no serious or critical
// violation, and TestConsoleContrast's check passes.
func TestRemoteAccessibility(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("testdata", "axe-core-4.14.1", "axe.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	sshd := startSSHD(t)
	const userPassword = "a user's password 12"
	user := tempUser(t, userPassword)
	d := startDesktop(t, "")
	g := consoleGateway(t)
	g.waitConnected(t, g.startAgent(t, testKey, "pc", map[string]string{"ssh": sshd.addr, "vnc": d.addr}))
	b := newBrowser(t)
	b.run("inject axe", shellScript(string(src)))
	b.signIn(g)
	check := func(name string) {
		for _, s := range []string{"light", "dark"} {
			var found []string
			only := "[]"
			if s == "dark" {
				only = `["color-contrast"]`
			}
			b.run("axe on "+name+" "+s, colorScheme(s), chromedp.Evaluate(axeRun+"("+only+")", &found, shellAwait))
			for _, v := range found {
				t.Errorf("%s (%s): %s", name, s, v)
			}
			// And the console's own contrast check (TestConsoleContrast).
			var res contrastResult
			b.run("contrast of "+name+" "+s, chromedp.Evaluate(contrastJS, &res))
			if res.Checked == 0 {
				t.Errorf("%s (%s): no contrast measured", name, s)
			}
			for _, v := range res.Bad {
				t.Errorf("%s (%s): %s", name, s, v)
			}
		}
		b.run("light again", colorScheme("light"))
	}

	b.signInTerminal(g, "/console/clients/pc/terminal/ssh", user, userPassword, "")
	b.runLong("the terminal connects", remoteWait, remoteState("connected"))
	word := randomWord("axe")
	b.typeTerm("echo " + word + "\r")
	b.waitTermLine("the echoed word", regexp.MustCompile(`^`+word+`$`))
	check("terminal")
	b.typeTerm("exit\r")
	b.runLong("the shell exits", remoteWait, remoteState("ended"))

	waitFor(t, "the recording to be stored", 15*time.Second, func() bool {
		rs, err := g.DB().Recordings(context.Background(), 10)
		return err == nil && len(rs) == 1 && rs[0].CastBytes > 0
	})
	b.openPage(g, shellPage{"recordings", "/console/recordings", `tr[data-recording] a.button`})
	check("recordings")
	b.run("open the replay",
		chromedp.Click(`tr[data-recording] a.button`, chromedp.ByQuery),
		chromedp.WaitVisible(`#recording-player`, chromedp.ByQuery),
		chromedp.Poll(`!!window.switchboardPlayer`, nil),
		chromedp.Sleep(500*time.Millisecond),
	)
	check("recording")

	b.runLong("open the desktop", remoteWait,
		chromedp.Navigate(g.https()+"/console/clients/pc/desktop/vnc"),
		remoteState("connected"),
	)
	check("desktop")
	b.openPage(g, shellPage{"remote", "/console/remote", `a[data-remote]`})
	check("remote")
	b.openPage(g, shellPage{"remote-verify", "/console/remote/verify", "main h1"})
	check("remote-verify")
}
