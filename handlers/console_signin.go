package handlers

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/event"
	"github.com/switchboard/switchboard/password"
	"github.com/switchboard/switchboard/web"
)

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = web.SignIn(c.Asset, "", "", safeNext(r.URL.Query().Get("next"))).Render(r.Context(), w)
}

// signIn checks an admin's password. Unknown names cost the same time as
// wrong passwords and get the same message, so names cannot be probed.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, badRequest("The form could not be read."))
		return
	}
	name, pw, next := r.PostForm.Get("name"), r.PostForm.Get("password"), safeNext(r.PostForm.Get("next"))
	op, err := c.Store.Operator(r.Context(), name)
	switch {
	case errors.Is(err, db.ErrNotFound):
		password.CheckDummy(pw)
	case err != nil:
		c.fail(w, r, err)
		return
	default:
		err = password.Check(op.PasswordHash, pw)
	}
	if err != nil || !op.IsAdmin() {
		c.Events.Emit(event.Event{Time: c.now(), Kind: event.KindOperator, Operator: name, PublicIP: remoteIP(r),
			Message: fmt.Sprintf("Sign-in failed for operator %s from %s", name, remoteIP(r))})
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		_ = web.SignIn(c.Asset, name, "Wrong name or password, or not an administrator.", next).Render(r.Context(), w)
		return
	}
	// A new token at sign-in: a token planted before cannot ride along.
	if err := c.Sessions.RenewToken(r.Context()); err != nil {
		c.fail(w, r, err)
		return
	}
	c.Sessions.Put(r.Context(), sessionOperator, op.Name)
	c.Events.Emit(event.Event{Time: c.now(), Kind: event.KindOperator, Operator: op.Name, PublicIP: remoteIP(r),
		Message: fmt.Sprintf("Operator %s signed in from %s", op.Name, remoteIP(r))})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request) {
	if err := c.Sessions.Destroy(r.Context()); err != nil {
		c.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
}
