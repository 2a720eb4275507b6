package web

import (
	"net/url"
	"slices"
	"time"
)

// RemoteView is a desktop's or a terminal's page.
type RemoteView struct {
	Client, Service, KeyID string
	// Socket is the WebSocket's path on the console's origin.
	Socket    string
	ClientURL string
	Admin     bool
	// Recorded says the terminal's output is recorded.
	Recorded bool
	Assets   PageAssets
}

// PageAssets are the URLs of a page's own styles, classic scripts and
// module scripts.
type PageAssets struct {
	Styles, Scripts, Modules []string
}

// RemoteLink opens one service of a Client in the browser.
type RemoteLink struct {
	Service, Kind, Label, Href string
}

// RemoteLinks are the browser buttons of a Client's services, in service
// order: Desktop for VNC-kind services, Terminal for SSH-kind ones.
func RemoteLinks(client, keyID string, services []string, kinds map[string]string) []RemoteLink {
	var out []RemoteLink
	for _, s := range slices.Sorted(slices.Values(services)) {
		var label, page string
		switch kinds[s] {
		case "vnc":
			label, page = "Desktop", "desktop"
		case "ssh":
			label, page = "Terminal", "terminal"
		default:
			continue
		}
		href := "/console/clients/" + url.PathEscape(client) + "/" + page + "/" + url.PathEscape(s)
		if keyID != "" {
			href += "?key=" + url.QueryEscape(keyID)
		}
		out = append(out, RemoteLink{Service: s, Kind: kinds[s], Label: label, Href: href})
	}
	return out
}

// RemoteListRow is a Client the operator may open in the browser.
type RemoteListRow struct {
	Client, Node string
	Links        []RemoteLink
}

// RemoteListView lists what the operator may open in the browser.
type RemoteListView struct {
	Rows []RemoteListRow
	Note string
}

// RemoteVerifyView asks for a fresh second factor before remote control.
type RemoteVerifyView struct {
	Next   string
	Factor string // "totp", "duo" or "" (none set up)
	Error  string
}

// RecordingRow is one browser session in the Recordings list.
type RecordingRow struct {
	ID                                          int64
	Kind, Operator, Client, Service, Node, User string
	Started, Ended                              time.Time
	HasCast                                     bool
}

// Length is how long the session lasted, or "running".
func (r RecordingRow) Length() string {
	if r.Ended.IsZero() {
		return "running"
	}
	return r.Ended.Sub(r.Started).Round(time.Second).String()
}

// RecordingsView is the Recordings page.
type RecordingsView struct {
	Rows []RecordingRow
	Now  time.Time
}
