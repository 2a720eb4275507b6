package handlers

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/go-chi/chi/v5"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/internal/auth/signin"
	"github.com/switchboard/switchboard/internal/remote/recording"
	"github.com/switchboard/switchboard/internal/remote/terminal"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
	"github.com/switchboard/switchboard/web"
)

// Remote control from the browser. A desktop or a terminal is a session
// like any other, brokered by the relay for a Control that is this
// console acting for the signed-in operator ("console:<operator>"): it
// shows in Active Sessions, is recorded in the events, and an admin can
// terminate it. The desktop's WebSocket carries the session's bytes (RFB)
// both ways unchanged, for noVNC; the terminal's carries terminal input,
// output and resizes, the gateway being the SSH client in between
// (internal/remote/terminal).

// RemoteStore is what browser sessions keep in PostgreSQL.
type RemoteStore interface {
	PinnedHostKey(ctx context.Context, client, keyID, service string) (db.HostKey, bool, error)
	PinHostKey(ctx context.Context, h db.HostKey) error
	HostKeys(ctx context.Context, client string) ([]db.HostKey, error)
	ClearHostKey(ctx context.Context, client, keyID, service string) error
	SetRemoteAccess(ctx context.Context, name string, entries []string) error
	StartRecording(ctx context.Context, r db.Recording) (int64, error)
	EndRecording(ctx context.Context, id int64, ended time.Time, sshUser string, castGz []byte, castBytes int64) error
	Recordings(ctx context.Context, limit int) ([]db.Recording, error)
	RecordingCast(ctx context.Context, id int64) (db.Recording, []byte, error)
	DeleteRecordingsBefore(ctx context.Context, t time.Time) (int64, error)
}

// LocalConnector opens sessions for the console (relay.Server).
type LocalConnector interface {
	ConnectLocal(ctx context.Context, lc relay.LocalControl, target string) (*relay.LocalSession, error)
}

// Settings of browser sessions, in the settings table.
const (
	settingRecord    = "remote_record_terminals" // "off" turns recording off
	settingRetention = "remote_retention_days"   // days recordings are kept
	// DefaultRetentionDays keeps recordings a month.
	DefaultRetentionDays = 30
	// sessionRemoteVerified marks a console sign-in whose operator gave a
	// fresh second factor for remote control.
	sessionRemoteVerified = "remote_verified"
	// remoteReadLimit bounds one WebSocket message from the browser: RFB
	// client messages are a few bytes, a pasted clipboard at most this.
	remoteReadLimit = 256 << 10
)

// RemoteSettings are the browser sessions' settings.
type RemoteSettings struct {
	RecordTerminals bool
	RetentionDays   int
}

// LoadRemoteSettings reads the settings over their defaults.
func LoadRemoteSettings(ctx context.Context, st signin.SettingsStore) (RemoteSettings, error) {
	m, err := st.Settings(ctx, []string{settingRecord, settingRetention})
	if err != nil {
		return RemoteSettings{}, err
	}
	rs := RemoteSettings{RecordTerminals: m[settingRecord] != "off", RetentionDays: DefaultRetentionDays}
	if d, err := strconv.Atoi(m[settingRetention]); err == nil && d > 0 {
		rs.RetentionDays = d
	}
	return rs, nil
}

// mayReach reports whether op may open a browser session to the Client
// name holding keyID: admins reach every Client, other operators those
// their allow-list names, by Client name or by key.
func mayReach(op db.Operator, name, keyID string) bool {
	if op.Disabled {
		return false
	}
	if op.IsAdmin() {
		return true
	}
	for _, e := range op.RemoteAccess {
		if e == "client:"+name || (keyID != "" && e == "key:"+keyID) {
			return true
		}
	}
	return false
}

// remoteTarget is the Client and service a remote page or socket names.
type remoteTarget struct {
	info    relay.ClientInfo
	service string
	kind    string
}

// findRemote finds the connected Client and service r names, of the given
// kind, that op may reach; the error says why not in words for the page.
func (c *Console) findRemote(r *http.Request, op db.Operator, client, service, kind string) (remoteTarget, error) {
	keyID := r.URL.Query().Get("key")
	all, _ := c.allClients(r.Context())
	var found []relay.ClientInfo
	for _, ci := range all {
		if ci.Name == client && (keyID == "" || ci.KeyID == keyID) && mayReach(op, ci.Name, ci.KeyID) {
			found = append(found, ci)
		}
	}
	switch {
	case len(found) == 0:
		// The same answer whether the Client is offline or not the
		// operator's: a page must not tell which Clients exist.
		return remoteTarget{}, &Error{Status: http.StatusNotFound,
			Message: fmt.Sprintf("No Client %s that you may reach is connected.", client)}
	case len(found) > 1:
		return remoteTarget{}, &Error{Status: http.StatusConflict,
			Message: fmt.Sprintf("%d Clients called %s are connected, with different keys: open one from the Clients page.", len(found), client)}
	}
	ci := found[0]
	if ci.ServiceKinds[service] != kind {
		what := map[string]string{wire.KindVNC: "a desktop (VNC)", wire.KindSSH: "a terminal (SSH)"}[kind]
		return remoteTarget{}, &Error{Status: http.StatusNotFound,
			Message: fmt.Sprintf("Client %s offers no service %s that opens as %s.", client, service, what)}
	}
	return remoteTarget{info: ci, service: service, kind: kind}, nil
}

// needsStepUp reports whether op must give a fresh second factor before
// the first remote session of this console sign-in.
func (c *Console) needsStepUp(ctx context.Context, op db.Operator) (bool, error) {
	if c.Signin == nil {
		return false, nil
	}
	set, err := c.Signin.Settings(ctx)
	if err != nil {
		return false, err
	}
	return set.Require2FA || op.Require2FA, nil
}

// remotePage serves the page of a desktop (kind vnc) or a terminal.
func (c *Console) remotePage(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		op := operatorOf(r)
		client, service := chi.URLParam(r, "name"), chi.URLParam(r, "service")
		t, err := c.findRemote(r, op, client, service, kind)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		need, err := c.needsStepUp(r.Context(), op)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		if need && !c.Sessions.GetBool(r.Context(), sessionRemoteVerified) {
			http.Redirect(w, r, "/console/remote/verify?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		q := "?key=" + url.QueryEscape(t.info.KeyID)
		v := web.RemoteView{
			Client: t.info.Name, Service: service, KeyID: t.info.KeyID,
			ClientURL: web.ClientURL(t.info.Name, t.info.KeyID), Admin: op.IsAdmin(),
		}
		v.Assets = c.remoteAssets(kind)
		if kind == wire.KindVNC {
			v.Socket = "/console/remote/" + url.PathEscape(t.info.Name) + "/" + url.PathEscape(service) + q
			c.page(w, r, "Desktop of "+t.info.Name, "remote", "", web.DesktopPage(v))
			return
		}
		if rs, err := LoadRemoteSettings(r.Context(), c.Store); err == nil {
			v.Recorded = rs.RecordTerminals
		}
		v.Socket = "/console/terminal/" + url.PathEscape(t.info.Name) + "/" + url.PathEscape(service) + q
		c.page(w, r, "Terminal of "+t.info.Name, "remote", "", web.TerminalPage(v))
	}
}

// remoteListPage lists the services the operator may open in the browser.
func (c *Console) remoteListPage(w http.ResponseWriter, r *http.Request) {
	op := operatorOf(r)
	all, note := c.allClients(r.Context())
	v := web.RemoteListView{Note: note}
	for _, ci := range all {
		if !mayReach(op, ci.Name, ci.KeyID) {
			continue
		}
		if links := web.RemoteLinks(ci.Name, ci.KeyID, ci.Services, ci.ServiceKinds); len(links) > 0 {
			v.Rows = append(v.Rows, web.RemoteListRow{Client: ci.Name, Node: ci.Node, Links: links})
		}
	}
	c.page(w, r, "Remote control", "remote", "", web.RemoteListPage(v))
}

// remoteVerifyPage asks for the fresh second factor of remote control.
func (c *Console) remoteVerifyPage(w http.ResponseWriter, r *http.Request) {
	op := operatorOf(r)
	v := web.RemoteVerifyView{Next: remoteNext(r.URL.Query().Get("next")), Factor: op.Factor}
	c.page(w, r, "Confirm remote control", "remote", "", web.RemoteVerifyPage(v))
}

// remoteVerify checks the second factor and marks the sign-in verified.
func (c *Console) remoteVerify(w http.ResponseWriter, r *http.Request) {
	op := operatorOf(r)
	next := remoteNext(r.FormValue("next"))
	v := web.RemoteVerifyView{Next: next, Factor: op.Factor}
	var err error
	switch op.Factor {
	case db.FactorTOTP:
		err = c.Signin.CheckTOTP(r.Context(), op, strings.TrimSpace(r.FormValue("code")), remoteIP(r))
	case db.FactorDuo:
		set, serr := c.Signin.Settings(r.Context())
		if serr != nil {
			c.fail(w, r, serr)
			return
		}
		err = c.Signin.Push(r.Context(), op, set, remoteIP(r), "Switchboard: remote control from the console", func() error { return nil })
	default:
		err = errors.New("remote control on this gateway needs a second factor, and your account has none: set up an authenticator app on your Account page")
	}
	if err != nil {
		v.Error = "That did not confirm it: " + signinMessage(err)
		w.WriteHeader(http.StatusUnauthorized)
		c.page(w, r, "Confirm remote control", "remote", "", web.RemoteVerifyPage(v))
		return
	}
	if err := c.Sessions.RenewToken(r.Context()); err != nil {
		c.fail(w, r, err)
		return
	}
	c.Sessions.Put(r.Context(), sessionRemoteVerified, true)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// remoteNext is where the second factor's page goes on: the page that
// asked for it, on the console.
func remoteNext(next string) string {
	if next == "" {
		return "/console/remote"
	}
	return safeNext(next)
}

// signinMessage is what a refused second factor tells the operator.
func signinMessage(err error) string {
	var ue interface{ UserMessage() string }
	if errors.As(err, &ue) {
		return ue.UserMessage()
	}
	switch {
	case errors.Is(err, signin.ErrNoFactor):
		return "no second factor is set up for your account."
	}
	return err.Error()
}

// remoteAuth is the operator a remote socket's console session admits.
type remoteAuth struct {
	op       db.Operator
	token    string
	verified bool
}

// remoteAdmits reads r's console session from the store (never writing
// it: an open socket is no activity, as with the live streams).
func (c *Console) remoteAdmits(ctx context.Context, token, operator string) (remoteAuth, bool, error) {
	op, sctx, ok, err := c.liveSession(ctx, liveAuth{token: token, operator: operator})
	if err != nil || !ok {
		return remoteAuth{}, false, err
	}
	return remoteAuth{op: op, token: token, verified: c.Sessions.GetBool(sctx, sessionRemoteVerified)}, true, nil
}

// remoteSocket accepts a remote session's WebSocket once the console
// session, the origin and the permission admit it; otherwise it answers
// with an HTTP error and no socket.
func (c *Console) remoteSocket(w http.ResponseWriter, r *http.Request, kind string) (*websocket.Conn, remoteTarget, remoteAuth, bool) {
	var token string
	if ck, err := r.Cookie(c.Sessions.Cookie.Name); err == nil {
		token = ck.Value
	}
	ra, ok, err := c.remoteAdmits(r.Context(), token, "")
	if err != nil {
		http.Error(w, "the console cannot check your sign-in right now", http.StatusServiceUnavailable)
		return nil, remoteTarget{}, ra, false
	}
	if !ok {
		http.Error(w, "sign in to the console first", http.StatusUnauthorized)
		return nil, remoteTarget{}, ra, false
	}
	client, service := chi.URLParam(r, "client"), chi.URLParam(r, "service")
	t, err := c.findRemote(r, ra.op, client, service, kind)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Status == http.StatusNotFound && c.Events != nil && !c.anyReach(r, ra.op, client) {
			ev := event.RemoteRefused(ra.op.Name, client, service, remoteIP(r))
			ev.Time = c.now()
			c.Events.Emit(ev)
			http.Error(w, "you may not reach this Client from the browser", http.StatusForbidden)
			return nil, remoteTarget{}, ra, false
		}
		http.Error(w, err.Error(), http.StatusNotFound)
		return nil, remoteTarget{}, ra, false
	}
	if need, err := c.needsStepUp(r.Context(), ra.op); err != nil || (need && !ra.verified) {
		http.Error(w, "confirm remote control with your second factor first", http.StatusForbidden)
		return nil, remoteTarget{}, ra, false
	}
	// Accept refuses an Origin other than the console's own host (403).
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return nil, remoteTarget{}, ra, false
	}
	ws.SetReadLimit(remoteReadLimit)
	return ws, t, ra, true
}

// anyReach reports whether a Client named client exists that op may
// reach; a refusal is a security event only when one exists that op may
// not.
func (c *Console) anyReach(r *http.Request, op db.Operator, client string) bool {
	all, _ := c.allClients(r.Context())
	exists := false
	for _, ci := range all {
		if ci.Name == client {
			exists = true
			if mayReach(op, ci.Name, ci.KeyID) {
				return true
			}
		}
	}
	return !exists
}

// Close codes of remote sockets: the reason text is for the page.
const (
	closeEnded   websocket.StatusCode = 4000 // the session ended; the reason says how
	closeRefused websocket.StatusCode = 4001 // it could not start
	closeSignin  websocket.StatusCode = 4002 // the console session ended
)

// closeGrace is how long a desktop's socket outlives its session, for
// the close handshake that tells the page why it ended.
const closeGrace = 5 * time.Second

// watchSignin cancels the remote session when its console session stops
// admitting the operator (signed out, expired, disabled); why says so.
func (c *Console) watchSignin(ctx context.Context, cancel context.CancelFunc, ra remoteAuth, why *reasonBox) {
	every := c.LiveCheck
	if every <= 0 {
		every = 2 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, ok, err := c.remoteAdmits(ctx, ra.token, ra.op.Name); err == nil && !ok {
			why.set(closeSignin, "Your console session ended (signed out or expired): the remote session was closed.")
			cancel()
			return
		}
	}
}

// reasonBox holds why a remote session ended, first reason wins.
type reasonBox struct {
	mu     sync.Mutex
	code   websocket.StatusCode
	reason string
}

func (b *reasonBox) set(code websocket.StatusCode, reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.reason == "" {
		b.code, b.reason = code, reason
	}
}

func (b *reasonBox) get() (websocket.StatusCode, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.code, b.reason
}

// connectLocal opens the relay session of a browser session.
func (c *Console) connectLocal(ctx context.Context, r *http.Request, op db.Operator, t remoteTarget) (*relay.LocalSession, error) {
	if c.Connector == nil {
		return nil, errors.New("this gateway cannot open browser sessions")
	}
	return c.Connector.ConnectLocal(ctx, relay.LocalControl{
		Name: "console:" + op.Name, Operator: op.Name, KeyID: t.info.KeyID, PublicIP: remoteIP(r),
	}, t.info.Name+"/"+t.service)
}

// endedMessage says how a session ended that the page did not end.
func endedMessage(ls *relay.LocalSession) string {
	if by := ls.EndedBy(); by != "" {
		return "Session ended by admin " + by + "."
	}
	return "The session ended: the Client's service closed it, or the Client went away."
}

// refusal is the page's text for a session that could not start.
func refusal(err error) string {
	var we *wire.Error
	if errors.As(err, &we) {
		return we.Message
	}
	return "The session could not be opened: " + err.Error()
}

// desktopSocket bridges a desktop: the WebSocket's binary messages are the
// session's bytes, both ways, unchanged.
func (c *Console) desktopSocket(w http.ResponseWriter, r *http.Request) {
	ws, t, ra, ok := c.remoteSocket(w, r, wire.KindVNC)
	if !ok {
		return
	}
	defer ws.CloseNow()
	// The reader below enforces remoteReadLimit itself, with a reason
	// for the page; the library's limit is one byte past it.
	ws.SetReadLimit(remoteReadLimit + 1)
	ctx, cancel, why := c.remoteContext(r, ra)
	defer cancel()

	ls, err := c.connectLocal(ctx, r, ra.op, t)
	if err != nil {
		_ = ws.Close(closeRefused, truncReason(refusal(err)))
		return
	}
	defer ls.Close()
	rec := c.startRecording(r.Context(), "desktop", ra.op, t)

	// The socket's reads and writes must not use ctx: coder/websocket
	// closes the connection, with no close frame, when the context of a
	// pending Read or Write ends, and the page would never learn why the
	// session ended (an admin terminated it, the sign-in expired). They
	// use wctx, which outlives ctx by closeGrace: long enough for the
	// close handshake, and a browser that reads nothing for that long is
	// cut off.
	wctx, wcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer wcancel()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.NewTimer(closeGrace)
		defer t.Stop()
		select {
		case <-t.C:
			wcancel()
		case <-wctx.Done():
		}
	})
	defer stopGrace()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		// Browser → session.
		defer wg.Done()
		defer cancel()
		for {
			typ, rd, err := ws.Reader(wctx)
			if err != nil {
				return
			}
			if typ != websocket.MessageBinary {
				why.set(websocket.StatusUnsupportedData, "The page sent text where the desktop takes binary messages.")
				return
			}
			// One byte past the limit tells a message too big, closed
			// below with 1009 and the page's reason: past its own read
			// limit coder/websocket would close with a reason of its own
			// ("read limited at …") before this could say why.
			b, err := io.ReadAll(io.LimitReader(rd, remoteReadLimit+1))
			if err != nil {
				return
			}
			if len(b) > remoteReadLimit {
				why.set(websocket.StatusMessageTooBig, "A message from the page was larger than the gateway takes (256 KiB).")
				return
			}
			if _, err := ls.Write(b); err != nil {
				return
			}
		}
	}()
	// Session → browser.
	buf := make([]byte, 32<<10)
	for {
		n, err := ls.Read(buf)
		if n > 0 {
			if werr := ws.Write(wctx, websocket.MessageBinary, buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			if ctx.Err() == nil {
				why.set(closeEnded, endedMessage(ls))
			}
			break
		}
	}
	cancel()
	ls.Close()
	code, reason := why.get()
	if reason == "" {
		code, reason = closeEnded, endedMessage(ls)
	}
	// Close's handshake ends the reader's Read (or, past its own
	// timeout, the connection does).
	_ = ws.Close(code, truncReason(reason))
	wg.Wait()
	c.endRecording(rec, "")
}

// terminalSocket runs a terminal: the gateway is the SSH client.
func (c *Console) terminalSocket(w http.ResponseWriter, r *http.Request) {
	ws, t, ra, ok := c.remoteSocket(w, r, wire.KindSSH)
	if !ok {
		return
	}
	defer ws.CloseNow()
	ctx, cancel, why := c.remoteContext(r, ra)
	defer cancel()

	var ls *relay.LocalSession
	var rec *recordingRun
	rs, err := LoadRemoteSettings(r.Context(), c.Store)
	if err != nil {
		rs = RemoteSettings{RecordTerminals: true, RetentionDays: DefaultRetentionDays}
	}
	opts := terminal.Options{
		Client: t.info.Name, Service: t.service, Logger: c.Logger,
		HostKeys: hostKeys{c: c, keyID: t.info.KeyID},
		OnHostKeyRefused: func(fingerprint, pinned string) {
			ev := event.HostKeyRefused(ra.op.Name, t.info.Name, t.service, fingerprint, pinned, remoteIP(r))
			ev.Time = c.now()
			c.Events.Emit(ev)
		},
		EndMessage: func() string {
			if _, reason := why.get(); reason != "" {
				return reason
			}
			if ls != nil {
				if by := ls.EndedBy(); by != "" {
					return "Session ended by admin " + by + "."
				}
			}
			return ""
		},
	}
	if rs.RecordTerminals && c.RecordDir != "" {
		opts.Record = func(cols, rows int) (*recording.Writer, error) {
			rec = c.startRecording(r.Context(), "terminal", ra.op, t)
			if rec == nil {
				return nil, errors.New("the recording could not be started")
			}
			if err := os.MkdirAll(c.RecordDir, 0o700); err != nil {
				return nil, err
			}
			rec.path = filepath.Join(c.RecordDir, fmt.Sprintf("%d.cast", rec.id))
			rec.w, err = recording.Create(rec.path, recording.Header{Width: cols, Height: rows, Timestamp: c.now(),
				Title: "console:" + ra.op.Name + " → " + t.info.Name + "/" + t.service})
			return rec.w, err
		}
	}
	dial := func(ctx context.Context) (net.Conn, error) {
		s, err := c.connectLocal(ctx, r, ra.op, t)
		if err != nil {
			return nil, errors.New(refusal(err))
		}
		ls = s
		// The relay session ending (terminated, the Client gone) ends
		// the terminal.
		return s, nil
	}
	res, err := terminal.Serve(ctx, ws, dial, opts)
	if err != nil && c.Logger != nil {
		c.Logger.Debug("console: terminal ended", "client", t.info.Name, "service", t.service, "err", err)
	}
	if ls != nil {
		ls.Close()
	}
	if rec == nil && !res.Started.IsZero() {
		// Not recorded (turned off, or no directory to write to): who,
		// when and how long still are, from when the shell started, as
		// a recorded terminal's row is.
		rec = c.startRecordingAt(r.Context(), "terminal", ra.op, t, res.Started)
	}
	c.endRecording(rec, res.User)
}

// hostKeys pins SSH host keys per Client (name and key) and service.
type hostKeys struct {
	c     *Console
	keyID string
}

func (h hostKeys) Pinned(ctx context.Context, client, service string) ([]byte, bool, error) {
	if h.c.Remote == nil {
		return nil, false, errors.New("no store for host keys")
	}
	k, ok, err := h.c.Remote.PinnedHostKey(ctx, client, h.keyID, service)
	return k.Key, ok, err
}

func (h hostKeys) Pin(ctx context.Context, client, service string, key []byte, fingerprint string) error {
	if h.c.Remote == nil {
		return errors.New("no store for host keys")
	}
	if err := h.c.Remote.PinHostKey(ctx, db.HostKey{Client: client, KeyID: h.keyID, Service: service, Key: key, Fingerprint: fingerprint}); err != nil {
		return err
	}
	// The first pin wins: another terminal (another node) may have pinned
	// another key at the same moment, and then this one is not trusted.
	got, ok, err := h.c.Remote.PinnedHostKey(ctx, client, h.keyID, service)
	if err != nil {
		return err
	}
	if !ok || !bytes.Equal(got.Key, key) {
		return fmt.Errorf("another host key (%s) was pinned for %s/%s at the same moment: refusing this one", got.Fingerprint, client, service)
	}
	return nil
}

// recordingRun is a browser session's row in recordings while it runs.
type recordingRun struct {
	id   int64
	w    *recording.Writer
	path string
}

func (c *Console) startRecording(ctx context.Context, kind string, op db.Operator, t remoteTarget) *recordingRun {
	return c.startRecordingAt(ctx, kind, op, t, c.now())
}

// startRecordingAt is startRecording of a session that started at started.
func (c *Console) startRecordingAt(ctx context.Context, kind string, op db.Operator, t remoteTarget, started time.Time) *recordingRun {
	if c.Remote == nil {
		return nil
	}
	id, err := c.Remote.StartRecording(ctx, db.Recording{Kind: kind, Operator: op.Name, Client: t.info.Name,
		Service: t.service, Node: t.info.Node, Started: started})
	if err != nil {
		c.Logger.Warn("console: cannot record a browser session", "err", err)
		return nil
	}
	return &recordingRun{id: id}
}

// endRecording stores the session's end and, for a recorded terminal, its
// asciicast (gzip) in the row; the file is removed once stored.
func (c *Console) endRecording(rec *recordingRun, sshUser string) {
	if rec == nil || c.Remote == nil {
		return
	}
	var gz []byte
	var size int64
	if rec.w != nil {
		if _, n, err := rec.w.Close(); err == nil {
			size = n
		}
		if b, err := gzipFile(rec.path); err == nil {
			gz = b
		} else {
			c.Logger.Warn("console: cannot store a terminal recording", "file", rec.path, "err", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Remote.EndRecording(ctx, rec.id, c.now(), sshUser, gz, size); err != nil {
		c.Logger.Warn("console: cannot store a browser session's end", "err", err)
		return
	}
	if rec.path != "" && gz != nil {
		_ = os.Remove(rec.path)
	}
}

func gzipFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := io.Copy(zw, f); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// truncReason fits a close reason in a control frame (123 bytes), cut at
// a rune boundary, with room for the ellipsis's 3 bytes.
func truncReason(s string) string {
	if len(s) <= 123 {
		return s
	}
	i := 120
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// remoteContext is a remote session's context: it ends with the request,
// when the gateway stops, or when the console session stops admitting
// the operator (why then says so).
func (c *Console) remoteContext(r *http.Request, ra remoteAuth) (context.Context, context.CancelFunc, *reasonBox) {
	ctx, cancel := context.WithCancel(r.Context())
	c.cancelOnStop(ctx, cancel)
	why := &reasonBox{}
	go c.watchSignin(ctx, cancel, ra, why)
	return ctx, cancel, why
}

// cancelOnStop cancels a remote session's ctx when the gateway stops; the
// goroutine ends with ctx.
func (c *Console) cancelOnStop(ctx context.Context, cancel context.CancelFunc) {
	if c.Stopping == nil {
		return
	}
	go func() {
		select {
		case <-c.Stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
}

// recordingsPage lists browser sessions (admins).
func (c *Console) recordingsPage(w http.ResponseWriter, r *http.Request) {
	if c.Remote == nil {
		c.fail(w, r, &Error{Status: http.StatusNotFound, Message: "This gateway keeps no recordings."})
		return
	}
	rs, err := c.Remote.Recordings(r.Context(), 500)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := web.RecordingsView{Now: c.now()}
	for _, x := range rs {
		v.Rows = append(v.Rows, web.RecordingRow{ID: x.ID, Kind: x.Kind, Operator: x.Operator, Client: x.Client,
			Service: x.Service, Node: x.Node, User: x.SSHUser, Started: x.Started, Ended: x.Ended, HasCast: x.CastBytes > 0})
	}
	c.page(w, r, "Recordings", "recordings", "", web.RecordingsPage(v))
}

func recordingID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, &Error{Status: http.StatusNotFound, Message: "There is no such recording."}
	}
	return id, nil
}

// recordingPage replays a terminal recording.
func (c *Console) recordingPage(w http.ResponseWriter, r *http.Request) {
	id, err := recordingID(r)
	if err == nil && c.Remote == nil {
		err = &Error{Status: http.StatusNotFound, Message: "There is no such recording."}
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	x, gz, err := c.Remote.RecordingCast(r.Context(), id)
	if errors.Is(err, db.ErrNotFound) || (err == nil && gz == nil) {
		err = &Error{Status: http.StatusNotFound, Message: "There is no recording of that session (a desktop, one not recorded, or one past its retention)."}
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	// asciinema-player's terminal is WebAssembly: this page alone may
	// compile it ('wasm-unsafe-eval' allows no JavaScript eval).
	w.Header().Set("Content-Security-Policy", strings.Replace(consoleCSP, "script-src 'self'", "script-src 'self' 'wasm-unsafe-eval'", 1))
	v := web.RecordingRow{ID: x.ID, Kind: x.Kind, Operator: x.Operator, Client: x.Client, Service: x.Service,
		Node: x.Node, User: x.SSHUser, Started: x.Started, Ended: x.Ended, HasCast: true}
	c.page(w, r, fmt.Sprintf("Recording %d", id), "recordings", "", web.RecordingPage(v, c.remoteAssets("recording")))
}

// recordingCast serves a recording's asciicast for the player.
func (c *Console) recordingCast(w http.ResponseWriter, r *http.Request) {
	id, err := recordingID(r)
	if err != nil || c.Remote == nil {
		http.NotFound(w, r)
		return
	}
	_, gz, err := c.Remote.RecordingCast(r.Context(), id)
	if err != nil || gz == nil {
		http.NotFound(w, r)
		return
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		http.Error(w, "the recording is damaged", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-asciicast")
	_, _ = io.Copy(w, zr)
}

// clearHostKey forgets a pinned SSH host key (admins).
func (c *Console) clearHostKey(w http.ResponseWriter, r *http.Request) {
	name, service := chi.URLParam(r, "name"), chi.URLParam(r, "service")
	keyID := r.FormValue("key")
	if c.Remote == nil {
		c.fail(w, r, &Error{Status: http.StatusNotFound, Message: "This gateway pins no host keys."})
		return
	}
	if err := c.Remote.ClearHostKey(r.Context(), name, keyID, service); err != nil {
		c.fail(w, r, err)
		return
	}
	ev := event.HostKeyCleared(operatorOf(r).Name, name, service)
	ev.Time, ev.PublicIP = c.now(), remoteIP(r)
	c.Events.Emit(ev)
	http.Redirect(w, r, web.ClientURL(name, keyID), http.StatusSeeOther)
}

// SweepRecordings deletes the recordings past the retention setting; the
// gateway runs it hourly.
func SweepRecordings(ctx context.Context, st signin.SettingsStore, rs RemoteStore, now time.Time) (int64, error) {
	set, err := LoadRemoteSettings(ctx, st)
	if err != nil {
		return 0, err
	}
	return rs.DeleteRecordingsBefore(ctx, now.Add(-time.Duration(set.RetentionDays)*24*time.Hour))
}

// remoteAssets are the vendored libraries and the script of a remote page:
// "vnc" (noVNC), "ssh" (xterm.js) or "recording" (asciinema-player).
func (c *Console) remoteAssets(page string) web.PageAssets {
	if c.Asset == nil {
		return web.PageAssets{}
	}
	switch page {
	case wire.KindVNC:
		return web.PageAssets{Modules: []string{c.Asset("remote-desktop.js")}}
	case wire.KindSSH:
		// The page's script imports xterm.js and its fit addon itself.
		return web.PageAssets{Styles: []string{c.Asset("vendor/xterm-6.0.0/xterm.css")},
			Modules: []string{c.Asset("remote-terminal.js")}}
	default:
		return web.PageAssets{Styles: []string{c.Asset("vendor/asciinema-player-3.18.0/asciinema-player.css")},
			Modules: []string{c.Asset("recording.js")}}
	}
}

// RecoverRecordings stores the terminal recordings a gateway that died
// mid-session left in dir (named <id>.cast, see terminalSocket): the row
// is ended at the file's last write, and the file removed once stored.
// The gateway runs it at start.
func RecoverRecordings(ctx context.Context, rs RemoteStore, dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		idText, ok := strings.CutSuffix(e.Name(), ".cast")
		id, perr := strconv.ParseInt(idText, 10, 64)
		if !ok || perr != nil || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		x, gz, err := rs.RecordingCast(ctx, id)
		if errors.Is(err, db.ErrNotFound) || (err == nil && gz != nil) {
			// Deleted by retention, or stored before the file could be
			// removed.
			_ = os.Remove(path)
			continue
		}
		if err != nil {
			return n, err
		}
		info, err := e.Info()
		if err != nil {
			return n, err
		}
		if gz, err = gzipFile(path); err != nil {
			return n, err
		}
		if err := rs.EndRecording(ctx, id, info.ModTime(), x.SSHUser, gz, info.Size()); err != nil {
			return n, err
		}
		_ = os.Remove(path)
		n++
	}
	return n, nil
}
