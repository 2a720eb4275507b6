package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/pg/pgtest"
)

// TestNotifyWakesPresence: with a presence poll far too slow to matter, a
// Client connecting on node B shows in node A's snapshot within a moment,
// by notification; the LISTEN connection terminated by the server is
// opened again, and notifications work again.
func TestNotifyWakesPresence(t *testing.T) {
	url := pgtest.MustURL(t)
	const poll = time.Minute
	start := func(name string) *Gateway {
		cfg := nodeConfig(t, url, name, NodeBalanced)
		cfg.GatewayKeys = []string{presenceKey}
		cfg.PresencePoll = poll
		return mustStartNode(t, cfg)
	}
	a, b := start("gw-a"), start("gw-b")
	waitUntil(t, "gw-a listening", func() bool { return a.placer.listener.connects.Load() == 1 })

	seen := func(client string) time.Duration {
		t.Helper()
		runAgent(t, b, client)
		// From the moment the Client is registered on gw-b.
		begin := time.Now()
		waitUntil(t, client+" on gw-b in gw-a's snapshot", func() bool { return a.presence.nodeOf(client, keyIDOf(b, client)) == "gw-b" })
		return time.Since(begin)
	}
	if d := seen("pc-1"); d > 3*time.Second {
		t.Errorf("pc-1 seen by gw-a %s after it connected on gw-b, poll %s: not woken", d, poll)
	} else {
		t.Logf("pc-1 seen by gw-a %s after it connected on gw-b (poll %s)", d.Round(time.Millisecond), poll)
	}

	// The server ends the LISTEN connection: it comes back, and the
	// reconnection reads everything once.
	pid := a.placer.listener.pid.Load()
	var appName string
	ctx := context.Background()
	if err := a.DB().Pool().QueryRow(ctx, "SELECT application_name FROM pg_stat_activity WHERE pid = $1", int(pid)).Scan(&appName); err != nil {
		t.Fatal(err)
	}
	if appName != "switchboard listen gw-a" {
		t.Errorf("LISTEN connection's application_name %q", appName)
	}
	if _, err := a.DB().Pool().Exec(ctx, "SELECT pg_terminate_backend($1)", int(pid)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "gw-a listening again", func() bool { return a.placer.listener.connects.Load() == 2 })
	if a.placer.listener.pid.Load() == pid {
		t.Fatal("same backend after it was terminated")
	}
	if d := seen("pc-2"); d > 3*time.Second {
		t.Errorf("pc-2 seen by gw-a %s after it connected on gw-b, after the reconnection: not woken", d)
	}
	// Presence went on meanwhile: both listed through gw-a.
	if got := browse(t, a); got["pc-1"].Node != "gw-b" || got["pc-2"].Node != "gw-b" {
		t.Errorf("browse through gw-a: %+v", got)
	}
}

// keyIDOf is the key ID of client as g holds it.
func keyIDOf(g *Gateway, client string) string {
	for _, r := range g.Relay().Registrations() {
		if r.Name == client {
			return r.KeyID
		}
	}
	return ""
}
