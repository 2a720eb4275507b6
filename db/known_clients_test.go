package db_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
)

func offline(t *testing.T, st *db.DB, f db.OfflineFilter) ([]db.KnownClient, int) {
	t.Helper()
	ks, n, err := st.OfflineClients(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	return ks, n
}

func TestKnownClientsFollowPresence(t *testing.T) {
	t.Parallel()
	st := pgtest.MustDB(t)
	ctx := context.Background()
	t0 := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
	pc := db.Presence{Name: "pc-1", KeyID: "k1", Node: "gw-a", RealIP: "10.0.0.1", PublicIP: "203.0.113.1",
		OS: "linux", Version: "1.0", Services: []string{"ssh", "vnc"}, ConnectedAt: t0, ConnID: "conn-a"}
	if err := st.ApplyPresence(ctx, []db.PresenceOp{{P: pc}}); err != nil {
		t.Fatal(err)
	}
	k, err := st.KnownClient(ctx, "pc-1", "k1")
	if err != nil || k.Node != "gw-a" || k.OS != "linux" || !slices.Equal(k.Services, pc.Services) || !k.ConnectedAt.Equal(t0) {
		t.Fatalf("known after connecting: %+v %v", k, err)
	}
	if ks, n := offline(t, st, db.OfflineFilter{}); len(ks) != 0 || n != 0 {
		t.Fatalf("a connected Client is listed offline: %+v", ks)
	}

	t.Run("a disconnect makes it offline, seen just now", func(t *testing.T) {
		before := time.Now()
		if err := st.ApplyPresence(ctx, []db.PresenceOp{{P: pc, Delete: true}}); err != nil {
			t.Fatal(err)
		}
		ks, n := offline(t, st, db.OfflineFilter{})
		if n != 1 || len(ks) != 1 || ks[0].Name != "pc-1" || ks[0].RealIP != "10.0.0.1" {
			t.Fatalf("offline = %+v (%d)", ks, n)
		}
		if d := ks[0].LastSeen.Sub(before); d < -2*time.Second || d > 5*time.Second {
			t.Errorf("last seen %v, disconnected at %v", ks[0].LastSeen, before)
		}
	})

	t.Run("a row a lost node left is last seen at its last heartbeat", func(t *testing.T) {
		other := pc
		other.Name, other.ConnID = "pc-2", "conn-2"
		if err := st.ApplyPresence(ctx, []db.PresenceOp{{P: other}}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Pool().Exec(ctx, "UPDATE presence SET last_heartbeat = now() - interval '1 hour' WHERE name = 'pc-2'"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.DeleteNodePresence(ctx, "gw-a"); err != nil {
			t.Fatal(err)
		}
		k, err := st.KnownClient(ctx, "pc-2", "k1")
		if err != nil {
			t.Fatal(err)
		}
		if ago := time.Since(k.LastSeen); ago < 59*time.Minute || ago > 61*time.Minute {
			t.Errorf("last seen %v ago, want about an hour", ago)
		}
	})

	t.Run("search and paging", func(t *testing.T) {
		ks, n := offline(t, st, db.OfflineFilter{Search: "PC-2"})
		if n != 1 || len(ks) != 1 || ks[0].Name != "pc-2" {
			t.Fatalf("search = %+v (%d)", ks, n)
		}
		ks, n = offline(t, st, db.OfflineFilter{Search: "vnc", Limit: 1})
		if n != 2 || len(ks) != 1 || ks[0].Name != "pc-1" {
			t.Fatalf("first page = %+v (%d), want pc-1, seen last", ks, n)
		}
	})

	t.Run("forgetting deletes it until it connects again", func(t *testing.T) {
		if err := st.ForgetKnownClient(ctx, "pc-1", "k1"); err != nil {
			t.Fatal(err)
		}
		if err := st.ForgetKnownClient(ctx, "pc-1", "k1"); !errors.Is(err, db.ErrNotFound) {
			t.Fatalf("forgetting twice: %v", err)
		}
		if _, err := st.KnownClient(ctx, "pc-1", "k1"); !errors.Is(err, db.ErrNotFound) {
			t.Fatalf("after forgetting: %v", err)
		}
		again := pc
		again.ConnID, again.ConnectedAt = "conn-again", time.Now()
		if err := st.ApplyPresence(ctx, []db.PresenceOp{{P: again}}); err != nil {
			t.Fatal(err)
		}
		if ks, err := st.KnownClientsNamed(ctx, "pc-1"); err != nil || len(ks) != 1 {
			t.Fatalf("after connecting again: %+v %v", ks, err)
		}
	})

	t.Run("clients not seen for 30 days are let go", func(t *testing.T) {
		if _, err := st.Pool().Exec(ctx, "UPDATE known_clients SET last_seen = now() - interval '31 days' WHERE name = 'pc-2'"); err != nil {
			t.Fatal(err)
		}
		if n, err := st.PruneKnownClients(ctx); err != nil || n != 1 {
			t.Fatalf("pruned %d: %v", n, err)
		}
		if _, err := st.KnownClient(ctx, "pc-2", "k1"); !errors.Is(err, db.ErrNotFound) {
			t.Fatalf("an old Client is still known: %v", err)
		}
	})
}

func TestClientTrendSamplesNodeCounts(t *testing.T) {
	t.Parallel()
	st := pgtest.MustDB(t)
	ctx := context.Background()
	n := db.Node{Name: "gw-a", AdvertiseURL: "https://a:443", Role: "balanced", Version: "1", Nonce: "n-a", Clients: 3, Sessions: 1}
	if _, err := st.ClaimNode(ctx, n, db.NodeLease, false); err != nil {
		t.Fatal(err)
	}
	b := db.Node{Name: "gw-b", AdvertiseURL: "https://b:443", Role: "balanced", Version: "1", Nonce: "n-b", Clients: 2}
	if _, err := st.ClaimNode(ctx, b, db.NodeLease, false); err != nil {
		t.Fatal(err)
	}
	for _, c := range []int{7, 5} {
		n.Clients = c
		if err := st.HeartbeatNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	ss, err := st.ClientTrend(ctx, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// Both nodes' heartbeats fell in this quarter hour, unless one began
	// between them.
	last := ss[len(ss)-1]
	if len(ss) > 2 || last.Last != 7 || last.Peak != 9 && len(ss) == 1 || last.PeakSessions != 1 && len(ss) == 1 {
		t.Fatalf("trend = %+v, want one quarter with peak 9 (7+2), last 7 (5+2), 1 session", ss)
	}
}
