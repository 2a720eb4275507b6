package db_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
)

func presenceRow(t *testing.T, st *db.DB, name, keyID string) (db.Presence, bool) {
	t.Helper()
	all, err := st.AllPresence(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range all {
		if p.Name == name && p.KeyID == keyID {
			return p, true
		}
	}
	return db.Presence{}, false
}

func TestPresenceNewestWinsAndConditionalDelete(t *testing.T) {
	t.Parallel()
	st := pgtest.MustDB(t)
	ctx := context.Background()
	t0 := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
	onA := db.Presence{Name: "pc-1", KeyID: "k1", Node: "gw-a", RealIP: "10.0.0.1", PublicIP: "203.0.113.1",
		OS: "linux", Version: "1.0", Services: []string{"ssh", "vnc"}, ConnectedAt: t0, ConnID: "conn-a"}
	if err := st.ApplyPresence(ctx, []db.PresenceOp{{P: onA}}); err != nil {
		t.Fatal(err)
	}
	got, ok := presenceRow(t, st, "pc-1", "k1")
	if !ok || got.Node != "gw-a" || got.ConnID != "conn-a" || !slices.Equal(got.Services, onA.Services) ||
		!got.ConnectedAt.Equal(t0) || got.OS != "linux" || got.LastHeartbeat.IsZero() {
		t.Fatalf("row %+v (%v)", got, ok)
	}

	// The same Client connects to gw-b later: its row moves there.
	onB := onA
	onB.Node, onB.ConnID, onB.ConnectedAt, onB.Services = "gw-b", "conn-b", t0.Add(time.Second), nil
	if err := st.ApplyPresence(ctx, []db.PresenceOp{{P: onB}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := presenceRow(t, st, "pc-1", "k1"); got.Node != "gw-b" || got.ConnID != "conn-b" || len(got.Services) != 0 {
		t.Fatalf("after the newer connection: %+v", got)
	}
	// A late write of the older connection does not win back.
	if err := st.ApplyPresence(ctx, []db.PresenceOp{{P: onA}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := presenceRow(t, st, "pc-1", "k1"); got.Node != "gw-b" {
		t.Fatalf("the older connection won: %+v", got)
	}
	// The same name in another key space is another Client.
	other := onA
	other.KeyID = "k2"
	// gw-a lets go of its old connection: gw-b's row stays.
	if err := st.ApplyPresence(ctx, []db.PresenceOp{{P: other}, {Delete: true, P: db.Presence{Name: "pc-1", KeyID: "k1", ConnID: "conn-a"}}}); err != nil {
		t.Fatal(err)
	}
	if got, ok := presenceRow(t, st, "pc-1", "k1"); !ok || got.Node != "gw-b" {
		t.Fatalf("the old connection's delete removed the new row: %+v (%v)", got, ok)
	}
	if ps, err := st.PresenceForKey(ctx, "k2"); err != nil || len(ps) != 1 || ps[0].Node != "gw-a" {
		t.Fatalf("key k2: %+v, %v", ps, err)
	}
	// What gw-a sees elsewhere: the row on gw-b, since the time given.
	if ps, err := st.PresenceElsewhere(ctx, "gw-a", time.Time{}); err != nil || len(ps) != 1 || ps[0].ConnID != "conn-b" {
		t.Fatalf("elsewhere: %+v, %v", ps, err)
	}
	if ps, err := st.PresenceElsewhere(ctx, "gw-a", t0.Add(2*time.Second)); err != nil || len(ps) != 0 {
		t.Fatalf("elsewhere since later: %+v, %v", ps, err)
	}
	// gw-b's own delete removes it.
	if err := st.ApplyPresence(ctx, []db.PresenceOp{{Delete: true, P: db.Presence{Name: "pc-1", KeyID: "k1", ConnID: "conn-b"}}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := presenceRow(t, st, "pc-1", "k1"); ok {
		t.Fatal("row still there after its own delete")
	}
}

func TestPresenceHeartbeatReplaceDelete(t *testing.T) {
	t.Parallel()
	st := pgtest.MustDB(t)
	ctx := context.Background()
	now := time.Now().Truncate(time.Microsecond)
	var ops []db.PresenceOp
	for i, name := range []string{"pc-1", "pc-2", "pc-3"} {
		node := "gw-a"
		if i == 2 {
			node = "gw-b"
		}
		ops = append(ops, db.PresenceOp{P: db.Presence{Name: name, KeyID: "k", Node: node, ConnectedAt: now, ConnID: "c-" + name}})
	}
	if err := st.ApplyPresence(ctx, ops); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, "UPDATE presence SET last_heartbeat = now() - interval '1 minute'"); err != nil {
		t.Fatal(err)
	}
	// Rows not renewed within the lease are not listed.
	if ps, err := st.AllPresence(ctx); err != nil || len(ps) != 0 {
		t.Fatalf("stale rows listed: %+v, %v", ps, err)
	}
	n, err := st.HeartbeatPresence(ctx, "gw-a")
	if err != nil || n != 2 {
		t.Fatalf("heartbeat renewed %d rows, %v; want 2", n, err)
	}
	if ps, err := st.AllPresence(ctx); err != nil || len(ps) != 2 || ps[0].Node != "gw-a" || ps[1].Node != "gw-a" {
		t.Fatalf("after gw-a's heartbeat: %+v, %v", ps, err)
	}
	if _, err := st.HeartbeatPresence(ctx, "gw-b"); err != nil {
		t.Fatal(err)
	}

	// gw-a replaces its rows with what it holds: pc-2 and a new pc-4.
	keep := db.Presence{Name: "pc-2", KeyID: "k", ConnectedAt: now, ConnID: "c-pc-2"}
	add := db.Presence{Name: "pc-4", KeyID: "k", ConnectedAt: now, ConnID: "c-pc-4"}
	if err := st.ReplaceNodePresence(ctx, "gw-a", []db.Presence{keep, add}); err != nil {
		t.Fatal(err)
	}
	ps, err := st.AllPresence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.Name+"@"+p.Node)
	}
	if want := []string{"pc-2@gw-a", "pc-3@gw-b", "pc-4@gw-a"}; !slices.Equal(got, want) {
		t.Fatalf("after replace: %v, want %v", got, want)
	}
	if n, err := st.DeleteNodePresence(ctx, "gw-a"); err != nil || n != 2 {
		t.Fatalf("deleted %d, %v", n, err)
	}
}

// TestPresenceLostNode: the node that marks another lost removes the lost
// node's rows in the same statement's transaction.
func TestPresenceLostNode(t *testing.T) {
	t.Parallel()
	st := pgtest.MustDB(t)
	ctx := context.Background()
	for _, name := range []string{"gw-a", "gw-b"} {
		if _, err := st.ClaimNode(ctx, db.Node{Name: name, AdvertiseURL: "https://" + name, Role: "balanced", Nonce: name + "-run"}, db.NodeLease, false); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	if err := st.ApplyPresence(ctx, []db.PresenceOp{
		{P: db.Presence{Name: "pc-a", KeyID: "k", Node: "gw-a", ConnectedAt: now, ConnID: "1"}},
		{P: db.Presence{Name: "pc-b", KeyID: "k", Node: "gw-b", ConnectedAt: now, ConnID: "2"}},
	}); err != nil {
		t.Fatal(err)
	}
	backdate(t, st, "gw-b", time.Minute)
	lost, err := st.MarkLostNodes(ctx, "gw-a", db.NodeLease)
	if err != nil || len(lost) != 1 || lost[0].Name != "gw-b" {
		t.Fatalf("lost %+v, %v", lost, err)
	}
	ps, err := st.AllPresence(ctx)
	if err != nil || len(ps) != 1 || ps[0].Name != "pc-a" {
		t.Fatalf("after gw-b was lost: %+v, %v", ps, err)
	}
	// Renewing a lost mark away, or marking again, does not touch others' rows.
	if err := st.HeartbeatNode(ctx, db.Node{Name: "gw-b", Nonce: "gw-b-run", Role: "balanced"}); err != nil {
		t.Fatal(err)
	}
	if ps, _ := st.AllPresence(ctx); len(ps) != 1 {
		t.Fatalf("rows %+v", ps)
	}
}
