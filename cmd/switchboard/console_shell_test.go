package main

// Tests of the console's shell: what every page shares (HTTP/2, the live
// stream and its lost state, the error path of htmx actions, layout,
// phones, dark mode, accessibility) in real Chromium.

import (
	"context"
	"crypto/tls"
	"flag"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// countSources wraps window.EventSource in every new document of a tab so
// a test can count the live streams the page holds open.
const countSources = `(() => {
  const ES = window.EventSource;
  window.__sources = [];
  window.EventSource = class extends ES {
    constructor(u, o) { super(u, o); window.__sources.push(this); }
  };
})();`

const openSources = `window.__sources ? window.__sources.filter(s => s.readyState !== 2).length : -1`

func shellScript(src string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		_, err := page.AddScriptToEvaluateOnNewDocument(src).Do(ctx)
		return err
	})
}

// TestConsoleTenTabs: a browser allows six HTTP/1.1 connections per host
// and every console page holds a live stream, so over HTTP/1.1 the seventh
// tab never loads. Over HTTP/2 ten tabs share one connection.
func TestConsoleTenTabs(t *testing.T) {
	g := consoleGateway(t)
	b := newBrowser(t)
	b.signInTo(g, "/console/clients", "#clients-table")

	for i := range 10 {
		tab, cancel := chromedp.NewContext(b.ctx)
		defer cancel()
		ctx, stop := context.WithTimeout(tab, 10*time.Second)
		if err := chromedp.Run(ctx); err != nil { // opens the tab
			t.Fatal(err)
		}
		var nav struct {
			Proto string  `json:"proto"`
			Ready float64 `json:"ready"`
		}
		err := chromedp.Run(ctx,
			chromedp.Navigate(g.https()+"/console/clients"),
			chromedp.WaitVisible(`#clients-table`, chromedp.ByQuery),
			// As the page itself timed it: from the start of the navigation
			// to its content parsed, live stream included. Under HTTP/1.1
			// the seventh tab's navigation never starts.
			chromedp.Evaluate(`(() => { const n = performance.getEntriesByType("navigation")[0];
			  return { proto: n.nextHopProtocol, ready: n.domContentLoadedEventEnd }; })()`, &nav),
		)
		stop()
		if err != nil {
			t.Fatalf("tab %d did not load: %v", i+1, err)
		}
		if nav.Ready > 1000 {
			t.Errorf("tab %d took %.0f ms to load", i+1, nav.Ready)
		}
		proto := nav.Proto
		if proto != "h2" {
			t.Errorf("tab %d loaded over %q, want h2", i+1, proto)
		}
	}

	// With ten live tabs open, the first one's requests do not stall.
	var took float64
	b.run("a request from the first tab", chromedp.Evaluate(`(async () => {
	  const t0 = performance.now();
	  const r = await fetch("/console/sessions", { headers: { "HX-Request": "true" } });
	  await r.text();
	  return performance.now() - t0;
	})()`, &took, shellAwait))
	if took > 1000 {
		t.Errorf("with ten tabs open a request took %.0f ms", took)
	}

	// The relay's peers still get HTTP/1.1, whose Upgrade they need.
	for _, offer := range [][]string{{"http/1.1"}, {"h2", "http/1.1"}} {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.Addrs()[0].String(),
			&tls.Config{InsecureSkipVerify: true, NextProtos: offer})
		if err != nil {
			t.Fatal(err)
		}
		got := c.ConnectionState().NegotiatedProtocol
		c.Close()
		if want := offer[0]; got != want {
			t.Errorf("offering %v negotiated %q, want %q", offer, got, want)
		}
	}
	d, err := pinnedDialer(g)
	if err != nil {
		t.Fatal(err)
	}
	g.waitConnected(t, g.startAgentDialer(t, d, testKey, "pc-https", map[string]string{"vnc": "127.0.0.1:5900"}))
}

// TestConsoleOneStreamPerTab: moving between pages keeps at most one live
// stream open in the tab.
func TestConsoleOneStreamPerTab(t *testing.T) {
	g := consoleGateway(t)
	b := newBrowser(t)
	b.run("count streams", shellScript(countSources))
	b.signInTo(g, "/console/clients", "#clients-table")
	for _, nav := range []string{"Active Sessions", "Events", "Dashboard", "Clients", "Configuration", "Events", "Clients"} {
		var n int
		b.run("open "+nav,
			chromedp.Click(`//nav/a[normalize-space()="`+nav+`"]`),
			chromedp.WaitVisible(`//nav/a[normalize-space()="`+nav+`"][@aria-current="page"]`),
			chromedp.Sleep(300*time.Millisecond),
			chromedp.Evaluate(openSources, &n),
		)
		want := 1
		if nav == "Configuration" {
			want = 0
		}
		if n != want {
			t.Errorf("on %s the tab holds %d live streams, want %d", nav, n, want)
		}
	}
	var n int
	b.run("go back", chromedp.NavigateBack(), chromedp.Sleep(500*time.Millisecond), chromedp.Evaluate(openSources, &n))
	if n > 1 {
		t.Errorf("after going back the tab holds %d live streams", n)
	}
}

// TestConsoleConnectionLost: with the gateway stopped the page says so
// and its live marks turn grey; once the gateway is back they clear.
func TestConsoleConnectionLost(t *testing.T) {
	g := consoleGateway(t)
	b := newBrowser(t)
	b.signInTo(g, "/console/clients", "#clients-table")
	b.run("the page is live",
		chromedp.WaitVisible(`#live-state[data-state="live"]`, chromedp.ByQuery),
		chromedp.WaitNotVisible(`#conn-lost`, chromedp.ByQuery),
	)
	// The header's live count says "1 Client", "2 Clients".
	g.waitConnected(t, g.startAgent(t, testKey, "pc-one", map[string]string{"vnc": "127.0.0.1:5900"}))
	b.run("one Client", chromedp.WaitVisible(`//a[@class="clients"][normalize-space()="1 Client"]`))
	g.waitConnected(t, g.startAgent(t, testKey, "pc-two", map[string]string{"vnc": "127.0.0.1:5900"}))
	b.run("two Clients", chromedp.WaitVisible(`//a[@class="clients"][normalize-space()="2 Clients"]`))

	addr := g.Addrs()[0].String()
	g.stop()
	b.run("the page says the connection is lost",
		chromedp.WaitVisible(`//*[@id="conn-lost"][contains(., "Connection lost — reconnecting…")]`),
		chromedp.WaitVisible(`#live.lost #live-state[data-state="lost"]`, chromedp.ByQuery),
	)

	cfg := g.cfg
	cfg.Listen = []string{addr}
	mustStartGatewayConfig(t, cfg)
	b.run("the page is live again",
		chromedp.WaitNotVisible(`#conn-lost`, chromedp.ByQuery),
		chromedp.WaitVisible(`#live-state[data-state="live"]`, chromedp.ByQuery),
		chromedp.WaitNotPresent(`#live.lost`, chromedp.ByQuery),
	)
}

// TestConsoleActionErrors: an htmx action that fails shows its message
// where the action was, in place of an earlier success message.
func TestConsoleActionErrors(t *testing.T) {
	g := consoleGateway(t)
	a := g.startAgent(t, testKey, "pc-gone", map[string]string{"echo": echoServer(t)})
	g.waitConnected(t, a)
	conn, err := g.signedControl(testKey, "op-gone").Connect(context.Background(), "pc-gone/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mustEcho(t, conn, []byte("hello"))

	b := newBrowser(t)
	b.acceptDialogs()
	b.signInTo(g, "/console/clients", "#clients-table")
	b.run("open Active Sessions",
		chromedp.Navigate(g.https()+"/console/sessions"),
		chromedp.WaitVisible(`tr[data-session] button`, chromedp.ByQuery),
		// Stop the live table, so the ended session's row stays for a
		// second Terminate, as it does for an admin whose click races
		// the live update.
		chromedp.Evaluate(`document.getElementById("live")["htmx-internal-data"].sseEventSource.close()`, nil),
		chromedp.Click(`tr[data-session] button`, chromedp.ByQuery),
		chromedp.WaitVisible(`#sessions-flash .flash.ok`, chromedp.ByQuery),
	)
	b.run("terminate it again",
		chromedp.Click(`tr[data-session] button`, chromedp.ByQuery),
		chromedp.WaitVisible(`//*[@id="sessions-flash"]//*[contains(@class,"error")][contains(., "That session has already ended")]`),
	)
	var stale int
	b.run("count success messages", chromedp.Evaluate(`document.querySelectorAll(".flash.ok").length`, &stale))
	if stale != 0 {
		t.Errorf("%d success messages still shown beside the error", stale)
	}
}

// shellPage is one console page for the checks of every page.
type shellPage struct{ name, path, wait string }

// shellPages are the console's pages as an admin sees them, with a Client
// (pc-shots) connected and one session open (see shellFixture).
var shellPages = []shellPage{
	{"dashboard", "/console/dashboard", "main h1"},
	{"clients", "/console/clients", "#clients-table"},
	{"client", "/console/clients/pc-shots", "main h1"},
	{"sessions", "/console/sessions", "#sessions-table"},
	{"events", "/console/events", "main h1"},
	{"config-general", "/console/config/general", ".tabs"},
	{"config-keys", "/console/config/keys", ".tabs"},
	{"config-operators", "/console/config/operators", ".tabs"},
	{"config-2fa", "/console/config/2fa", ".tabs"},
	{"config-servers", "/console/config/servers", ".tabs"},
	{"config-licences", "/console/config/licences", ".tabs"},
	{"config-security", "/console/config/security", ".tabs"},
	{"account", "/console/account", "main h1"},
	{"not-found", "/console/no-such-page", ".error-page"},
}

var signinPage = shellPage{"signin", "/console/signin", "input[name=password]"}

// shellFixture is a gateway with two Clients and a session, and a
// browser, prepared by prepare, that has seen the sign-in page (check runs
// there) and signed in.
func shellFixture(t *testing.T, prepare func(*browser), check func(shellPage)) (*testGateway, *browser) {
	t.Helper()
	g := consoleGateway(t)
	g.waitConnected(t, g.startAgent(t, testKey, "pc-shots", map[string]string{"echo": echoServer(t), "vnc": "127.0.0.1:5900"}))
	g.waitConnected(t, g.startAgent(t, testKey, "reception-desk", map[string]string{"rdp": "127.0.0.1:3389"}))
	conn, err := g.signedControl(testKey, "helpdesk-07").Connect(context.Background(), "pc-shots/echo")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	mustEcho(t, conn, []byte("some bytes"))
	b := newBrowser(t)
	if prepare != nil {
		prepare(b)
	}
	b.openPage(g, signinPage)
	check(signinPage)
	b.passwordStep()
	b.run("signed in", chromedp.WaitVisible(`#clients-table`, chromedp.ByQuery))
	return g, b
}

func (b *browser) openPage(g *testGateway, p shellPage) {
	b.t.Helper()
	var done bool
	b.run("open "+p.name,
		chromedp.Navigate(g.https()+p.path),
		chromedp.WaitVisible(p.wait, chromedp.ByQuery),
		chromedp.Poll(`document.readyState === "complete"`, &done),
	)
}

// colorScheme emulates prefers-color-scheme: "light" or "dark".
func colorScheme(s string) chromedp.Action {
	return emulation.SetEmulatedMedia().WithFeatures([]*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: s}})
}

// shellViewport sets the page's size; phone widths are emulated as mobile, so
// the viewport meta tag applies as it does on a phone.
func shellViewport(w, h int64) chromedp.Action {
	return emulation.SetDeviceMetricsOverride(w, h, 1, w < 800)
}

func shellAwait(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }

// axeRun runs axe-core (injected in every document, see
// TestConsoleAccessibility) and returns its serious and critical
// violations; only limits it to some rules.
const axeRun = `(async (only) => {
  const opts = { resultTypes: ["violations"] };
  if (only.length) { opts.runOnly = { type: "rule", values: only }; }
  const r = await axe.run(document, opts);
  return r.violations
    .filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => v.impact + " " + v.id + ": " + v.help + " — " +
      v.nodes.slice(0, 3).map(n => n.target.join(" ") + " (" + (n.failureSummary || "").replace(/\s+/g, " ") + ")").join("; "));
})`

// TestConsoleAccessibility runs axe-core on every console page, light
// and dark: no serious or critical violation.
func TestConsoleAccessibility(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("testdata", "axe-core-4.14.1", "axe.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	var b *browser
	check := func(p shellPage) {
		for _, s := range []string{"light", "dark"} {
			var found []string
			only := "[]"
			if s == "dark" {
				// The layout is the same; only the colours change.
				only = `["color-contrast"]`
			}
			b.run("axe on "+p.name+" "+s, colorScheme(s), chromedp.Evaluate(axeRun+"("+only+")", &found, shellAwait))
			for _, v := range found {
				t.Errorf("%s (%s): %s", p.name, s, v)
			}
		}
		b.run("light again", colorScheme("light"))
	}
	g, b := shellFixture(t, func(nb *browser) {
		b = nb
		b.run("inject axe", shellScript(string(src)))
	}, check)
	for _, p := range shellPages {
		b.openPage(g, p)
		check(p)
	}

	// The first Tab reaches the skip link, shown when focused, and it
	// leads to the page's main content.
	var skip struct {
		Class string  `json:"class"`
		Top   float64 `json:"top"`
		Main  bool    `json:"main"`
	}
	b.openPage(g, shellPages[1])
	b.run("tab to the skip link",
		chromedp.KeyEvent("\t"),
		chromedp.Evaluate(`({ class: document.activeElement.className, top: document.activeElement.getBoundingClientRect().top })`, &skip),
	)
	if skip.Class != "skip" || skip.Top < 0 {
		t.Errorf("the first Tab focuses %q at %.0f px", skip.Class, skip.Top)
	}
	b.run("follow it", chromedp.KeyEvent("\r"), chromedp.Sleep(100*time.Millisecond),
		chromedp.Evaluate(`({ main: document.activeElement.id === "main" || location.hash === "#main" })`, &skip))
	if !skip.Main {
		t.Error("the skip link does not lead to the main content")
	}
}

// overflowJS reports what makes a page wider than its viewport.
const overflowJS = `(() => {
  const w = window.innerWidth, sw = document.documentElement.scrollWidth;
  if (sw <= w) { return ""; }
  const wide = [...document.querySelectorAll("body *")]
    .filter(e => e.getBoundingClientRect().right > w + 1 && !e.closest(".panel, .scroll, .tabs"))
    .slice(0, 5).map(e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + (e.className ? "." + String(e.className).replace(/ /g, ".") : ""));
  return "scrollWidth " + sw + " > innerWidth " + w + ": " + wide.join(", ");
})()`

// TestConsolePhoneLayout: at 390×844 no page is wider than the screen
// (tables scroll inside their panels), the header collapses behind Menu,
// and the menu opens to every page.
func TestConsolePhoneLayout(t *testing.T) {
	var b *browser
	check := func(p shellPage) {
		var wider string
		b.run("measure "+p.name, chromedp.Evaluate(overflowJS, &wider))
		if wider != "" {
			t.Errorf("%s at 390 px: %s", p.name, wider)
		}
	}
	g, b := shellFixture(t, func(nb *browser) {
		b = nb
		b.run("phone", shellViewport(390, 844))
	}, check)
	for _, p := range shellPages {
		b.openPage(g, p)
		check(p)
	}
	var navShown, menuShown bool
	b.run("the header is collapsed",
		chromedp.Evaluate(`getComputedStyle(document.getElementById("nav")).display !== "none"`, &navShown),
		chromedp.Evaluate(`getComputedStyle(document.querySelector("header.top button.menu")).display !== "none"`, &menuShown),
	)
	if navShown || !menuShown {
		t.Errorf("at 390 px the nav is shown: %v, the Menu button: %v", navShown, menuShown)
	}
	b.run("the menu opens and leads to Active Sessions",
		chromedp.Click(`header.top button.menu`, chromedp.ByQuery),
		chromedp.WaitVisible(`//nav/a[normalize-space()="Active Sessions"]`),
		chromedp.WaitVisible(`header.top .who button`, chromedp.ByQuery),
		chromedp.Click(`//nav/a[normalize-space()="Active Sessions"]`),
		chromedp.WaitVisible(`#sessions-table`, chromedp.ByQuery),
	)
}

// contrastJS measures, in the page, the text contrast of the console's main
// components against the background they are drawn on, composited from
// the element up; it returns the pairs below WCAG AA (4.5:1, 3:1 for
// large text).
const contrastJS = `(() => {
  const sels = ["body", "main h1", "main h2", ".panel", ".muted", "main a", "th", "td", "button", "button.secondary",
    "button.danger", "button.link", ".button", ".flash.ok", ".flash.error", ".flash.warn", ".tag", ".empty", ".help",
    "label", "input", "select", "textarea", ".tabs a", "header.top .brand", "header.top nav a", "header.top .who",
    ".count", "#live-state", ".banner", "footer.foot", ".error-page .message", ".pager"];
  const parse = c => {
    const m = c.match(/rgba?\(([^)]+)\)/);
    if (!m) { return null; }
    const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const over = (top, bottom) => ({ r: top.r * top.a + bottom.r * (1 - top.a), g: top.g * top.a + bottom.g * (1 - top.a), b: top.b * top.a + bottom.b * (1 - top.a), a: 1 });
  const dark = matchMedia("(prefers-color-scheme: dark)").matches;
  const background = el => {
    const chain = [];
    for (let e = el; e; e = e.parentElement) { chain.push(e); }
    let c = dark ? { r: 18, g: 18, b: 18, a: 1 } : { r: 255, g: 255, b: 255, a: 1 };
    for (let i = chain.length - 1; i >= 0; i--) {
      const bg = parse(getComputedStyle(chain[i]).backgroundColor);
      if (bg && bg.a > 0) { c = over(bg, c); }
    }
    return c;
  };
  const lum = c => {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
  };
  const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
  const bad = [];
  let checked = 0;
  for (const sel of sels) {
    for (const el of [...document.querySelectorAll(sel)].slice(0, 12)) {
      if (!el.getClientRects().length || !el.textContent.trim() && !/^(INPUT|SELECT|TEXTAREA)$/.test(el.tagName)) { continue; }
      const st = getComputedStyle(el);
      if (st.visibility === "hidden") { continue; }
      const bg = background(el);
      const fg = over(parse(st.color), bg);
      const size = parseFloat(st.fontSize), bold = parseInt(st.fontWeight, 10) >= 700;
      const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
      const r = ratio(fg, bg);
      checked++;
      if (r < need) {
        bad.push(sel + " “" + el.textContent.trim().slice(0, 30) + "” " + r.toFixed(2) + ":1 (" + st.color + " on rgb(" + [bg.r, bg.g, bg.b].map(Math.round) + "))");
        break;
      }
    }
  }
  return { checked, bad };
})()`

type contrastResult struct {
	Checked int      `json:"checked"`
	Bad     []string `json:"bad"`
}

// TestConsoleContrast: the text of the main components passes WCAG AA
// on every page, light and dark, as the browser draws it.
func TestConsoleContrast(t *testing.T) {
	var b *browser
	check := func(p shellPage) {
		for _, s := range []string{"light", "dark"} {
			var res contrastResult
			b.run("contrast of "+p.name+" "+s, colorScheme(s), chromedp.Evaluate(contrastJS, &res))
			if res.Checked == 0 {
				t.Errorf("%s (%s): nothing measured", p.name, s)
			}
			for _, v := range res.Bad {
				t.Errorf("%s (%s): %s", p.name, s, v)
			}
		}
		b.run("light again", colorScheme("light"))
	}
	g, b := shellFixture(t, func(nb *browser) { b = nb }, check)
	for _, p := range shellPages {
		b.openPage(g, p)
		check(p)
	}
	// The lost state and the messages of actions, too.
	b.openPage(g, shellPages[1])
	b.run("show the lost state", chromedp.Evaluate(`document.getElementById("live").classList.add("lost"); document.getElementById("conn-lost").hidden = false; document.getElementById("shell-flash").innerHTML = '<div class="flash ok">Saved.</div><div class="flash error">Failed.</div><div class="flash warn">Careful.</div>'`, nil))
	check(shellPage{name: "lost state"})
}

var updateScreenshots = flag.Bool("update-screenshots", false, "write docs/screenshots/*.png from TestConsoleScreenshots")

// TestConsoleScreenshots writes the screenshots of every page that README
// shows, at 1366×900 and 390×844, light and dark:
//
//	go test ./cmd/switchboard -run TestConsoleScreenshots -update-screenshots
func TestConsoleScreenshots(t *testing.T) {
	if !*updateScreenshots {
		t.Skip("writes docs/screenshots only with -update-screenshots")
	}
	dir := filepath.Join("..", "..", "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	type variant struct {
		size   string
		w, h   int64
		scheme string
	}
	variants := []variant{{"desktop", 1366, 900, "light"}, {"desktop", 1366, 900, "dark"}, {"phone", 390, 844, "light"}, {"phone", 390, 844, "dark"}}
	var b *browser
	var base string
	shoot := func(p shellPage) {
		for _, v := range variants {
			var png []byte
			var done bool
			b.run("screenshot "+p.name,
				shellViewport(v.w, v.h), colorScheme(v.scheme),
				chromedp.Navigate(base+p.path),
				chromedp.WaitVisible(p.wait, chromedp.ByQuery),
				chromedp.Poll(`document.readyState === "complete"`, &done),
				// Let the live stream connect, so the header says Live.
				chromedp.Sleep(400*time.Millisecond),
				chromedp.CaptureScreenshot(&png),
			)
			if len(png) > 400<<10 {
				t.Errorf("%s %s %s: %d KiB, more than 400", p.name, v.size, v.scheme, len(png)>>10)
			}
			name := filepath.Join(dir, p.name+"-"+v.size+"-"+v.scheme+".png")
			if err := os.WriteFile(name, png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	g, b := shellFixture(t, func(nb *browser) { b = nb }, func(shellPage) {})
	base = g.https()
	b.run("sign out", chromedp.Click(`.who button`, chromedp.ByQuery), chromedp.WaitVisible(`input[name=password]`, chromedp.ByQuery))
	shoot(signinPage)
	b.passwordStep()
	b.run("signed in", chromedp.WaitVisible(`#clients-table`, chromedp.ByQuery))
	for _, p := range shellPages {
		shoot(p)
	}
}
