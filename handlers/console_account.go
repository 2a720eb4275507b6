package handlers

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/internal/auth/signin"
	"github.com/switchboard/switchboard/web"
)

// The TOTP secret being enrolled lives in the console session until its
// first code confirms it; only then is it stored with the operator.
const sessionEnrolment = "totp_enrolment"

func (c *Console) accountPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	op := operatorOf(r)
	v := web.AccountView{
		Operator: op.Name, Factor: op.Factor, Require2FA: op.Require2FA, TOTPEnrolled: op.TOTPSecret != "",
		Flash: c.Sessions.PopString(ctx, flashOK), Error: c.Sessions.PopString(ctx, flashError),
	}
	if url := c.Sessions.GetString(ctx, sessionEnrolment); url != "" {
		v.Enrolment.Secret = enrolmentFromURL(url).Secret
	}
	c.page(w, r, "Account", "account", "", web.AccountPage(v))
}

func enrolmentFromURL(url string) signin.Enrolment {
	e, _ := signin.EnrolmentFromURL(url)
	return e
}

// startTOTP begins an enrolment once the operator has typed their
// password again: a console left open must not let a passer-by put their
// own phone on the account.
func (c *Console) startTOTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		c.accountDone(w, r, badRequest("The form could not be read."), "")
		return
	}
	if _, err := c.Signin.CheckPassword(r.Context(), operatorOf(r).Name, r.PostForm.Get("password"), remoteIP(r)); err != nil {
		if signin.IsRefusal(err) {
			err = badRequest("That is not your password.")
		}
		c.accountDone(w, r, err, "")
		return
	}
	e, err := signin.NewEnrolment("Switchboard", operatorOf(r).Name)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.Sessions.Put(r.Context(), sessionEnrolment, e.URL)
	http.Redirect(w, r, "/console/account", http.StatusSeeOther)
}

// totpQR renders the pending enrolment's QR code. It is never cached and
// only its own operator's session can fetch it.
func (c *Console) totpQR(w http.ResponseWriter, r *http.Request) {
	url := c.Sessions.GetString(r.Context(), sessionEnrolment)
	if url == "" {
		http.NotFound(w, r)
		return
	}
	png, err := enrolmentFromURL(url).QRCode(220)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	_, _ = w.Write(png)
}

func (c *Console) confirmTOTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	op := operatorOf(r)
	url := c.Sessions.GetString(ctx, sessionEnrolment)
	if url == "" {
		c.accountDone(w, r, badRequest("Start the set-up again: no authenticator app is being enrolled."), "")
		return
	}
	if err := r.ParseForm(); err != nil {
		c.accountDone(w, r, badRequest("The form could not be read."), "")
		return
	}
	e := enrolmentFromURL(url)
	step, ok := e.Check(r.PostForm.Get("code"), c.now())
	if !ok {
		c.accountDone(w, r, badRequest("That code does not match. Check the app's clock and try the next code."), "")
		return
	}
	if err := c.Store.SetTOTP(ctx, op.Name, e.Secret); err != nil {
		c.accountDone(w, r, err, "")
		return
	}
	// The confirming code is spent: it cannot sign anyone in afterwards.
	if _, err := c.Store.UseTOTPStep(ctx, op.ID, step); err != nil {
		c.accountDone(w, r, err, "")
		return
	}
	c.Sessions.Remove(ctx, sessionEnrolment)
	c.Events.Emit(withIP(event.TOTPEnrolled(op.Name), remoteIP(r)))
	c.accountDone(w, r, nil, "Your authenticator app is enrolled. The console will ask for its code at every sign-in.")
}

func withIP(e event.Event, ip string) event.Event {
	e.PublicIP = ip
	return e
}

func (c *Console) accountDone(w http.ResponseWriter, r *http.Request, err error, okMsg string) {
	c.flashAndGo(w, r, "/console/account", err, okMsg)
}

// twoFAView fills the 2FA tab.
func (c *Console) twoFAView(r *http.Request) (web.TwoFAView, error) {
	set, err := c.Signin.Settings(r.Context())
	if err != nil {
		return web.TwoFAView{}, err
	}
	v := web.TwoFAView{
		RequireAll: set.Require2FA, TokenTTLMinutes: int(set.TokenTTL / time.Minute),
		DuoIKey: set.DuoIntegrationKey, DuoSKeySet: set.DuoSecretKey != "", DuoHost: set.DuoAPIHost,
		DuoFailOpen: set.DuoFailOpen, DuoTimeout: int(set.DuoTimeout / time.Second),
	}
	tokens, err := c.Store.ControlTokens(r.Context())
	if err != nil {
		return web.TwoFAView{}, err
	}
	for _, t := range tokens {
		v.Tokens = append(v.Tokens, web.TokenRow{ID: t.ID, Operator: t.Operator, Control: t.Control, PublicIP: t.PublicIP,
			Created: t.CreatedAt, Expires: t.ExpiresAt, LastUsed: t.LastUsed})
	}
	return v, nil
}

func (c *Console) save2FA(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		c.done(w, r, "2fa", badRequest("The form could not be read."), "")
		return
	}
	ttl, err := formInt(r, "token_ttl", "Control sign-in lifetime")
	if err != nil {
		c.done(w, r, "2fa", err, "")
		return
	}
	timeout, err := formInt(r, "duo_timeout", "Duo Push timeout")
	if err != nil {
		c.done(w, r, "2fa", err, "")
		return
	}
	set := signin.Settings{
		Require2FA: r.PostForm.Get("require_all") == "1", TokenTTL: time.Duration(ttl) * time.Minute,
		DuoIntegrationKey: r.PostForm.Get("duo_ikey"), DuoSecretKey: r.PostForm.Get("duo_skey"),
		DuoAPIHost: r.PostForm.Get("duo_host"), DuoFailOpen: r.PostForm.Get("duo_fail_open") == "1",
		DuoTimeout: time.Duration(timeout) * time.Second,
	}
	if err := set.Validate(); err != nil {
		c.done(w, r, "2fa", badRequest(err.Error()), "")
		return
	}
	if err := signin.SaveSettings(r.Context(), c.Store, set); err != nil {
		c.done(w, r, "2fa", err, "")
		return
	}
	// The secret key is never part of the event: only whether it changed.
	what := fmt.Sprintf("require 2FA for all %t, Control sign-in %d min, Duo host %q, Duo fail open %t, Duo timeout %d s",
		set.Require2FA, ttl, set.DuoAPIHost, set.DuoFailOpen, timeout)
	if set.DuoSecretKey != "" {
		what += ", Duo secret key replaced"
	}
	c.emit(r, event.KindConfig, fmt.Sprintf("Operator %s changed 2FA settings: %s", operatorOf(r).Name, what))
	c.done(w, r, "2fa", nil, "Saved 2FA settings.")
}

func (c *Console) revokeToken(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil {
		c.done(w, r, "2fa", badRequest("No such Control sign-in."), "")
		return
	}
	owner, err := c.Store.RevokeControlToken(r.Context(), id)
	if err != nil {
		c.done(w, r, "2fa", badRequest("No such Control sign-in (it may have expired)."), "")
		return
	}
	c.Events.Emit(withIP(event.ControlTokenRevoked(operatorOf(r).Name, owner), remoteIP(r)))
	c.done(w, r, "2fa", nil, "Revoked the Control sign-in of "+owner+"; its next command signs in again.")
}

func validFactor(f string) bool {
	return f == db.FactorNone || f == db.FactorTOTP || f == db.FactorDuo
}
