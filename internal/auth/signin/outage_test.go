package signin

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/auth/password"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

// outageSetup is a store behind a proxy.
func outageSetup(t *testing.T) (*pgtest.Proxy, *db.DB) {
	t.Helper()
	proxy, u := pgtest.NewProxy(t, pgtest.MustURL(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := db.Open(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	return proxy, store
}

func addOperator(t *testing.T, store *db.DB, name string) db.Operator {
	t.Helper()
	hash, err := password.Hash("right password")
	if err != nil {
		t.Fatal(err)
	}
	op, err := store.AddOperator(context.Background(), db.Operator{Name: name, PasswordHash: hash, Role: db.RoleOperator})
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// startService is a gateway's Service: loaded, and kept current.
func startService(t *testing.T, store *db.DB) *Service {
	t.Helper()
	s := New(Config{Store: store, Refresh: 100 * time.Millisecond})
	if err := s.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// eventually retries check until it passes or 10 seconds have gone.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOutageKeptSignins: a gateway started while the database answered
// goes on admitting kept Control sign-ins from its copy when the database
// becomes unreachable, though no Control got through before (the sign-ins
// were made on another node); it refuses passwords with a message that
// says why; its copy followed what changed before the outage; and once the
// database is back, everything is checked there again.
func TestOutageKeptSignins(t *testing.T) {
	proxy, store := outageSetup(t)
	ctx := context.Background()
	addOperator(t, store, "erin")
	addOperator(t, store, "frank")
	addOperator(t, store, "gina")

	// Another node, where the Controls signed in.
	other := New(Config{Store: store})
	signIn := func(name, control string) string {
		t.Helper()
		res, err := other.Authenticate(ctx, relay.AuthRequest{Role: wire.RoleBrowse, Control: control, Operator: name,
			Password: "right password", PublicIP: "192.0.2.1"}, silentChannel{t})
		if err != nil || res.Token == "" {
			t.Fatalf("sign-in of %s: %+v %v", name, res, err)
		}
		return res.Token
	}
	erinTok, frankTok, ginaTok := signIn("erin", "ctl-e"), signIn("frank", "ctl-f"), signIn("gina", "ctl-g")

	// This gateway starts, and nobody has come through it yet.
	s := startService(t, store)
	// Changes before the outage reach the copy: frank disabled, gina's
	// sign-in revoked.
	// (Disabling deletes the operator's tokens; only the flag here, to see
	// that the copy checks it.)
	if _, err := store.Pool().Exec(ctx, "UPDATE operators SET disabled = true WHERE name = 'frank'"); err != nil {
		t.Fatal(err)
	}
	if err := store.RevokeOperatorTokens(ctx, "gina"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond) // a few refreshes

	proxy.Cut()
	token := func(name, control, tok string) (relay.AuthResult, error) {
		return s.Authenticate(ctx, relay.AuthRequest{Role: wire.RoleConnect, Control: control, Target: "pc/ssh",
			Operator: name, Token: tok, PublicIP: "192.0.2.1"}, silentChannel{t})
	}
	start := time.Now()
	res, err := token("erin", "ctl-e", erinTok)
	if err != nil || res.Operator != "erin" {
		t.Fatalf("erin's kept sign-in during the outage: %+v %v", res, err)
	}
	if took := time.Since(start); took > lookupTimeout+time.Second {
		t.Errorf("the first admission during the outage took %v", took)
	}
	// Once the outage is noticed, no lookup waits for the database.
	eventually(t, "the outage noticed", func() error {
		if !s.down.Load() {
			return errors.New("not yet")
		}
		return nil
	})
	start = time.Now()
	for range 20 {
		if _, err := token("erin", "ctl-e", erinTok); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("20 admissions from the copy took %v", took)
	}
	for _, c := range []struct {
		what, name, control, tok, code string
	}{
		{"frank, disabled before the outage", "frank", "ctl-f", frankTok, wire.CodeTokenInvalid},
		{"gina's revoked sign-in", "gina", "ctl-g", ginaTok, wire.CodeUnavailable},
		{"erin's token from another Control", "erin", "ctl-x", erinTok, wire.CodeTokenInvalid},
		{"erin's token under another name", "frank", "ctl-e", erinTok, wire.CodeTokenInvalid},
		{"a forged token", "erin", "ctl-e", erinTok[:len(erinTok)-2] + "xx", wire.CodeUnavailable},
	} {
		if _, err := token(c.name, c.control, c.tok); codeOf(err) != c.code {
			t.Errorf("%s: %v, want code %s", c.what, err, c.code)
		}
	}
	// Passwords are refused, saying why.
	_, err = s.Authenticate(ctx, relay.AuthRequest{Role: wire.RoleBrowse, Control: "ctl-e", Operator: "erin",
		Password: "right password", PublicIP: "192.0.2.1"}, silentChannel{t})
	if codeOf(err) != wire.CodeUnavailable || !strings.Contains(err.Error(), "cannot reach its database") {
		t.Errorf("a password during the outage: %v", err)
	}
	if _, err := s.CheckPassword(ctx, "erin", "right password", "192.0.2.1"); !errors.Is(err, ErrUnavailable) || IsRefusal(err) {
		t.Errorf("a console password during the outage: %v", err)
	}
	// A Control without credentials is still told to sign in.
	_, err = s.Authenticate(ctx, relay.AuthRequest{Role: wire.RoleBrowse, Control: "ctl-e", PublicIP: "192.0.2.1"}, silentChannel{t})
	if codeOf(err) != wire.CodeAuthRequired {
		t.Errorf("no operator during the outage: %v", err)
	}

	proxy.Restore()
	eventually(t, "a password sign-in once the database is back", func() error {
		_, err := s.Authenticate(ctx, relay.AuthRequest{Role: wire.RoleBrowse, Control: "ctl-e", Operator: "erin",
			Password: "right password", PublicIP: "192.0.2.1"}, silentChannel{t})
		return err
	})
	// Back to the database, which alone knows of a revocation made just now.
	if err := store.RevokeOperatorTokens(ctx, "erin"); err != nil {
		t.Fatal(err)
	}
	if _, err := token("erin", "ctl-e", erinTok); codeOf(err) != wire.CodeTokenInvalid {
		t.Errorf("a token revoked after the outage: %v", err)
	}
}

// TestOutageRequire2FA: 2FA required for everyone before the outage ends
// what kept sign-ins without a second factor admit, in the copy too.
func TestOutageRequire2FA(t *testing.T) {
	proxy, store := outageSetup(t)
	ctx := context.Background()
	addOperator(t, store, "erin")
	s := startService(t, store)
	res, err := s.Authenticate(ctx, relay.AuthRequest{Role: wire.RoleBrowse, Control: "ctl", Operator: "erin",
		Password: "right password", PublicIP: "192.0.2.1"}, silentChannel{t})
	if err != nil {
		t.Fatal(err)
	}
	set := DefaultSettings
	set.Require2FA = true
	if err := SaveSettings(ctx, store, set); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	proxy.Cut()
	req := relay.AuthRequest{Role: wire.RoleBrowse, Control: "ctl", Operator: "erin", Token: res.Token, PublicIP: "192.0.2.1"}
	if _, err := s.Authenticate(ctx, req, silentChannel{t}); codeOf(err) != wire.CodeTokenInvalid {
		t.Errorf("a sign-in without 2FA once 2FA is required: %v", err)
	}
}

// TestOutageNoOperators: a gateway without operators keeps admitting
// Controls by key alone through an outage, from its first Control on.
func TestOutageNoOperators(t *testing.T) {
	proxy, store := outageSetup(t)
	s := startService(t, store)
	proxy.Cut()
	res, err := s.Authenticate(context.Background(), relay.AuthRequest{Role: wire.RoleBrowse, Control: "ctl", PublicIP: "192.0.2.1"}, silentChannel{t})
	if err != nil || res.Operator != "" {
		t.Fatalf("a Control by key alone during the outage: %+v %v", res, err)
	}
}

// TestTokenIssuedJustBeforeOutage: a sign-in made on this node is in its
// copy at once, not only after the next refresh.
func TestTokenIssuedJustBeforeOutage(t *testing.T) {
	proxy, store := outageSetup(t)
	ctx := context.Background()
	addOperator(t, store, "erin")
	s := New(Config{Store: store, Refresh: time.Hour})
	if err := s.Load(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := s.Authenticate(ctx, relay.AuthRequest{Role: wire.RoleBrowse, Control: "ctl", Operator: "erin",
		Password: "right password", PublicIP: "192.0.2.1"}, silentChannel{t})
	if err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	got, err := s.Authenticate(ctx, relay.AuthRequest{Role: wire.RoleBrowse, Control: "ctl", Operator: "erin",
		Token: res.Token, PublicIP: "192.0.2.1"}, silentChannel{t})
	if err != nil || got.Operator != "erin" {
		t.Fatalf("the token issued just before the outage: %+v %v", got, err)
	}
}
