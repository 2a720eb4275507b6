package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/auth/duo"
	"github.com/switchboard/switchboard/internal/auth/signin"
	"github.com/switchboard/switchboard/web"
)

// Session keys of a sign-in that has passed the password and waits for the
// second factor. Until it completes, sessionOperator is not set, so no
// console page opens.
const (
	sessionPending     = "pending_operator"
	sessionPendingNext = "pending_next"
	sessionDuoTx       = "duo_txid"
	sessionDuoSince    = "duo_since"
	sessionPendingAt   = "pending_since"
	sessionPendingPW   = "pending_password"
)

// pendingFor bounds the second step: a half-signed-in session cannot keep
// trying codes for the session's whole lifetime.
const pendingFor = 5 * time.Minute

var pendingKeys = []string{sessionPending, sessionPendingNext, sessionDuoTx, sessionDuoSince, sessionPendingAt, sessionPendingPW}

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = web.SignInPage(c.Asset, "", "", safeNext(r.URL.Query().Get("next"))).Render(r.Context(), w)
}

// signInRefused shows the sign-in form again with a message that says
// nothing about whether the operator exists.
func (c *Console) signInRefused(w http.ResponseWriter, r *http.Request, name, next string, status int, err error) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = web.SignInPage(c.Asset, name, refusalMessage(err, "Wrong name or password."), next).Render(r.Context(), w)
}

// refusalMessage is what the console says of a refused sign-in; fallback
// covers the refusals that need no more than it.
func refusalMessage(err error, fallback string) string {
	switch {
	case errors.Is(err, signin.ErrLocked), errors.Is(err, signin.ErrThrottled):
		return "Too many failed sign-ins. Try again later."
	case errors.Is(err, signin.ErrDuoUnavailable):
		return "Duo cannot be reached, so your sign-in cannot be confirmed. Try again later or ask an administrator."
	case errors.Is(err, signin.ErrDuoConfig):
		return "Duo Push is your second factor but Duo is not configured on this gateway. Ask an administrator."
	case errors.Is(err, signin.ErrDuoDenied):
		return "The Duo Push was denied."
	case errors.Is(err, signin.ErrDuoTimeout):
		return "The Duo Push was not answered in time."
	case errors.Is(err, signin.ErrUnavailable):
		return "The gateway cannot reach its database, so passwords cannot be checked right now. Try again shortly."
	case errors.Is(err, signin.ErrTOTPUnreadable):
		return "Your authenticator enrolment cannot be read on this gateway (its secrets key changed). Ask an administrator to reset your TOTP."
	}
	return fallback
}

// signIn checks the password, then asks for the operator's second factor
// when they have one: the console always asks for it.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, badRequest("The form could not be read."))
		return
	}
	ctx := r.Context()
	name, pw, next := r.PostForm.Get("name"), r.PostForm.Get("password"), safeNext(r.PostForm.Get("next"))
	ip := remoteIP(r)
	op, err := c.Signin.CheckPassword(ctx, name, pw, ip)
	if err != nil {
		if signin.IsRefusal(err) {
			c.signInRefused(w, r, name, next, http.StatusUnauthorized, err)
			return
		}
		c.fail(w, r, err)
		return
	}
	// A new token once the password is right: a token planted before
	// cannot ride along into the second step or the session.
	if err := c.Sessions.RenewToken(ctx); err != nil {
		c.fail(w, r, err)
		return
	}
	switch consoleFactor(op) {
	case db.FactorTOTP:
		c.putPending(ctx, op, next)
		http.Redirect(w, r, "/console/signin/totp", http.StatusSeeOther)
	case db.FactorDuo:
		c.startDuo(w, r, op, next)
	default:
		c.completeSignIn(w, r, op, next)
	}
}

// consoleFactor is the factor the console asks op for: TOTP only once an
// app is enrolled, so an operator told to use TOTP can still sign in to
// enrol one.
func consoleFactor(op db.Operator) string {
	switch {
	case op.Factor == db.FactorTOTP && op.TOTPSecret != "":
		return db.FactorTOTP
	case op.Factor == db.FactorDuo:
		return db.FactorDuo
	}
	return db.FactorNone
}

// putPending notes who passed the password step, when, and a fingerprint
// of the password hash that passed, so that a password change ends it.
func (c *Console) putPending(ctx context.Context, op db.Operator, next string) {
	c.Sessions.Put(ctx, sessionPending, op.Name)
	c.Sessions.Put(ctx, sessionPendingNext, next)
	c.Sessions.Put(ctx, sessionPendingAt, c.now().Unix())
	c.Sessions.Put(ctx, sessionPendingPW, passwordMark(op))
}

// sessionPasswordMark holds, in a signed-in console session, the
// passwordMark of the password it signed in with: a session whose mark no
// longer matches its operator's (the password was changed, by them or an
// admin) ends, as a pending sign-in does (stalePassword, checked by
// requireOperator and by live streams).
const sessionPasswordMark = "password_mark"

// stalePassword reports whether the session in ctx signed in with a
// password op no longer has. A session from before marks were kept has
// none and is left alone; it ends with its lifetime.
func (c *Console) stalePassword(ctx context.Context, op db.Operator) bool {
	mark := c.Sessions.GetString(ctx, sessionPasswordMark)
	return mark != "" && mark != passwordMark(op)
}

func passwordMark(op db.Operator) string {
	h := sha256.Sum256([]byte(op.PasswordHash))
	return hex.EncodeToString(h[:8])
}

// clearPending forgets a sign-in's second step.
func (c *Console) clearPending(ctx context.Context) {
	for _, k := range pendingKeys {
		c.Sessions.Remove(ctx, k)
	}
}

// completeSignIn makes the session an operator's.
func (c *Console) completeSignIn(w http.ResponseWriter, r *http.Request, op db.Operator, next string) {
	ctx := r.Context()
	// Recorded first: if that fails the session must not be signed in.
	if err := c.Signin.Completed(ctx, op, remoteIP(r)); err != nil {
		c.fail(w, r, err)
		return
	}
	if err := c.Sessions.RenewToken(ctx); err != nil {
		c.fail(w, r, err)
		return
	}
	c.clearPending(ctx)
	c.Sessions.Put(ctx, sessionOperator, op.Name)
	c.Sessions.Put(ctx, sessionPasswordMark, passwordMark(op))
	if !op.IsAdmin() {
		next = "/console/account"
	}
	if r.Header.Get("HX-Request") != "" {
		w.Header().Set("HX-Redirect", next)
		w.WriteHeader(http.StatusOK)
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// pendingOperator is the operator half-way through signing in: not when
// the step has lasted too long, the password changed or the operator was
// disabled since.
func (c *Console) pendingOperator(ctx context.Context) (db.Operator, bool, error) {
	name := c.Sessions.GetString(ctx, sessionPending)
	if name == "" {
		return db.Operator{}, false, nil
	}
	since := time.Unix(c.Sessions.GetInt64(ctx, sessionPendingAt), 0)
	if c.now().Sub(since) > pendingFor {
		c.clearPending(ctx)
		return db.Operator{}, false, nil
	}
	op, err := c.Store.Operator(ctx, name)
	if errors.Is(err, db.ErrNotFound) {
		return db.Operator{}, false, nil
	}
	if err != nil {
		return db.Operator{}, false, err
	}
	ok := !op.Disabled && c.Sessions.GetString(ctx, sessionPendingPW) == passwordMark(op)
	return op, ok, nil
}

// pendingOrRestart finds the operator half-way through signing in, or
// answers with the sign-in page to start over.
func (c *Console) pendingOrRestart(w http.ResponseWriter, r *http.Request) (db.Operator, bool) {
	op, ok, err := c.pendingOperator(r.Context())
	if err != nil {
		c.fail(w, r, err)
		return db.Operator{}, false
	}
	if !ok {
		http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
	}
	return op, ok
}

func (c *Console) totpPage(w http.ResponseWriter, r *http.Request) {
	op, ok := c.pendingOrRestart(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = web.SignInTOTP(c.Asset, op.Name, "").Render(r.Context(), w)
}

func (c *Console) totpSignIn(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	op, ok := c.pendingOrRestart(w, r)
	if !ok {
		return
	}
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, badRequest("The form could not be read."))
		return
	}
	// The code from the app, or a recovery code from its own field (the
	// signin package tells them apart by their form).
	code := r.PostForm.Get("code")
	if code == "" {
		code = r.PostForm.Get("recovery")
	}
	if err := c.Signin.CheckTOTP(ctx, op, code, remoteIP(r)); err != nil {
		if !signin.IsRefusal(err) {
			c.fail(w, r, err)
			return
		}
		if errors.Is(err, signin.ErrLocked) || errors.Is(err, signin.ErrThrottled) {
			c.clearPending(ctx)
			c.signInRefused(w, r, op.Name, "", http.StatusUnauthorized, err)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		_ = web.SignInTOTP(c.Asset, op.Name, "Wrong or already used code.").Render(ctx, w)
		return
	}
	c.completeSignIn(w, r, op, safeNext(c.Sessions.GetString(ctx, sessionPendingNext)))
}

// startDuo sends the push and shows the page that waits for it.
func (c *Console) startDuo(w http.ResponseWriter, r *http.Request, op db.Operator, next string) {
	ctx := r.Context()
	ip := remoteIP(r)
	set, err := c.Signin.Settings(ctx)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	client, err := c.Signin.Duo(set)
	if err != nil {
		c.signInRefused(w, r, op.Name, next, http.StatusServiceUnavailable, err)
		return
	}
	defer client.CloseIdleConnections()
	if err := c.Signin.BeginPush(ctx, op, ip); err != nil {
		c.signInRefused(w, r, op.Name, next, http.StatusUnauthorized, err)
		return
	}
	txid, res, err := client.Start(ctx, op.Name, ip, "Switchboard console sign-in")
	if err != nil {
		if err := c.Signin.DuoError(ctx, op, set, ip, err, false); err != nil {
			c.signInRefused(w, r, op.Name, next, http.StatusServiceUnavailable, err)
			return
		}
		c.completeSignIn(w, r, op, next) // failing open, as an admin chose
		return
	}
	if res != nil {
		if res.Outcome == duo.Allow {
			c.completeSignIn(w, r, op, next)
			return
		}
		c.Signin.Failed(ctx, op, ip)
		c.signInRefused(w, r, op.Name, next, http.StatusUnauthorized, signin.ErrDuoDenied)
		return
	}
	c.putPending(ctx, op, next)
	c.Sessions.Put(ctx, sessionDuoTx, txid)
	c.Sessions.Put(ctx, sessionDuoSince, c.now().Unix())
	http.Redirect(w, r, "/console/signin/duo", http.StatusSeeOther)
}

func (c *Console) duoPage(w http.ResponseWriter, r *http.Request) {
	if c.Sessions.GetString(r.Context(), sessionDuoTx) == "" {
		http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
		return
	}
	op, ok := c.pendingOrRestart(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = web.SignInDuo(c.Asset, op.Name).Render(r.Context(), w)
}

// duoStatus is polled by the waiting page: one auth_status call each time.
func (c *Console) duoStatus(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	op, ok, err := c.pendingOperator(ctx)
	txid := c.Sessions.GetString(ctx, sessionDuoTx)
	if err != nil || !ok || txid == "" {
		_ = web.DuoStatus("This sign-in is no longer pending.", false).Render(ctx, w)
		return
	}
	set, err := c.Signin.Settings(ctx)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	endSignIn := func(err error) {
		c.clearPending(ctx)
		_ = web.DuoStatus(refusalMessage(err, "The Duo Push was denied."), false).Render(ctx, w)
	}
	since := time.Unix(c.Sessions.GetInt64(ctx, sessionDuoSince), 0)
	if c.now().Sub(since) > set.DuoTimeout {
		endSignIn(c.Signin.DuoError(ctx, op, set, remoteIP(r), duo.ErrTimeout, true))
		return
	}
	client, err := c.Signin.Duo(set)
	var res duo.Result
	if err == nil {
		defer client.CloseIdleConnections()
		res, err = client.Status(ctx, txid)
	}
	switch {
	case err != nil:
		// The push went out: whatever went wrong since, never fail open.
		endSignIn(c.Signin.DuoError(ctx, op, set, remoteIP(r), err, true))
	case res.Outcome == duo.Allow:
		c.completeSignIn(w, r, op, safeNext(c.Sessions.GetString(ctx, sessionPendingNext)))
	case res.Outcome == duo.Deny:
		c.Signin.Failed(ctx, op, remoteIP(r))
		endSignIn(signin.ErrDuoDenied)
	default:
		_ = web.DuoStatus("Waiting for your approval…", true).Render(ctx, w)
	}
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request) {
	if err := c.Sessions.Destroy(r.Context()); err != nil {
		c.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
}
