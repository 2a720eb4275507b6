package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/a-h/templ"
	"github.com/alexedwards/scs/v2"
	"github.com/go-chi/chi/v5"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/internal/auth/signin"
	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
	"github.com/switchboard/switchboard/web"
)

// ConsoleRelay is what the console reads from and does to the relay.
type ConsoleRelay interface {
	Clients() []relay.ClientInfo
	Sessions() []relay.SessionInfo
	TerminateSessionBy(id, by string) bool
	Version() uint64
	Stats() relay.Stats
}

// ConsoleStore is what the console reads from and writes to PostgreSQL.
type ConsoleStore interface {
	Operator(ctx context.Context, name string) (db.Operator, error)
	Operators(ctx context.Context) ([]db.Operator, error)
	AddOperator(ctx context.Context, o db.Operator) (db.Operator, error)
	UpdateOperator(ctx context.Context, name, passwordHash, role string, disabled bool) error
	SetSecondFactor(ctx context.Context, name, factor string, require bool) error
	SetTOTP(ctx context.Context, name, secret string) error
	UseTOTPStep(ctx context.Context, id, step int64) (bool, error)
	ControlTokens(ctx context.Context) ([]db.ControlToken, error)
	RevokeControlToken(ctx context.Context, id int64) (string, error)
	signin.SettingsStore
	Events(ctx context.Context, f db.EventFilter) ([]event.Event, error)
	CountEvents(ctx context.Context, f db.EventFilter) (int64, error)
	Keys(ctx context.Context) ([]db.Key, error)
	RemoveKey(ctx context.Context, keyID string) error
	UpdateKeyLabel(ctx context.Context, keyID, label string) error
}

// KeyAdder stores a new gateway key; it owns the hashing.
type KeyAdder func(ctx context.Context, key, label string) (keyID string, added bool, err error)

// ConfigStore loads and saves the runtime configuration.
type ConfigStore interface {
	Config(ctx context.Context) (config.Config, error)
	SaveConfig(ctx context.Context, c config.Config) error
}

// Console serves the admin console. Build it once in main.
type Console struct {
	Relay    ConsoleRelay
	Store    ConsoleStore
	AddKey   KeyAdder
	Config   ConfigStore
	Sessions *scs.SessionManager
	Signin   *signin.Service
	// Cluster lists and ends the sessions of every node of a cluster;
	// nil: this node's alone.
	Cluster ClusterSessions
	// Remote keeps browser sessions' host keys and recordings, and
	// Connector opens their sessions; nil: no desktops or terminals.
	Remote    RemoteStore
	Connector LocalConnector
	// RecordDir holds terminal recordings while they are written, before
	// they are stored in PostgreSQL.
	RecordDir string

	// knownChanged counts the console's changes of the known Clients, so
	// that the open Clients pages render their offline list again at once
	// rather than at their next periodic render.
	knownChanged atomic.Uint64
	Events       event.Sink
	Asset        func(string) string
	Logger       *slog.Logger
	// Stopping is closed when the gateway stops, ending live streams so a
	// graceful shutdown need not wait for browsers to go away.
	Stopping <-chan struct{}
	// Now is the clock; tests may fix it.
	Now func() time.Time
	// Certificate describes the certificate in use; nil shows none.
	Certificate func() web.CertInfo
	// UseCertificate installs an uploaded certificate and key and returns
	// its fingerprint; nil when the certificate cannot be replaced here.
	UseCertificate func(certPEM, keyPEM []byte) (string, error)
	// HTTPS sends console requests that arrive unencrypted to https on the
	// same address (the gateway's port speaks both): passwords and session
	// cookies never cross a network in clear.
	HTTPS bool
	// LiveCheck is how often an open live stream re-reads its console
	// session and operator, ending when they no longer admit it; zero
	// means every 2 s. Tests shorten it.
	LiveCheck time.Duration
}

const sessionOperator = "operator"

// routes declares the console's routes, grouped by who may use them.
func (c *Console) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(c.requireHTTPS, securityHeaders)
	r.NotFound(c.Sessions.LoadAndSave(c.noRoute(http.StatusNotFound, "There is no such page on this console. It may have moved, or the address was typed wrong.")).ServeHTTP)
	r.MethodNotAllowed(c.Sessions.LoadAndSave(c.noRoute(http.StatusMethodNotAllowed, "This address does not take that kind of request. Open it from the console's own pages.")).ServeHTTP)
	// Live streams of the admin pages, outside LoadAndSave: requireLive
	// reads the session from the store and never writes it back, so an
	// open stream is no activity (see console_live.go).
	r.Group(func(r chi.Router) {
		r.Use(c.requireLive(true))
		r.Get("/clients/stream", c.clientsStream)
		r.Get("/sessions/stream", c.sessionsStream)
		r.Get("/events/stream", c.eventsStream)
		r.Get("/dashboard/stream", c.dashboardStream)
		r.Get("/clients/{name}/stream", c.clientStream)
	})
	// Browser sessions' WebSockets, outside LoadAndSave too: they check
	// the console session, the origin and the permission themselves and
	// answer 401/403 with no socket.
	r.Get("/remote/{client}/{service}", c.desktopSocket)
	r.Get("/terminal/{client}/{service}", c.terminalSocket)
	r.Group(func(r chi.Router) {
		r.Use(c.Sessions.LoadAndSave)
		c.sessionRoutes(r)
	})
	// Every state-changing request must come from the console's own origin.
	return http.NewCrossOriginProtection().Handler(r)
}

// sessionRoutes are the routes that load and save the console session on
// every request.
func (c *Console) sessionRoutes(r chi.Router) {
	// Public: sign-in and its second step.
	r.Get("/signin", c.signInPage)
	r.Post("/signin", c.signIn)
	r.Get("/signin/totp", c.totpPage)
	r.Post("/signin/totp", c.totpSignIn)
	r.Get("/signin/duo", c.duoPage)
	r.Get("/signin/duo/status", c.duoStatus)
	r.Post("/signout", c.signOut)
	// Any signed-in operator: their own account.
	r.Group(func(r chi.Router) {
		r.Use(c.requireOperator(false))
		r.Get("/", c.dashboardHome)
		r.Get("/account", c.accountPage)
		r.Post("/account/totp/start", c.startTOTP)
		r.Get("/account/totp/qr.png", c.totpQR)
		r.Post("/account/totp/confirm", c.confirmTOTP)
		r.Post("/account/password", c.changePassword)
		r.Post("/account/recovery-codes", c.newRecoveryCodes)
		// Remote control: each page checks the operator's permission for
		// its Client (admins, or the operator's allow-list).
		r.Get("/remote", c.remoteListPage)
		r.Get("/remote/verify", c.remoteVerifyPage)
		r.Post("/remote/verify", c.remoteVerify)
		r.Get("/clients/{name}/desktop/{service}", c.remotePage(wire.KindVNC))
		r.Get("/clients/{name}/terminal/{service}", c.remotePage(wire.KindSSH))
	})
	// Signed-in admins.
	r.Group(func(r chi.Router) {
		r.Use(c.requireOperator(true))
		r.Get("/clients", c.clientsPage)
		r.Get("/sessions", c.sessionsPage)
		r.Post("/sessions/{id}/terminate", c.terminateSession)
		r.Get("/dashboard", c.dashboardPage)
		r.Get("/clients/{name}", c.clientPage)
		r.Post("/clients/{name}/disconnect", c.disconnectClient)
		r.Post("/clients/{name}/forget", c.forgetClient)
		r.Get("/events", c.eventsPage)
		r.Get("/recordings", c.recordingsPage)
		r.Get("/recordings/{id}", c.recordingPage)
		r.Get("/recordings/{id}/cast", c.recordingCast)
		r.Post("/clients/{name}/hostkeys/{service}/clear", c.clearHostKey)
		r.Get("/config", http.RedirectHandler("/console/config/general", http.StatusSeeOther).ServeHTTP)
		r.Get("/config/{tab}", c.configPage)
		r.Post("/config/general", c.saveGeneral)
		r.Post("/config/servers", c.saveServers)
		r.Post("/config/licences", c.saveLicences)
		r.Post("/config/security", c.saveSecurity)
		r.Post("/config/remote", c.saveRemote)
		r.Post("/config/security/certificate", c.uploadCertificate)
		r.Post("/config/security/acme", c.useACME)
		r.Post("/config/security/self-signed", c.useSelfSigned)
		r.Post("/config/keys/add", c.addKey)
		r.Post("/config/keys/{id}/remove", c.removeKey)
		r.Post("/config/keys/{id}/label", c.labelKey)
		r.Post("/config/operators/add", c.addOperator)
		r.Post("/config/operators/{name}", c.updateOperator)
		r.Post("/config/operators/{name}/disable", c.setOperatorDisabled(true))
		r.Post("/config/operators/{name}/enable", c.setOperatorDisabled(false))
		r.Post("/config/operators/{name}/delete", c.deleteOperator)
		r.Post("/config/2fa", c.save2FA)
		r.Post("/config/2fa/tokens/{id}/revoke", c.revokeToken)
	})
}

// consoleCSP allows no inline script or style, nothing from elsewhere.
const consoleCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// securityHeaders: no inline script anywhere, no framing, no sniffing.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", consoleCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

func (c *Console) requireHTTPS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.HTTPS || encrypted(r) {
			next.ServeHTTP(w, r)
			return
		}
		u := *r.URL
		u.Scheme, u.Host = "https", r.Host
		// 308 keeps the method and body of a form post.
		http.Redirect(w, r, u.String(), http.StatusPermanentRedirect)
	})
}

type ctxKey struct{}

// requireOperator lets signed-in, enabled operators through, and with
// admin only admins. The operator is read on every request so that
// disabling one or taking the admin role away takes effect at once.
func (c *Console) requireOperator(admin bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name := c.Sessions.GetString(r.Context(), sessionOperator)
			if name != "" {
				op, err := c.Store.Operator(r.Context(), name)
				if err == nil && c.stalePassword(r.Context(), op) {
					// The password changed since this session signed in.
					op.Disabled = true
				}
				switch {
				case err == nil && !op.Disabled && (op.IsAdmin() || !admin):
					next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, op)))
					return
				case err == nil && !op.Disabled:
					// In the frame, which shows such an operator their Account.
					r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, op))
					c.fail(w, r, &Error{Status: http.StatusForbidden,
						Message: "Your operator account can run Controls but not administer this gateway. Your Account page is at /console/account."})
					return
				case err != nil && !errors.Is(err, db.ErrNotFound):
					c.fail(w, r, err)
					return
				}
				// Removed, disabled or its password changed: end the session.
				_ = c.Sessions.Destroy(r.Context())
			}
			next := "/console/signin?next=" + url.QueryEscape(r.URL.RequestURI())
			if r.Header.Get("HX-Request") != "" {
				w.Header().Set("HX-Redirect", next)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, next, http.StatusSeeOther)
		})
	}
}

func operatorOf(r *http.Request) db.Operator {
	op, _ := r.Context().Value(ctxKey{}).(db.Operator)
	return op
}

// Error is an error with a message that is safe to show.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

func badRequest(msg string) error { return &Error{Status: http.StatusBadRequest, Message: msg} }

// Error is the console's one error path; every handler that fails ends
// with it (c.Error(w, r, err); return). An *Error's Status and Message are
// shown as they are; any other error is logged with the request and shown
// as "Internal error." with status 500, so no internal detail reaches a
// browser. What the browser gets depends on who asked:
//
//   - an htmx action (HX-Request, not a boosted link or form, which
//     shows whole pages) gets web.ErrorFragment with the status;
//     static/live.js swaps it into the action's hx-target, in place of an
//     earlier success message (or into the page's shell-flash when the
//     target is the whole page), so give an action a target that is a
//     message area, as Terminate's #sessions-flash is;
//   - any other request gets a whole page (web.ErrorPage) with the status:
//     inside the console's frame for a signed-in operator, alone otherwise.
//
// It must be called before anything of the response is written: a live
// stream that has started cannot change its status any more.
func (c *Console) Error(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := http.StatusInternalServerError, "Internal error."
	var e *Error
	if errors.As(err, &e) {
		status, msg = e.Status, e.Message
	} else {
		c.Logger.Error("console", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if fragment(r) {
		_ = web.ErrorFragment(msg).Render(r.Context(), w)
		return
	}
	if err := web.ErrorPage(c.layout(r, statusTitle(status), "", ""), status, msg).Render(r.Context(), w); err != nil {
		c.Logger.Warn("render error page", "path", r.URL.Path, "err", err)
	}
}

// fragment reports whether r is an htmx action that swaps a part of the
// page; a boosted link or form (HX-Boosted) swaps in whole pages.
func fragment(r *http.Request) bool {
	return r.Header.Get("HX-Request") != "" && r.Header.Get("HX-Boosted") == ""
}

// fail is Error, under the name the handlers were written with.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) { c.Error(w, r, err) }

// statusTitle is an error page's heading.
func statusTitle(status int) string {
	switch status {
	case http.StatusNotFound:
		return "Not found"
	case http.StatusForbidden:
		return "Not allowed"
	case http.StatusBadRequest, http.StatusMethodNotAllowed:
		return "Cannot do that"
	case http.StatusInternalServerError:
		return "Something went wrong"
	}
	if t := http.StatusText(status); t != "" {
		return t
	}
	return "Error"
}

// noRoute answers console URLs that match no route (or not with this
// method). It looks the session up, without requiring one, so a signed-in
// operator gets the page in the console's frame and anyone else the bare
// one (which says nothing about which pages exist).
func (c *Console) noRoute(status int, msg string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name := c.Sessions.GetString(r.Context(), sessionOperator); name != "" {
			if op, err := c.Store.Operator(r.Context(), name); err == nil && !op.Disabled {
				r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, op))
			}
		}
		c.Error(w, r, &Error{Status: status, Message: msg})
	})
}

// page renders a full console page.
func (c *Console) page(w http.ResponseWriter, r *http.Request, title, active, stream string, content templ.Component) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := web.Page(c.layout(r, title, active, stream), content).Render(r.Context(), w); err != nil {
		c.Logger.Warn("render page", "path", r.URL.Path, "err", err)
	}
}

// layout is what the console's frame shows around a page for r's operator
// (none: r did not pass requireOperator).
func (c *Console) layout(r *http.Request, title, active, stream string) web.Layout {
	op := operatorOf(r)
	l := web.Layout{
		Title: title, Active: active, Operator: op.Name, Admin: op.IsAdmin(), Stream: stream,
		Asset: c.Asset, TimeZone: web.ZoneLabel(c.now().Local()),
	}
	if l.Admin {
		l.ClientCount = c.Relay.Stats().Clients
	}
	return l
}

func (c *Console) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// emit records an event done by the signed-in operator.
// record emits e, made by an event constructor, at the console's time and
// with the address the operator acts from.
func (c *Console) record(r *http.Request, e event.Event) {
	e.Time = c.now()
	if e.Operator == "" {
		e.Operator = event.Safe(operatorOf(r).Name)
	}
	if e.PublicIP == "" {
		e.PublicIP = event.Safe(remoteIP(r))
	}
	c.Events.Emit(e)
}

// safeNext keeps a post-sign-in redirect on the console.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/console/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return "/console/clients"
	}
	return next
}
