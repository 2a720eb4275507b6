package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMustURLIsFreshAndEmpty(t *testing.T) {
	t.Parallel()
	a, b := MustURL(t), MustURL(t)
	if a == b {
		t.Fatalf("two calls returned the same database %s", a)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("fresh database has %d tables, want 0", n)
	}
}

func TestMustDBMigrates(t *testing.T) {
	t.Parallel()
	d := MustDB(t)
	if _, err := d.Keys(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestWithDatabase(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://postgres@/postgres?host=/var/run/postgresql", "postgres://postgres@/x?host=%2Fvar%2Frun%2Fpostgresql"},
		{"postgres:///switchboard?host=%2Ftmp%2Fr&user=switchboard", "postgres:///x?host=%2Ftmp%2Fr&user=switchboard"},
		{"host=/tmp user=postgres dbname=postgres", "host=/tmp user=postgres dbname=postgres dbname=x"},
	} {
		got, err := withDatabase(tc.in, "x")
		if err != nil || got != tc.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
