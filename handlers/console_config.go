package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/a-h/templ"
	"github.com/go-chi/chi/v5"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/internal/auth/password"
	"github.com/switchboard/switchboard/internal/auth/signin"
	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/relay/wire"
	"github.com/switchboard/switchboard/web"
)

var configTabs = []string{"general", "keys", "operators", "2fa", "servers", "licences", "security"}

const (
	flashOK    = "flash"
	flashWarn  = "flash_warn" // saved, but it cannot work yet
	flashError = "flash_error"
)

func (c *Console) configPage(w http.ResponseWriter, r *http.Request) {
	tab := chi.URLParam(r, "tab")
	if !contains(configTabs, tab) {
		c.fail(w, r, &Error{Status: http.StatusNotFound, Message: "No such configuration tab."})
		return
	}
	ctx := r.Context()
	v, err := c.configView(r, tab)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v.Flash, v.Warning, v.Error = c.Sessions.PopString(ctx, flashOK), c.Sessions.PopString(ctx, flashWarn), c.Sessions.PopString(ctx, flashError)
	c.page(w, r, "Configuration", "config", "", web.ConfigPage(v))
}

// configView reads what tab shows from the stored configuration.
func (c *Console) configView(r *http.Request, tab string) (web.ConfigView, error) {
	ctx := r.Context()
	cfg, err := c.Config.Config(ctx)
	if err != nil {
		return web.ConfigView{}, err
	}
	v := web.ConfigView{
		Tab:    tab,
		Listen: strings.Join(cfg.Listen, "\n"), CMPISeconds: int(cfg.CMPI / time.Second), LogDir: cfg.LogDir,
		LogMaxKB: cfg.LogMaxKB, ServerRole: cfg.ServerRole, Roles: config.Roles, Peers: strings.Join(cfg.PeerGateways, "\n"),
		MaxClients: cfg.MaxClients, ClientsInUse: c.Relay.Stats().Clients, Self: operatorOf(r).Name,
		Block: cfg.BlockUnencrypted, Proxies: strings.Join(cfg.TrustedProxies, "\n"),
		ACMEDomains: strings.Join(cfg.ACMEDomains, "\n"), ACMEEmail: cfg.ACMEEmail, ACMEDirectory: cfg.ACMEDirectory,
	}
	if c.Certificate != nil {
		v.Cert = c.Certificate()
	}
	switch tab {
	case "keys":
		keys, err := c.Store.Keys(ctx)
		if err != nil {
			return web.ConfigView{}, err
		}
		// The whole cluster's Clients: removing a key disconnects them all.
		clients, _ := c.allClients(ctx)
		inUse := map[string]int{}
		for _, cl := range clients {
			inUse[cl.KeyID]++
		}
		for _, k := range keys {
			v.Keys = append(v.Keys, web.KeyRow{KeyID: k.KeyID, Label: k.Label, Added: k.CreatedAt, Clients: inUse[k.KeyID]})
		}
	case "operators":
		if v.Operators, err = c.operatorRows(ctx); err != nil {
			return web.ConfigView{}, err
		}
	case "servers":
		v.Nodes, v.NodesError = c.nodeRows(ctx)
	case "2fa":
		if v.TwoFA, err = c.twoFAView(r); err != nil {
			return web.ConfigView{}, err
		}
	case "security":
		rs, err := LoadRemoteSettings(ctx, c.Store)
		if err != nil {
			return web.ConfigView{}, err
		}
		v.RecordTerminals, v.RetentionDays = rs.RecordTerminals, rs.RetentionDays
	}
	return v, nil
}

// operatorRows lists the operators with what the Operators tab says of
// them: a second factor that cannot work as set, their sessions now.
func (c *Console) operatorRows(ctx context.Context) ([]web.OperatorRow, error) {
	ops, err := c.Store.Operators(ctx)
	if err != nil {
		return nil, err
	}
	set, err := c.Signin.Settings(ctx)
	if err != nil {
		return nil, err
	}
	sessions := map[string]int{}
	ss, _ := c.sessions(ctx)
	for _, x := range ss {
		sessions[x.Operator]++
	}
	rows := make([]web.OperatorRow, 0, len(ops))
	for _, o := range ops {
		row := web.OperatorRow{Name: o.Name, Role: o.Role, Disabled: o.Disabled, Added: o.CreatedAt,
			Factor: o.Factor, Require2FA: o.Require2FA, TOTPEnrolled: o.TOTPSecret != "", RemoteAccess: strings.Join(o.RemoteAccess, "\n"),
			LastSignin: o.LastSigninAt, LastSigninFrom: o.LastSigninAddress, Sessions: sessions[o.Name],
			Warning: factorWarning(o.Name, o.Factor, o.TOTPSecret != "", o.Require2FA || set.Require2FA, set)}
		if o.LockedUntil.After(c.now()) {
			row.LockedUntil = o.LockedUntil
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// factorWarning says why an operator's second factor cannot work as set,
// "" when it can.
func factorWarning(name, factor string, enrolled, required bool, set signin.Settings) string {
	switch {
	case factor == db.FactorDuo && !set.DuoConfigured():
		return "Duo Push is not configured on the 2FA tab: " + name + "'s sign-ins are refused until it is, or another factor is chosen."
	case factor == db.FactorTOTP && !enrolled && required:
		return name + " has not set up an authenticator app yet: the console signs them in with the password alone, " +
			"and their remote connections are refused until they set one up on their Account page."
	case factor == db.FactorTOTP && !enrolled:
		return name + " has not set up an authenticator app yet: until they do on their Account page, the console signs them in with the password alone."
	case factor == db.FactorNone && required:
		return name + " has no second factor but needs one for remote connections: those are refused until one is chosen."
	}
	return ""
}

// renderConfig shows tab again with a rejected form as it was typed and
// each problem next to its field.
func (c *Console) renderConfig(w http.ResponseWriter, r *http.Request, v web.ConfigView) {
	// The tab's own URL, not the form's action: a reload shows the tab.
	w.Header().Set("HX-Push-Url", "/console/config/"+v.Tab)
	c.pageStatus(w, r, formStatus(r), "Configuration", "config", web.ConfigPage(v))
}

// formStatus is the status of a page that shows a rejected form: 422,
// but 200 to htmx, which swaps in only successful answers (the boosted
// form must show its errors).
func formStatus(r *http.Request) int {
	if r.Header.Get("HX-Request") != "" {
		return http.StatusOK
	}
	return http.StatusUnprocessableEntity
}

// pageStatus is c.page with a status.
func (c *Console) pageStatus(w http.ResponseWriter, r *http.Request, status int, title, active string, content templ.Component) {
	c.page(&statusWriter{ResponseWriter: w, status: status}, r, title, active, "", content)
}

// statusWriter answers with its status instead of an implicit 200.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.wrote = true
		s.ResponseWriter.WriteHeader(code)
	}
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.WriteHeader(s.status)
	return s.ResponseWriter.Write(b)
}

// rejectForm shows tab again with form's values and errs.
func (c *Console) rejectForm(w http.ResponseWriter, r *http.Request, tab, operator string, form, errs map[string]string) {
	v, err := c.configView(r, tab)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v.Form, v.Errors, v.FormOperator = form, errs, operator
	if tab == "2fa" {
		v.TwoFA.Form, v.TwoFA.Errors = form, errs
	}
	c.renderConfig(w, r, v)
}

// done finishes a configuration POST: flash a message, then back to the tab
// (Post/Redirect/Get, so a reload does not repeat the change).
func (c *Console) done(w http.ResponseWriter, r *http.Request, tab string, err error, okMsg string) {
	c.flashAndGo(w, r, "/console/config/"+tab, err, okMsg)
}

// flashAndGo ends a form POST: a flash message (okMsg, or err's safe
// message), then back to the page at to (Post/Redirect/Get). An error
// without a safe message is answered at once, after logging it.
func (c *Console) flashAndGo(w http.ResponseWriter, r *http.Request, to string, err error, okMsg string) {
	var safe *Error
	switch {
	case err == nil:
		c.Sessions.Put(r.Context(), flashOK, okMsg)
	case errors.As(err, &safe):
		c.Sessions.Put(r.Context(), flashError, safe.Message)
	default:
		c.fail(w, r, err)
		return
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// changeConfig applies edit to the stored configuration, validates and
// saves it, and records who changed what.
func (c *Console) changeConfig(r *http.Request, edit func(*config.Config) error) (string, error) {
	if err := r.ParseForm(); err != nil {
		return "", badRequest("The form could not be read.")
	}
	old, err := c.Config.Config(r.Context())
	if err != nil {
		return "", err
	}
	cur := old
	cur.Listen = append([]string(nil), old.Listen...)
	if err := edit(&cur); err != nil {
		return "", err
	}
	if err := cur.Validate(); err != nil {
		return "", badRequest(sentence(err.Error()))
	}
	return c.saveConfig(r, old, cur)
}

// saveConfig stores cur in place of old and records who changed what.
func (c *Console) saveConfig(r *http.Request, old, cur config.Config) (string, error) {
	changes := config.Changes(old, cur)
	if len(changes) == 0 {
		return "Nothing changed.", nil
	}
	if err := c.Config.SaveConfig(r.Context(), cur); err != nil {
		return "", err
	}
	c.record(r, event.ConfigChanged(operatorOf(r).Name, strings.Join(changes, "; ")))
	return "Applied: " + strings.Join(changes, "; ") + ".", nil
}

// sentence makes a validation error's text a sentence.
func sentence(s string) string {
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// configField is one field of a configuration form: set puts its typed
// value into a configuration, or says why it cannot be read.
type configField struct {
	name string
	set  func(c *config.Config, value string) error
}

// fieldError is a problem with one form field.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.msg }

func intField(name, what string, set func(*config.Config, int)) configField {
	return configField{name, func(c *config.Config, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return &fieldError{name, what + " must be a whole number."}
		}
		set(c, n)
		return nil
	}}
}

func listField(name string, set func(*config.Config, []string)) configField {
	return configField{name, func(c *config.Config, v string) error { set(c, config.SplitList(v)); return nil }}
}

// saveConfigForm saves a configuration form of tab. A form that does not
// validate is shown again as it was typed, each problem next to its
// field; check, when not nil, adds problems of the whole.
func (c *Console) saveConfigForm(w http.ResponseWriter, r *http.Request, tab string, fields []configField, check func(config.Config) *fieldError) {
	if err := r.ParseForm(); err != nil {
		c.done(w, r, tab, badRequest("The form could not be read."), "")
		return
	}
	old, err := c.Config.Config(r.Context())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	form := map[string]string{}
	errs := map[string]string{}
	cur := old
	for _, f := range fields {
		v := r.PostForm.Get(f.name)
		form[f.name] = v
		var fe *fieldError
		if err := f.set(&cur, v); errors.As(err, &fe) {
			errs[f.name] = fe.msg
		} else if err != nil {
			c.fail(w, r, err)
			return
		}
	}
	if whole := cur.Validate(); whole != nil || len(errs) > 0 {
		blameFields(old, fields, form, errs, whole)
	}
	if len(errs) == 0 && check != nil {
		if fe := check(cur); fe != nil {
			errs[fe.field] = fe.msg
		}
	}
	if len(errs) > 0 {
		c.rejectForm(w, r, tab, "", form, errs)
		return
	}
	msg, err := c.saveConfig(r, old, cur)
	c.done(w, r, tab, err, msg)
}

// blameFields finds which fields make the form invalid: each alone, typed
// into the stored configuration (which is valid), either validates or
// not, so the rules stay config.Validate's alone. A problem no one field
// has is the form's (field "").
func blameFields(old config.Config, fields []configField, form, errs map[string]string, whole error) {
	if old.Validate() == nil {
		for _, f := range fields {
			if _, ok := errs[f.name]; ok {
				continue
			}
			one := old
			if f.set(&one, form[f.name]) != nil {
				continue
			}
			if err := one.Validate(); err != nil {
				errs[f.name] = sentence(err.Error())
			}
		}
	}
	if len(errs) == 0 && whole != nil {
		errs[""] = sentence(whole.Error())
	}
}

func (c *Console) saveGeneral(w http.ResponseWriter, r *http.Request) {
	c.saveConfigForm(w, r, "general", []configField{
		listField("listen", func(c *config.Config, l []string) { c.Listen = l }),
		intField("cmpi", "CMPI", func(c *config.Config, n int) { c.CMPI = time.Duration(n) * time.Second }),
		{"log_dir", func(c *config.Config, v string) error { c.LogDir = strings.TrimSpace(v); return nil }},
		intField("log_max_kb", "The maximum log size", func(c *config.Config, n int) { c.LogMaxKB = n }),
	}, nil)
}

func (c *Console) saveServers(w http.ResponseWriter, r *http.Request) {
	c.saveConfigForm(w, r, "servers", []configField{
		{"role", func(c *config.Config, v string) error { c.ServerRole = v; return nil }},
		listField("peers", func(c *config.Config, l []string) { c.PeerGateways = l }),
	}, nil)
}

func (c *Console) saveLicences(w http.ResponseWriter, r *http.Request) {
	c.saveConfigForm(w, r, "licences", []configField{
		intField("max_clients", "Maximum Clients", func(c *config.Config, n int) { c.MaxClients = n }),
	}, nil)
}

func (c *Console) addKey(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		c.done(w, r, "keys", badRequest("The form could not be read."), "")
		return
	}
	key, label := r.PostForm.Get("key"), strings.TrimSpace(r.PostForm.Get("label"))
	if len(key) < wire.MinKeyLength {
		c.done(w, r, "keys", badRequest(fmt.Sprintf("A gateway key must be at least %d characters.", wire.MinKeyLength)), "")
		return
	}
	id, added, err := c.AddKey(r.Context(), key, label)
	if err != nil {
		c.done(w, r, "keys", err, "")
		return
	}
	if !added {
		c.done(w, r, "keys", badRequest("That key is already on this gateway (key "+id+")."), "")
		return
	}
	c.record(r, event.KeyAdded(operatorOf(r).Name, id, label))
	c.done(w, r, "keys", nil, "Added key "+id+". It admits Clients and Controls within a second.")
}

func (c *Console) removeKey(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	clients, _ := c.allClients(r.Context())
	held := 0
	for _, cl := range clients {
		if cl.KeyID == id {
			held++
		}
	}
	err := c.Store.RemoveKey(r.Context(), id)
	if errors.Is(err, db.ErrNotFound) {
		err = badRequest("That key was already removed.")
	}
	if err == nil {
		c.record(r, event.KeyRemoved(operatorOf(r).Name, id))
	}
	c.done(w, r, "keys", err, "Removed key "+id+": its "+web.Plural(held, "Client", "Clients")+" and the Controls using it are disconnected.")
}

func (c *Console) labelKey(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if err := r.ParseForm(); err != nil {
		c.done(w, r, "keys", badRequest("The form could not be read."), "")
		return
	}
	label := strings.TrimSpace(r.PostForm.Get("label"))
	err := c.Store.UpdateKeyLabel(r.Context(), id, label)
	if errors.Is(err, db.ErrNotFound) {
		err = badRequest("That key was removed.")
	}
	if err == nil {
		c.record(r, event.KeyLabelled(operatorOf(r).Name, id, label))
	}
	c.done(w, r, "keys", err, "Saved the label.")
}

func validRole(role string) bool { return role == db.RoleAdmin || role == db.RoleOperator }

func (c *Console) addOperator(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		c.done(w, r, "operators", badRequest("The form could not be read."), "")
		return
	}
	name, pw, role := strings.TrimSpace(r.PostForm.Get("name")), r.PostForm.Get("password"), r.PostForm.Get("role")
	errs := map[string]string{}
	switch {
	case !signin.ValidName(name) || strings.ContainsAny(name, " /"):
		errs["name"] = "An operator name is 1 to 64 characters without spaces or '/'."
	case c.operatorExists(r.Context(), name):
		errs["name"] = "An operator called " + name + " exists already."
	}
	if len(pw) < password.MinLength {
		errs["password"] = fmt.Sprintf("A password must be at least %d characters.", password.MinLength)
	}
	if !validRole(role) {
		errs["role"] = "Choose a role."
	}
	if len(errs) > 0 {
		// The password is never shown again; the name and role are.
		c.rejectForm(w, r, "operators", "", map[string]string{"name": name, "role": role}, errs)
		return
	}
	hash, err := password.Hash(pw)
	if err != nil {
		c.done(w, r, "operators", err, "")
		return
	}
	_, err = c.Store.AddOperator(r.Context(), db.Operator{Name: name, PasswordHash: hash, Role: role})
	if errors.Is(err, db.ErrConflict) {
		err = badRequest("An operator called " + name + " exists already.")
	}
	if err == nil {
		c.record(r, event.OperatorAdded(operatorOf(r).Name, name, role))
	}
	c.done(w, r, "operators", err, "Added operator "+name+".")
}

func (c *Console) operatorExists(ctx context.Context, name string) bool {
	_, err := c.Store.Operator(ctx, name)
	return err == nil
}

// updateOperator saves an operator's row: role, second factor, whether
// remote connections need it, a new password, removing the enrolled app.
// A factor that cannot work is refused (Duo Push before Duo is set up) or
// saved with a warning (TOTP before the operator has enrolled an app: they
// sign in with the password to enrol one). "disabled", when sent (the
// command line and older pages do), sets the account's state; the page
// itself disables and enables with their own buttons, which confirm.
func (c *Console) updateOperator(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := chi.URLParam(r, "name")
	if err := r.ParseForm(); err != nil {
		c.done(w, r, "operators", badRequest("The form could not be read."), "")
		return
	}
	op, err := c.Store.Operator(ctx, name)
	if errors.Is(err, db.ErrNotFound) {
		c.done(w, r, "operators", badRequest("No operator called "+name+"."), "")
		return
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	role, pw := r.PostForm.Get("role"), r.PostForm.Get("password")
	disabled := op.Disabled
	if _, sent := r.PostForm["disabled"]; sent {
		disabled = r.PostForm.Get("disabled") == "1"
	}
	factor, require2FA, resetTOTP := r.PostForm.Get("factor"), r.PostForm.Get("require_2fa") == "1", r.PostForm.Get("reset_totp") == "1"
	remoteText := r.PostForm.Get("remote_access")
	form := map[string]string{"role": role, "factor": factor, "require_2fa": boolForm(require2FA), "reset_totp": boolForm(resetTOTP), "remote_access": remoteText}
	errs := map[string]string{}
	remote, rerr := parseRemoteAccess(remoteText)
	if rerr != "" {
		errs["remote_access"] = rerr
	}
	if !validRole(role) {
		errs["role"] = "Choose a role."
	}
	if pw != "" && len(pw) < password.MinLength {
		errs["password"] = fmt.Sprintf("A password must be at least %d characters.", password.MinLength)
	}
	set, err := c.Signin.Settings(ctx)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	switch {
	case !validFactor(factor):
		errs["factor"] = "Choose a second factor."
	case factor == db.FactorDuo && !set.DuoConfigured() && op.Factor != db.FactorDuo:
		errs["factor"] = "Duo Push is not configured: give its integration key, secret key and API host on the 2FA tab first, or " +
			name + " could not sign in at all."
	}
	if len(errs) > 0 {
		c.rejectForm(w, r, "operators", name, form, errs)
		return
	}
	var hash string
	if pw != "" {
		if hash, err = password.Hash(pw); err != nil {
			c.fail(w, r, err)
			return
		}
	}
	err = c.Store.UpdateOperator(ctx, name, hash, role, disabled)
	if err == nil && resetTOTP {
		err = c.Store.SetTOTP(ctx, name, "")
	}
	if err == nil {
		err = c.Store.SetSecondFactor(ctx, name, factor, require2FA)
	}
	if err == nil && c.Remote != nil {
		err = c.Remote.SetRemoteAccess(ctx, name, remote)
	}
	switch {
	case errors.Is(err, db.ErrNotFound):
		err = badRequest("No operator called " + name + ".")
	case errors.Is(err, db.ErrLastAdmin):
		errs["role"] = "That would leave no enabled administrator."
		c.rejectForm(w, r, "operators", name, form, errs)
		return
	}
	if err == nil && disabled && !op.Disabled {
		c.endOperatorSessions(ctx, name)
	}
	if err == nil {
		what := fmt.Sprintf("role %s, %s", role, map[bool]string{true: "disabled", false: "enabled"}[disabled])
		if hash != "" {
			what += ", password reset"
		}
		what += ", second factor " + web.FactorName(factor)
		if require2FA {
			what += " required for remote connections"
		}
		if resetTOTP {
			what += ", enrolled app removed"
		}
		if len(remote) > 0 {
			what += ", remote control of " + strings.Join(remote, " ")
		}
		c.record(r, event.OperatorChanged(operatorOf(r).Name, name, what))
		enrolled := op.TOTPSecret != "" && !resetTOTP
		if warn := factorWarning(name, factor, enrolled, require2FA || set.Require2FA, set); warn != "" {
			c.Sessions.Put(ctx, flashWarn, "Saved operator "+name+", but: "+warn)
			http.Redirect(w, r, "/console/config/operators", http.StatusSeeOther)
			return
		}
	}
	c.done(w, r, "operators", err, "Saved operator "+name+".")
}

func boolForm(b bool) string {
	if b {
		return "1"
	}
	return ""
}

// endOperatorSessions ends the sessions of operator on every node: a
// disabled or deleted operator's remote connections end with the account.
func (c *Console) endOperatorSessions(ctx context.Context, operator string) {
	ss, _ := c.sessions(ctx)
	for _, x := range ss {
		if x.Operator != operator {
			continue
		}
		if c.Cluster != nil && x.Node != "" {
			if err := c.Cluster.TerminateClusterSession(ctx, x.Node, x.ID, operator); err != nil && c.Logger != nil {
				c.Logger.Warn("console: cannot end a session of a disabled operator", "node", x.Node, "session", x.ID, "err", err)
			}
			continue
		}
		c.Relay.TerminateSessionBy(x.ID, "")
	}
}

// OperatorDeleter deletes operators; the console's store has it when it
// is a *db.DB.
type OperatorDeleter interface {
	DeleteOperator(ctx context.Context, name string) error
}

// setOperatorDisabled disables or enables an operator (the page asked
// for confirmation first). Nobody disables themselves: the console would
// close behind them.
func (c *Console) setOperatorDisabled(disabled bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, name, by := r.Context(), chi.URLParam(r, "name"), operatorOf(r).Name
		if disabled && name == by {
			c.done(w, r, "operators", badRequest("You cannot disable yourself: ask another administrator."), "")
			return
		}
		op, err := c.Store.Operator(ctx, name)
		if errors.Is(err, db.ErrNotFound) {
			c.done(w, r, "operators", badRequest("No operator called "+name+"."), "")
			return
		}
		if err != nil {
			c.fail(w, r, err)
			return
		}
		if op.Disabled == disabled {
			c.done(w, r, "operators", nil, "Nothing changed.")
			return
		}
		err = c.Store.UpdateOperator(ctx, name, "", op.Role, disabled)
		if errors.Is(err, db.ErrLastAdmin) {
			err = badRequest("Operator " + name + " is the last enabled administrator: it stays enabled.")
		}
		if err != nil {
			c.done(w, r, "operators", err, "")
			return
		}
		state := "enabled"
		if disabled {
			state = "disabled"
			c.endOperatorSessions(ctx, name)
		}
		c.record(r, event.OperatorEnabled(by, state, name))
		c.done(w, r, "operators", nil, "Operator "+name+" is "+state+".")
	}
}

// deleteOperator deletes an operator, not oneself nor the last enabled
// admin; their sessions end, their console sessions end at their next
// request (requireOperator finds no operator).
func (c *Console) deleteOperator(w http.ResponseWriter, r *http.Request) {
	ctx, name, by := r.Context(), chi.URLParam(r, "name"), operatorOf(r).Name
	if name == by {
		c.done(w, r, "operators", badRequest("You cannot delete yourself: ask another administrator."), "")
		return
	}
	del, ok := c.Store.(OperatorDeleter)
	if !ok {
		c.done(w, r, "operators", badRequest("Operators cannot be deleted on this gateway."), "")
		return
	}
	err := del.DeleteOperator(ctx, name)
	switch {
	case errors.Is(err, db.ErrNotFound):
		err = badRequest("No operator called " + name + " (deleted already?).")
	case errors.Is(err, db.ErrLastAdmin):
		err = badRequest("Operator " + name + " is the last enabled administrator: it cannot be deleted.")
	}
	if err != nil {
		c.done(w, r, "operators", err, "")
		return
	}
	c.endOperatorSessions(ctx, name)
	c.record(r, event.OperatorDeleted(by, name))
	c.done(w, r, "operators", nil, "Deleted operator "+name+".")
}

func (c *Console) saveSecurity(w http.ResponseWriter, r *http.Request) {
	c.saveConfigForm(w, r, "security", []configField{
		{"block", func(c *config.Config, v string) error { c.BlockUnencrypted = v == "1"; return nil }},
		listField("proxies", func(c *config.Config, l []string) { c.TrustedProxies = l }),
	}, func(cfg config.Config) *fieldError {
		if cfg.BlockUnencrypted && c.Certificate != nil && c.Certificate().Fingerprint == "" {
			return &fieldError{"block", "This gateway serves no certificate (--no-tls): blocking unencrypted peers would refuse everyone."}
		}
		return nil
	})
}

// uploadCertificate installs a pasted certificate and key.
func (c *Console) uploadCertificate(w http.ResponseWriter, r *http.Request) {
	if c.UseCertificate == nil {
		c.done(w, r, "security", badRequest("This gateway's certificate comes from ACME or it runs without TLS: it cannot be replaced here."), "")
		return
	}
	if err := r.ParseForm(); err != nil {
		c.done(w, r, "security", badRequest("The form could not be read."), "")
		return
	}
	fp, err := c.UseCertificate([]byte(r.PostForm.Get("cert")), []byte(r.PostForm.Get("key")))
	if err != nil {
		// The message comes from parsing PEM the administrator pasted: it
		// names no secret.
		c.done(w, r, "security", badRequest("The certificate and key do not load: "+err.Error()), "")
		return
	}
	c.record(r, event.CertificateInstalled(operatorOf(r).Name, fp))
	// Remembered as the source, so the next start serves it too.
	if _, err := c.changeConfig(r, func(cfg *config.Config) error {
		cfg.TLSSource = "uploaded"
		return nil
	}); err != nil {
		c.done(w, r, "security", err, "")
		return
	}
	c.done(w, r, "security", nil, "The new certificate is in use for new connections.")
}

// useACME makes the gateway get its certificate from an ACME authority.
func (c *Console) useACME(w http.ResponseWriter, r *http.Request) {
	msg, err := c.changeConfig(r, func(cfg *config.Config) error {
		domains := config.SplitList(r.PostForm.Get("domains"))
		dir := strings.TrimSpace(r.PostForm.Get("directory"))
		if len(domains) == 0 {
			return badRequest("Give the DNS names the certificate is for.")
		}
		if !strings.HasPrefix(dir, "https://") {
			return badRequest("The ACME directory is an https:// URL.")
		}
		cfg.TLSSource, cfg.ACMEDomains, cfg.ACMEDirectory = "acme", domains, dir
		cfg.ACMEEmail = strings.TrimSpace(r.PostForm.Get("email"))
		return nil
	})
	c.done(w, r, "security", err, msg)
}

// useSelfSigned goes back to the gateway's own self-signed certificate.
func (c *Console) useSelfSigned(w http.ResponseWriter, r *http.Request) {
	msg, err := c.changeConfig(r, func(cfg *config.Config) error {
		cfg.TLSSource = "self-signed"
		return nil
	})
	c.done(w, r, "security", err, msg)
}

// NodeLister reads the node registry; the console's store has it when it
// is a *db.DB.
type NodeLister interface {
	Nodes(ctx context.Context) ([]db.Node, error)
}

// Node states on the Servers tab.
const (
	NodeActive  = "active"
	NodeStandby = "standby" // a secondary holding no Clients
	NodeLost    = "lost"    // not seen within the lease
)

// NodeState is a node's state as the Servers tab shows it.
func NodeState(n db.Node) string {
	switch {
	case !n.LostAt.IsZero() || n.Age > db.NodeLease:
		return NodeLost
	case n.Role == "secondary" && n.Clients == 0:
		return NodeStandby
	}
	return NodeActive
}

// nodeRows lists the cluster's nodes; a store without the registry shows
// none, and a read error is shown on the tab rather than failing the page
// (the role form still works).
func (c *Console) nodeRows(ctx context.Context) ([]web.NodeRow, string) {
	nl, ok := c.Store.(NodeLister)
	if !ok {
		return nil, ""
	}
	nodes, err := nl.Nodes(ctx)
	if err != nil {
		c.Logger.Warn("console: cannot read the node registry", "err", err)
		return nil, "The list of nodes cannot be read now."
	}
	rows := make([]web.NodeRow, 0, len(nodes))
	for _, n := range nodes {
		rows = append(rows, web.NodeRow{Name: n.Name, URL: n.AdvertiseURL, Role: n.Role, State: NodeState(n),
			Clients: n.Clients, Sessions: n.Sessions, LastSeen: web.Duration(max(n.Age, 0)) + " ago"})
	}
	return rows, ""
}

// parseRemoteAccess reads an operator's remote-control allow-list, one
// "client:NAME" or "key:KEY-ID" a line; the message says what is wrong.
func parseRemoteAccess(text string) ([]string, string) {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		kind, val, _ := strings.Cut(line, ":")
		switch kind {
		case "client":
			if wire.CheckName("client", val) != nil {
				return nil, fmt.Sprintf("%q is not a Client name (1 to 128 printable characters, no /).", val)
			}
		case "key":
			if !isHex(val) {
				return nil, fmt.Sprintf("%q is not a key ID (as the Keys tab shows it).", val)
			}
		default:
			return nil, fmt.Sprintf("Each line is client:NAME or key:KEY-ID, not %q.", line)
		}
		if !slices.Contains(out, line) {
			out = append(out, line)
		}
	}
	if len(out) > 200 {
		return nil, "At most 200 entries; give a key instead of many Clients."
	}
	return out, ""
}

func isHex(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// saveRemote saves the browser sessions' settings.
func (c *Console) saveRemote(w http.ResponseWriter, r *http.Request) {
	days, err := strconv.Atoi(strings.TrimSpace(r.FormValue("retention_days")))
	if err != nil || days < 1 || days > 3650 {
		c.done(w, r, "security", badRequest("Keep recordings from 1 to 3650 days."), "")
		return
	}
	record := r.FormValue("record_terminals") == "1"
	val := map[bool]string{true: "on", false: "off"}[record]
	if err := c.Store.SetSettings(r.Context(), map[string]string{settingRecord: val, settingRetention: strconv.Itoa(days)}); err != nil {
		c.fail(w, r, err)
		return
	}
	c.record(r, event.ConfigChanged(operatorOf(r).Name, fmt.Sprintf("browser sessions: terminal recording %s, kept %d days", val, days)))
	c.done(w, r, "security", nil, "Saved the browser sessions' settings.")
}
