package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

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
	flashError = "flash_error"
)

func (c *Console) configPage(w http.ResponseWriter, r *http.Request) {
	tab := chi.URLParam(r, "tab")
	if !contains(configTabs, tab) {
		c.fail(w, r, &Error{Status: http.StatusNotFound, Message: "No such configuration tab."})
		return
	}
	ctx := r.Context()
	cfg, err := c.Config.Config(ctx)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := web.ConfigView{
		Tab: tab, Flash: c.Sessions.PopString(ctx, flashOK), Error: c.Sessions.PopString(ctx, flashError),
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
			c.fail(w, r, err)
			return
		}
		inUse := map[string]int{}
		for _, cl := range c.Relay.Clients() {
			inUse[cl.KeyID]++
		}
		for _, k := range keys {
			v.Keys = append(v.Keys, web.KeyRow{KeyID: k.KeyID, Label: k.Label, Added: k.CreatedAt, Clients: inUse[k.KeyID]})
		}
	case "operators":
		ops, err := c.Store.Operators(ctx)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		for _, o := range ops {
			row := web.OperatorRow{Name: o.Name, Role: o.Role, Disabled: o.Disabled, Added: o.CreatedAt,
				Factor: o.Factor, Require2FA: o.Require2FA, TOTPEnrolled: o.TOTPSecret != ""}
			if o.LockedUntil.After(c.now()) {
				row.LockedUntil = o.LockedUntil
			}
			v.Operators = append(v.Operators, row)
		}
	case "servers":
		v.Nodes, v.NodesError = c.nodeRows(r.Context())
	case "2fa":
		if v.TwoFA, err = c.twoFAView(r); err != nil {
			c.fail(w, r, err)
			return
		}
	}
	c.page(w, r, "Configuration", "config", "", web.ConfigPage(v))
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
		return "", badRequest(err.Error())
	}
	changes := config.Changes(old, cur)
	if len(changes) == 0 {
		return "Nothing changed.", nil
	}
	if err := c.Config.SaveConfig(r.Context(), cur); err != nil {
		return "", err
	}
	msg := fmt.Sprintf("Operator %s changed %s", operatorOf(r).Name, strings.Join(changes, "; "))
	c.emit(r, event.KindConfig, msg)
	return "Applied: " + strings.Join(changes, "; ") + ".", nil
}

func formInt(r *http.Request, name, what string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(r.PostForm.Get(name)))
	if err != nil {
		return 0, badRequest(what + " must be a whole number.")
	}
	return n, nil
}

func (c *Console) saveGeneral(w http.ResponseWriter, r *http.Request) {
	msg, err := c.changeConfig(r, func(cfg *config.Config) error {
		cmpi, err := formInt(r, "cmpi", "CMPI")
		if err != nil {
			return err
		}
		maxKB, err := formInt(r, "log_max_kb", "The maximum log size")
		if err != nil {
			return err
		}
		cfg.Listen = config.SplitList(r.PostForm.Get("listen"))
		cfg.CMPI = time.Duration(cmpi) * time.Second
		cfg.LogDir = strings.TrimSpace(r.PostForm.Get("log_dir"))
		cfg.LogMaxKB = maxKB
		return nil
	})
	c.done(w, r, "general", err, msg)
}

func (c *Console) saveServers(w http.ResponseWriter, r *http.Request) {
	msg, err := c.changeConfig(r, func(cfg *config.Config) error {
		cfg.ServerRole = r.PostForm.Get("role")
		cfg.PeerGateways = config.SplitList(r.PostForm.Get("peers"))
		return nil
	})
	c.done(w, r, "servers", err, msg)
}

func (c *Console) saveLicences(w http.ResponseWriter, r *http.Request) {
	msg, err := c.changeConfig(r, func(cfg *config.Config) error {
		n, err := formInt(r, "max_clients", "Maximum Clients")
		cfg.MaxClients = n
		return err
	})
	c.done(w, r, "licences", err, msg)
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
	c.emit(r, event.KindConfig, fmt.Sprintf("Operator %s added gateway key %s (%s)", operatorOf(r).Name, id, label))
	c.done(w, r, "keys", nil, "Added key "+id+". It admits Clients and Controls within a second.")
}

func (c *Console) removeKey(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	err := c.Store.RemoveKey(r.Context(), id)
	if errors.Is(err, db.ErrNotFound) {
		err = badRequest("That key was already removed.")
	}
	if err == nil {
		c.emit(r, event.KindConfig, fmt.Sprintf("Operator %s removed gateway key %s", operatorOf(r).Name, id))
	}
	c.done(w, r, "keys", err, "Removed key "+id+". Its Clients and Controls are disconnected.")
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
		c.emit(r, event.KindConfig, fmt.Sprintf("Operator %s labelled gateway key %s %q", operatorOf(r).Name, id, label))
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
	switch {
	case !signin.ValidName(name) || strings.ContainsAny(name, " /"):
		c.done(w, r, "operators", badRequest("An operator name is 1 to 64 characters without spaces or '/'."), "")
		return
	case len(pw) < password.MinLength:
		c.done(w, r, "operators", badRequest(fmt.Sprintf("A password must be at least %d characters.", password.MinLength)), "")
		return
	case !validRole(role):
		c.done(w, r, "operators", badRequest("Choose a role."), "")
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
		c.emit(r, event.KindConfig, fmt.Sprintf("Operator %s added operator %s with role %s", operatorOf(r).Name, name, role))
	}
	c.done(w, r, "operators", err, "Added operator "+name+".")
}

func (c *Console) updateOperator(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	if err := r.ParseForm(); err != nil {
		c.done(w, r, "operators", badRequest("The form could not be read."), "")
		return
	}
	role, pw, disabled := r.PostForm.Get("role"), r.PostForm.Get("password"), r.PostForm.Get("disabled") == "1"
	if !validRole(role) {
		c.done(w, r, "operators", badRequest("Choose a role."), "")
		return
	}
	var hash string
	if pw != "" {
		if len(pw) < password.MinLength {
			c.done(w, r, "operators", badRequest(fmt.Sprintf("A password must be at least %d characters.", password.MinLength)), "")
			return
		}
		var err error
		if hash, err = password.Hash(pw); err != nil {
			c.done(w, r, "operators", err, "")
			return
		}
	}
	factor, require2FA, resetTOTP := r.PostForm.Get("factor"), r.PostForm.Get("require_2fa") == "1", r.PostForm.Get("reset_totp") == "1"
	if !validFactor(factor) {
		c.done(w, r, "operators", badRequest("Choose a second factor."), "")
		return
	}
	err := c.Store.UpdateOperator(r.Context(), name, hash, role, disabled)
	if err == nil && resetTOTP {
		err = c.Store.SetTOTP(r.Context(), name, "")
	}
	if err == nil {
		err = c.Store.SetSecondFactor(r.Context(), name, factor, require2FA)
	}
	switch {
	case errors.Is(err, db.ErrNotFound):
		err = badRequest("No operator called " + name + ".")
	case errors.Is(err, db.ErrLastAdmin):
		err = badRequest("That would leave no enabled administrator.")
	}
	if err == nil && disabled {
		// A disabled operator's remote connections end with the account.
		for _, x := range c.Relay.Sessions() {
			if x.Operator == name {
				c.Relay.TerminateSession(x.ID)
			}
		}
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
		c.emit(r, event.KindConfig, fmt.Sprintf("Operator %s changed operator %s: %s", operatorOf(r).Name, name, what))
	}
	c.done(w, r, "operators", err, "Saved operator "+name+".")
}

func (c *Console) saveSecurity(w http.ResponseWriter, r *http.Request) {
	msg, err := c.changeConfig(r, func(cfg *config.Config) error {
		cfg.BlockUnencrypted = r.PostForm.Get("block") == "1"
		cfg.TrustedProxies = config.SplitList(r.PostForm.Get("proxies"))
		if cfg.BlockUnencrypted && c.Certificate != nil && c.Certificate().Fingerprint == "" {
			return badRequest("This gateway serves no certificate (--no-tls): blocking unencrypted peers would refuse everyone.")
		}
		return nil
	})
	c.done(w, r, "security", err, msg)
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
	c.emit(r, event.KindConfig, fmt.Sprintf("Operator %s installed a new certificate (SHA-256 %s)", operatorOf(r).Name, fp))
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
