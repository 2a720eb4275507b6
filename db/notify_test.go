package db_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
)

func TestParseWake(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"presence", "presence gw-a", true},
		{"nodes", "nodes gw-b.example.com", true},
		{"unknown kind refused", "hello gw-a", false},
		{"no node refused", "presence", false},
		{"empty node refused", "presence ", false},
		{"space in node refused", "presence gw a", false},
		{"control character refused", "presence gw\x1b[2J", false},
		{"long node refused", "nodes " + strings.Repeat("a", 200), false},
		{"invalid utf-8 refused", "nodes gw\xff", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := db.ParseWake(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseWake(%q) = %+v, %v", tc.in, w, err)
			}
		})
	}
}

func wait(t *testing.T, l *db.Listener) db.Wake {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w, err := l.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestListenNotify: presence writes and Notify wake a listener, a wait cut
// by its context leaves the connection good, and a listener whose backend
// is terminated reports it.
func TestListenNotify(t *testing.T) {
	ctx := context.Background()
	st := pgtest.MustDB(t)
	l, err := st.Listen(ctx, "switchboard test listener")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)

	if err := st.Notify(ctx, db.WakeNodes, "gw-a"); err != nil {
		t.Fatal(err)
	}
	if w := wait(t, l); w != (db.Wake{Kind: db.WakeNodes, Node: "gw-a"}) {
		t.Fatalf("got %+v", w)
	}

	if err := st.ApplyPresence(ctx, []db.PresenceOp{{P: db.Presence{Name: "pc-1", KeyID: "k", Node: "gw-b", ConnectedAt: time.Now(), ConnID: "c1"}}}); err != nil {
		t.Fatal(err)
	}
	if w := wait(t, l); w != (db.Wake{Kind: db.WakePresence, Node: "gw-b"}) {
		t.Fatalf("got %+v", w)
	}
	if err := st.ReplaceNodePresence(ctx, "gw-b", nil); err != nil {
		t.Fatal(err)
	}
	if w := wait(t, l); w.Node != "gw-b" {
		t.Fatalf("got %+v", w)
	}
	if _, err := st.DeleteNodePresence(ctx, "gw-c"); err != nil {
		t.Fatal(err)
	}
	if w := wait(t, l); w.Node != "gw-c" {
		t.Fatalf("got %+v", w)
	}

	// A payload from something else that can NOTIFY is refused, and the
	// connection goes on.
	if _, err := st.Pool().Exec(ctx, "SELECT pg_notify($1, $2)", db.ClusterChannel, "presence \x01bad"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if _, err := l.Wait(wctx); !errors.Is(err, db.ErrBadWake) {
		t.Fatalf("bad payload: %v", err)
	}
	cancel()

	// A wait cut short leaves the connection usable.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = l.Wait(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("short wait: %v", err)
	}
	if err := l.Ping(ctx); err != nil {
		t.Fatalf("ping after a short wait: %v", err)
	}
	if err := st.Notify(ctx, db.WakePresence, "gw-d"); err != nil {
		t.Fatal(err)
	}
	if w := wait(t, l); w.Node != "gw-d" {
		t.Fatalf("got %+v", w)
	}

	// The backend terminated: the wait ends with an error.
	var n int
	if err := st.Pool().QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'switchboard test listener' AND pid = $1", int(l.PID())).Scan(&n); err != nil || n != 1 {
		t.Fatalf("listener in pg_stat_activity: %d, %v", n, err)
	}
	if _, err := st.Pool().Exec(ctx, "SELECT pg_terminate_backend($1)", int(l.PID())); err != nil {
		t.Fatal(err)
	}
	wctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := l.Wait(wctx); err == nil || wctx.Err() != nil || errors.Is(err, db.ErrBadWake) {
		t.Fatalf("wait on a terminated backend: %v (ctx %v)", err, wctx.Err())
	}
}
