package eventlog

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
)

// sqlErr carries a SQLSTATE the way *pgconn.PgError does.
type sqlErr string

func (e sqlErr) Error() string    { return "ERROR: refused (SQLSTATE " + string(e) + ")" }
func (e sqlErr) SQLState() string { return string(e) }

func TestIsPermanent(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("db: insert 3 events: %w", sqlErr("54000")), true}, // index row size exceeds btree maximum
		{sqlErr("22001"), true},  // value too long
		{sqlErr("22021"), true},  // invalid byte sequence
		{sqlErr("23514"), true},  // check violation
		{sqlErr("08006"), false}, // connection failure
		{sqlErr("57P01"), false}, // admin shutdown
		{sqlErr("53100"), false}, // disk full
		{sqlErr("42P01"), false}, // undefined table: every event would fail
		{sqlErr("40001"), false}, // serialization failure
		{context.DeadlineExceeded, false},
		{errors.New("dial tcp: connection refused"), false},
		{errors.New("ERROR: index row size 2736 exceeds btree version 4 maximum 2704 (SQLSTATE 54000)"), false}, // by code, never by text
	} {
		if got := IsPermanent(tt.err); got != tt.want {
			t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// poisonStore refuses, for good, any batch holding an event whose message
// contains "poison", like a transaction that fails as a whole.
type poisonStore struct {
	memStore
	attempts atomic.Int64
}

func (p *poisonStore) InsertEvents(ctx context.Context, evs []event.Event) error {
	p.attempts.Add(1)
	for _, e := range evs {
		if strings.Contains(e.Message, "poison") {
			return fmt.Errorf("db: insert %d events: %w", len(evs), sqlErr("23514"))
		}
	}
	return p.memStore.InsertEvents(ctx, evs)
}

// emitWithPoison emits n good events (msg(0)...) with a poisoned one after
// each good one whose number is in poisonAfter.
func emitWithPoison(l *Log, n int, poisonAfter ...int) {
	for i := range n {
		l.Emit(event.Event{Message: msg(i)})
		for _, p := range poisonAfter {
			if p == i {
				l.Emit(event.Event{Message: fmt.Sprintf("poison after %d", i)})
			}
		}
	}
}

func quarantined(t *testing.T, path string) []quarantineEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []quarantineEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var q quarantineEntry
		if err := json.Unmarshal(sc.Bytes(), &q); err != nil {
			t.Fatalf("quarantine line %q: %v", sc.Text(), err)
		}
		out = append(out, q)
	}
	return out
}

func TestAnEventTheStoreRefusesIsQuarantinedAndTheRestStored(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	spool := filepath.Join(dir, "events.spool")
	st := &poisonStore{}
	l, err := New(Config{Store: st, SpoolPath: spool})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	emitWithPoison(l, 1000, 0, 17, 499, 500, 998)
	flush(t, l)
	wantInOrder(t, st.messages(), 1000)
	if q := l.Quarantined(); q != 5 {
		t.Errorf("Quarantined = %d, want 5", q)
	}
	q := quarantined(t, filepath.Join(dir, "events.quarantine"))
	if len(q) != 5 {
		t.Fatalf("%d quarantined lines, want 5", len(q))
	}
	for i, want := range []int{0, 17, 499, 500, 998} {
		if q[i].Event.Message != fmt.Sprintf("poison after %d", want) || q[i].SQLState != "23514" || q[i].Error == "" {
			t.Errorf("quarantined %d: %+v", i, q[i])
		}
	}
	if l.Pending() != 0 {
		t.Errorf("Pending = %d", l.Pending())
	}
	// Bisection, not a retry per event: a few dozen attempts, not 1,000.
	if a := st.attempts.Load(); a > 150 {
		t.Errorf("%d insert attempts for 1005 events", a)
	}
}

func TestTransientErrorsAreRetriedNotQuarantined(t *testing.T) {
	t.Parallel()
	st := &flakyStore{failures: 3, err: fmt.Errorf("db: %w", sqlErr("08006"))}
	l, err := New(Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	for i := range 10 {
		l.Emit(event.Event{Message: msg(i)})
	}
	flush(t, l)
	wantInOrder(t, st.messages(), 10)
	if q := l.Quarantined(); q != 0 {
		t.Errorf("Quarantined = %d for a transient error", q)
	}
}

// flakyStore fails its first attempts with err.
type flakyStore struct {
	memStore
	mu       sync.Mutex
	failures int
	err      error
}

func (f *flakyStore) InsertEvents(ctx context.Context, evs []event.Event) error {
	f.mu.Lock()
	fail := f.failures > 0
	f.failures--
	f.mu.Unlock()
	if fail {
		return f.err
	}
	return f.memStore.InsertEvents(ctx, evs)
}

// gate is a store that is down (a transient error) until opened.
type gate struct {
	open  atomic.Bool
	inner Store
}

func (g *gate) InsertEvents(ctx context.Context, evs []event.Event) error {
	if !g.open.Load() {
		return errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
	}
	return g.inner.InsertEvents(ctx, evs)
}

// pgStore opens a fresh PostgreSQL database whose events table refuses
// three kinds of event for good, as real attacks made it: an index entry
// over the btree maximum (54000), a value too long for its column (22001)
// and a constraint violation (23514).
func pgStore(t *testing.T) *db.DB {
	t.Helper()
	d := pgtest.MustDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, sql := range []string{
		`CREATE INDEX test_events_message_idx ON events (message)`,
		`ALTER TABLE events ALTER COLUMN operator TYPE varchar(64)`,
		`ALTER TABLE events ADD CONSTRAINT test_no_poison CHECK (node <> 'poison')`,
	} {
		if _, err := d.Pool().Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	return d
}

// refusedEvents are one event of each kind pgStore refuses.
func refusedEvents() []event.Event {
	r := rand.New(rand.NewPCG(1, 2))
	var noise strings.Builder
	for noise.Len() < MaxMessageBytes-100 {
		noise.WriteByte(byte('!' + r.IntN(94))) // incompressible, so the index entry stays large
	}
	return []event.Event{
		{Kind: event.KindSecurity, Message: "Security check failed for Client " + noise.String()},
		{Kind: event.KindOperator, Message: "Sign-in failed", Operator: strings.Repeat("o", 200)},
		{Kind: event.KindGateway, Message: "bad node", Node: "poison"},
	}
}

func storedMessages(t *testing.T, d *db.DB) []string {
	t.Helper()
	rows, err := d.Pool().Query(context.Background(), `SELECT message FROM events ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func TestPostgreSQLRefusalsAreQuarantinedAndTheRestStored(t *testing.T) {
	t.Parallel()
	d := pgStore(t)
	dir := t.TempDir()
	l, err := New(Config{Store: d, SpoolPath: filepath.Join(dir, "events.spool")})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	bad := refusedEvents()
	for i := range 30 {
		l.Emit(event.Event{Kind: event.KindGateway, Message: msg(i)})
		if i%10 == 3 {
			l.Emit(bad[i/10])
		}
	}
	flush(t, l)
	wantInOrder(t, storedMessages(t, d), 30)
	q := quarantined(t, filepath.Join(dir, "events.quarantine"))
	if l.Quarantined() != 3 || len(q) != 3 {
		t.Fatalf("Quarantined %d, %d lines, want 3", l.Quarantined(), len(q))
	}
	for i, want := range []string{"54000", "22001", "23514"} {
		if q[i].SQLState != want {
			t.Errorf("quarantined %d: SQLSTATE %q (%s), want %s", i, q[i].SQLState, q[i].Error, want)
		}
	}
}

func TestPostgreSQLRefusalsSpooledBeforeARestartAreQuarantinedAfterIt(t *testing.T) {
	t.Parallel()
	d := pgStore(t)
	dir := t.TempDir()
	spool := filepath.Join(dir, "events.spool")
	g := &gate{inner: d}
	l, err := New(Config{Store: g, SpoolPath: spool})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, l)
	bad := refusedEvents()
	for i := range 600 { // more than a batch, a refused event in each
		l.Emit(event.Event{Kind: event.KindGateway, Message: msg(i)})
		if i%200 == 100 {
			l.Emit(bad[i/200])
		}
	}
	stop() // the database was down all along: everything is in the spool

	g.open.Store(true)
	l2, err := New(Config{Store: g, SpoolPath: spool})
	if err != nil {
		t.Fatal(err)
	}
	if p := l2.Pending(); p != 603 {
		t.Fatalf("Pending = %d after the restart, want 603", p)
	}
	start(t, l2)
	l2.Emit(event.Event{Kind: event.KindGateway, Message: msg(600)})
	flush(t, l2)
	wantInOrder(t, storedMessages(t, d), 601)
	if l2.Quarantined() != 3 || len(quarantined(t, filepath.Join(dir, "events.quarantine"))) != 3 {
		t.Errorf("Quarantined %d, want 3", l2.Quarantined())
	}
	if l2.Pending() != 0 {
		t.Errorf("Pending = %d", l2.Pending())
	}
}
