package handlers

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alexedwards/scs/pgxstore"
	"github.com/alexedwards/scs/v2"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/internal/auth/password"
	"github.com/switchboard/switchboard/internal/auth/signin"
	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/static"
	"github.com/switchboard/switchboard/web"
)

// liveDeadline bounds every wait on a stream: generous, since it only
// decides when a test gives up.
const liveDeadline = 20 * time.Second

// busyRelay is a relay whose Clients list changes on every look, so a
// Clients stream sends it on every tick: live data keeps flowing.
type busyRelay struct{ v atomic.Uint64 }

func (r *busyRelay) Clients() []relay.ClientInfo {
	var c relay.ClientInfo
	c.Name = "pc-live"
	return []relay.ClientInfo{c}
}
func (r *busyRelay) Sessions() []relay.SessionInfo          { return nil }
func (r *busyRelay) TerminateSessionBy(string, string) bool { return false }
func (r *busyRelay) Version() uint64                        { return r.v.Add(1) }
func (r *busyRelay) Stats() relay.Stats                     { return relay.Stats{Clients: 1} }

type liveConsole struct {
	store  *db.DB
	base   string
	client *http.Client // root's browser, signed in; its tabs share the cookie
}

// liveServer serves the real console routes on a real database, with the
// session lifetime and idle timeout given (zero keeps the gateway's 12 h
// and 30 min) and live streams that re-check their session every 50 ms.
// root, signed in, and spare are admins: root can lose the role or be
// disabled without leaving the gateway with no admin.
func liveServer(t *testing.T, lifetime, idle time.Duration) liveConsole {
	t.Helper()
	store := pgtest.MustDB(t)
	ctx := context.Background()
	hash, err := password.Hash("admin password 123")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"root", "spare"} {
		if _, err := store.AddOperator(ctx, db.Operator{Name: name, PasswordHash: hash, Role: db.RoleAdmin}); err != nil {
			t.Fatal(err)
		}
	}
	assets, err := static.New()
	if err != nil {
		t.Fatal(err)
	}
	sessions := scs.New()
	sessions.Store = pgxstore.NewWithCleanupInterval(store.Pool(), 0)
	sessions.Lifetime, sessions.IdleTimeout = 12*time.Hour, 30*time.Minute
	if lifetime > 0 {
		sessions.Lifetime = lifetime
	}
	if idle > 0 {
		sessions.IdleTimeout = idle
	}
	sessions.Cookie.Name = "switchboard_console"
	h := &Handlers{Relay: relay.New(relay.Config{}), Logger: slog.New(slog.DiscardHandler), Static: assets,
		Console: &Console{
			Relay: &busyRelay{}, Store: store, Sessions: sessions, Asset: assets.URL,
			Signin: signin.New(signin.Config{Store: store}),
			Config: &fixedConfig{config.Config{Listen: []string{":443"}, CMPI: time.Minute, LogDir: "/tmp", LogMaxKB: 1, ServerRole: config.RoleStandalone}},
			Events: event.SinkFunc(func(event.Event) {}), Logger: slog.New(slog.DiscardHandler),
			LiveCheck: 50 * time.Millisecond,
		}}
	stopping := make(chan struct{})
	h.Console.Stopping = stopping
	srv := httptest.NewServer(h.Routes())
	t.Cleanup(srv.Close)
	// Runs before srv.Close, which waits for open streams to end.
	t.Cleanup(func() { close(stopping) })
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	resp, err := client.PostForm(srv.URL+"/console/signin", url.Values{"name": {"root"}, "password": {"admin password 123"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "clients-table") {
		t.Fatalf("sign-in did not reach the Clients page: %d", resp.StatusCode)
	}
	return liveConsole{store: store, base: srv.URL, client: client}
}

type sseRecord struct{ name, data string }

// sseStream reads one event stream the way an EventSource would.
type sseStream struct {
	events chan sseRecord // in order; closed when the stream ends
}

func openStream(t *testing.T, client *http.Client, u string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		resp.Body.Close()
		t.Fatalf("%s: %d %s", u, resp.StatusCode, ct)
	}
	s := &sseStream{events: make(chan sseRecord, 4096)}
	go func() {
		defer resp.Body.Close()
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		var ev sseRecord
		var data []string
		for sc.Scan() {
			switch line := sc.Text(); {
			case line == "":
				if ev.name != "" {
					ev.data = strings.Join(data, "\n")
					s.events <- ev
				}
				ev, data = sseRecord{}, nil
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = append(data, strings.TrimPrefix(line, "data: "))
			}
		}
	}()
	return s
}

// waitLive waits for the Clients list to arrive over s: live data flows.
func (s *sseStream) waitLive(t *testing.T) {
	t.Helper()
	s.waitFor(t, "clients", "pc-live")
}

// waitFor waits for an event called name whose data holds want.
func (s *sseStream) waitFor(t *testing.T, name, want string) {
	t.Helper()
	deadline := time.After(liveDeadline)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatalf("the stream ended before sending %s", name)
			}
			if ev.name == name && strings.Contains(ev.data, want) {
				return
			}
			if ev.name == web.LiveEnd {
				t.Fatalf("the stream was ended: %s", ev.data)
			}
		case <-deadline:
			t.Fatalf("no %s event within the deadline", name)
		}
	}
}

// waitEnd waits for s to end and returns every event since the last
// call, calling meanwhile, if not nil, every 200 ms: the operator busy in
// another tab.
func (s *sseStream) waitEnd(t *testing.T, meanwhile func()) []sseRecord {
	t.Helper()
	deadline := time.After(liveDeadline)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var got []sseRecord
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				return got
			}
			got = append(got, ev)
		case <-tick.C:
			if meanwhile != nil {
				meanwhile()
			}
		case <-deadline:
			t.Fatalf("the stream is still open after %v; last events: %v", liveDeadline, tail(got))
		}
	}
}

// open reports whether s is still open, taking the events it has sent.
func (s *sseStream) open(t *testing.T) bool {
	t.Helper()
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				return false
			}
			if ev.name == web.LiveEnd {
				t.Errorf("the stream sent %s", web.LiveEnd)
			}
		default:
			return true
		}
	}
}

func tail(evs []sseRecord) []sseRecord {
	return evs[max(0, len(evs)-3):]
}

// clientsStream and clientsNext are a Clients stream's URL and where its
// end sends the page.
const clientsStream = "/console/clients/stream?q=pc&sort=name"

var clientsNext = "/console/signin?next=" + url.QueryEscape("/console/clients?q=pc&sort=name")

// endedWithSignIn checks that a stream's last event sends the page to
// sign-in, to come back to the Clients page.
func endedWithSignIn(t *testing.T, evs []sseRecord) {
	t.Helper()
	if len(evs) == 0 {
		t.Fatal("the stream ended without telling the page")
	}
	if last := evs[len(evs)-1]; last.name != web.LiveEnd || last.data != clientsNext {
		t.Fatalf("last event %q %q, want %q %q", last.name, last.data, web.LiveEnd, clientsNext)
	}
}

// refusedAgain checks what an EventSource reconnecting with the same
// cookie gets: the sign-in event alone, and the end of the stream.
func refusedAgain(t *testing.T, client *http.Client, base string) {
	t.Helper()
	evs := openStream(t, client, base+clientsStream).waitEnd(t, nil)
	if len(evs) != 1 || evs[0].name != web.LiveEnd || evs[0].data != clientsNext {
		t.Fatalf("a reconnected stream got %v", tail(evs))
	}
}

// landsOnSignIn checks that the next page request finds no session.
func landsOnSignIn(t *testing.T, client *http.Client, u string) {
	t.Helper()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/console/signin" {
		t.Fatalf("%s ended at %s, want the sign-in page", u, resp.Request.URL)
	}
}

// TestLiveStreamEndsOnSignOutElsewhere: signing out in one tab ends the
// live Clients list of another.
func TestLiveStreamEndsOnSignOutElsewhere(t *testing.T) {
	t.Parallel()
	lc := liveServer(t, 0, 0)
	s := openStream(t, lc.client, lc.base+clientsStream)
	s.waitLive(t)
	resp, err := lc.client.PostForm(lc.base+"/console/signout", url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/console/signin" {
		t.Fatalf("sign-out ended at %s", resp.Request.URL)
	}
	endedWithSignIn(t, s.waitEnd(t, nil))
	refusedAgain(t, lc.client, lc.base)
}

// TestLiveStreamEndsOnIdleTimeout: an open stream is no activity, so a
// console left on a live page times out; requests in another tab are
// activity and keep it open until they stop.
func TestLiveStreamEndsOnIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = 2 * time.Second
	lc := liveServer(t, 0, idle)
	s := openStream(t, lc.client, lc.base+clientsStream)
	s.waitLive(t)
	for start := time.Now(); time.Since(start) < idle*3/2; time.Sleep(idle / 8) {
		if _, code := getPage(t, lc.client, lc.base+"/console/account"); code != http.StatusOK {
			t.Fatalf("the account page, while active: %d", code)
		}
		if !s.open(t) {
			t.Fatal("the stream ended while the operator was active in another tab")
		}
	}
	endedWithSignIn(t, s.waitEnd(t, nil))
	// The session timed out for every tab: the stream kept nothing alive.
	landsOnSignIn(t, lc.client, lc.base+"/console/clients")
	refusedAgain(t, lc.client, lc.base)
}

// TestLiveStreamEndsAtSessionLifetime: the absolute lifetime ends a stream
// however active the operator is.
func TestLiveStreamEndsAtSessionLifetime(t *testing.T) {
	t.Parallel()
	lc := liveServer(t, 4*time.Second, 0)
	s := openStream(t, lc.client, lc.base+clientsStream)
	s.waitLive(t)
	endedWithSignIn(t, s.waitEnd(t, func() { getPage(t, lc.client, lc.base+"/console/account") }))
	landsOnSignIn(t, lc.client, lc.base+"/console/clients")
	refusedAgain(t, lc.client, lc.base)
}

// TestLiveStreamEndsWhenOperatorDisabled: disabling the operator ends
// their stream and their session.
func TestLiveStreamEndsWhenOperatorDisabled(t *testing.T) {
	t.Parallel()
	lc := liveServer(t, 0, 0)
	s := openStream(t, lc.client, lc.base+clientsStream)
	s.waitLive(t)
	if err := lc.store.UpdateOperator(context.Background(), "root", "", db.RoleAdmin, true); err != nil {
		t.Fatal(err)
	}
	endedWithSignIn(t, s.waitEnd(t, nil))
	var n int
	if err := lc.store.Pool().QueryRow(context.Background(), "SELECT count(*) FROM sessions").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d sessions left after the stream saw its operator disabled", n)
	}
	refusedAgain(t, lc.client, lc.base)
}

// TestLiveStreamEndsWhenAdminRoleRemoved: an operator who is no longer an
// admin loses the admin pages' live data, though still signed in.
func TestLiveStreamEndsWhenAdminRoleRemoved(t *testing.T) {
	t.Parallel()
	lc := liveServer(t, 0, 0)
	s := openStream(t, lc.client, lc.base+clientsStream)
	s.waitLive(t)
	if err := lc.store.UpdateOperator(context.Background(), "root", "", db.RoleOperator, false); err != nil {
		t.Fatal(err)
	}
	endedWithSignIn(t, s.waitEnd(t, nil))
	refusedAgain(t, lc.client, lc.base)
	if _, code := getPage(t, lc.client, lc.base+"/console/account"); code != http.StatusOK {
		t.Errorf("the account page of the signed-in operator: %d", code)
	}
}

// TestLiveStreamsAdmitOnlyAdmins: every live stream answers a browser
// with no session, or a non-admin's, with the sign-in event alone.
func TestLiveStreamsAdmitOnlyAdmins(t *testing.T) {
	t.Parallel()
	lc := liveServer(t, 0, 0)
	hash, err := password.Hash("operator password 1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lc.store.AddOperator(context.Background(), db.Operator{Name: "olga", PasswordHash: hash, Role: db.RoleOperator}); err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	olga := &http.Client{Jar: jar}
	resp, err := olga.PostForm(lc.base+"/console/signin", url.Values{"name": {"olga"}, "password": {"operator password 1"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/console/account" {
		t.Fatalf("olga's sign-in ended at %s", resp.Request.URL)
	}
	for _, path := range []string{"/console/clients/stream", "/console/sessions/stream", "/console/events/stream?after=0"} {
		for who, client := range map[string]*http.Client{"nobody": {}, "olga": olga} {
			evs := openStream(t, client, lc.base+path).waitEnd(t, nil)
			if len(evs) != 1 || evs[0].name != web.LiveEnd || !strings.HasPrefix(evs[0].data, "/console/signin?next=") {
				t.Errorf("%s, %s: %v", path, who, tail(evs))
			}
		}
	}
	// The admin's are open and live.
	openStream(t, lc.client, lc.base+"/console/sessions/stream").waitFor(t, "sessions", "No session is active.")
	events := openStream(t, lc.client, lc.base+"/console/events/stream?after=0")
	if err := lc.store.InsertEvents(context.Background(), []event.Event{{Time: time.Now(), Kind: event.KindSecurity, Message: "a live event"}}); err != nil {
		t.Fatal(err)
	}
	events.waitFor(t, "events", "a live event")
	body, _ := getPage(t, lc.client, lc.base+"/console/clients")
	if !strings.Contains(body, `sse-close="`+web.LiveEnd+`"`) || !strings.Contains(body, "/live.js") {
		t.Errorf("the Clients page does not act on %s", web.LiveEnd)
	}
}
