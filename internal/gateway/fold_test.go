package gateway

import (
	"context"
	"log/slog"
	"testing"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
	"github.com/switchboard/switchboard/relay/wire"
)

// TestRefusalsFold: a Client with a key the gateway lacks, trying again
// and again, costs one event at once and one with the count when the
// window closes (here: at the orderly stop), not one per try.
func TestRefusalsFold(t *testing.T) {
	url := pgtest.MustURL(t)
	cfg := nodeConfig(t, url, "gw-fold", NodeStandalone)
	cfg.GatewayKeys = []string{presenceKey}
	g := mustStartNode(t, cfg)
	for range 6 {
		d := dialerOf(t, g)
		conn, err := d.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.Send("not the key of this gateway", wire.RoleClient, "pc-gone", "", func(h *wire.Hello) { h.RealIP = "10.9.9.9" }); err != nil {
			t.Fatal(err)
		}
		var w wire.Welcome
		if err := wire.Expect(conn.Reader(), wire.TypeWelcome, &w); err == nil {
			t.Fatal("a wrong key was welcomed")
		}
		conn.Close()
	}
	const msg = "Security check failed for Client pc-gone (10.9.9.9). Terminating connection from 127.0.0.1"
	if err := g.FlushEvents(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := countEvents(t, g.DB(), msg); n != 1 {
		t.Fatalf("%d events for six refusals before the window closed, want 1", n)
	}
	g.Shutdown()
	st, err := db.Open(context.Background(), url, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	evs, err := st.Events(context.Background(), db.EventFilter{Client: "pc-gone"})
	if err != nil {
		t.Fatal(err)
	}
	// The event log delivers at least once: an event cut off mid-write at
	// a stop can be stored twice, with the same time (see countEvents).
	var reasons []string
	seen := map[string]bool{}
	for _, e := range evs {
		k := e.Time.String() + e.Reason
		if e.Message == msg && !seen[k] {
			seen[k] = true
			reasons = append(reasons, e.Reason)
		}
	}
	if len(reasons) != 2 || reasons[0] == "" || reasons[0][:len("repeated 5 more times from ")] != "repeated 5 more times from " {
		t.Fatalf("events of the refusals: reasons %q", reasons)
	}
}
