package handlers

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/db"
)

// TestServersTabListsNodes: the Servers tab lists the node registry with
// each node's state, and its role form still works.
func TestServersTabListsNodes(t *testing.T) {
	store, client, base := consoleServer(t)
	ctx := context.Background()
	for _, n := range []db.Node{
		{Name: "gw-primary", AdvertiseURL: "https://gw-primary:443", Role: "primary", Nonce: "1", Clients: 4, Sessions: 1},
		{Name: "gw-standby", AdvertiseURL: "https://gw-standby:443", Role: "secondary", Nonce: "2"},
		{Name: "gw-gone", AdvertiseURL: "https://gw-gone:3085", Role: "balanced", Nonce: "3", Clients: 2},
	} {
		if _, err := store.ClaimNode(ctx, n, db.NodeLease, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.Pool().Exec(ctx, "UPDATE nodes SET last_seen = now() - interval '1 minute' WHERE name = 'gw-gone'"); err != nil {
		t.Fatal(err)
	}
	body, code := getPage(t, client, base+"/console/config/servers")
	if code != http.StatusOK {
		t.Fatalf("servers tab: %d", code)
	}
	rows := regexp.MustCompile(`(?s)<tr data-node="([^"]+)" data-state="([^"]+)">(.*?)</tr>`).FindAllStringSubmatch(body, -1)
	want := []struct{ name, state, text string }{
		{"gw-gone", "lost", "https://gw-gone:3085"},
		{"gw-primary", "active", "https://gw-primary:443"},
		{"gw-standby", "standby", "https://gw-standby:443"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d node rows, want %d:\n%s", len(rows), len(want), body)
	}
	for i, w := range want {
		if rows[i][1] != w.name || rows[i][2] != w.state || !strings.Contains(rows[i][3], w.text) {
			t.Errorf("row %d = %q %q %q, want %s %s with %s", i, rows[i][1], rows[i][2], rows[i][3], w.name, w.state, w.text)
		}
	}
	if !strings.Contains(rows[0][3], "1m00s ago") || !strings.Contains(rows[1][3], "<td>4</td><td>1</td>") {
		t.Errorf("counts or last seen missing:\n%s\n%s", rows[0][3], rows[1][3])
	}

	// The role form.
	resp, err := client.PostForm(base+"/console/config/servers", url.Values{"role": {"primary"}, "peers": {"gw-standby:443"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body = string(b)
	if !strings.Contains(body, "Applied: server role") || !strings.Contains(body, `<option value="primary" selected>`) {
		t.Errorf("role form did not apply:\n%s", body)
	}
}

func TestReadyzSaysTheState(t *testing.T) {
	for _, tc := range []struct {
		state func() string
		want  string
	}{{nil, "ready\n"}, {func() string { return "standby" }, "ready: standby\n"}} {
		h := &Handlers{State: tc.state}
		rec := httptest.NewRecorder()
		h.Routes().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code != http.StatusOK || rec.Body.String() != tc.want {
			t.Errorf("/readyz = %d %q, want %q", rec.Code, rec.Body.String(), tc.want)
		}
	}
}
