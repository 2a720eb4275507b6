package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/relay/wire"
)

const (
	adminName     = "admin"
	adminPassword = "a long admin password"
)

// browser is a headless Chromium driven by chromedp for one test.
type browser struct {
	t   *testing.T
	ctx context.Context
}

// chromium finds Debian's Chromium; .ci/run installs it.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("browser tests need Chromium: apt-get install chromium")
	return ""
}

func newBrowser(t *testing.T) *browser {
	// Not t.TempDir: Chromium's helper processes may still write to the
	// profile for a moment after the browser is gone.
	profile, err := os.MkdirTemp("", "switchboard-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		// The test gateway's certificate is self-signed; the pinning of it
		// is tested with the Control, not here.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1400, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	b := &browser{t: t, ctx: ctx}
	t.Cleanup(func() {
		if t.Failed() {
			b.screenshot()
		}
		cancel()
		cancelAlloc()
		for range 20 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return b
}

// screenshot keeps what the browser showed when the test failed, in the
// test's artifact directory (kept with go test -artifacts).
func (b *browser) screenshot() {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		b.t.Logf("no screenshot: %v", err)
		return
	}
	path := filepath.Join(b.t.ArtifactDir(), "failure.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Logf("no screenshot: %v", err)
		return
	}
	b.t.Logf("screenshot of the failure: %s", path)
}

// run performs actions with a deadline, failing the test with what was
// being done.
func (b *browser) run(what string, actions ...chromedp.Action) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// clickLive clicks sel on a live page, whose SSE re-render may replace
// the node between finding it and clicking it ("Could not find node with
// given id"): that is retried, anything else fails the test.
func (b *browser) clickLive(what, sel string) {
	b.t.Helper()
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
		err := chromedp.Run(ctx, chromedp.Click(sel, chromedp.ByQuery))
		cancel()
		if err == nil {
			return
		}
		if attempt == 5 || !strings.Contains(err.Error(), "Could not find node") {
			b.t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	var s string
	b.run("read "+sel, chromedp.Text(sel, &s, chromedp.ByQuery))
	return s
}

// consoleGateway starts a gateway with an admin operator.
func consoleGateway(t *testing.T, opts ...gwOption) *testGateway {
	t.Helper()
	g := mustStartGateway(t, opts...)
	_, err := runCLI(context.Background(), t, strings.NewReader(adminPassword+"\n"),
		"operators", "--database-url", g.cfg.DatabaseURL, "add", adminName, "--admin")
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func (b *browser) signIn(g *testGateway) {
	b.t.Helper()
	b.run("open the console", chromedp.Navigate(g.https()+"/console/clients"))
	b.passwordStep()
	b.run("sign in", chromedp.WaitVisible(`#clients-table`, chromedp.ByQuery))
}

func TestConsoleSignIn(t *testing.T) {
	g := consoleGateway(t)
	b := newBrowser(t)

	b.run("a wrong password is refused",
		chromedp.Navigate(g.https()+"/console/clients"),
		chromedp.WaitVisible(`input[name=name]`, chromedp.ByQuery),
		chromedp.SendKeys(`input[name=name]`, adminName, chromedp.ByQuery),
		chromedp.SendKeys(`input[name=password]`, "not the password", chromedp.ByQuery),
		chromedp.Submit(`input[name=password]`, chromedp.ByQuery),
		chromedp.WaitVisible(`.flash.error`, chromedp.ByQuery),
	)
	g.waitEvent(t, "Sign-in failed for operator admin from 127.0.0.1")
	b.signIn(g)
	g.waitEvent(t, "Operator admin signed in from 127.0.0.1")
	if got := b.text(`.who`); !strings.Contains(got, adminName) {
		t.Errorf("header shows %q, want the operator", got)
	}

	// The session cookie is HttpOnly and SameSite, and every page denies
	// framing and inline script.
	var cookies []*network.Cookie
	b.run("read cookies", chromedp.ActionFunc(func(ctx context.Context) error {
		var err error
		cookies, err = network.GetCookies().Do(ctx)
		return err
	}))
	if len(cookies) != 1 || !cookies[0].HTTPOnly || cookies[0].SameSite != network.CookieSameSiteLax {
		t.Errorf("cookies = %+v", cookies)
	}
	resp, err := g.httpsClient().Get(g.https() + "/console/signin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP = %q", csp)
	}

	b.run("sign out",
		chromedp.Click(`.who button`, chromedp.ByQuery),
		chromedp.WaitVisible(`input[name=password]`, chromedp.ByQuery),
		chromedp.Navigate(g.https()+"/console/clients"),
		chromedp.WaitVisible(`input[name=password]`, chromedp.ByQuery),
	)
}

// TestConsoleClientsLive: a Client appears without a reload and goes away
// when it stops; the header count follows.
func TestConsoleClientsLive(t *testing.T) {
	g := consoleGateway(t)
	b := newBrowser(t)
	b.signIn(g)
	if got := b.text(`#client-count`); got != "0" {
		t.Errorf("count before = %q", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := g.startAgentCtx(t, ctx, testKey, "pc-live", map[string]string{"vnc": "127.0.0.1:5900"})
	g.waitConnected(t, a)
	b.run("the Client appears live",
		chromedp.WaitVisible(`tr[data-client="pc-live"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`//span[@id="client-count"][normalize-space()="1"]`),
	)
	// Company for the screenshot kept in the artifacts (docs/clients.png
	// comes from go test -run TestConsoleClientsLive -artifacts).
	for _, name := range []string{"reception-desk", "lab-server-02"} {
		g.waitConnected(t, g.startAgent(t, testKey, name, map[string]string{"ssh": "127.0.0.1:22", "rdp": "127.0.0.1:3389"}))
	}
	b.run("all three listed", chromedp.WaitVisible(`//span[@id="client-count"][normalize-space()="3"]`))
	var png []byte
	b.run("screenshot", chromedp.FullScreenshot(&png, 100))
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), "clients.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	row := b.text(`tr[data-client="pc-live"]`)
	for _, want := range []string{"pc-live", "127.0.0.1", "from --gateway-key", "vnc"} {
		if !strings.Contains(row, want) {
			t.Errorf("row %q lacks %q", row, want)
		}
	}
	if strings.Contains(row, testKey) {
		t.Error("the Clients page shows the gateway key itself")
	}
	cancel()
	b.run("the Client disappears live",
		chromedp.WaitNotPresent(`tr[data-client="pc-live"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`//span[@id="client-count"][normalize-space()="2"]`),
	)
}

// TestConsoleTerminatesSession: a session opened by a Control shows on
// Active Sessions and an admin ends it there; the Control sees it end.
func TestConsoleTerminatesSession(t *testing.T) {
	g := consoleGateway(t)
	a := g.startAgent(t, testKey, "pc-sess", map[string]string{"echo": echoServer(t)})
	g.waitConnected(t, a)
	conn, err := g.signedControl(testKey, "op-console").Connect(context.Background(), "pc-sess/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mustEcho(t, conn, []byte("bytes to count"))

	b := newBrowser(t)
	b.signIn(g)
	b.run("open Active Sessions",
		chromedp.Click(`//nav/a[normalize-space()="Active Sessions"]`),
		chromedp.WaitVisible(`tr[data-session]`, chromedp.ByQuery),
	)
	row := b.text(`tr[data-session]`)
	for _, want := range []string{"op-console", adminName, "pc-sess", "echo", "14 B"} {
		if !strings.Contains(row, want) {
			t.Errorf("session row %q lacks %q", row, want)
		}
	}
	b.acceptDialogs()
	b.clickLive("terminate it", `tr[data-session] button.danger`)
	b.run("see it terminated",
		chromedp.WaitVisible(`#sessions-flash .flash.ok`, chromedp.ByQuery),
		chromedp.WaitNotPresent(`tr[data-session]`, chromedp.ByQuery),
	)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("the Control's session is still open")
	}
	e := g.waitEvent(t, "Session between Control op-console and Client pc-sess terminated by operator admin")
	// The columns say it too, not only the text.
	if e.Client != "pc-sess" || e.Control != "op-console" || e.Operator != "admin" {
		t.Errorf("termination event = %+v", e)
	}
}

// TestConsoleKeysAndCMPI: a key added in the Keys tab lets a new Client
// in; a CMPI changed in the General tab reaches a connected Client.
func TestConsoleKeysAndCMPI(t *testing.T) {
	g := consoleGateway(t)
	b := newBrowser(t)
	b.signIn(g)

	const newKey = "added-in-the-console"
	a := g.startAgent(t, newKey, "pc-newkey", nil)
	g.waitEvent(t, "Security check failed for Client pc-newkey (127.0.0.1). Terminating connection from 127.0.0.1")
	b.run("add a key",
		chromedp.Navigate(g.https()+"/console/config/keys"),
		chromedp.WaitVisible(`input[name=key]`, chromedp.ByQuery),
		chromedp.SendKeys(`input[name=key]`, newKey, chromedp.ByQuery),
		chromedp.SendKeys(`form input[name=label]`, "console key", chromedp.ByQuery),
		chromedp.Submit(`input[name=key]`, chromedp.ByQuery),
		chromedp.WaitVisible(`.flash.ok`, chromedp.ByQuery),
	)
	g.waitConnected(t, a)
	if page := b.text(`main`); strings.Contains(page, newKey) {
		t.Error("the Keys tab shows a key itself")
	}

	// A Client spoken by hand, to see the Config frame arrive.
	d := g.dialer()
	conn, err := d.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Send(testKey, wire.RoleClient, "pc-cmpi", "", nil); err != nil {
		t.Fatal(err)
	}
	var w wire.Welcome
	if err := wire.Expect(conn.Reader(), wire.TypeWelcome, &w); err != nil {
		t.Fatal(err)
	}
	b.run("change the CMPI",
		chromedp.Navigate(g.https()+"/console/config/general"),
		chromedp.WaitVisible(`#cmpi`, chromedp.ByQuery),
		chromedp.SetValue(`#cmpi`, "7", chromedp.ByQuery),
		chromedp.Submit(`#cmpi`, chromedp.ByQuery),
		chromedp.WaitVisible(`.flash.ok`, chromedp.ByQuery),
	)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var cfg wire.Config
	if err := wire.Expect(conn.Reader(), wire.TypeConfig, &cfg); err != nil {
		t.Fatalf("no config frame reached the Client: %v", err)
	}
	if cfg.CMPISeconds != 7 {
		t.Fatalf("CMPI sent = %d, want 7", cfg.CMPISeconds)
	}
	g.waitEvent(t, "Reloading configuration")
	evs := g.events(t, db.EventFilter{Kind: event.KindConfig})
	var named bool
	for _, e := range evs {
		named = named || (e.Operator == adminName && strings.Contains(e.Message, "CMPI from 1m0s to 7s"))
	}
	if !named {
		t.Errorf("no config event names the operator: %q", messages(evs))
	}
}

// TestConsoleRefusesCrossOrigin sends a state-changing request with the
// admin's own cookie from another origin.
func TestConsoleRefusesCrossOrigin(t *testing.T) {
	g := consoleGateway(t)
	b := newBrowser(t)
	b.signIn(g)
	var cookies []*network.Cookie
	b.run("read cookies", chromedp.ActionFunc(func(ctx context.Context) error {
		var err error
		cookies, err = network.GetCookies().Do(ctx)
		return err
	}))
	post := func(origin string) int {
		form := url.Values{"max_clients": {"3"}}
		req, _ := http.NewRequest(http.MethodPost, g.https()+"/console/config/licences", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", origin)
		req.Header.Set("Sec-Fetch-Site", map[bool]string{true: "same-origin", false: "cross-site"}[origin == g.https()])
		for _, c := range cookies {
			req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
		client := g.httpsClient()
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("http://evil.example"); code != http.StatusForbidden {
		t.Fatalf("cross-origin POST answered %d, want 403", code)
	}
	if code := post(g.https()); code != http.StatusSeeOther {
		t.Fatalf("same-origin POST answered %d, want 303", code)
	}
	cfg, err := g.StoredConfig(context.Background())
	if err != nil || cfg.MaxClients != 3 {
		t.Fatalf("after the same-origin POST: %+v %v", cfg.MaxClients, err)
	}
	g.waitEvent(t, fmt.Sprintf("Operator %s changed maximum Clients from unlimited to 3", adminName))
}

// TestConsoleSecurityTab shows the fingerprint, installs a pasted
// certificate and turns on the blocking of unencrypted peers.
func TestConsoleSecurityTab(t *testing.T) {
	g := consoleGateway(t)
	b := newBrowser(t)
	b.signIn(g)
	b.run("open Security", chromedp.Navigate(g.https()+"/console/config/security"), chromedp.WaitVisible(`#fingerprint`, chromedp.ByQuery))
	if got := b.text(`#fingerprint`); got != g.Fingerprint() {
		t.Fatalf("shown fingerprint %q, serving %q", got, g.Fingerprint())
	}

	certFile, keyFile := writeSelfSigned(t, t.TempDir())
	certPEM, _ := os.ReadFile(certFile)
	keyPEM, _ := os.ReadFile(keyFile)
	old := g.Fingerprint()
	b.run("paste a certificate",
		chromedp.SetValue(`#cert_pem`, string(certPEM), chromedp.ByQuery),
		chromedp.SetValue(`#key_pem`, string(keyPEM), chromedp.ByQuery),
		chromedp.Submit(`#cert_pem`, chromedp.ByQuery),
		chromedp.WaitVisible(`.flash.ok`, chromedp.ByQuery),
	)
	served := servedFingerprint(t, g.Addrs()[0].String())
	if served == old || served != g.Fingerprint() {
		t.Fatalf("served %s after the upload (was %s)", served, old)
	}
	if _, err := os.Stat(filepath.Join(g.cfg.DataDir, "tls", "uploaded.key")); err != nil {
		t.Fatalf("the uploaded certificate is not kept: %v", err)
	}

	if _, err := g.signedControl(testKey, "op").Browse(context.Background()); err != nil {
		t.Fatalf("plain browse before blocking: %v", err)
	}
	b.run("block unencrypted peers",
		chromedp.Navigate(g.https()+"/console/config/security"),
		chromedp.WaitVisible(`#block`, chromedp.ByQuery),
		chromedp.Click(`#block`, chromedp.ByQuery),
		chromedp.Submit(`#block`, chromedp.ByQuery),
		chromedp.WaitVisible(`.flash.ok`, chromedp.ByQuery),
	)
	waitFor(t, "plain peers to be refused", 5*time.Second, func() bool {
		_, err := g.signedControl(testKey, "op").Browse(context.Background())
		return err != nil && strings.Contains(err.Error(), "only encrypted")
	})
	g.waitEvent(t, "Operator admin changed blocking of unencrypted peers from off to on")
}
