package gateway_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"slices"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for goose
	"github.com/pressly/goose/v3"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/internal/peer/agent"
	"github.com/switchboard/switchboard/internal/peer/control"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
	"github.com/switchboard/switchboard/migrations"
	"github.com/switchboard/switchboard/relay/wire"
)

// scramMigration is the migration that makes room for version 2 keys.
const scramMigration = 5

// v1Database is a database as a version 1 gateway left it: the schema up to
// the migration before scramMigration, the installation's salt, and a row
// per key holding the version 1 verifier under its version 1 key ID.
func v1Database(t *testing.T, salt []byte, keys map[string]string) string {
	t.Helper()
	url := pgtest.MustURL(t)
	sqlDB, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, migrations.FS, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	var before int64
	for _, s := range p.ListSources() {
		if s.Version < scramMigration {
			before = max(before, s.Version)
		}
	}
	if _, err := p.UpTo(t.Context(), before); err != nil {
		t.Fatalf("migrate up to %d: %v", before, err)
	}
	if _, err := sqlDB.ExecContext(t.Context(), "INSERT INTO settings (name, value) VALUES ('key_salt', $1)", base64.StdEncoding.EncodeToString(salt)); err != nil {
		t.Fatal(err)
	}
	for key, label := range keys {
		v1 := wire.VerifierV1(salt, key)
		if _, err := sqlDB.ExecContext(t.Context(), "INSERT INTO gateway_keys (key_id, label, verifier) VALUES ($1, $2, $3)", v1KeyID(v1), label, v1); err != nil {
			t.Fatal(err)
		}
	}
	return url
}

// v1KeyID is the key ID of version 1, for rows an older gateway wrote.
func v1KeyID(v1 []byte) string {
	m := hmac.New(sha256.New, v1)
	m.Write([]byte("switchboard key id"))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// TestUpgradeConvertsVersion1Keys upgrades a version 1 database by starting
// a gateway on it: every key is converted at start without the gateway
// knowing it, peers that derive from the key are admitted, nothing of
// version 1 is left, a second conversion does nothing, version 1 code can
// no longer use the table, and a row left unconverted is converted by the
// key poll.
func TestUpgradeConvertsVersion1Keys(t *testing.T) {
	salt := []byte("an installation salt of 32 bytes")
	const keyA, keyB, keyLate = "alpha-key-of-v1", "bravo-key-of-v1", "late-key-from-an-old-cli"
	url := v1Database(t, salt, map[string]string{keyA: "alpha", keyB: "bravo"})

	g, err := gateway.Start(context.Background(), gateway.Config{
		Store:   gateway.Store{DatabaseURL: url, DataDir: t.TempDir()},
		Listen:  []string{"127.0.0.1:0"},
		NoTLS:   true,
		Node:    "node-a",
		Grace:   time.Second,
		KeyPoll: 50 * time.Millisecond,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()

	keys, err := g.DB().Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"alpha": keyA, "bravo": keyB}
	if len(keys) != len(want) {
		t.Fatalf("%d keys after the upgrade, want %d: %+v", len(keys), len(want), keys)
	}
	for _, k := range keys {
		stored := wire.Verifier(salt, want[k.Label])
		if k.V1Verifier != nil {
			t.Errorf("key %s still holds its version 1 verifier", k.Label)
		}
		if !bytes.Equal(k.StoredKey, stored) || k.KeyID != wire.KeyID(stored) {
			t.Errorf("key %s = id %s stored %x, want id %s stored %x", k.Label, k.KeyID, k.StoredKey, wire.KeyID(stored), stored)
		}
	}
	var v1Left int
	if err := g.DB().Pool().QueryRow(t.Context(), "SELECT count(*) FROM gateway_keys WHERE v1_verifier IS NOT NULL OR stored_key IS NULL").Scan(&v1Left); err != nil || v1Left != 0 {
		t.Fatalf("%d rows of version 1 left (%v)", v1Left, err)
	}

	// Idempotent: nothing left to convert, and nothing changes.
	if n, err := gateway.UpgradeKeys(t.Context(), g.DB(), salt, nil); err != nil || n != 0 {
		t.Fatalf("second UpgradeKeys = %d, %v; want 0, nil", n, err)
	}
	again, err := g.DB().Keys(t.Context())
	if err != nil || !slices.EqualFunc(keys, again, func(a, b db.Key) bool {
		return a.ID == b.ID && a.KeyID == b.KeyID && bytes.Equal(a.StoredKey, b.StoredKey)
	}) {
		t.Fatalf("keys changed on a second conversion: %+v, %v", again, err)
	}

	// Peers holding the keys are admitted, with the chain they compute
	// from the key text.
	gw, err := peer.ParseGateway("http://" + g.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	d := peer.Dialer{Gateway: gw, Timeout: 5 * time.Second}
	startAgent := func(key, name string) *agent.Agent {
		a, err := agent.New(agent.Config{Dialer: d, Key: key, Name: name, Services: map[string]string{"echo": mustEcho(t)},
			Logger: slog.New(slog.DiscardHandler), MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		actx, stop := context.WithCancel(context.Background())
		stopped := make(chan struct{})
		go func() { defer close(stopped); _ = a.Run(actx) }()
		t.Cleanup(func() { stop(); <-stopped })
		return a
	}
	waitFor(t, startAgent(keyA, "pc-a").Connected)
	c := &control.Control{Dialer: d, Key: keyA, Name: "op"}
	list, err := c.Browse(t.Context())
	if err != nil || len(list) != 1 || list[0].Name != "pc-a" {
		t.Fatalf("Browse with a converted key = %+v, %v", list, err)
	}

	// A node of version 1 still running can neither read the converted
	// rows (it would take their missing verifier for an empty one, which
	// anyone knowing a key ID can prove) nor write new version 1 rows.
	if _, err := g.DB().Pool().Exec(t.Context(), "SELECT id, key_id, label, verifier, created_at FROM gateway_keys"); err == nil {
		t.Error("version 1's query of the keys still works on the upgraded table")
	}
	v1 := wire.VerifierV1(salt, keyLate)
	if _, err := g.DB().Pool().Exec(t.Context(), "INSERT INTO gateway_keys (key_id, label, verifier) VALUES ($1, 'late', $2)", v1KeyID(v1), v1); err == nil {
		t.Error("version 1's insert of a key still works on the upgraded table")
	}

	// A row left unconverted (a conversion that failed at start) is
	// converted by the key poll.
	if _, err := g.DB().Pool().Exec(t.Context(), "INSERT INTO gateway_keys (key_id, label, v1_verifier) VALUES ($1, 'late', $2)", v1KeyID(v1), v1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, startAgent(keyLate, "pc-late").Connected)
	late, err := g.DB().Key(t.Context(), wire.KeyID(wire.Verifier(salt, keyLate)))
	if err != nil || late.V1Verifier != nil || late.Label != "late" {
		t.Fatalf("late key = %+v, %v", late, err)
	}
}

// TestUpgradeOfVersion1KeyAddedAgain: a key present both as a version 1 row
// and, added again with the new binary before any gateway started, as a
// version 2 row ends up once, as the version 2 row.
func TestUpgradeOfVersion1KeyAddedAgain(t *testing.T) {
	salt := []byte("another salt, also of 32 bytes!!")
	const k = "a-key-added-twice"
	url := v1Database(t, salt, map[string]string{k: "from v1"})
	st, err := db.Open(t.Context(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, added, err := gateway.AddKey(t.Context(), st, salt, k, "from v2"); err != nil || !added {
		t.Fatalf("AddKey = %v, %v", added, err)
	}
	if n, err := gateway.UpgradeKeys(t.Context(), st, salt, nil); err != nil || n != 1 {
		t.Fatalf("UpgradeKeys = %d, %v; want 1 row dealt with", n, err)
	}
	keys, err := st.Keys(t.Context())
	if err != nil || len(keys) != 1 || keys[0].Label != "from v2" || keys[0].V1Verifier != nil {
		t.Fatalf("keys = %+v, %v; want the version 2 row alone", keys, err)
	}
}
