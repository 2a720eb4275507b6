package signin

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/auth/sealed"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

const (
	totpSecret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	duoSecret  = "duo-secret-key-0123456789abcdef0123456789"
)

// syncBuffer is a log destination for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// stored is a column as PostgreSQL holds it.
func stored(t *testing.T, store *db.DB, query string) string {
	t.Helper()
	var v string
	if err := store.Pool().QueryRow(context.Background(), query).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// clearSecretsSetup is a database as the version before left it: erin's
// TOTP secret and the Duo secret key in clear.
func clearSecretsSetup(t *testing.T) (u string) {
	t.Helper()
	u = pgtest.MustURL(t)
	ctx := context.Background()
	store, err := db.Open(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	addOperator(t, store, "erin")
	addOperator(t, store, "frank")
	if _, err := store.Pool().Exec(ctx, "UPDATE operators SET totp_secret = $1, factor = 'totp', require_2fa = true WHERE name = 'erin'", totpSecret); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Pool().Exec(ctx, `INSERT INTO settings (name, value) VALUES ('duo_secret_key', $1), ('duo_integration_key', 'DIXXXXXXXXXXXXXXXXXX'),
		('duo_api_host', 'api-12345678.duosecurity.com')`, duoSecret); err != nil {
		t.Fatal(err)
	}
	return u
}

func openStore(t *testing.T, u string) *db.DB {
	t.Helper()
	store, err := db.Open(context.Background(), u, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	return store
}

// TestSecretsSealedInPlace: the first start seals what was in clear, bound
// to its row, and reads it back; a second start changes nothing; new
// secrets are stored sealed; no secret reaches the log.
func TestSecretsSealedInPlace(t *testing.T) {
	u := clearSecretsSetup(t)
	ctx := context.Background()
	dataDir := t.TempDir()
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store := openStore(t, u)
	if err := ProtectSecrets(ctx, store, "", dataDir, log); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dataDir, SecretsKeyName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secrets.key: %v %v", fi, err)
	}
	totpRow := stored(t, store, "SELECT totp_secret FROM operators WHERE name = 'erin'")
	duoRow := stored(t, store, "SELECT value FROM settings WHERE name = 'duo_secret_key'")
	for _, v := range []string{totpRow, duoRow} {
		if !sealed.IsSealed(v) || strings.Contains(v, totpSecret) || strings.Contains(v, duoSecret) {
			t.Errorf("stored %q", v)
		}
	}
	op, err := store.Operator(ctx, "erin")
	if err != nil || op.TOTPSecret != totpSecret || op.TOTPUnreadable {
		t.Fatalf("erin's secret read back: %v %v", op.TOTPUnreadable, err)
	}
	set, err := LoadSettings(ctx, store)
	if err != nil || set.DuoSecretKey != duoSecret || set.DuoSecretUnreadable {
		t.Fatalf("Duo secret read back: %v %v", set.DuoSecretUnreadable, err)
	}

	// Idempotent: a second start (another process) seals nothing again.
	store2 := openStore(t, u)
	if err := ProtectSecrets(ctx, store2, "", dataDir, log); err != nil {
		t.Fatal(err)
	}
	if again := stored(t, store, "SELECT totp_secret FROM operators WHERE name = 'erin'"); again != totpRow {
		t.Error("a second start sealed erin's secret again")
	}

	// Bound to the row: erin's sealed secret copied to frank does not open.
	if _, err := store.Pool().Exec(ctx, "UPDATE operators SET totp_secret = $1 WHERE name = 'frank'", totpRow); err != nil {
		t.Fatal(err)
	}
	if f, err := store.Operator(ctx, "frank"); err != nil || !f.TOTPUnreadable || f.TOTPSecret == totpSecret {
		t.Errorf("a secret moved to another row opens: %v", err)
	}
	if err := store.SetTOTP(ctx, "frank", ""); err != nil {
		t.Fatal(err)
	}

	// New secrets are sealed when written.
	if err := store.SetTOTP(ctx, "frank", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"); err != nil {
		t.Fatal(err)
	}
	if v := stored(t, store, "SELECT totp_secret FROM operators WHERE name = 'frank'"); !sealed.IsSealed(v) {
		t.Errorf("a new TOTP secret is stored %q", v)
	}
	set.DuoSecretKey = "another-duo-secret-0123456789abcdef012345"
	if err := SaveSettings(ctx, store, set); err != nil {
		t.Fatal(err)
	}
	if v := stored(t, store, "SELECT value FROM settings WHERE name = 'duo_secret_key'"); !sealed.IsSealed(v) || strings.Contains(v, "another") {
		t.Errorf("a new Duo secret is stored %q", v)
	}
	for _, secret := range []string{totpSecret, duoSecret, "another-duo-secret", "GEZDGNBVGY3TQOJQ"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds a secret:\n%s", logs.String())
		}
	}
}

// TestSecretsKeyLost: with another key (secrets.key lost and made again,
// or a node with a key of its own) the gateway starts; the sealed secrets
// are reported in the log; the sign-ins that need them fail saying what to
// do; everything else works; `operators reset-totp` and entering the Duo
// secret key again repair them.
func TestSecretsKeyLost(t *testing.T) {
	u := clearSecretsSetup(t)
	ctx := context.Background()
	if err := ProtectSecrets(ctx, openStore(t, u), "", t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
	// The key is lost: the next start makes a new one.
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	store := openStore(t, u)
	if err := ProtectSecrets(ctx, store, "", t.TempDir(), log); err != nil {
		t.Fatalf("a start with another key must not fail: %v", err)
	}
	if l := logs.String(); !strings.Contains(l, "TOTP of operator erin") || !strings.Contains(l, "setting duo_secret_key") ||
		!strings.Contains(l, "reset-totp") || !strings.Contains(l, "another secrets key") {
		t.Errorf("the log does not tell what cannot be read and what to do:\n%s", l)
	}
	s := New(Config{Store: store, Logger: log})
	if err := s.Load(ctx); err != nil {
		t.Fatalf("the copy with an unreadable Duo secret: %v", err)
	}
	op, err := store.Operator(ctx, "erin")
	if err != nil || !op.TOTPUnreadable || op.TOTPSecret == "" {
		t.Fatalf("erin: unreadable %v, %v", op.TOTPUnreadable, err)
	}
	ops, err := store.Operators(ctx)
	if err != nil || len(ops) != 2 {
		t.Fatalf("listing operators: %v", err)
	}
	// TOTP: refused before any code is asked, saying what to do.
	req := relay.AuthRequest{Role: wire.RoleBrowse, Control: "ctl", Operator: "erin", Password: "right password", PublicIP: "192.0.2.1"}
	_, err = s.Authenticate(ctx, req, silentChannel{t})
	if codeOf(err) != wire.CodeUnavailable || !strings.Contains(err.Error(), "operators reset-totp") {
		t.Errorf("erin's Control sign-in: %v", err)
	}
	code, _ := totp.GenerateCode(totpSecret, time.Now())
	if err := s.CheckTOTP(ctx, op, code, "192.0.2.1"); !errors.Is(err, ErrTOTPUnreadable) || IsRefusal(err) {
		t.Errorf("erin's console code: %v", err)
	}
	// Duo: refused as not configured, saying what to do.
	set, err := LoadSettings(ctx, store)
	if err != nil || !set.DuoSecretUnreadable || set.DuoSecretKey != "" || set.DuoIntegrationKey == "" {
		t.Fatalf("settings: %+v %v", set.DuoSecretUnreadable, err)
	}
	if _, err := s.Duo(set); !errors.Is(err, ErrDuoConfig) || !strings.Contains(err.Error(), "enter the Duo secret key again") {
		t.Errorf("Duo: %v", err)
	}
	// Everything else works: frank's password, the settings, tokens.
	freq := req
	freq.Operator = "frank"
	res, err := s.Authenticate(ctx, freq, silentChannel{t})
	if err != nil || res.Token == "" {
		t.Fatalf("frank's sign-in: %v", err)
	}
	freq.Password, freq.Token = "", res.Token
	if _, err := s.Authenticate(ctx, freq, silentChannel{t}); err != nil {
		t.Errorf("frank's kept sign-in: %v", err)
	}
	// The repairs: reset-totp, and the Duo secret key entered again.
	if err := store.SetTOTP(ctx, "erin", ""); err != nil {
		t.Fatal(err)
	}
	if err := store.SetSecondFactor(ctx, "erin", db.FactorNone, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, req, silentChannel{t}); err != nil {
		t.Errorf("erin after reset-totp: %v", err)
	}
	set.DuoSecretKey = duoSecret
	if err := SaveSettings(ctx, store, set); err != nil {
		t.Fatal(err)
	}
	if set, err := LoadSettings(ctx, store); err != nil || set.DuoSecretKey != duoSecret || set.DuoSecretUnreadable {
		t.Errorf("the Duo secret entered again: %v", err)
	}
	if _, err := store.SealClearSecrets(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestSecretsKeyFile: a key given as a file (containers, clusters) must
// exist; nodes given the same key read each other's secrets.
func TestSecretsKeyFile(t *testing.T) {
	u := clearSecretsSetup(t)
	ctx := context.Background()
	dir := t.TempDir()
	if err := ProtectSecrets(ctx, openStore(t, u), filepath.Join(dir, "missing.key"), "", nil); err == nil ||
		!strings.Contains(err.Error(), "--secrets-key-file") {
		t.Errorf("a missing key file: %v", err)
	}
	key, _ := sealed.NewKey()
	keyFile := filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(key)+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	node1, node2 := openStore(t, u), openStore(t, u)
	for _, st := range []*db.DB{node1, node2} {
		if err := ProtectSecrets(ctx, st, keyFile, t.TempDir(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := node1.SetTOTP(ctx, "frank", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"); err != nil {
		t.Fatal(err)
	}
	if op, err := node2.Operator(ctx, "frank"); err != nil || op.TOTPSecret != "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" {
		t.Errorf("node 2 reads node 1's secret: %v", err)
	}
}
