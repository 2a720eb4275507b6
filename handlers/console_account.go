package handlers

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/internal/auth/duo"
	"github.com/switchboard/switchboard/internal/auth/password"
	"github.com/switchboard/switchboard/internal/auth/signin"
	"github.com/switchboard/switchboard/web"
)

// The TOTP secret being enrolled lives in the console session until its
// first code confirms it; only then is it stored with the operator.
const sessionEnrolment = "totp_enrolment"

func (c *Console) accountPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	v := c.accountView(r)
	v.Flash, v.Error = c.Sessions.PopString(ctx, flashOK), c.Sessions.PopString(ctx, flashError)
	c.page(w, r, "Account", "account", "", web.AccountPage(v))
}

func (c *Console) accountView(r *http.Request) web.AccountView {
	op := operatorOf(r)
	v := web.AccountView{
		Operator: op.Name, Factor: op.Factor, Require2FA: op.Require2FA, TOTPEnrolled: op.TOTPSecret != "",
		RecoveryLeft: op.RecoveryCodesLeft, LastSignin: op.LastSigninAt, LastSigninFrom: op.LastSigninAddress,
	}
	if url := c.Sessions.GetString(r.Context(), sessionEnrolment); url != "" {
		v.Enrolment.Secret = enrolmentFromURL(url).Secret
	}
	return v
}

// accountShow answers a POST with the Account page itself: for what is
// shown once (new recovery codes), or a rejected form with its errors.
func (c *Console) accountShow(w http.ResponseWriter, r *http.Request, status int, v web.AccountView) {
	w.Header().Set("HX-Push-Url", "/console/account")
	c.pageStatus(w, r, status, "Account", "account", web.AccountPage(v))
}

// confirmPassword checks the signed-in operator's password, typed again
// in field; a wrong one is the field's error (throttled as a sign-in).
func (c *Console) confirmPassword(r *http.Request, field string) (map[string]string, error) {
	_, err := c.Signin.ConfirmPassword(r.Context(), operatorOf(r).Name, r.PostForm.Get(field), remoteIP(r))
	switch {
	case err == nil:
		return nil, nil
	case signin.IsRefusal(err):
		msg := "That is not your password."
		if errors.Is(err, signin.ErrLocked) || errors.Is(err, signin.ErrThrottled) {
			msg = "Too many wrong passwords: try again later."
		}
		return map[string]string{field: msg}, nil
	}
	return nil, err
}

// changePassword lets any operator change their own password, once they
// have typed the current one.
func (c *Console) changePassword(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	op := operatorOf(r)
	if err := r.ParseForm(); err != nil {
		c.accountDone(w, r, badRequest("The form could not be read."), "")
		return
	}
	errs, err := c.confirmPassword(r, "current_password")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	pw, again := r.PostForm.Get("new_password"), r.PostForm.Get("new_password_again")
	if errs == nil {
		errs = map[string]string{}
		switch {
		case len(pw) < password.MinLength:
			errs["new_password"] = fmt.Sprintf("A password must be at least %d characters.", password.MinLength)
		case subtle.ConstantTimeCompare([]byte(pw), []byte(again)) != 1:
			errs["new_password_again"] = "The two new passwords differ."
		case subtle.ConstantTimeCompare([]byte(pw), []byte(r.PostForm.Get("current_password"))) == 1:
			errs["new_password"] = "That is your current password: choose a new one."
		}
	}
	if len(errs) > 0 {
		v := c.accountView(r)
		v.Errors = errs
		c.accountShow(w, r, formStatus(r), v)
		return
	}
	st, ok := c.Store.(PasswordSetter)
	if !ok {
		c.accountDone(w, r, badRequest("Passwords cannot be changed on this gateway."), "")
		return
	}
	hash, err := password.Hash(pw)
	if err == nil {
		err = st.SetPassword(ctx, op.ID, hash)
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	// A new token: whoever held the old one does not ride along. This
	// session signed in anew, as it were: its mark is the new password's.
	if err := c.Sessions.RenewToken(ctx); err != nil {
		c.fail(w, r, err)
		return
	}
	op.PasswordHash = hash
	c.Sessions.Put(ctx, sessionPasswordMark, passwordMark(op))
	c.record(r, event.PasswordChanged(op.Name))
	c.accountDone(w, r, nil, "Your password is changed. Controls that kept your sign-in must sign in again.")
}

// PasswordSetter changes an operator's password; the console's store has
// it when it is a *db.DB.
type PasswordSetter interface {
	SetPassword(ctx context.Context, id int64, passwordHash string) error
}

// newRecoveryCodes replaces the operator's recovery codes, once the
// password is typed again, and shows the new ones this once.
func (c *Console) newRecoveryCodes(w http.ResponseWriter, r *http.Request) {
	op := operatorOf(r)
	if err := r.ParseForm(); err != nil {
		c.accountDone(w, r, badRequest("The form could not be read."), "")
		return
	}
	if op.TOTPSecret == "" {
		c.accountDone(w, r, badRequest("Recovery codes stand in for an authenticator app: set one up first."), "")
		return
	}
	errs, err := c.confirmPassword(r, "password")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if errs != nil {
		v := c.accountView(r)
		v.Errors = map[string]string{"recovery_password": errs["password"]}
		c.accountShow(w, r, formStatus(r), v)
		return
	}
	c.showRecoveryCodes(w, r, op, "")
}

// showRecoveryCodes makes op new recovery codes and shows them, once.
func (c *Console) showRecoveryCodes(w http.ResponseWriter, r *http.Request, op db.Operator, flash string) {
	codes, err := c.Signin.IssueRecoveryCodes(r.Context(), op, remoteIP(r))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	op.RecoveryCodesLeft = len(codes)
	v := c.accountView(r.WithContext(context.WithValue(r.Context(), ctxKey{}, op)))
	v.RecoveryCodes, v.Flash = codes, flash
	// Never cached, never stored in clear: this page is the only copy.
	c.accountShow(w, r, http.StatusOK, v)
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
	errs, err := c.confirmPassword(r, "password")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if errs != nil {
		v := c.accountView(r)
		v.Errors = errs
		c.accountShow(w, r, formStatus(r), v)
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
	op.TOTPSecret = e.Secret
	c.showRecoveryCodes(w, r, op, "Your authenticator app is enrolled. The console will ask for its code at every sign-in.")
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
		DuoIKey: set.DuoIntegrationKey, DuoSKeySet: set.DuoSecretKey != "", DuoSKeyUnreadable: set.DuoSecretUnreadable,
		DuoHost: set.DuoAPIHost, DuoFailOpen: set.DuoFailOpen, DuoTimeout: int(set.DuoTimeout / time.Second),
	}
	if v.DuoUsers, err = c.duoUsers(r.Context()); err != nil {
		return web.TwoFAView{}, err
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

// duoUsers names the operators whose second factor is Duo Push.
func (c *Console) duoUsers(ctx context.Context) ([]string, error) {
	ops, err := c.Store.Operators(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, o := range ops {
		if o.Factor == db.FactorDuo {
			names = append(names, o.Name)
		}
	}
	return names, nil
}

// operatorsDo is "Operator alice has" or "Operators alice, bob have".
func operatorsDo(names []string, one, many string) string {
	if len(names) == 1 {
		return "Operator " + names[0] + " " + one
	}
	return "Operators " + strings.Join(names, ", ") + " " + many
}

// withoutFactor names the enabled operators whose second factor cannot
// work as set (see factorWarning), once 2FA is required.
func (c *Console) withoutFactor(ctx context.Context, set signin.Settings) ([]string, error) {
	ops, err := c.Store.Operators(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, o := range ops {
		if !o.Disabled && factorWarning(o.Name, o.Factor, o.TOTPSecret != "", true, set) != "" {
			names = append(names, o.Name)
		}
	}
	return names, nil
}

// duoCheckTimeout bounds the call that asks Duo whether saved credentials
// work: the administrator waits for it.
const duoCheckTimeout = 5 * time.Second

// save2FA saves the 2FA tab. The Duo fields go together: all three, or
// none for no Duo; with all three Duo is asked to check them, and what it
// refuses is not saved. Removing Duo while operators use it is refused
// too: they could not sign in. A rejected form is shown again as typed
// (but for the secret key, which is never sent back).
func (c *Console) save2FA(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		c.done(w, r, "2fa", badRequest("The form could not be read."), "")
		return
	}
	f := r.PostForm
	ikey, skey, host := strings.TrimSpace(f.Get("duo_ikey")), strings.TrimSpace(f.Get("duo_skey")), strings.TrimSpace(f.Get("duo_host"))
	form := map[string]string{
		"require_all": boolForm(f.Get("require_all") == "1"), "token_ttl": f.Get("token_ttl"), "duo_ikey": ikey, "duo_host": host,
		"duo_timeout": f.Get("duo_timeout"), "duo_fail_open": boolForm(f.Get("duo_fail_open") == "1"),
	}
	if skey != "" {
		form["duo_skey_typed"] = "1"
	}
	errs := map[string]string{}
	ttl, err := formInt(r, "token_ttl", "The Control sign-in lifetime")
	if err != nil {
		errs["token_ttl"] = err.Error()
	} else if ttl < 1 || ttl > 30*24*60 {
		errs["token_ttl"] = "A Control sign-in must last between 1 minute and 30 days (43200 minutes)."
	}
	timeout, err := formInt(r, "duo_timeout", "The Duo Push timeout")
	if err != nil {
		errs["duo_timeout"] = err.Error()
	} else if timeout < 5 || timeout > 300 {
		errs["duo_timeout"] = "The Duo Push timeout must be between 5 and 300 seconds."
	}
	stored, err := c.Signin.Settings(ctx)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	set := signin.Settings{
		Require2FA: f.Get("require_all") == "1", TokenTTL: time.Duration(ttl) * time.Minute,
		DuoIntegrationKey: ikey, DuoSecretKey: skey, DuoAPIHost: host, DuoFailOpen: f.Get("duo_fail_open") == "1",
		DuoTimeout: time.Duration(timeout) * time.Second, DuoSecretUnreadable: stored.DuoSecretUnreadable,
	}
	for _, e := range set.ValidateDuo(stored.DuoSecretKey != "") {
		errs[e.Field] = e.Message
	}
	users, err := c.duoUsers(ctx)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if ikey == "" && host == "" && skey == "" && len(users) > 0 {
		errs[""] = operatorsDo(users, "uses", "use") + " Duo Push: choose another second factor on the Operators tab before removing Duo."
	}
	warn := ""
	if len(errs) == 0 && ikey != "" {
		// Complete: ask Duo. The typed secret key, or the stored one.
		check := set
		if check.DuoSecretKey == "" {
			check.DuoSecretKey = stored.DuoSecretKey
		}
		field, msg := c.checkDuo(ctx, check)
		switch {
		case field != "":
			errs[field] = msg
		case msg != "":
			warn = msg
		}
	}
	if len(errs) > 0 {
		c.rejectForm(w, r, "2fa", "", form, errs)
		return
	}
	if err := signin.SaveSettings(ctx, c.Store, set); err != nil {
		c.fail(w, r, err)
		return
	}
	// The secret key is never part of the event: only whether it changed.
	what := fmt.Sprintf("require 2FA for all %t, Control sign-in %d min, Duo host %q, Duo fail open %t, Duo timeout %d s",
		set.Require2FA, ttl, set.DuoAPIHost, set.DuoFailOpen, timeout)
	switch {
	case set.DuoSecretKey != "":
		what += ", Duo secret key replaced"
	case ikey == "" && host == "" && stored.DuoConfigured():
		what += ", Duo removed"
	}
	c.record(r, event.TwoFactorChanged(operatorOf(r).Name, what))
	if set.Require2FA {
		if names, err := c.withoutFactor(ctx, set); err != nil {
			c.fail(w, r, err)
			return
		} else if len(names) > 0 {
			warn = strings.TrimSpace(warn + " " + operatorsDo(names, "has", "have") +
				" no second factor that works yet: their remote connections are refused until they have one.")
		}
	}
	if warn != "" {
		c.Sessions.Put(ctx, flashWarn, "Saved 2FA settings, but: "+warn)
		http.Redirect(w, r, "/console/config/2fa", http.StatusSeeOther)
		return
	}
	c.done(w, r, "2fa", nil, "Saved 2FA settings.")
}

// checkDuo asks Duo whether set's credentials work. A refusal is a
// field's problem (field and message); Duo out of reach is only a warning
// (msg, no field), since it may be back by the first sign-in.
func (c *Console) checkDuo(ctx context.Context, set signin.Settings) (field, msg string) {
	client, err := c.Signin.Duo(set)
	if err != nil {
		// duo.New's texts name the field, never a value.
		return "duo_host", sentence(strings.TrimPrefix(err.Error(), "duo: "))
	}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, duoCheckTimeout)
	defer cancel()
	err = client.Check(ctx)
	var api *duo.APIError
	switch {
	case err == nil:
		return "", ""
	case errors.As(err, &api):
		// Duo's code and message name no secret.
		return "duo_ikey", fmt.Sprintf("Duo refused these credentials (%d %s): check the integration key, secret key and API host "+
			"of the Auth API application, and this gateway's clock.", api.Code, api.Message)
	}
	c.Logger.Warn("console: Duo could not be reached to check its settings", "err", err)
	return "", "Duo could not be reached to check the integration key, secret key and API host; the first Duo Push will tell whether they work."
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

func formInt(r *http.Request, name, what string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(r.PostForm.Get(name)))
	if err != nil {
		return 0, &fieldError{name, what + " must be a whole number."}
	}
	return n, nil
}

func validFactor(f string) bool {
	return f == db.FactorNone || f == db.FactorTOTP || f == db.FactorDuo
}
