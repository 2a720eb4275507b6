package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/web"
)

// KnownClients is the record of the Clients seen recently (db.DB has it):
// the console lists the offline ones and forgets them.
type KnownClients interface {
	OfflineClients(ctx context.Context, f db.OfflineFilter) ([]db.KnownClient, int, error)
	KnownClient(ctx context.Context, name, keyID string) (db.KnownClient, error)
	KnownClientsNamed(ctx context.Context, name string) ([]db.KnownClient, error)
	ForgetKnownClient(ctx context.Context, name, keyID string) error
	PruneKnownClients(ctx context.Context) (int64, error)
}

// offlinePerPage bounds the offline list; a search finds the others.
const offlinePerPage = 50

// addOffline lists below the connected Clients the known ones matching q
// that are offline. A database that cannot be read says so there.
func (c *Console) addOffline(ctx context.Context, v *web.ClientsView, q clientsQuery) {
	ks, ok := c.Store.(KnownClients)
	if !ok {
		return
	}
	// Bounded as the other nodes' Clients are: a database that does not
	// answer is treated as away.
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	known, total, err := ks.OfflineClients(ctx, db.OfflineFilter{Search: q.q, Limit: offlinePerPage})
	if err != nil {
		if ctx.Err() == nil {
			c.Logger.Warn("console: cannot list the offline Clients", "err", err)
		}
		v.OfflineError = "The offline Clients cannot be listed now: the database cannot be read."
		return
	}
	labels := c.keyLabels(ctx)
	v.OfflineTotal = total
	for _, k := range known {
		v.Offline = append(v.Offline, web.KnownRow{
			Name: k.Name, KeyID: k.KeyID, KeyLabel: labels.of(k.KeyID), Node: k.Node, RealIP: k.RealIP, PublicIP: k.PublicIP,
			OS: k.OS, Version: k.Version, Services: k.Services, LastSeen: k.LastSeen,
		})
	}
}

// keyLabelSet names keys by their ID; a key removed since is said so.
type keyLabelSet map[string]string

func (c *Console) keyLabels(ctx context.Context) keyLabelSet {
	keys, err := c.Store.Keys(ctx)
	if err != nil {
		return nil
	}
	m := make(keyLabelSet, len(keys))
	for _, k := range keys {
		m[k.KeyID] = k.Label
	}
	return m
}

func (m keyLabelSet) of(keyID string) string {
	label, ok := m[keyID]
	switch {
	case m == nil:
		return "key " + keyID
	case !ok:
		return "key " + keyID + " (removed)"
	case label == "":
		return "key " + keyID
	}
	return label
}

// clientRef names a Client from its page's URL: its name, and the key
// space it is named in (?key=), which may be left out when only one
// Client has that name.
func clientRef(r *http.Request) (name, keyID string) {
	return chi.URLParam(r, "name"), r.URL.Query().Get("key")
}

// clientState is one Client as its page shows it.
type clientState struct {
	info    relay.ClientInfo
	online  bool
	here    bool // on this node
	known   db.KnownClient
	isKnown bool
}

var errNoSuchClient = &Error{Status: http.StatusNotFound,
	Message: "No such Client is connected, nor was one seen in the last 30 days."}

// findClient looks for the Client among the connected ones (the
// cluster's) and the known ones.
func (c *Console) findClient(ctx context.Context, name, keyID string) (clientState, string, error) {
	var st clientState
	all, note := c.allClients(ctx)
	var matches []relay.ClientInfo
	for _, ci := range all {
		if ci.Name == name && (keyID == "" || ci.KeyID == keyID) {
			matches = append(matches, ci)
		}
	}
	ks, hasKnown := c.Store.(KnownClients)
	if keyID == "" && len(matches) == 0 && hasKnown {
		named, err := ks.KnownClientsNamed(ctx, name)
		if err != nil {
			return st, note, err
		}
		if len(named) == 1 {
			keyID = named[0].KeyID
		} else if len(named) > 1 {
			return st, note, &Error{Status: http.StatusConflict,
				Message: fmt.Sprintf("%d Clients called %s were seen, with different keys: open one from the Clients page.", len(named), name)}
		}
	}
	switch {
	case len(matches) > 1:
		return st, note, &Error{Status: http.StatusConflict,
			Message: fmt.Sprintf("%d Clients called %s are connected, with different keys: open one from the Clients page.", len(matches), name)}
	case len(matches) == 1:
		st.info, st.online = matches[0], true
		keyID = st.info.KeyID
		for _, l := range c.Relay.Clients() {
			if l.Name == name && l.KeyID == keyID {
				st.here = true
			}
		}
	}
	if hasKnown && keyID != "" {
		k, err := ks.KnownClient(ctx, name, keyID)
		switch {
		case err == nil:
			st.known, st.isKnown = k, true
		case !errors.Is(err, db.ErrNotFound):
			if !st.online {
				return st, note, err
			}
			c.Logger.Warn("console: cannot read a known Client", "client", name, "err", err)
		}
	}
	if !st.online && !st.isKnown {
		return st, note, errNoSuchClient
	}
	if !st.online {
		k := st.known
		st.info = relay.ClientInfo{KeyID: k.KeyID}
		st.info.Name, st.info.Node, st.info.RealIP, st.info.PublicIP = k.Name, k.Node, k.RealIP, k.PublicIP
		st.info.OS, st.info.Version, st.info.Services = k.OS, k.Version, k.Services
	}
	return st, note, nil
}

// clientView builds a Client's page.
func (c *Console) clientView(ctx context.Context, r *http.Request, st clientState, note string) web.ClientView {
	ci := st.info
	labels := c.keyLabels(ctx)
	label := ci.KeyLabel
	if label == "" {
		label = labels.of(ci.KeyID)
	}
	v := web.ClientView{
		Client: web.ClientRow{Name: ci.Name, Node: ci.Node, RealIP: ci.RealIP, PublicIP: ci.PublicIP, KeyLabel: label,
			OS: ci.OS, Version: ci.Version, Services: ci.Services, Since: ci.ConnectedSince, LastHeartbeat: ci.LastHeartbeat, KeyID: ci.KeyID},
		KeyID: ci.KeyID, KeyLabel: label, Online: st.online, Here: st.here, Now: c.now(), Note: note,
	}
	if st.isKnown {
		v.FirstSeen = st.known.FirstSeen
		v.LastSeen = st.known.LastSeen
	}
	if st.online && !st.here {
		v.NodeURL = c.nodeConsoleURL(ctx, ci.Node, ci.Name, ci.KeyID)
	}
	if st.online {
		v.Client.Remote = web.RemoteLinks(ci.Name, ci.KeyID, ci.Services, ci.ServiceKinds)
	}
	if c.Remote != nil {
		if hks, err := c.Remote.HostKeys(ctx, ci.Name); err == nil {
			for _, h := range hks {
				if h.KeyID == ci.KeyID || ci.KeyID == "" {
					v.HostKeys = append(v.HostKeys, web.HostKeyRow{Service: h.Service, KeyID: h.KeyID, Fingerprint: h.Fingerprint, PinnedAt: h.PinnedAt})
				}
			}
		}
	}
	if st.online {
		ss, _ := c.sessions(ctx)
		for _, s := range ss {
			if s.Client == ci.Name {
				v.Sessions = append(v.Sessions, sessionRow(s))
			}
		}
	}
	evs, err := c.Store.Events(ctx, db.EventFilter{Client: ci.Name, Limit: 20})
	if err == nil {
		v.Events = eventRows(evs)
	}
	v.Commands = c.connectCommands(r, operatorOf(r).Name, ci.Name, ci.Services)
	return v
}

// nodeConsoleURL is the page of the Client on the console of the node
// that holds it, from the node registry; "" when it is not known.
func (c *Console) nodeConsoleURL(ctx context.Context, node, name, keyID string) string {
	nl, ok := c.Store.(NodeLister)
	if !ok {
		return ""
	}
	nodes, err := nl.Nodes(ctx)
	if err != nil {
		return ""
	}
	for _, n := range nodes {
		if n.Name == node && n.AdvertiseURL != "" {
			u, err := url.Parse(n.AdvertiseURL)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
				return ""
			}
			return strings.TrimSuffix(n.AdvertiseURL, "/") + web.ClientURL(name, keyID)
		}
	}
	return ""
}

func (c *Console) clientPage(w http.ResponseWriter, r *http.Request) {
	name, keyID := clientRef(r)
	st, note, err := c.findClient(r.Context(), name, keyID)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := c.clientView(r.Context(), r, st, note)
	stream := "/console/clients/" + url.PathEscape(name) + "/stream?key=" + url.QueryEscape(v.KeyID)
	c.page(w, r, "Client "+name, "clients", stream, web.ClientPage(v))
}

// clientStream re-renders the live part of a Client's page when Clients
// come or go and every 2 s (the heartbeat, durations, the other nodes).
func (c *Console) clientStream(w http.ResponseWriter, r *http.Request) {
	name, keyID := clientRef(r)
	seen := c.Relay.Version()
	last := time.Now()
	c.stream(w, r, func(ctx context.Context) ([]sseEvent, error) {
		v := c.Relay.Version()
		if v == seen && time.Since(last) < 2*time.Second {
			return nil, nil
		}
		seen, last = v, time.Now()
		st, note, err := c.findClient(ctx, name, keyID)
		var view web.ClientView
		switch {
		case errors.As(err, new(*Error)):
			// Forgotten, or gone for good: the page says it is offline
			// with what it showed; a reload says there is no such Client.
			view = web.ClientView{Client: web.ClientRow{Name: name}, KeyID: keyID, Now: c.now(),
				Note: "This Client is not connected, and is no longer known."}
		case err != nil:
			return nil, err
		default:
			view = c.clientView(ctx, r, st, note)
		}
		return []sseEvent{{name: "client", content: web.ClientLive(view)}, {name: "count", content: web.Count(c.Relay.Stats().Clients)}}, nil
	})
}

// clientDropper is a relay that can end one of its Client connections
// (relay.Server).
type clientDropper interface {
	DropClient(name, keyID, connID, reason string) bool
}

// disconnectClient closes a Client's connection to this node. Its agent
// reconnects by itself (it is a disconnection, not a ban); its sessions,
// each on a connection of its own, go on. A Client on another node is
// disconnected from that node's console: nodes have no request for it yet.
func (c *Console) disconnectClient(w http.ResponseWriter, r *http.Request) {
	name, keyID := clientRef(r)
	op := operatorOf(r).Name
	var found *relay.ClientInfo
	here := false
	for _, ci := range c.Relay.Clients() {
		if ci.Name == name && ci.KeyID == keyID {
			found, here = &ci, true
		}
	}
	if found == nil {
		// Another node's, if the cluster lists it.
		all, _ := c.allClients(r.Context())
		for _, ci := range all {
			if ci.Name == name && ci.KeyID == keyID {
				found = &ci
			}
		}
	}
	if found == nil {
		c.fail(w, r, &Error{Status: http.StatusNotFound, Message: "Client " + name + " is not connected (it has gone)."})
		return
	}
	reason := "disconnected by operator " + op
	gone := &Error{Status: http.StatusNotFound, Message: "Client " + name + " has already disconnected."}
	switch cd, ok := c.Cluster.(clusterDropper); {
	case here:
		d, ok := c.Relay.(clientDropper)
		if !ok || !d.DropClient(name, keyID, "", reason) {
			c.fail(w, r, gone)
			return
		}
	case ok:
		if err := cd.DisconnectClusterClient(r.Context(), found.Node, name, keyID, op); err != nil {
			if c.Logger != nil {
				c.Logger.Warn("console: cannot disconnect a Client of another node", "client", name, "node", found.Node, "err", err)
			}
			gone.Message = "Client " + name + " has already disconnected, or its node " + found.Node + " cannot be reached now."
			c.fail(w, r, gone)
			return
		}
	default:
		c.fail(w, r, &Error{Status: http.StatusNotFound,
			Message: "Client " + name + " is connected to node " + found.Node + ": disconnect it from that node's console."})
		return
	}
	// The relay records no "Disconnected" for a connection it was told to
	// drop; this is that record, with who did it, on the node they used.
	e := event.ClientDisconnected(found.Name, found.RealIP, found.PublicIP)
	e.Time, e.Operator, e.Reason = c.now(), op, reason
	c.Events.Emit(e)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = web.OKFragment("Disconnected Client "+name+". Its agent reconnects by itself unless it is stopped.").Render(r.Context(), w)
}

// clusterDropper disconnects a Client of any node of a cluster.
type clusterDropper interface {
	DisconnectClusterClient(ctx context.Context, node, name, keyID, by string) error
}

// forgetClient removes an offline Client from the known ones.
func (c *Console) forgetClient(w http.ResponseWriter, r *http.Request) {
	name, keyID := clientRef(r)
	ks, ok := c.Store.(KnownClients)
	if !ok {
		c.fail(w, r, &Error{Status: http.StatusNotFound, Message: "This gateway keeps no known Clients."})
		return
	}
	all, _ := c.allClients(r.Context())
	for _, ci := range all {
		if ci.Name == name && ci.KeyID == keyID {
			c.fail(w, r, &Error{Status: http.StatusConflict,
				Message: "Client " + name + " is connected now: it cannot be forgotten while it is here."})
			return
		}
	}
	err := ks.ForgetKnownClient(r.Context(), name, keyID)
	if errors.Is(err, db.ErrNotFound) {
		err = &Error{Status: http.StatusNotFound, Message: "Client " + name + " is not known (it was forgotten already)."}
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.record(r, event.ClientForgotten(operatorOf(r).Name, name))
	c.knownChanged.Add(1)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = web.OKFragment("Forgot Client "+name+". It is listed again if it connects.").Render(r.Context(), w)
}

// connectCommands are the Control commands that open each service of the
// Client through this gateway, as the admin reached it: the command pins
// the certificate by its fingerprint unless it is ACME's, signs in as the admin
// when the gateway has operators, and reads the key from SWITCHBOARD_KEY
// (the console never shows keys). Each forwards a local port.
func (c *Console) connectCommands(r *http.Request, operator, client string, services []string) []web.ConnectCommand {
	scheme := "http"
	if encrypted(r) {
		scheme = "https"
	}
	gw := scheme + "://" + r.Host
	var pin string
	if c.Certificate != nil {
		// An ACME certificate is publicly trusted, and renewed every few
		// weeks: a pin would soon be stale. Any other (self-signed, own)
		// may not be trusted by the Control's machine: pin it.
		if ci := c.Certificate(); ci.Fingerprint != "" && !strings.HasPrefix(ci.Source, "ACME") {
			pin = ci.Fingerprint
		}
	}
	out := make([]web.ConnectCommand, 0, len(services))
	for _, s := range slices.Sorted(slices.Values(services)) {
		listen := "127.0.0.1:" + strconv.Itoa(localPort(s))
		args := []string{"switchboard", "control", "connect", "--gateway", gw}
		if pin != "" {
			args = append(args, "--fingerprint", pin)
		}
		if operator != "" {
			args = append(args, "--user", operator)
		}
		args = append(args, client+"/"+s, "--listen", listen)
		for i, a := range args {
			args[i] = shellQuote(a)
		}
		out = append(out, web.ConnectCommand{Service: s, Command: strings.Join(args, " "), Listen: listen})
	}
	return out
}

// wellKnownPorts are the usual ports of common services; the command
// forwards 10000 above them, where no local server of the same kind
// listens already.
var wellKnownPorts = map[string]int{"ssh": 22, "telnet": 23, "http": 80, "https": 443, "smb": 445,
	"rdp": 3389, "vnc": 5900, "mysql": 3306, "postgres": 5432, "winrm": 5985}

// localPort is the local port a command forwards for service: 10000 above
// its usual port, else one of 20000-29999 picked by its name, so the same
// service gets the same port every time.
func localPort(service string) int {
	if p, ok := wellKnownPorts[strings.ToLower(service)]; ok {
		return 10000 + p
	}
	h := uint32(2166136261)
	for i := 0; i < len(service); i++ {
		h = (h ^ uint32(service[i])) * 16777619
	}
	return 20000 + int(h%10000)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@=,+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
