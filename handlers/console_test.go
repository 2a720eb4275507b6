package handlers

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
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
)

type fixedConfig struct{ c config.Config }

func (f *fixedConfig) Config(context.Context) (config.Config, error)       { return f.c, nil }
func (f *fixedConfig) SaveConfig(_ context.Context, c config.Config) error { f.c = c; return nil }

// consoleServer serves the real console routes on a real database with a
// signed-in admin client.
func consoleServer(t *testing.T) (*db.DB, *http.Client, string) {
	t.Helper()
	store := pgtest.MustDB(t)
	ctx := context.Background()
	hash, err := password.Hash("admin password 123")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.AddOperator(ctx, db.Operator{Name: "root", PasswordHash: hash, Role: db.RoleAdmin}); err != nil {
		t.Fatal(err)
	}
	assets, err := static.New()
	if err != nil {
		t.Fatal(err)
	}
	sessions := scs.New()
	sessions.Store = pgxstore.NewWithCleanupInterval(store.Pool(), 0)
	stopping := make(chan struct{})
	t.Cleanup(func() { close(stopping) })
	h := &Handlers{Relay: relay.New(relay.Config{}), Logger: slog.New(slog.DiscardHandler), Static: assets,
		Console: &Console{
			Relay: relay.New(relay.Config{}), Store: store, Sessions: sessions, Asset: assets.URL,
			Signin: signin.New(signin.Config{Store: store}),
			Config: &fixedConfig{config.Config{Listen: []string{":443"}, CMPI: time.Minute, LogDir: "/tmp", LogMaxKB: 1, ServerRole: config.RoleStandalone}},
			Events: event.SinkFunc(func(event.Event) {}), Logger: slog.New(slog.DiscardHandler), Stopping: stopping,
		}}
	srv := httptest.NewServer(h.Routes())
	t.Cleanup(srv.Close)
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
	return store, client, srv.URL
}

var eventIDs = regexp.MustCompile(`data-event="(\d+)"`)

func getPage(t *testing.T, client *http.Client, u string) (string, int) {
	t.Helper()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode
}

func TestEventsPagingAndFilters(t *testing.T) {
	store, client, base := consoleServer(t)
	// 6,000 events: clients pc-0 … pc-9, every third a security event.
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.Local)
	var evs []event.Event
	for i := range 6000 {
		kind := event.KindClientConnect
		if i%3 == 0 {
			kind = event.KindSecurity
		}
		evs = append(evs, event.Event{Time: start.Add(time.Duration(i) * time.Second), Kind: kind,
			Message: fmt.Sprintf("event %d", i), Client: fmt.Sprintf("pc-%d", i%10)})
	}
	if err := store.InsertEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}

	t.Run("paging through a filter visits every match once, newest first", func(t *testing.T) {
		// kind=security and client=pc-3: i%3==0 and i%10==3, i.e. i%30==3.
		u := base + "/console/events?kind=security&client=pc-3"
		var seen []int64
		for pages := 0; u != ""; pages++ {
			if pages > 20 {
				t.Fatal("paging does not end")
			}
			body, code := getPage(t, client, u)
			if code != http.StatusOK {
				t.Fatalf("%s: %d", u, code)
			}
			if pages == 0 && !strings.Contains(body, "200 events") {
				t.Errorf("first page does not report 200 matching events")
			}
			for _, m := range eventIDs.FindAllStringSubmatch(body, -1) {
				id, _ := strconv.ParseInt(m[1], 10, 64)
				seen = append(seen, id)
			}
			u = ""
			if m := regexp.MustCompile(`href="(/console/events\?[^"]*before=\d+[^"]*)"`).FindStringSubmatch(body); m != nil {
				u = base + strings.ReplaceAll(m[1], "&amp;", "&")
			}
		}
		if len(seen) != 200 {
			t.Fatalf("visited %d events, want 200", len(seen))
		}
		for i := 1; i < len(seen); i++ {
			if seen[i] >= seen[i-1] {
				t.Fatalf("not newest first, or repeated: %d then %d", seen[i-1], seen[i])
			}
		}
	})
	t.Run("a time range selects exactly its events", func(t *testing.T) {
		since := start.Add(100 * time.Second).Format(datetimeLocal)
		until := start.Add(110 * time.Second).Format(datetimeLocal)
		body, _ := getPage(t, client, base+"/console/events?since="+url.QueryEscape(since)+"&until="+url.QueryEscape(until))
		// Minute resolution: 12:01:00 to 12:01:00 is empty; widen to a minute.
		if n := len(eventIDs.FindAllString(body, -1)); n != 0 {
			t.Errorf("an empty range shows %d events", n)
		}
		until = start.Add(2 * time.Minute).Format(datetimeLocal)
		body, _ = getPage(t, client, base+"/console/events?since="+url.QueryEscape(since)+"&until="+url.QueryEscape(until))
		if !strings.Contains(body, "60 events") {
			t.Errorf("12:01 to 12:02 should hold 60 events")
		}
	})
	t.Run("bad filters are refused with a message", func(t *testing.T) {
		for _, q := range []string{"kind=nonsense", "since=yesterday", "before=-4"} {
			body, code := getPage(t, client, base+"/console/events?"+q)
			if code != http.StatusBadRequest || !strings.Contains(body, "flash error") {
				t.Errorf("%s: %d", q, code)
			}
		}
	})
	t.Run("signed-out requests go to the sign-in page", func(t *testing.T) {
		resp, err := http.Get(base + "/console/events")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if !strings.HasSuffix(resp.Request.URL.Path, "/console/signin") {
			t.Errorf("ended at %s", resp.Request.URL)
		}
	})
}

func TestClientsPagingSearchAndSort(t *testing.T) {
	var all []relay.ClientInfo
	now := time.Now()
	for i := range 10_000 {
		c := relay.ClientInfo{KeyID: "k", KeyLabel: "site " + strconv.Itoa(i%4)}
		c.Name = fmt.Sprintf("pc-%05d", i)
		c.RealIP = fmt.Sprintf("10.0.%d.%d", i/250, i%250)
		c.ConnectedSince = now.Add(-time.Duration(i) * time.Second)
		c.Services = []string{"ssh"}
		if i%100 == 0 {
			c.Services = append(c.Services, "vnc")
		}
		all = append(all, c)
	}
	tests := []struct {
		name            string
		q               clientsQuery
		total, page     int
		first, last     string
		rows, pageCount int
	}{
		{"the first page of everything", clientsQuery{sort: "name", page: 1}, 10_000, 1, "pc-00000", "pc-00049", 50, 200},
		{"the last page", clientsQuery{sort: "name", page: 200}, 10_000, 200, "pc-09950", "pc-09999", 50, 200},
		{"a page past the end shows the last", clientsQuery{sort: "name", page: 999}, 10_000, 200, "pc-09950", "pc-09999", 50, 200},
		{"descending by name", clientsQuery{sort: "name", desc: true, page: 1}, 10_000, 1, "pc-09999", "pc-09950", 50, 200},
		{"a search on a service", clientsQuery{q: "VNC", sort: "name", page: 2}, 100, 2, "pc-05000", "pc-09900", 50, 2},
		{"oldest connection first", clientsQuery{sort: "since", page: 1}, 10_000, 1, "pc-09999", "pc-09950", 50, 200},
		{"a search with no match", clientsQuery{q: "nowhere", sort: "name"}, 0, 1, "", "", 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := clientsView(all, tt.q, now)
			if v.Total != tt.total || v.Page != tt.page || len(v.Rows) != tt.rows || v.Pages != tt.pageCount {
				t.Fatalf("total %d page %d/%d rows %d", v.Total, v.Page, v.Pages, len(v.Rows))
			}
			if tt.rows > 0 && (v.Rows[0].Name != tt.first || v.Rows[len(v.Rows)-1].Name != tt.last) {
				t.Fatalf("rows %s … %s, want %s … %s", v.Rows[0].Name, v.Rows[len(v.Rows)-1].Name, tt.first, tt.last)
			}
		})
	}
}

func BenchmarkClientsView10k(b *testing.B) {
	var all []relay.ClientInfo
	for i := range 10_000 {
		c := relay.ClientInfo{}
		c.Name = fmt.Sprintf("pc-%05d", i)
		all = append(all, c)
	}
	for b.Loop() {
		clientsView(all, clientsQuery{q: "pc-0", sort: "name", page: 3}, time.Now())
	}
}

// TestOperatorWithoutAdminRole: an operator who is not an admin signs in to
// their Account page and nothing else.
func TestOperatorWithoutAdminRole(t *testing.T) {
	store, _, base := consoleServer(t)
	hash, err := password.Hash("operator password 1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.AddOperator(context.Background(), db.Operator{Name: "olga", PasswordHash: hash, Role: db.RoleOperator}); err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	resp, err := client.PostForm(base+"/console/signin", url.Values{"name": {"olga"}, "password": {"operator password 1"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Request.URL.Path != "/console/account" || !strings.Contains(string(body), "Set up an authenticator app") {
		t.Fatalf("landed on %s:\n%s", resp.Request.URL.Path, body)
	}
	if strings.Contains(string(body), "/console/config/general") {
		t.Error("a non-admin sees the administration links")
	}
	for _, path := range []string{"/console/clients", "/console/events", "/console/config/2fa"} {
		if _, code := getPage(t, client, base+path); code != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", path, code)
		}
	}

	// Enrolling an authenticator app asks for the password again.
	start := func(pw string) string {
		resp, err := client.PostForm(base+"/console/account/totp/start", url.Values{"password": {pw}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b)
	}
	if body := start("not my password"); !strings.Contains(body, "That is not your password") {
		t.Errorf("a wrong password started an enrolment:\n%s", body)
	}
	if _, code := getPage(t, client, base+"/console/account/totp/qr.png"); code != http.StatusNotFound {
		t.Errorf("QR code without an enrolment: %d", code)
	}
	if body := start("operator password 1"); !strings.Contains(body, "totp-qr") {
		t.Errorf("the right password did not start an enrolment:\n%s", body)
	}
	if _, code := getPage(t, client, base+"/console/account/totp/qr.png"); code != http.StatusOK {
		t.Errorf("QR code during an enrolment: %d", code)
	}
}

// TestTwoFASettingsKeepTheSecret: the Duo secret key is stored but never
// shown again, and saving the form without it keeps it.
func TestTwoFASettingsKeepTheSecret(t *testing.T) {
	store, client, base := consoleServer(t)
	form := url.Values{"token_ttl": {"30"}, "duo_timeout": {"45"}, "duo_ikey": {"DIABCDEFGHIJKLMNOPQR"},
		"duo_skey": {"the-duo-secret-key-0123456789"}, "duo_host": {"api-test.duosecurity.com"}, "require_all": {"1"}}
	page := func() string {
		body, code := getPage(t, client, base+"/console/config/2fa")
		if code != http.StatusOK {
			t.Fatalf("2fa tab: %d", code)
		}
		return body
	}
	post := func(f url.Values) {
		resp, err := client.PostForm(base+"/console/config/2fa", f)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	post(form)
	if body := page(); strings.Contains(body, "the-duo-secret-key") || !strings.Contains(body, "stored; leave empty to keep it") {
		t.Errorf("the 2FA tab shows the secret or not that one is stored")
	}
	form.Set("duo_skey", "")
	form.Set("duo_timeout", "60")
	post(form)
	set, err := signin.LoadSettings(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	if set.DuoSecretKey != "the-duo-secret-key-0123456789" || !set.Require2FA || set.TokenTTL != 30*time.Minute || set.DuoTimeout != time.Minute {
		t.Errorf("settings = require %v ttl %v timeout %v secret kept %v", set.Require2FA, set.TokenTTL, set.DuoTimeout, set.DuoSecretKey != "")
	}
}

// TestRevokeControlSignIn: the 2FA tab lists kept Control sign-ins and an
// admin's revoke deletes one.
func TestRevokeControlSignIn(t *testing.T) {
	store, client, base := consoleServer(t)
	ctx := context.Background()
	op, err := store.Operator(ctx, "root")
	if err != nil {
		t.Fatal(err)
	}
	if err := store.AddControlToken(ctx, []byte("0123456789abcdef0123456789abcdef"), op.ID, "laptop-ctl", "198.51.100.4", time.Now().Add(time.Hour), false); err != nil {
		t.Fatal(err)
	}
	body, _ := getPage(t, client, base+"/console/config/2fa")
	m := regexp.MustCompile(`data-token="(\d+)"`).FindStringSubmatch(body)
	if m == nil || !strings.Contains(body, "laptop-ctl") || !strings.Contains(body, "198.51.100.4") {
		t.Fatalf("the 2FA tab does not list the sign-in:\n%s", body)
	}
	resp, err := client.PostForm(base+"/console/config/2fa/tokens/"+m[1]+"/revoke", url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "Revoked the Control sign-in of root") {
		t.Errorf("after revoke:\n%s", b)
	}
	if left, err := store.ControlTokens(ctx); err != nil || len(left) != 0 {
		t.Errorf("tokens left: %+v %v", left, err)
	}
}
