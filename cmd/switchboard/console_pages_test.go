package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
)

// signInTo signs in from path and waits for sel on the page it lands on.
func (b *browser) signInTo(g *testGateway, path, sel string) {
	b.t.Helper()
	b.run("open "+path, chromedp.Navigate(g.https()+path))
	b.passwordStep()
	b.run("signed in at "+path, chromedp.WaitVisible(sel, chromedp.ByQuery))
}

// keepScreenshot saves the page as name in the test's artifacts (kept
// with go test -artifacts).
func (b *browser) keepScreenshot(name string) {
	b.t.Helper()
	var png []byte
	b.run("screenshot "+name, chromedp.FullScreenshot(&png, 100))
	if err := os.WriteFile(filepath.Join(b.t.ArtifactDir(), name), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// dialogs accepts every confirmation the page asks for (hx-confirm) and
// keeps what they said.
type dialogs struct {
	mu   sync.Mutex
	msgs []string
}

func (b *browser) acceptDialogs() *dialogs {
	d := &dialogs{}
	chromedp.ListenTarget(b.ctx, func(ev any) {
		if e, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			d.mu.Lock()
			d.msgs = append(d.msgs, e.Message)
			d.mu.Unlock()
			go func() { _ = chromedp.Run(b.ctx, page.HandleJavaScriptDialog(true)) }()
		}
	})
	return d
}

func (d *dialogs) last() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.msgs) == 0 {
		return ""
	}
	return d.msgs[len(d.msgs)-1]
}

// waitText waits until sel's text, trimmed, is want.
func (b *browser) waitText(what, sel, want string) {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		err := chromedp.Run(ctx, chromedp.Text(sel, &got, chromedp.ByQuery))
		cancel()
		if err == nil && strings.TrimSpace(got) == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("%s: %s shows %q, want %q", what, sel, got, want)
}

// TestConsoleEventsLiveRowsAndCount: on a filtered Events page with no
// match, a live row replaces "No event matches." and the count follows
// every live row; an event's reason shows in its own column.
func TestConsoleEventsLiveRowsAndCount(t *testing.T) {
	g := consoleGateway(t)
	b := newBrowser(t)
	b.signInTo(g, "/console/events?client=pc-ev", `#event-rows`)
	// By what the page says, not by its markup: the fault was the empty
	// state staying under a live row, and a count left behind.
	const empty = `//*[normalize-space()="No event matches."]`
	count := func(want string) chromedp.Action {
		return chromedp.WaitVisible(`//form[@action="/console/events"]//span[normalize-space()="` + want + `"]`)
	}
	b.run("the empty state and count show", chromedp.WaitVisible(empty), count("0 events"))

	ctx, cancel := context.WithCancel(context.Background())
	g.waitConnected(t, g.startAgentCtx(t, ctx, testKey, "pc-ev", nil))
	b.run("a live row replaces the empty state",
		chromedp.WaitVisible(`//tbody[@id="event-rows"]/tr[td[normalize-space()="Client pc-ev connected"]]`),
		chromedp.WaitNotVisible(empty),
		count("1 event"),
	)
	cancel()
	b.run("the disconnect arrives",
		chromedp.WaitVisible(`//tbody[@id="event-rows"]/tr[td[normalize-space()="Client pc-ev Disconnected"]]`),
		count("2 events"),
	)

	// An event with a reason, as the relay writes for a Client dropped
	// for silence: the text stays the design's, the reason has a column.
	const reason = "no heartbeat for 3 heartbeat intervals"
	if err := g.DB().InsertEvents(context.Background(), []event.Event{{Time: time.Now(), Kind: event.KindClientDisconnect,
		Message: "Client pc-ev Disconnected", Client: "pc-ev", Reason: reason, Node: "test-node"}}); err != nil {
		t.Fatal(err)
	}
	b.run("after a third", count("3 events"))
	if got := b.text(`#event-rows tr:first-child td:nth-child(4)`); got != reason {
		t.Errorf("reason column = %q, want %q", got, reason)
	}
	b.keepScreenshot("events.png")
	var rows int
	b.run("count rows", chromedp.Evaluate(`document.querySelectorAll("#event-rows tr[data-event]").length`, &rows))
	if rows != 3 {
		t.Errorf("%d rows shown, want 3", rows)
	}
}

// TestConsoleDashboard: the dashboard's figures are the relay's own
// counts, and follow them.
func TestConsoleDashboard(t *testing.T) {
	g := consoleGateway(t, withMaxClients(3))
	echo := echoServer(t)
	for _, name := range []string{"pc-d1", "pc-d2"} {
		g.waitConnected(t, g.startAgent(t, testKey, name, map[string]string{"echo": echo}))
	}
	conn, err := g.signedControl(testKey, "op-dash").Connect(context.Background(), "pc-d1/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// One failed security check: a browse with a key the gateway lacks.
	if _, err := g.control("not-the-gateway-key", "op-bad").Browse(context.Background()); err == nil {
		t.Fatal("a browse with a wrong key was admitted")
	}
	g.waitEvent(t, "Security check failed for Control browse. Terminating connection from 127.0.0.1")

	b := newBrowser(t)
	b.signInTo(g, "/console/", `#dashboard`)
	st := g.Relay().Stats()
	b.waitText("Clients", `#dash-clients`, strconv.Itoa(st.Clients))
	b.waitText("sessions", `#dash-sessions`, strconv.Itoa(st.Sessions))
	if st.Clients != 2 || st.Sessions != 1 {
		t.Fatalf("relay counts %+v, want 2 Clients and 1 session", st)
	}
	security, err := g.DB().CountEvents(context.Background(), db.EventFilter{Kind: event.KindSecurity, Since: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	b.waitText("failed checks", `#dash-security`, strconv.FormatInt(security, 10))
	b.waitText("licence", `#dash-licence-used`, "2")
	b.waitText("version", `#dash-version`, version)
	if got := b.text(`tr[data-node="test-node"]`); !strings.Contains(got, "(this node)") || !strings.Contains(got, "active") {
		t.Errorf("node row = %q", got)
	}
	if got := b.text(`#dash-cert`); !strings.Contains(got, "self-signed") || !strings.Contains(got, "Expires") {
		t.Errorf("certificate tile = %q", got)
	}
	var links []string
	b.run("figures link to their pages", chromedp.Evaluate(
		`["#dash-clients", "#dash-sessions", "#dash-security", "#dash-licence-used"].map(s => document.querySelector(s).closest("a").getAttribute("href"))`, &links))
	if len(links) != 4 || links[0] != "/console/clients" || links[1] != "/console/sessions" ||
		!strings.HasPrefix(links[2], "/console/events?kind=security") || links[3] != "/console/config/licences" {
		t.Errorf("links = %q", links)
	}
	var peak string
	b.run("trend", chromedp.AttributeValue(`svg.sparkline`, "data-peak", &peak, nil, chromedp.ByQuery))
	if n, _ := strconv.Atoi(peak); n < 2 {
		t.Errorf("trend peak %q, want at least the 2 Clients connected", peak)
	}

	b.keepScreenshot("dashboard.png")

	// A third Client reaches the licence limit: the tile warns.
	g.waitConnected(t, g.startAgent(t, testKey, "pc-d3", nil))
	b.waitText("Clients after a third", `#dash-clients`, "3")
	b.run("the licence tile is at its limit", chromedp.WaitVisible(`#dash-licence.level-full`, chromedp.ByQuery))

	// Active Sessions names its Terminate buttons by row and asks first.
	d := b.acceptDialogs()
	b.run("open Active Sessions", chromedp.Navigate(g.https()+"/console/sessions"),
		chromedp.WaitVisible(`button[aria-label="Terminate session pc-d1 ← op-dash"]`, chromedp.ByQuery))
	b.clickLive("terminate from Active Sessions", `button[aria-label="Terminate session pc-d1 ← op-dash"]`)
	b.run("see it terminated", chromedp.WaitVisible(`#sessions-flash .flash.ok`, chromedp.ByQuery))
	if msg := d.last(); !strings.Contains(msg, "Terminate the session of Control op-dash with Client pc-d1 (echo)?") {
		t.Errorf("confirmation said %q", msg)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("the session is still open")
	}
}

// TestConsoleClientPage: a Client's page shows it, its copied command
// connects when run, Disconnect really disconnects, and once it stops it
// stays listed offline with the time it was last seen until forgotten.
func TestConsoleClientPage(t *testing.T) {
	g := consoleGateway(t)
	echo := echoServer(t)
	ctx, stopAgent := context.WithCancel(context.Background())
	defer stopAgent()
	a := g.startAgentCtx(t, ctx, testKey, "pc-page", map[string]string{"echo": echo})
	g.waitConnected(t, a)
	regs := g.Relay().Registrations()
	if len(regs) != 1 {
		t.Fatalf("registrations = %+v", regs)
	}
	first := regs[0].ConnID

	b := newBrowser(t)
	b.signInTo(g, "/console/clients?sort=name", `#clients-table`)
	if got := b.text(`th[aria-sort="ascending"]`); got != "Name" {
		t.Errorf("sorted column header %q, want Name with aria-sort", got)
	}
	b.run("open the Client's page",
		chromedp.Click(`//tr[@data-client="pc-page"]//a`),
		chromedp.WaitVisible(`#client-state`, chromedp.ByQuery),
	)
	b.waitText("state", `#client-state`, "connected")
	if got := b.text(`#client-live`); !strings.Contains(got, "127.0.0.1") || !strings.Contains(got, "from --gateway-key") ||
		!strings.Contains(got, "echo") || !strings.Contains(got, "test-node") {
		t.Errorf("details = %q", got)
	}

	b.keepScreenshot("client.png")

	// The command, run as shown, with the key and password in the
	// environment as the page says.
	cmd := b.text(`#cmd-echo`)
	args := strings.Fields(cmd)
	if len(args) < 4 || args[0] != "switchboard" || !strings.Contains(cmd, "--fingerprint "+g.Fingerprint()) ||
		!strings.Contains(cmd, "--user "+adminName) {
		t.Fatalf("command %q", cmd)
	}
	listen := regexp.MustCompile(`--listen (\S+)`).FindStringSubmatch(cmd)
	if listen == nil {
		t.Fatalf("command %q listens nowhere", cmd)
	}
	t.Setenv("SWITCHBOARD_KEY", testKey)
	t.Setenv("SWITCHBOARD_PASSWORD", adminPassword)
	cctx, stopControl := context.WithCancel(context.Background())
	controlDone := make(chan struct{})
	go func() {
		defer close(controlDone)
		_, _ = runCLI(cctx, t, nil, args[1:]...)
	}()
	defer func() { stopControl(); <-controlDone }()
	var fwd net.Conn
	waitFor(t, "the command's forwarded port", 10*time.Second, func() bool {
		var err error
		fwd, err = net.Dial("tcp", listen[1])
		return err == nil
	})
	mustEcho(t, fwd, []byte("through the copied command"))
	fwd.Close()
	stopControl()
	<-controlDone

	d := b.acceptDialogs()
	b.clickLive("disconnect it", `button[aria-label="Disconnect Client pc-page"]`)
	b.run("see it disconnected", chromedp.WaitVisible(`#client-flash .flash.ok`, chromedp.ByQuery))
	if msg := d.last(); !strings.HasPrefix(msg, "Disconnect Client pc-page?") {
		t.Errorf("confirmation said %q", msg)
	}
	ev := g.waitEvent(t, "Client pc-page Disconnected")
	if ev.Operator != adminName || !strings.Contains(ev.Reason, "disconnected by operator "+adminName) {
		t.Errorf("disconnect event %+v", ev)
	}
	// The agent saw its connection end and came back on a new one.
	waitFor(t, "the agent to reconnect on a new connection", 10*time.Second, func() bool {
		regs := g.Relay().Registrations()
		return len(regs) == 1 && regs[0].ConnID != first
	})

	// Stopped, it stays known, offline, with when it was last seen.
	stopAgent()
	waitFor(t, "the Client to go", 10*time.Second, func() bool { return g.Relay().Stats().Clients == 0 })
	stopped := time.Now()
	b.run("listed offline",
		chromedp.Navigate(g.https()+"/console/clients"),
		chromedp.WaitVisible(`tr[data-offline-client="pc-page"]`, chromedp.ByQuery),
	)
	b.keepScreenshot("clients-offline.png")
	seen := b.text(`tr[data-offline-client="pc-page"] td.last-seen`)
	at, err := time.ParseInLocation("2006-01-02 15:04:05", strings.Fields(seen)[0]+" "+strings.Fields(seen)[1], time.Local)
	if err != nil || at.Before(stopped.Add(-5*time.Second)) || at.After(stopped.Add(2*time.Second)) {
		t.Errorf("last seen %q (%v), stopped at %v", seen, err, stopped)
	}
	b.run("its page says offline",
		chromedp.Click(`//tr[@data-offline-client="pc-page"]//a`),
		chromedp.WaitVisible(`#client-last-seen`, chromedp.ByQuery),
	)
	b.waitText("state", `#client-state`, "offline")
	b.run("open Clients", chromedp.Navigate(g.https()+"/console/clients"),
		chromedp.WaitVisible(`button[aria-label="Forget Client pc-page"]`, chromedp.ByQuery))
	b.clickLive("forget it", `button[aria-label="Forget Client pc-page"]`)
	b.run("see it forgotten",
		chromedp.WaitVisible(`#clients-flash .flash.ok`, chromedp.ByQuery),
		chromedp.WaitNotPresent(`tr[data-offline-client="pc-page"]`, chromedp.ByQuery),
	)
	if msg := d.last(); !strings.HasPrefix(msg, "Forget Client pc-page?") {
		t.Errorf("confirmation said %q", msg)
	}
	if ks, err := g.DB().KnownClientsNamed(context.Background(), "pc-page"); err != nil || len(ks) != 0 {
		t.Errorf("still known: %+v %v", ks, err)
	}
	g.waitEvent(t, "Operator admin forgot Client pc-page")
}

// TestConsoleClientOnAnotherNode: node-a's console shows a Client that
// node-b holds, says where it is and disconnects it (over the node link),
// as node-b's console does too; the dashboard lists both nodes.
func TestConsoleClientOnAnotherNode(t *testing.T) {
	cfgA := baseConfig(t)
	cfgA.GatewayKeys, cfgA.NoTLS, cfgA.Node, cfgA.Role = []string{testKey}, true, "node-a", "primary"
	a := mustStartGatewayConfig(t, cfgA)
	cfgB := baseConfig(t)
	cfgB.DatabaseURL, cfgB.SecretsKeyFile = cfgA.DatabaseURL, filepath.Join(cfgA.DataDir, "secrets.key")
	cfgB.NoTLS, cfgB.Node, cfgB.Role = true, "node-b", "secondary"
	b := mustStartGatewayConfig(t, cfgB)
	g := b.startAgent(t, testKey, "pc-far", map[string]string{"ssh": "127.0.0.1:1"})
	b.waitConnected(t, g)

	admin := adminClient(t, cfgA.DatabaseURL, a.url)
	page := func(gw, path string) string {
		t.Helper()
		resp, err := admin.Get(gw + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s%s: %d\n%s", gw, path, resp.StatusCode, body)
		}
		return string(body)
	}
	var body string
	waitFor(t, "node-a to list pc-far", 10*time.Second, func() bool {
		body = page(a.url, "/console/clients/pc-far")
		return strings.Contains(body, `id="client-state">connected`)
	})
	if !strings.Contains(body, "This Client is connected to node node-b") || !strings.Contains(body, `aria-label="Disconnect Client pc-far"`) ||
		!strings.Contains(body, `href="`+b.url+"/console/clients/pc-far?key=") {
		t.Errorf("node-a's page of pc-far:\n%s", body)
	}
	post := func(gw, path string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, gw+path, nil)
		req.Header.Set("HX-Request", "true")
		resp, err := admin.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	dash := page(a.url, "/console/")
	for _, want := range []string{`<tr data-node="node-a">`, `<tr data-node="node-b">`, "(this node)", `id="dash-clients">1<`} {
		if !strings.Contains(dash, want) {
			t.Errorf("node-a's dashboard lacks %q:\n%s", want, dash)
		}
	}

	keyID := b.Relay().Clients()[0].KeyID
	first := b.Relay().Registrations()[0].ConnID
	if code := post(a.url, "/console/clients/pc-far/disconnect?key="+keyID); code != http.StatusOK {
		t.Errorf("node-a disconnecting node-b's Client: %d", code)
	}
	waitFor(t, "pc-far back on node-b on a new connection after node-a's Disconnect", 10*time.Second, func() bool {
		regs := b.Relay().Registrations()
		return len(regs) == 1 && regs[0].ConnID != first
	})
	// node-b's console (the same database: the same operators) does it.
	before := b.Relay().Registrations()[0].ConnID
	jar, _ := cookiejar.New(nil)
	admin = &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := admin.PostForm(b.url+"/console/signin", url.Values{"name": {"root"}, "password": {"admin password 123"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if code := post(b.url, "/console/clients/pc-far/disconnect?key="+keyID); code != http.StatusOK {
		t.Fatalf("node-b disconnecting its Client: %d", code)
	}
	waitFor(t, "pc-far on a new connection", 10*time.Second, func() bool {
		regs := b.Relay().Registrations()
		return len(regs) == 1 && regs[0].ConnID != before
	})
}
