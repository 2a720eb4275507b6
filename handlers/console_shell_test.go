package handlers

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/auth/password"
	"github.com/switchboard/switchboard/static"
	"github.com/switchboard/switchboard/web"
)

// shellDo sends one request with the given headers and returns the body and
// status.
func shellDo(t *testing.T, client *http.Client, method, u string, hdr map[string]string) (string, int) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode
}

func shellContains(t *testing.T, body string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("the answer lacks %q:\n%s", w, body)
		}
	}
}

// TestConsoleErrorPath: every failure goes through Console.Error, which
// answers an htmx action with an error fragment and anything else with a
// whole page, both with the error's status.
func TestConsoleErrorPath(t *testing.T) {
	store, client, base := consoleServer(t)
	htmx := map[string]string{"HX-Request": "true"}
	boosted := map[string]string{"HX-Request": "true", "HX-Boosted": "true"}

	t.Run("an htmx action gets the error fragment with its status", func(t *testing.T) {
		body, code := shellDo(t, client, http.MethodPost, base+"/console/sessions/no-such/terminate", htmx)
		if code != http.StatusNotFound {
			t.Errorf("status %d, want 404", code)
		}
		shellContains(t, body, `class="flash error"`, "That session has already ended")
		if strings.Contains(body, "<html") {
			t.Error("an htmx action got a whole page")
		}
	})
	t.Run("a page gets a whole styled page in the frame", func(t *testing.T) {
		body, code := shellDo(t, client, http.MethodGet, base+"/console/config/no-such", nil)
		if code != http.StatusNotFound {
			t.Errorf("status %d, want 404", code)
		}
		shellContains(t, body, "<html", `class="error-page"`, "No such configuration tab.", "app.css", "Sign out", `id="nav"`)
	})
	t.Run("a boosted link gets the whole page", func(t *testing.T) {
		body, code := shellDo(t, client, http.MethodGet, base+"/console/config/no-such", boosted)
		if code != http.StatusNotFound {
			t.Errorf("status %d, want 404", code)
		}
		shellContains(t, body, "<html", `class="error-page"`, "No such configuration tab.")
	})
	t.Run("an unknown console page is a styled 404 in the frame", func(t *testing.T) {
		body, code := shellDo(t, client, http.MethodGet, base+"/console/no/such/page", nil)
		if code != http.StatusNotFound {
			t.Errorf("status %d, want 404", code)
		}
		shellContains(t, body, `class="error-page"`, "There is no such page", "Sign out")
	})
	t.Run("a wrong method is a styled 405", func(t *testing.T) {
		body, code := shellDo(t, client, http.MethodGet, base+"/console/sessions/x/terminate", nil)
		if code != http.StatusMethodNotAllowed {
			t.Errorf("status %d, want 405", code)
		}
		shellContains(t, body, `class="error-page"`, "does not take that kind of request")
	})
	t.Run("signed out, an unknown page is a bare styled 404", func(t *testing.T) {
		body, code := shellDo(t, &http.Client{}, http.MethodGet, base+"/console/no/such/page", nil)
		if code != http.StatusNotFound {
			t.Errorf("status %d, want 404", code)
		}
		shellContains(t, body, `class="error-page"`, "There is no such page", `href="/console/signin"`)
		if strings.Contains(body, "Sign out") || strings.Contains(body, `id="nav"`) {
			t.Error("a signed-out visitor sees the console's frame")
		}
	})
	t.Run("an operator who is not an admin gets a styled 403 with their Account", func(t *testing.T) {
		hash, err := password.Hash("operator password 123")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.AddOperator(context.Background(), db.Operator{Name: "helper", PasswordHash: hash, Role: db.RoleOperator}); err != nil {
			t.Fatal(err)
		}
		jar, _ := cookiejar.New(nil)
		op := &http.Client{Jar: jar}
		resp, err := op.PostForm(base+"/console/signin", url.Values{"name": {"helper"}, "password": {"operator password 123"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		body, code := shellDo(t, op, http.MethodGet, base+"/console/clients", nil)
		if code != http.StatusForbidden {
			t.Errorf("status %d, want 403", code)
		}
		shellContains(t, body, `class="error-page"`, "can run Controls but not administer", `href="/console/account"`, "Sign out")
		body, code = shellDo(t, op, http.MethodGet, base+"/console/clients", htmx)
		if code != http.StatusForbidden || strings.Contains(body, "<html") {
			t.Errorf("an htmx request got %d and a whole page", code)
		}
	})
}

// TestConsoleErrorHidesInternals: an error that is not an *Error is
// logged and shown as "Internal error." only.
func TestConsoleErrorHidesInternals(t *testing.T) {
	assets, err := static.New()
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	c := &Console{Asset: assets.URL, Logger: slog.New(slog.NewTextHandler(&logged, nil))}
	for _, hx := range []bool{true, false} {
		r := httptest.NewRequest(http.MethodPost, "/console/config/general", nil)
		if hx {
			r.Header.Set("HX-Request", "true")
		}
		w := httptest.NewRecorder()
		c.Error(w, r, errors.New("db: connection to 10.0.0.5 refused"))
		if w.Code != http.StatusInternalServerError {
			t.Errorf("htmx %v: status %d, want 500", hx, w.Code)
		}
		body := w.Body.String()
		if !strings.Contains(body, "Internal error.") || strings.Contains(body, "10.0.0.5") {
			t.Errorf("htmx %v: the answer is %s", hx, body)
		}
	}
	if !strings.Contains(logged.String(), "10.0.0.5") {
		t.Error("the internal error was not logged")
	}
}

func TestShellWords(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want string
	}{{0, "Clients"}, {1, "Client"}, {2, "Clients"}, {55, "Clients"}} {
		if got := web.PluralWord(tc.n, "Client", "Clients"); got != tc.want {
			t.Errorf("PluralWord(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
	for _, tc := range []struct {
		zone *time.Location
		want string
	}{
		{time.UTC, "UTC"},
		{time.FixedZone("CET", 3600), "CET (UTC+01:00)"},
		{time.FixedZone("", -(3*3600 + 30*60)), "UTC-03:30"},
		{time.FixedZone("+0530", 5*3600+30*60), "UTC+05:30"},
	} {
		if got := web.ZoneLabel(time.Date(2026, 1, 1, 12, 0, 0, 0, tc.zone)); got != tc.want {
			t.Errorf("ZoneLabel in %v = %q, want %q", tc.zone, got, tc.want)
		}
	}
}
