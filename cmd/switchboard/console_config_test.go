package main

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/auth/signin"
)

// TestConsoleConfigRejectsAndKeeps: settings that cannot work are refused
// with the reason next to the field, and the form keeps what was typed.
func TestConsoleConfigRejectsAndKeeps(t *testing.T) {
	g := consoleGateway(t)
	b := newBrowser(t)
	b.signInTo(g, "/console/clients", `#clients-table`)
	ctx := context.Background()

	const ikey = "DIABCDEFGHIJ12345678"
	var kept string
	b.run("a Duo integration key alone",
		chromedp.Navigate(g.https()+"/console/config/2fa"),
		chromedp.WaitVisible(`#duo_ikey`, chromedp.ByQuery),
		chromedp.SendKeys(`#duo_ikey`, ikey, chromedp.ByQuery),
		chromedp.Submit(`#duo_ikey`, chromedp.ByQuery),
		chromedp.WaitVisible(`#duo_skey-error`, chromedp.ByQuery),
		chromedp.Value(`#duo_ikey`, &kept, chromedp.ByQuery),
	)
	if kept != ikey {
		t.Errorf("the integration key field holds %q after the refusal, want what was typed", kept)
	}
	if got := b.text(`#duo_host-error`); !strings.Contains(got, "Give the API host too") {
		t.Errorf("API host error %q", got)
	}
	var saved bool
	b.run("no success message", chromedp.Evaluate(`document.querySelector(".flash.ok") !== null`, &saved))
	if saved {
		t.Error("an incomplete Duo setup says it was saved")
	}
	if set, _ := signin.LoadSettings(ctx, g.DB()); set.DuoIntegrationKey != "" {
		t.Errorf("stored integration key %q", set.DuoIntegrationKey)
	}

	b.run("Duo Push for an operator while Duo is not configured",
		chromedp.Navigate(g.https()+"/console/config/operators"),
		chromedp.WaitVisible(`tr[data-operator=admin] select[name=factor]`, chromedp.ByQuery),
		chromedp.SetValue(`tr[data-operator=admin] select[name=factor]`, "duo", chromedp.ByQuery),
		chromedp.Submit(`tr[data-operator=admin] select[name=factor]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#admin-factor-error`, chromedp.ByQuery),
		chromedp.Value(`tr[data-operator=admin] select[name=factor]`, &kept, chromedp.ByQuery),
	)
	if kept != "duo" {
		t.Errorf("the factor shows %q after the refusal", kept)
	}
	if op, _ := g.DB().Operator(ctx, adminName); op.Factor != db.FactorNone {
		t.Errorf("stored factor %q", op.Factor)
	}
	b.run("TOTP with no app enrolled warns",
		chromedp.SetValue(`tr[data-operator=admin] select[name=factor]`, "totp", chromedp.ByQuery),
		chromedp.Submit(`tr[data-operator=admin] select[name=factor]`, chromedp.ByQuery),
		chromedp.WaitVisible(`.flash.warn`, chromedp.ByQuery),
	)
	if got := b.text(`.flash.warn`); !strings.Contains(got, "has not set up an authenticator app") {
		t.Errorf("warning %q", got)
	}

	const listen = ":443\n10.0.0.1:99999"
	b.run("a listen address that cannot work",
		chromedp.Navigate(g.https()+"/console/config/general"),
		chromedp.WaitVisible(`#listen`, chromedp.ByQuery),
		chromedp.SetValue(`#listen`, listen, chromedp.ByQuery),
		chromedp.SetValue(`#cmpi`, "42", chromedp.ByQuery),
		chromedp.Submit(`#cmpi`, chromedp.ByQuery),
		chromedp.WaitVisible(`#listen-error`, chromedp.ByQuery),
		chromedp.Value(`#listen`, &kept, chromedp.ByQuery),
	)
	if kept != listen {
		t.Errorf("listen holds %q after the refusal", kept)
	}
	b.run("read the CMPI", chromedp.Value(`#cmpi`, &kept, chromedp.ByQuery))
	if kept != "42" {
		t.Errorf("CMPI holds %q after the refusal", kept)
	}
	var url string
	b.run("the address bar shows the tab", chromedp.Location(&url))
	if !strings.HasSuffix(url, "/console/config/general") {
		t.Errorf("location %q", url)
	}

	// The 2FA tab is one column of labels and one of fields (no zig-zag),
	// and the sign-in form's fields line up.
	var lefts []float64
	b.run("2FA fields line up",
		chromedp.Navigate(g.https()+"/console/config/2fa"),
		chromedp.WaitVisible(`#duo_ikey`, chromedp.ByQuery),
		chromedp.Evaluate(`[...document.querySelectorAll('form[action="/console/config/2fa"] input:not([type=checkbox]):not([type=hidden])')].map(e => e.getBoundingClientRect().left)`, &lefts),
	)
	if !sameValues(lefts) || len(lefts) < 5 {
		t.Errorf("the 2FA fields start at %v: not one column", lefts)
	}
	b.signOut()
	var widths []float64
	b.run("sign-in fields line up",
		chromedp.Evaluate(`[...document.querySelectorAll('form[action="/console/signin"] input:not([type=hidden]), form[action="/console/signin"] button')].flatMap(e => [e.getBoundingClientRect().left, e.getBoundingClientRect().width])`, &widths),
	)
	if len(widths) != 6 || widths[0] != widths[2] || widths[2] != widths[4] || widths[1] != widths[3] || widths[3] != widths[5] {
		t.Errorf("sign-in name, password and button (left, width): %v", widths)
	}
}

func sameValues(v []float64) bool {
	for _, x := range v {
		if x != v[0] {
			return false
		}
	}
	return true
}

// answeredDialogs answers the page's confirm() dialogs with accept and
// keeps their messages (acceptDialogs, of the pages' tests, only accepts).
type answeredDialogs struct {
	mu     sync.Mutex
	accept bool
	seen   []string
}

func (b *browser) answerDialogs() *answeredDialogs {
	d := &answeredDialogs{}
	chromedp.ListenTarget(b.ctx, func(ev any) {
		e, ok := ev.(*page.EventJavascriptDialogOpening)
		if !ok {
			return
		}
		d.mu.Lock()
		d.seen = append(d.seen, e.Message)
		accept := d.accept
		d.mu.Unlock()
		go func() {
			ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
			defer cancel()
			_ = chromedp.Run(ctx, page.HandleJavaScriptDialog(accept))
		}()
	})
	return d
}

func (d *answeredDialogs) set(accept bool) { d.mu.Lock(); d.accept = accept; d.mu.Unlock() }

func (d *answeredDialogs) last() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.seen) == 0 {
		return ""
	}
	return d.seen[len(d.seen)-1]
}

// TestConsoleRemoveKeyConfirms: removing a key asks first, saying how many
// Clients it disconnects; declining keeps it.
func TestConsoleRemoveKeyConfirms(t *testing.T) {
	g := consoleGateway(t)
	a1 := g.startAgent(t, testKey, "pc-one", nil)
	a2 := g.startAgent(t, testKey, "pc-two", nil)
	g.waitConnected(t, a1)
	g.waitConnected(t, a2)
	b := newBrowser(t)
	d := b.answerDialogs()
	b.signInTo(g, "/console/clients", `#clients-table`)

	const remove = `tr[data-key] form[action$="/remove"] button`
	b.run("decline the removal",
		chromedp.Navigate(g.https()+"/console/config/keys"),
		chromedp.WaitVisible(remove, chromedp.ByQuery),
		chromedp.Click(remove, chromedp.ByQuery),
	)
	waitFor(t, "the confirmation", 5*time.Second, func() bool { return d.last() != "" })
	if got := d.last(); !strings.Contains(got, "disconnects its 2 Clients") {
		t.Errorf("the confirmation says %q", got)
	}
	time.Sleep(300 * time.Millisecond)
	if keys, _ := g.DB().Keys(context.Background()); len(keys) != 1 {
		t.Fatalf("declining removed the key: %d keys", len(keys))
	}
	d.set(true)
	b.run("accept the removal",
		chromedp.Click(remove, chromedp.ByQuery),
		chromedp.WaitVisible(`.flash.ok`, chromedp.ByQuery),
	)
	if keys, _ := g.DB().Keys(context.Background()); len(keys) != 0 {
		t.Errorf("%d keys after the removal", len(keys))
	}
	waitFor(t, "the Clients disconnected", 10*time.Second, func() bool { return len(g.Relay().Clients()) == 0 })
}

// TestConsoleRecoveryCode: ten codes are shown once at enrolment, and one
// signs in in place of the app's code.
func TestConsoleRecoveryCode(t *testing.T) {
	g := consoleGateway(t)
	b := newBrowser(t)
	b.signInTo(g, "/console/clients", `#clients-table`)

	b.run("start enrolment",
		chromedp.Navigate(g.https()+"/console/account"),
		chromedp.WaitVisible(`#totp-state`, chromedp.ByQuery),
		chromedp.SendKeys(`form[action="/console/account/totp/start"] input[name=password]`, adminPassword, chromedp.ByQuery),
		chromedp.Submit(`form[action="/console/account/totp/start"] input[name=password]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#totp-secret`, chromedp.ByQuery),
	)
	code, err := totp.GenerateCode(b.text(`#totp-secret`), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	b.run("confirm and see the recovery codes",
		chromedp.SendKeys(`input[name=code]`, code, chromedp.ByQuery),
		chromedp.Submit(`input[name=code]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#recovery-codes`, chromedp.ByQuery),
		chromedp.Evaluate(`[...document.querySelectorAll('#recovery-codes li')].map(e => e.textContent)`, &codes),
	)
	if len(codes) != 10 {
		t.Fatalf("%d recovery codes shown: %q", len(codes), codes)
	}
	var again bool
	b.run("shown once",
		chromedp.Navigate(g.https()+"/console/account"),
		chromedp.WaitVisible(`#recovery-left`, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelector('#recovery-codes') !== null`, &again),
	)
	if again {
		t.Error("the codes are shown again")
	}

	b.signOut()
	b.passwordStep()
	b.run("sign in with a recovery code",
		chromedp.WaitVisible(`details.recovery summary`, chromedp.ByQuery),
		chromedp.Click(`details.recovery summary`, chromedp.ByQuery),
		chromedp.SendKeys(`#recovery-code`, codes[7], chromedp.ByQuery),
		chromedp.Submit(`#recovery-code`, chromedp.ByQuery),
		chromedp.WaitVisible(`#clients-table`, chromedp.ByQuery),
	)
	g.waitEvent(t, "Operator admin used a recovery code from 127.0.0.1 instead of a TOTP code (9 left)")
}

// TestControlRecoveryCode: a Control asked for a TOTP code may answer
// with a recovery code, once.
func TestControlRecoveryCode(t *testing.T) {
	g := mustStartGateway(t)
	a := g.startAgent(t, testKey, "pc-recovery", nil)
	g.waitConnected(t, a)
	op := addOperator(t, g, opName, opPassword, db.RoleOperator)
	enrolTOTP(t, g, opName)
	ctx := context.Background()
	if err := g.DB().SetSecondFactor(ctx, opName, db.FactorTOTP, true); err != nil {
		t.Fatal(err)
	}
	codes, hashes, err := signin.NewRecoveryCodes(signin.RecoveryCodeCount)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.DB().SetRecoveryCodes(ctx, op.ID, hashes); err != nil {
		t.Fatal(err)
	}
	browse := []string{"browse", "--gateway", g.url, "--key", testKey, "--user", opName}
	out, err := controlProcess(t, filepath.Join(t.TempDir(), "gw.json"), opPassword+"\n"+codes[0]+"\n", nil, browse...)
	if err != nil || !strings.Contains(out, "pc-recovery") || !strings.Contains(out, "or one of your recovery codes") {
		t.Fatalf("the prompt must offer recovery codes, and one must admit: %v\n%s", err, out)
	}
	g.waitEvent(t, "Operator alice used a recovery code from 127.0.0.1 instead of a TOTP code (9 left)")
	out, err = controlProcess(t, filepath.Join(t.TempDir(), "gw.json"), opPassword+"\n"+codes[0]+"\n", nil, browse...)
	if err == nil || !strings.Contains(out, "wrong or already used code") {
		t.Fatalf("a recovery code must work once: %v\n%s", err, out)
	}
}
