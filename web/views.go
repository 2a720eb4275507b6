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
}

// ClientRow is one connected Client.
type ClientRow struct {
	Name, Node, RealIP, PublicIP, KeyLabel, OS, Version string
	Services                                            []string
	Since, LastHeartbeat                                time.Time
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
	LockedUntil  time.Time
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
	// Nodes are the gateway nodes of the cluster (the node registry), for
	// the Servers tab; NodesError says why they could not be read.
	Nodes      []NodeRow
	NodesError string
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
}

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
