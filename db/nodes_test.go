package db_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
)

func backdate(t *testing.T, st *db.DB, name string, by time.Duration) {
	t.Helper()
	if _, err := st.Pool().Exec(context.Background(),
		"UPDATE nodes SET last_seen = now() - make_interval(secs => $2) WHERE name = $1", name, by.Seconds()); err != nil {
		t.Fatal(err)
	}
}

func TestNodeClaimHeartbeatLeave(t *testing.T) {
	t.Parallel()
	st := pgtest.MustDB(t)
	ctx := context.Background()
	a := db.Node{Name: "gw-a", AdvertiseURL: "https://gw-a:443", Role: "primary", Version: "1.2", Nonce: "run-1"}
	got, err := st.ClaimNode(ctx, a, db.NodeLease, false)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "gw-a" || got.Nonce != "run-1" || got.Role != "primary" || got.AdvertiseURL != a.AdvertiseURL || got.StartedAt.IsZero() {
		t.Fatalf("claimed %+v", got)
	}

	// Another run while the row is live: refused, with who holds it.
	b := a
	b.Nonce, b.AdvertiseURL = "run-2", "https://elsewhere:443"
	_, err = st.ClaimNode(ctx, b, db.NodeLease, false)
	var live *db.NodeLiveError
	if !errors.As(err, &live) || !errors.Is(err, db.ErrNodeLive) {
		t.Fatalf("second claim: %v, want a NodeLiveError", err)
	}
	if !strings.Contains(err.Error(), "node gw-a is already running (last seen 0s ago at https://gw-a:443)") {
		t.Errorf("message %q", err)
	}
	// ... unless the caller knows the holder is gone (it holds the lock).
	if _, err := st.ClaimNode(ctx, b, db.NodeLease, true); err != nil {
		t.Fatalf("forced claim: %v", err)
	}
	// The stale writer cannot renew the row any more.
	a.Clients = 3
	if err := st.HeartbeatNode(ctx, a); !errors.Is(err, db.ErrNodeTaken) {
		t.Fatalf("heartbeat of the old run: %v, want ErrNodeTaken", err)
	}
	b.Clients, b.Sessions = 7, 2
	if err := st.HeartbeatNode(ctx, b); err != nil {
		t.Fatal(err)
	}
	n, err := st.Node(ctx, "gw-a")
	if err != nil || n.Clients != 7 || n.Sessions != 2 || n.Nonce != "run-2" {
		t.Fatalf("after the heartbeat: %+v, %v", n, err)
	}

	// A row older than the lease is taken over without force.
	backdate(t, st, "gw-a", time.Minute)
	c := b
	c.Nonce = "run-3"
	if _, err := st.ClaimNode(ctx, c, db.NodeLease, false); err != nil {
		t.Fatalf("claim of a stale row: %v", err)
	}

	if left, err := st.LeaveNode(ctx, "gw-a", "run-2"); err != nil || left {
		t.Fatalf("leave by a run that does not hold the row: %v, %v", left, err)
	}
	if left, err := st.LeaveNode(ctx, "gw-a", "run-3"); err != nil || !left {
		t.Fatalf("leave: %v, %v", left, err)
	}
	if _, err := st.Node(ctx, "gw-a"); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("row after leaving: %v", err)
	}
}

// TestMarkLostNodesOnce: of several nodes looking at once, exactly one
// gets each lost node.
func TestMarkLostNodesOnce(t *testing.T) {
	t.Parallel()
	st := pgtest.MustDB(t)
	ctx := context.Background()
	for _, name := range []string{"gw-a", "gw-b", "gw-c", "gw-gone"} {
		if _, err := st.ClaimNode(ctx, db.Node{Name: name, AdvertiseURL: "https://" + name, Role: "balanced", Nonce: name}, db.NodeLease, false); err != nil {
			t.Fatal(err)
		}
	}
	backdate(t, st, "gw-gone", 20*time.Second)
	var mu sync.Mutex
	var found []string
	var wg sync.WaitGroup
	for _, self := range []string{"gw-a", "gw-b", "gw-c"} {
		for range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lost, err := st.MarkLostNodes(ctx, self, db.NodeLease)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				for _, n := range lost {
					found = append(found, n.Name)
				}
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	if len(found) != 1 || found[0] != "gw-gone" {
		t.Fatalf("lost nodes reported %q, want gw-gone once", found)
	}
	nodes, err := st.Nodes(ctx)
	if err != nil || len(nodes) != 4 {
		t.Fatalf("Nodes: %d, %v", len(nodes), err)
	}
	for _, n := range nodes {
		if (n.Name == "gw-gone") != !n.LostAt.IsZero() {
			t.Errorf("node %s lost at %v", n.Name, n.LostAt)
		}
	}
	// A heartbeat of the lost node (it was only cut off) clears the mark.
	if err := st.HeartbeatNode(ctx, db.Node{Name: "gw-gone", Nonce: "gw-gone", AdvertiseURL: "https://gw-gone", Role: "balanced"}); err != nil {
		t.Fatal(err)
	}
	if n, err := st.Node(ctx, "gw-gone"); err != nil || !n.LostAt.IsZero() || n.Age > time.Second {
		t.Fatalf("after its heartbeat: %+v, %v", n, err)
	}
}

func TestNodeLockName(t *testing.T) {
	t.Parallel()
	st := pgtest.MustDB(t)
	ctx := context.Background()
	l, err := st.LockNodeName(ctx, "gw-a")
	if err != nil || l == nil {
		t.Fatalf("first lock: %v, %v", l, err)
	}
	if !l.Held(ctx) || (*db.NodeLock)(nil).Held(ctx) {
		t.Error("Held of a held lock is false, or of none true")
	}
	if l2, err := st.LockNodeName(ctx, "gw-a"); err != nil || l2 != nil {
		t.Fatalf("second lock of a held name: %v, %v", l2, err)
	}
	if l3, err := st.LockNodeName(ctx, "gw-b"); err != nil || l3 == nil {
		t.Fatalf("lock of another name: %v, %v", l3, err)
	} else {
		l3.Release()
	}
	l.Release()
	l4, err := st.LockNodeName(ctx, "gw-a")
	if err != nil || l4 == nil {
		t.Fatalf("lock after release: %v, %v", l4, err)
	}
	l4.Release()
	(*db.NodeLock)(nil).Release()

	now, err := st.Now(ctx)
	if err != nil || time.Since(now).Abs() > 5*time.Second {
		t.Fatalf("Now = %v, %v", now, err)
	}
}

// Lost nodes are forgotten once they have been lost for longer than kept;
// live ones and the recently lost stay.
func TestForgetLostNodes(t *testing.T) {
	t.Parallel()
	st := pgtest.MustDB(t)
	ctx := context.Background()
	for _, name := range []string{"gw-live", "gw-lost-old", "gw-lost-new"} {
		if _, err := st.ClaimNode(ctx, db.Node{Name: name, AdvertiseURL: "https://" + name, Role: "balanced", Nonce: name}, db.NodeLease, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Pool().Exec(ctx, `UPDATE nodes SET lost_at = now() - interval '2 hours' WHERE name = 'gw-lost-old';
UPDATE nodes SET lost_at = now() - interval '10 minutes' WHERE name = 'gw-lost-new'`); err != nil {
		t.Fatal(err)
	}
	gone, err := st.ForgetLostNodes(ctx, time.Hour)
	if err != nil || len(gone) != 1 || gone[0] != "gw-lost-old" {
		t.Fatalf("forgot %q, %v; want gw-lost-old", gone, err)
	}
	nodes, err := st.Nodes(ctx)
	if err != nil || len(nodes) != 2 {
		t.Fatalf("left %+v, %v", nodes, err)
	}
}
