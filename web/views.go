// Package web holds the console's templ components: the layout, one page
// per console section, and the fragments htmx and the live (SSE) updates
// swap in. A page and its live update render through the same component,
// so they cannot drift apart. View models are plain data built by the
// handlers.
package web

import (
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// LiveEnd names the SSE event that ends a live page whose console session
// no longer admits it (signed out, timed out, operator disabled or no
// longer an admin). Its data is the sign-in URL: the layout's sse-close
// stops the EventSource reconnecting and static/live.js goes there.
const LiveEnd = "signin"

// Layout is what every console page shares.
type Layout struct {
	Title    string
	Active   string // nav section: clients, sessions, events, config
	Operator string
	// Admin shows the administration pages; other operators see only
	// their Account page.
	Admin       bool
	ClientCount int
	// Stream is the SSE URL for this page's live updates; empty for none.
	Stream string
	Asset  func(name string) string
	// TimeZone names the zone the page's times are in (ZoneLabel).
	TimeZone string
}

// ClientRow is one connected Client.
type ClientRow struct {
	Name, Node, RealIP, PublicIP, KeyLabel, OS, Version string
	Services                                            []string
	Since, LastHeartbeat                                time.Time
	KeyID                                               string
	// Remote opens its desktops and terminals in the browser.
	Remote []RemoteLink
}

// ClientsView is a page of the Clients list.
type ClientsView struct {
	Rows    []ClientRow
	Query   string
	Sort    string // name, node, real_ip, public_ip, key, since, heartbeat
	Desc    bool
	Page    int // 1-based
	Pages   int
	Total   int // matching the query
	PerPage int
	Now     time.Time
	// Note, when set, says the list is incomplete (the other nodes'
	// Clients cannot be read while the database is away).
	Note string
	// Offline are the known Clients matching the query that are not
	// connected, most recently seen first; OfflineTotal counts them all.
	Offline      []KnownRow
	OfflineTotal int
	// OfflineError says why they cannot be listed now.
	OfflineError string
}

// URL is the clients page URL with some parameters changed.
func (v ClientsView) URL(page int, sort string, desc bool) string {
	q := url.Values{}
	if v.Query != "" {
		q.Set("q", v.Query)
	}
	q.Set("sort", sort)
	if desc {
		q.Set("desc", "1")
	}
	q.Set("page", strconv.Itoa(page))
	return "/console/clients?" + q.Encode()
}

// SortURL toggles the direction when sort is the current column.
func (v ClientsView) SortURL(col string) string {
	return v.URL(1, col, col == v.Sort && !v.Desc)
}

// SortClass marks the sorted column for CSS.
func (v ClientsView) SortClass(col string) string {
	if col != v.Sort {
		return ""
	}
	if v.Desc {
		return "sorted"
	}
	return "sorted asc"
}

// SessionRow is one active session.
type SessionRow struct {
	ID, Control, ControlIP, Operator, Client, Service string
	// Node brokers the session (the Control's node); ClientNode holds
	// the Client when it is another.
	Node, ClientNode   string
	Started            time.Time
	BytesUp, BytesDown int64
}

// SessionsView is the Active Sessions page.
type SessionsView struct {
	Rows []SessionRow
	Now  time.Time
	// Cluster shows the Node column.
	Cluster bool
	// Note says which nodes' sessions are missing.
	Note string
}

// EventRow is one event.
type EventRow struct {
	ID                                                         int64
	Time                                                       time.Time
	Kind, Message, Client, Control, Operator, RealIP, PublicIP string
	// Reason says why a Client or session ended, where the text does not.
	Reason string
}

// EventsView is a page of the event log.
type EventsView struct {
	Rows    []EventRow
	Kinds   []string
	Kind    string
	Client  string
	Control string
	Since   string // datetime-local value
	Until   string
	Before  int64 // keyset cursor of this page; 0 is the newest page
	Older   int64 // cursor of the next (older) page; 0 if none
	Total   int64
	Live    bool // first page: new events stream in
	FilterQ string
}

// OlderURL is the next page's URL.
func (v EventsView) OlderURL() string {
	q, _ := url.ParseQuery(v.FilterQ)
	q.Set("before", strconv.FormatInt(v.Older, 10))
	return "/console/events?" + q.Encode()
}

// KeyRow is one gateway key in the Keys tab.
type KeyRow struct {
	KeyID, Label string
	Added        time.Time
	Clients      int
}

// OperatorRow is one operator in the Operators tab.
type OperatorRow struct {
	Name, Role   string
	Disabled     bool
	Added        time.Time
	Factor       string
	Require2FA   bool
	TOTPEnrolled bool
	// RemoteAccess is what the operator, if not an admin, may open in
	// the browser: one "client:NAME" or "key:KEY-ID" a line.
	RemoteAccess string
	LockedUntil  time.Time
	// LastSignin is the last sign-in with a password, from LastSigninFrom;
	// zero when never.
	LastSignin     time.Time
	LastSigninFrom string
	// Warning says why the operator's second factor cannot work as set.
	Warning string
	// Sessions counts the operator's sessions now, for the confirmations.
	Sessions int
}

// ConfigView is the Configuration page with one tab open.
type ConfigView struct {
	Tab          string // general, keys, operators, servers, licences
	Flash        string
	Error        string
	Listen       string // one address per line
	AllIfaces    bool
	CMPISeconds  int
	LogDir       string
	LogMaxKB     int
	ServerRole   string
	Roles        []string
	Peers        string
	MaxClients   int
	ClientsInUse int
	Keys         []KeyRow
	Operators    []OperatorRow
	Self         string // the signed-in operator
	Cert         CertInfo
	Block        bool
	Proxies      string // one per line
	// ACME settings, for the form that switches to ACME.
	ACMEDomains, ACMEEmail, ACMEDirectory string
	TwoFA                                 TwoFAView
	// Browser sessions: terminals recorded, and for how many days.
	RecordTerminals bool
	RetentionDays   int
	// Nodes are the gateway nodes of the cluster (the node registry), for
	// the Servers tab; NodesError says why they could not be read.
	Nodes      []NodeRow
	NodesError string
	// Form holds the values of a rejected form as they were typed, and
	// Errors the problem with each field (by form field name), so the tab
	// shows the form again as it was, each error next to its field.
	// FormOperator names the operator whose row form they are, if any.
	Form         map[string]string
	Errors       map[string]string
	FormOperator string
	// Warning is a flash for a change that was saved but cannot work yet.
	Warning string
}

// Val is the value to show in field name: as typed in a rejected form,
// else stored.
func (v ConfigView) Val(name, stored string) string {
	if s, ok := v.Form[name]; ok {
		return s
	}
	return stored
}

// Err is the problem with field name of the rejected form, if any.
func (v ConfigView) Err(name string) string { return v.Errors[name] }

// RowVal is Val for a field of operator's row form.
func (v ConfigView) RowVal(operator, name, stored string) string {
	if v.FormOperator != operator {
		return stored
	}
	return v.Val(name, stored)
}

// RowErr is Err for a field of operator's row form.
func (v ConfigView) RowErr(operator, name string) string {
	if v.FormOperator != operator {
		return ""
	}
	return v.Errors[name]
}

// NodeRow is one gateway node of the cluster on the Servers tab.
type NodeRow struct {
	Name, URL, Role string
	State           string // active, standby (a secondary holding no Clients), lost
	Clients         int
	Sessions        int
	LastSeen        string // how long ago, by the database's clock
}

// CertInfo describes the certificate the gateway presents.
type CertInfo struct {
	Source      string // "own certificate", "ACME (Let's Encrypt)", "self-signed", "none (plain HTTP only)"
	Subject     string
	Names       []string
	NotAfter    time.Time
	Fingerprint string
	// Uploadable: a certificate pasted in the console replaces this one.
	Uploadable bool
}

// Ago renders how long ago t was, compactly.
func Ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return Duration(now.Sub(t)) + " ago"
}

// Duration renders a duration compactly: 45s, 3m10s, 2h5m, 3d4h.
func Duration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

// Bytes renders a byte count: 512 B, 3.4 KiB, 12.0 MiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Stamp renders a time for tables.
func Stamp(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") }

func itoa(n int) string  { return strconv.Itoa(n) }
func i64(n int64) string { return strconv.FormatInt(n, 10) }

// AccountView is the signed-in operator's own settings.
type AccountView struct {
	Operator     string
	Flash, Error string
	Factor       string
	Require2FA   bool
	TOTPEnrolled bool
	// Enrolment is set while a new TOTP secret awaits its first code.
	Enrolment struct{ Secret string }
	// RecoveryCodes are new recovery codes, shown this once; RecoveryLeft
	// counts the unused ones stored.
	RecoveryCodes []string
	RecoveryLeft  int
	// LastSignin is the operator's last sign-in, from LastSigninFrom.
	LastSignin     time.Time
	LastSigninFrom string
	// Errors are the problems of a rejected form, by field name.
	Errors map[string]string
}

// TwoFAView is the 2FA tab.
type TwoFAView struct {
	RequireAll      bool
	TokenTTLMinutes int
	DuoIKey         string
	DuoSKeySet      bool
	DuoHost         string
	DuoFailOpen     bool
	DuoTimeout      int // seconds
	Tokens          []TokenRow
	// DuoSKeyUnreadable: a Duo secret key is stored but cannot be
	// decrypted with this gateway's secrets key.
	DuoSKeyUnreadable bool
	// DuoUsers are the operators whose factor is Duo Push.
	DuoUsers []string
	// Form and Errors are a rejected form's values and problems, by
	// field name (see ConfigView).
	Form   map[string]string
	Errors map[string]string
}

// Val is the value to show in field name (see ConfigView.Val).
func (v TwoFAView) Val(name, stored string) string {
	if s, ok := v.Form[name]; ok {
		return s
	}
	return stored
}

// Err is the problem with field name of the rejected form, if any.
func (v TwoFAView) Err(name string) string { return v.Errors[name] }

// TokenRow is one kept Control sign-in.
type TokenRow struct {
	ID                int64
	Operator, Control string
	PublicIP          string
	Created, Expires  time.Time
	LastUsed          time.Time
}

// terminateURL is where the Terminate button of a session posts: the
// session's node goes with it, since IDs are each node's own.
func terminateURL(s SessionRow) string {
	u := "/console/sessions/" + url.PathEscape(s.ID) + "/terminate"
	if s.Node != "" {
		u += "?node=" + url.QueryEscape(s.Node)
	}
	return u
}

// == Pages: dashboard, Clients, a Client, sessions, events ==

// ClientURL is the page of the Client name of keyID: a name is unique
// within its key space only.
func ClientURL(name, keyID string) string {
	u := "/console/clients/" + url.PathEscape(name)
	if keyID != "" {
		u += "?key=" + url.QueryEscape(keyID)
	}
	return u
}

// KnownRow is a Client seen recently and not connected now.
type KnownRow struct {
	Name, KeyID, KeyLabel, Node, RealIP, PublicIP, OS, Version string
	Services                                                   []string
	LastSeen                                                   time.Time
}

// ClientView is the page of one Client, connected or known.
type ClientView struct {
	Client ClientRow
	KeyID  string
	Online bool
	// Here: connected to this node, which can disconnect it. A Client on
	// another node is disconnected from that node's console (NodeURL).
	Here     bool
	NodeURL  string
	LastSeen time.Time // offline: when it was last seen
	// FirstSeen is when the gateway first knew it (within 30 days).
	FirstSeen time.Time
	Events    []EventRow
	Sessions  []SessionRow
	Commands  []ConnectCommand
	// KeyLabel names the key the command needs (never the key itself).
	KeyLabel string
	Now      time.Time
	Note     string
	// HostKeys are the SSH host keys pinned for its terminals.
	HostKeys []HostKeyRow
}

// HostKeyRow is an SSH host key pinned for one of a Client's services.
type HostKeyRow struct {
	Service, KeyID, Fingerprint string
	PinnedAt                    time.Time
}

// ConnectCommand is the Control command that opens a service of a Client.
type ConnectCommand struct {
	Service, Command, Listen string
}

// DashboardView is the console's front page.
type DashboardView struct {
	Now              time.Time
	Clients          int // connected now, whole cluster
	Sessions         int
	Offline          int // known and offline (last 30 days)
	MaxClients       int // 0: unlimited
	Trend            Trend
	Nodes            []DashNode
	ThisNode         string
	NodesError       string
	Cert             CertInfo
	CertShown        bool
	SecurityFailures int64 // failed security checks in the last hour
	Version          string
	Uptime           time.Duration
	UptimeKnown      bool
	Note             string
}

// LicenceLevel is "" while licence use is comfortable, "warn" from 80 %
// and "full" at the limit.
func (v DashboardView) LicenceLevel() string {
	switch {
	case v.MaxClients <= 0:
		return ""
	case v.Clients >= v.MaxClients:
		return "full"
	case v.Clients*5 >= v.MaxClients*4:
		return "warn"
	}
	return ""
}

// LicencePercent is how much of the licence is in use, 0 without a limit.
func (v DashboardView) LicencePercent() int {
	if v.MaxClients <= 0 {
		return 0
	}
	return min(100, v.Clients*100/v.MaxClients)
}

// CertDays is how many whole days the certificate has left.
func (v DashboardView) CertDays() int {
	return int(v.Cert.NotAfter.Sub(v.Now).Hours() / 24)
}

// CertLevel is "full" for a certificate expired or within 7 days of it,
// "warn" within 30 days.
func (v DashboardView) CertLevel() string {
	switch d := v.CertDays(); {
	case v.Cert.NotAfter.IsZero():
		return ""
	case d < 7:
		return "full"
	case d < 30:
		return "warn"
	}
	return ""
}

// Trend is the Clients of the last day, one value per quarter hour.
type Trend struct {
	Values []int // oldest first; -1: before the first sample
	Peak   int
	Start  time.Time
}

// Sparkline is the polyline of t in a w×h box: quarters before the first
// sample are left out. A single quarter is drawn as a step of its width,
// so a young gateway's line shows.
func (t Trend) Sparkline(w, h int) string {
	var b []byte
	if n := len(t.Values); n > 1 && t.Values[n-2] < 0 && t.Values[n-1] >= 0 {
		y := float64(h) - float64(t.Values[n-1])*float64(h-2)/float64(max(t.Peak, 1)) - 1
		b = fmt.Appendf(b, "%.1f,%.1f ", float64(n-2)*float64(w)/float64(n-1), y)
	}
	n := len(t.Values)
	top := max(t.Peak, 1)
	for i, v := range t.Values {
		if v < 0 {
			continue
		}
		x := 0.0
		if n > 1 {
			x = float64(i) * float64(w) / float64(n-1)
		}
		y := float64(h) - float64(v)*float64(h-2)/float64(top) - 1
		b = fmt.Appendf(b, "%.1f,%.1f ", x, y)
	}
	return string(b)
}

// Plural is "1 Client", "2 Clients".
func Plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// SortAria is the aria-sort of a column header: "ascending" or
// "descending" on the sorted column, "" (no attribute) elsewhere.
func (v ClientsView) SortAria(col string) string {
	switch {
	case col != v.Sort:
		return ""
	case v.Desc:
		return "descending"
	}
	return "ascending"
}

// TerminateLabel names a session's Terminate button for its row.
func (s SessionRow) TerminateLabel() string {
	return "Terminate session " + s.Client + " ← " + s.Control
}

// TerminateConfirm says what terminating the session does.
func (s SessionRow) TerminateConfirm() string {
	return fmt.Sprintf("Terminate the session of Control %s with Client %s (%s)? Its connection is cut at once; the Control may open a new one.",
		s.Control, s.Client, s.Service)
}

// Plural64 is Plural for a count of events.
func Plural64(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.FormatInt(n, 10) + " " + many
}

func clientActionURL(name, keyID, action string) string {
	return "/console/clients/" + url.PathEscape(name) + "/" + action + "?key=" + url.QueryEscape(keyID)
}

func forgetURL(name, keyID string) string     { return clientActionURL(name, keyID, "forget") }
func disconnectURL(name, keyID string) string { return clientActionURL(name, keyID, "disconnect") }

// ForgetConfirm says what forgetting a Client does.
func ForgetConfirm(name string) string {
	return "Forget Client " + name + "? It leaves the list of offline Clients; if it connects again it is listed again."
}

// DisconnectConfirm says what disconnecting a Client does.
func DisconnectConfirm(name string, sessions int) string {
	s := "Disconnect Client " + name + "? Its connection to the gateway is closed now; its agent reconnects by itself unless it is stopped on that machine."
	if sessions > 0 {
		s += " Its " + Plural(sessions, "session", "sessions") + " in progress keep running; end them on Active Sessions."
	}
	return s
}

func queryEscape(s string) string { return url.QueryEscape(s) }

func pathEscape(s string) string { return url.PathEscape(s) }

// DashNode is one node of the cluster on the dashboard.
type DashNode struct {
	Name, Role, Version string
	State               string // active, standby, lost (as on the Servers tab)
	Clients, Sessions   int
	Up, LastSeen        string
}

func trendLabel(t Trend) string {
	return fmt.Sprintf("Connected Clients over the last 24 hours, peak %d", t.Peak)
}

// levelOr names the level class of a tile: ok, warn or full.
func levelOr(level string) string {
	if level == "" {
		return "ok"
	}
	return level
}

func securityLevel(n int64) string {
	if n > 0 {
		return "warn"
	}
	return ""
}

// securityEventsURL lists the failed security checks of the hour before now.
func securityEventsURL(now time.Time) string {
	q := url.Values{}
	q.Set("kind", "security")
	q.Set("since", now.Add(-time.Hour).Local().Format("2006-01-02T15:04"))
	return "/console/events?" + q.Encode()
}

// PluralWord is Plural's noun alone, for where the number is an element
// of its own (the header's live count): PluralWord(1, "Client", "Clients")
// is "Client".
func PluralWord(n int, one, many string) string {
	if n == 1 || n == -1 {
		return one
	}
	return many
}

// ZoneLabel names the zone of t for "Times in …": "UTC", or the zone's
// abbreviation and offset, "CET (UTC+01:00)".
func ZoneLabel(t time.Time) string {
	name, off := t.Zone()
	if off == 0 && (name == "UTC" || name == "GMT" || name == "") {
		return "UTC"
	}
	sign := '+'
	if off < 0 {
		sign, off = '-', -off
	}
	utc := fmt.Sprintf("UTC%c%02d:%02d", sign, off/3600, off%3600/60)
	if name == "" || name[0] == '+' || name[0] == '-' {
		return utc
	}
	return name + " (" + utc + ")"
}

// clientKinds are the kinds of events about a Client that connected: their
// Client column links to its page (a refused one may never have had one).
var clientKinds = map[string]bool{"client_connect": true, "client_disconnect": true, "session_start": true, "session_end": true}
