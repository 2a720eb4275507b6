package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/auth/duo/duotest"
)

// signOut signs out and waits until the sign-in page has finished loading,
// so that the next navigation does not abort this one.
func (b *browser) signOut() {
	b.t.Helper()
	var done bool
	b.run("sign out",
		chromedp.Click(`.who button`, chromedp.ByQuery),
		// Not just any password field: the Operators tab has some too.
		chromedp.WaitVisible(`form[action="/console/signin"] input[name=password]`, chromedp.ByQuery),
		chromedp.Poll(`document.readyState === "complete"`, &done),
	)
}

// passwordStep fills the sign-in form of the page the browser shows; what
// follows depends on the factor.
func (b *browser) passwordStep() {
	b.t.Helper()
	b.run("password step",
		chromedp.WaitVisible(`form[action="/console/signin"] input[name=name]`, chromedp.ByQuery),
		chromedp.SendKeys(`input[name=name]`, adminName, chromedp.ByQuery),
		chromedp.SendKeys(`input[name=password]`, adminPassword, chromedp.ByQuery),
		chromedp.Submit(`input[name=password]`, chromedp.ByQuery),
	)
}

// TestConsoleTOTP: an admin enrols an authenticator app from the QR page,
// then signs in with password and a code computed here from the secret.
func TestConsoleTOTP(t *testing.T) {
	g := consoleGateway(t)
	b := newBrowser(t)
	b.signIn(g)

	var qrWidth int
	b.run("start enrolment",
		chromedp.Click(`//nav/a[normalize-space()="Account"]`),
		chromedp.WaitVisible(`#totp-state`, chromedp.ByQuery),
		chromedp.SendKeys(`form[action="/console/account/totp/start"] input[name=password]`, adminPassword, chromedp.ByQuery),
		chromedp.Click(`//button[normalize-space()="Set up an authenticator app"]`),
		chromedp.WaitVisible(`#totp-qr`, chromedp.ByQuery),
		chromedp.Poll(`document.querySelector('#totp-qr').complete && document.querySelector('#totp-qr').naturalWidth`, &qrWidth),
	)
	if qrWidth != 220 {
		t.Errorf("the QR code image is %d pixels wide, want the server's 220", qrWidth)
	}
	secret := b.text(`#totp-secret`)
	if len(secret) < 16 {
		t.Fatalf("secret %q", secret)
	}
	b.run("a wrong first code is refused",
		chromedp.SendKeys(`input[name=code]`, "000000", chromedp.ByQuery),
		chromedp.Submit(`input[name=code]`, chromedp.ByQuery),
		chromedp.WaitVisible(`.flash.error`, chromedp.ByQuery),
	)
	code, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b.run("confirm with the app's code",
		chromedp.SendKeys(`input[name=code]`, code, chromedp.ByQuery),
		chromedp.Submit(`input[name=code]`, chromedp.ByQuery),
		chromedp.WaitVisible(`.flash.ok`, chromedp.ByQuery),
	)
	if got := b.text(`#totp-state`); !strings.Contains(got, "is enrolled") {
		t.Errorf("after enrolment the page says %q", got)
	}
	g.waitEvent(t, "Operator admin enrolled TOTP")
	op, err := g.DB().Operator(context.Background(), adminName)
	if err != nil || op.TOTPSecret != secret || op.Factor != db.FactorTOTP {
		t.Fatalf("stored operator: factor %q, secret stored %v, %v", op.Factor, op.TOTPSecret == secret, err)
	}

	b.signOut()
	b.passwordStep()
	b.run("the code page comes after the password", chromedp.WaitVisible(`input[name=code]`, chromedp.ByQuery))
	b.run("no console page before the code",
		chromedp.Navigate(g.https()+"/console/clients"),
		chromedp.WaitVisible(`input[name=password]`, chromedp.ByQuery),
	)
	b.passwordStep()
	// The enrolment spent this step's code; the next step's is within
	// the accepted window and has not been used.
	next, err := totp.GenerateCode(secret, time.Now().Add(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	b.run("sign in with the code",
		chromedp.WaitVisible(`input[name=code]`, chromedp.ByQuery),
		chromedp.SendKeys(`input[name=code]`, next, chromedp.ByQuery),
		chromedp.Submit(`input[name=code]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#clients-table`, chromedp.ByQuery),
	)
	g.waitEvent(t, "Operator admin signed in from 127.0.0.1")
}

// TestConsoleDuo: the admin saves the Duo integration on the 2FA tab, is
// given Duo Push as their factor, and signs in by a push that the local
// Duo Auth API server approves.
func TestConsoleDuo(t *testing.T) {
	duo := duotest.New(t, duoIKey, duoSKey)
	g := duoGateway(t, duo, nil)
	if _, err := runCLI(context.Background(), t, strings.NewReader(adminPassword+"\n"),
		"operators", "--database-url", g.cfg.DatabaseURL, "add", adminName, "--admin"); err != nil {
		t.Fatal(err)
	}
	duo.SetUser(adminName, duotest.Approve)
	duo.SetApproveAfter(1500 * time.Millisecond)
	b := newBrowser(t)
	b.signIn(g)

	b.run("save the Duo integration on the 2FA tab",
		chromedp.Navigate(g.https()+"/console/config/2fa"),
		chromedp.WaitVisible(`input[name=duo_ikey]`, chromedp.ByQuery),
		chromedp.SetValue(`input[name=duo_ikey]`, duoIKey, chromedp.ByQuery),
		chromedp.SendKeys(`input[name=duo_skey]`, duoSKey, chromedp.ByQuery),
		chromedp.SetValue(`input[name=duo_host]`, duo.Host(), chromedp.ByQuery),
		chromedp.Submit(`input[name=duo_host]`, chromedp.ByQuery),
		chromedp.WaitVisible(`.flash.ok`, chromedp.ByQuery),
	)
	b.run("choose Duo Push for the admin on the Operators tab",
		chromedp.Navigate(g.https()+"/console/config/operators"),
		chromedp.WaitVisible(`tr[data-operator=admin] select[name=factor]`, chromedp.ByQuery),
		chromedp.SetValue(`tr[data-operator=admin] select[name=factor]`, "duo", chromedp.ByQuery),
		chromedp.Submit(`tr[data-operator=admin] select[name=factor]`, chromedp.ByQuery),
		chromedp.WaitVisible(`.flash.ok`, chromedp.ByQuery),
	)
	if got := b.text(`tr[data-operator=admin]`); !strings.Contains(got, "Duo Push") {
		t.Errorf("operator row says %q", got)
	}

	b.signOut()
	b.passwordStep()
	b.run("wait for the push to be approved",
		chromedp.WaitVisible(`#duo-status`, chromedp.ByQuery),
		chromedp.WaitVisible(`#clients-table`, chromedp.ByQuery),
	)
	g.waitEvent(t, "Operator admin signed in from 127.0.0.1")
	pushes := duo.Pushes()
	if len(pushes) != 1 || pushes[0].User != adminName || pushes[0].IP != "127.0.0.1" {
		t.Errorf("pushes = %+v", pushes)
	}
	if n := duo.BadSignatures(); n != 0 {
		t.Errorf("%d Duo requests had bad signatures", n)
	}

	duo.SetUser(adminName, duotest.Deny)
	b.signOut()
	b.passwordStep()
	b.run("a denied push keeps the console closed",
		chromedp.WaitVisible(`#duo-status.error`, chromedp.ByQuery),
		chromedp.Navigate(g.https()+"/console/clients"),
		chromedp.WaitVisible(`input[name=password]`, chromedp.ByQuery),
	)
	g.waitEvent(t, "Sign-in failed for operator admin from 127.0.0.1")
}
