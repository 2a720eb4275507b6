package handlers

import (
	"bufio"
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/web"
)

func TestEventsPageShowsReasonAndEmptyRow(t *testing.T) {
	store, client, base := consoleServer(t)
	if err := store.InsertEvents(context.Background(), []event.Event{{Time: time.Now(), Kind: event.KindClientDisconnect,
		Message: "Client pc-r Disconnected", Client: "pc-r", Reason: "silent for 3m0s"}}); err != nil {
		t.Fatal(err)
	}
	body, code := getPage(t, client, base+"/console/events?client=pc-r")
	if code != http.StatusOK || !strings.Contains(body, "<td>silent for 3m0s</td>") || !strings.Contains(body, "1 event<") {
		t.Fatalf("events page (%d) lacks the reason or the count:\n%s", code, body)
	}
	body, _ = getPage(t, client, base+"/console/events?client=nobody")
	i := strings.Index(body, `<tbody id="event-rows"`)
	j := strings.Index(body, `No event matches.`)
	k := strings.Index(body, `</tbody>`)
	if i < 0 || j < i || j > k {
		t.Fatalf("the empty state is not a row of the live table body:\n%s", body)
	}
}

// sseReader reads named events of a stream.
type sseReader struct{ r *bufio.Reader }

func (s sseReader) next(t *testing.T) (name, id, data string) {
	t.Helper()
	var lines []string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && name != "":
			return name, id, strings.Join(lines, "\n")
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "id: "):
			id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			lines = append(lines, strings.TrimPrefix(line, "data: "))
		}
	}
}

// openResumable opens a stream as an EventSource reconnecting after
// lastID does (none for ""); reads fail after 15 s.
func openResumable(t *testing.T, client *http.Client, u, lastID string) sseReader {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("stream answered %s %s", resp.Status, ct)
	}
	return sseReader{bufio.NewReader(resp.Body)}
}

// TestEventsStreamCountsAndResumes: the count the live tail sends is the
// page's plus its new rows, and a reconnecting browser (Last-Event-ID)
// gets no row twice.
func TestEventsStreamCountsAndResumes(t *testing.T) {
	store, client, base := consoleServer(t)
	ctx := context.Background()
	ev := func(msg string) event.Event {
		return event.Event{Time: time.Now(), Kind: event.KindOperator, Message: msg, Client: "pc-s"}
	}
	if err := store.InsertEvents(ctx, []event.Event{ev("one"), ev("two")}); err != nil {
		t.Fatal(err)
	}
	evs, err := store.Events(ctx, db.EventFilter{Client: "pc-s"})
	if err != nil || len(evs) != 2 {
		t.Fatal(evs, err)
	}
	newest := evs[0].ID
	s := openResumable(t, client, base+"/console/events/stream?client=pc-s&after="+url.QueryEscape(itoa64(newest)), "")
	if err := store.InsertEvents(ctx, []event.Event{ev("three")}); err != nil {
		t.Fatal(err)
	}
	name, id, data := s.next(t)
	if name != "events" || !strings.Contains(data, "three") || strings.Contains(data, "two") || id == "" {
		t.Fatalf("first event %s (id %q): %s", name, id, data)
	}
	if name, _, data := s.next(t); name != "events-total" || strings.TrimSpace(data) != "3 events" {
		t.Fatalf("then %s: %q, want 3 events", name, data)
	}

	// The browser comes back having seen "three".
	if err := store.InsertEvents(ctx, []event.Event{ev("four")}); err != nil {
		t.Fatal(err)
	}
	s2 := openResumable(t, client, base+"/console/events/stream?client=pc-s&after="+itoa64(newest), id)
	name, _, data = s2.next(t)
	if name != "events" || !strings.Contains(data, "four") || strings.Contains(data, "three") {
		t.Fatalf("after reconnecting %s: %s", name, data)
	}
	if name, _, data := s2.next(t); name != "events-total" || strings.TrimSpace(data) != "4 events" {
		t.Fatalf("then %s: %q, want 4 events", name, data)
	}
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }

// TestKnownClientPages: a Client known but offline is listed, has its
// page, and is forgotten; an unknown one has none.
func TestKnownClientPages(t *testing.T) {
	store, client, base := consoleServer(t)
	ctx := context.Background()
	p := db.Presence{Name: "pc-gone", KeyID: "k1", Node: "gw-a", RealIP: "10.1.2.3", PublicIP: "203.0.113.9",
		OS: "windows", Version: "1.2", Services: []string{"rdp"}, ConnectedAt: time.Now().Add(-time.Hour), ConnID: "c1"}
	if err := store.ApplyPresence(ctx, []db.PresenceOp{{P: p}, {P: p, Delete: true}}); err != nil {
		t.Fatal(err)
	}
	body, _ := getPage(t, client, base+"/console/clients")
	if !strings.Contains(body, `data-offline-client="pc-gone"`) || !strings.Contains(body, "10.1.2.3") ||
		!strings.Contains(body, "key k1 (removed)") {
		t.Fatalf("the Clients page does not list the offline Client:\n%s", body)
	}
	body, code := getPage(t, client, base+web.ClientURL("pc-gone", ""))
	if code != http.StatusOK || !strings.Contains(body, `id="client-state">offline`) || !strings.Contains(body, "windows") {
		t.Fatalf("the Client's page (%d):\n%s", code, body)
	}
	if strings.Contains(body, "Disconnect") {
		t.Error("an offline Client can be disconnected")
	}
	if _, code := getPage(t, client, base+web.ClientURL("pc-never", "")); code != http.StatusNotFound {
		t.Errorf("a Client never seen: %d, want 404", code)
	}
	post := func(path string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, base+path, nil)
		req.Header.Set("HX-Request", "true")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b := new(strings.Builder)
		_, _ = bufio.NewReader(resp.Body).WriteTo(b)
		return resp.StatusCode, b.String()
	}
	if code, body := post("/console/clients/pc-gone/disconnect?key=k1"); code != http.StatusNotFound {
		t.Errorf("disconnecting an offline Client: %d %s", code, body)
	}
	if code, body := post("/console/clients/pc-gone/forget?key=k1"); code != http.StatusOK || !strings.Contains(body, "Forgot Client pc-gone") {
		t.Fatalf("forget: %d %s", code, body)
	}
	if code, _ := post("/console/clients/pc-gone/forget?key=k1"); code != http.StatusNotFound {
		t.Errorf("forgetting twice: %d", code)
	}
	if body, _ := getPage(t, client, base+"/console/clients"); strings.Contains(body, "pc-gone") {
		t.Error("a forgotten Client is still listed")
	}
}

func TestDashboardPage(t *testing.T) {
	_, client, base := consoleServer(t)
	body, code := getPage(t, client, base+"/console/")
	if code != http.StatusOK || !strings.Contains(body, `id="dashboard"`) || !strings.Contains(body, `id="dash-clients">0<`) ||
		!strings.Contains(body, "unlimited") {
		t.Fatalf("dashboard (%d):\n%s", code, body)
	}
}

func TestCommandQuotingAndPorts(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"pc-01/vnc", "pc-01/vnc"},
		{"https://gw.example:443", "https://gw.example:443"},
		{"it's", `'it'\''s'`},
		{"two words", "'two words'"},
		{"", "''"},
	} {
		if got := shellQuote(c.in); got != c.want {
			t.Errorf("shellQuote(%q) = %s, want %s", c.in, got, c.want)
		}
	}
	if localPort("vnc") != 15900 || localPort("SSH") != 10022 {
		t.Errorf("well-known ports: vnc %d, ssh %d", localPort("vnc"), localPort("SSH"))
	}
	if p := localPort("echo"); p < 20000 || p > 29999 || p != localPort("echo") {
		t.Errorf("echo: %d", p)
	}
}

func TestDashboardLevels(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		clients, max int
		want         string
	}{{0, 0, ""}, {5, 0, ""}, {3, 5, ""}, {4, 5, "warn"}, {5, 5, "full"}, {7, 5, "full"}} {
		if got := (web.DashboardView{Clients: c.clients, MaxClients: c.max}).LicenceLevel(); got != c.want {
			t.Errorf("%d of %d: %q, want %q", c.clients, c.max, got, c.want)
		}
	}
	for _, c := range []struct {
		days int
		want string
	}{{90, ""}, {20, "warn"}, {3, "full"}, {-1, "full"}} {
		v := web.DashboardView{Now: now, Cert: web.CertInfo{NotAfter: now.Add(time.Duration(c.days)*24*time.Hour + time.Hour)}}
		if got := v.CertLevel(); got != c.want {
			t.Errorf("%d days left: %q, want %q", c.days, got, c.want)
		}
	}
	tr := web.Trend{Values: []int{-1, -1, 0, 4, 2}, Peak: 4}
	if got := tr.Sparkline(40, 10); got != "20.0,9.0 30.0,1.0 40.0,5.0 " {
		t.Errorf("sparkline = %q", got)
	}
}
