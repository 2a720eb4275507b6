package signin

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/internal/auth/password"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

// recorder keeps the events a Service emits.
type recorder struct {
	mu  sync.Mutex
	evs []string
}

func (r *recorder) Emit(e event.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, e.Message)
}

func (r *recorder) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.evs {
		if m == msg {
			n++
		}
	}
	return n
}

// clock is a settable time for the throttling windows.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func setup(t *testing.T, p Policy) (*Service, *db.DB, *recorder, *clock, db.Operator) {
	t.Helper()
	store := pgtest.MustDB(t)
	hash, err := password.Hash("right password")
	if err != nil {
		t.Fatal(err)
	}
	op, err := store.AddOperator(context.Background(), db.Operator{Name: "erin", PasswordHash: hash, Role: db.RoleOperator})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	clk := &clock{t: time.Now()}
	return New(Config{Store: store, Events: rec, Policy: p, Now: clk.now}), store, rec, clk, op
}

// TestAddressThrottle: failures from one address, spread over accounts
// that exist and accounts that do not, refuse that address for the window
// and no other address.
func TestAddressThrottle(t *testing.T) {
	p := Policy{MaxFailures: 100, LockFor: time.Minute, MaxAddressFailures: 3, AddressWindow: time.Minute}
	s, _, rec, clk, _ := setup(t, p)
	ctx := context.Background()
	for _, name := range []string{"erin", "nobody", "someone"} {
		if _, err := s.CheckPassword(ctx, name, "guess", "192.0.2.7"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if _, err := s.CheckPassword(ctx, "erin", "right password", "192.0.2.7"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("the address must be refused even with the right password: %v", err)
	}
	if _, err := s.CheckPassword(ctx, "erin", "right password", "192.0.2.8"); err != nil {
		t.Fatalf("another address must not be refused: %v", err)
	}
	clk.add(2 * time.Minute)
	if _, err := s.CheckPassword(ctx, "erin", "right password", "192.0.2.7"); err != nil {
		t.Fatalf("after the window the address may try again: %v", err)
	}
	if n := rec.count("Sign-in failed for operator nobody from 192.0.2.7"); n != 1 {
		t.Errorf("events for an unknown name: %d", n)
	}
}

// TestLockoutExpires: the lock of an (operator, address) pair lasts
// LockFor, then the right password works and the count starts again.
func TestLockoutExpires(t *testing.T) {
	p := Policy{MaxFailures: 2, LockFor: time.Second, MaxAddressFailures: 100, AddressWindow: time.Minute}
	s, store, rec, _, op := setup(t, p)
	ctx := context.Background()
	for range 2 {
		if _, err := s.CheckPassword(ctx, "erin", "wrong", "192.0.2.1"); !errors.Is(err, ErrBadCredentials) {
			t.Fatal(err)
		}
	}
	if rec.count("Operator erin locked out for 192.0.2.1") != 1 {
		t.Fatalf("events = %v", rec.evs)
	}
	locked, err := store.Operator(ctx, "erin")
	if err != nil || !locked.LockedUntil.After(time.Now()) {
		t.Fatalf("not locked: %+v %v", locked.LockedUntil, err)
	}
	// The lock is in the database, read by the real clock.
	s.now = time.Now
	if _, err := s.CheckPassword(ctx, "erin", "right password", "192.0.2.1"); !errors.Is(err, ErrLocked) {
		t.Fatalf("locked account: %v", err)
	}
	time.Sleep(1100 * time.Millisecond)
	got, err := s.CheckPassword(ctx, "erin", "right password", "192.0.2.1")
	if err != nil || got.ID != op.ID {
		t.Fatalf("after the lock: %v", err)
	}
}

// TestTOTPWindowAndReplay: codes one step either side of now are accepted,
// two steps away are not, and no code is accepted twice, not even an
// older one after a newer.
func TestTOTPWindowAndReplay(t *testing.T) {
	// Every code checked counts as an attempt until a sign-in completes:
	// a roomy limit keeps the lockout out of this test.
	s, store, _, clk, op := setup(t, Policy{MaxFailures: 100, LockFor: time.Minute, MaxAddressFailures: 100, AddressWindow: time.Minute})
	ctx := context.Background()
	e, err := NewEnrolment("Switchboard", "erin")
	if err != nil {
		t.Fatal(err)
	}
	if err := store.SetTOTP(ctx, "erin", e.Secret); err != nil {
		t.Fatal(err)
	}
	op, err = store.Operator(ctx, "erin")
	if err != nil {
		t.Fatal(err)
	}
	now := clk.now()
	code := func(d time.Duration) string {
		c, err := totp.GenerateCode(e.Secret, now.Add(d))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := s.CheckTOTP(ctx, op, code(-90*time.Second), "192.0.2.1"); !errors.Is(err, ErrBadCode) {
		t.Errorf("a code three steps old: %v", err)
	}
	if err := s.CheckTOTP(ctx, op, code(-30*time.Second), "192.0.2.1"); err != nil {
		t.Errorf("the previous step's code: %v", err)
	}
	if err := s.CheckTOTP(ctx, op, code(30*time.Second), "192.0.2.1"); err != nil {
		t.Errorf("the next step's code: %v", err)
	}
	if err := s.CheckTOTP(ctx, op, code(0), "192.0.2.1"); !errors.Is(err, ErrBadCode) {
		t.Errorf("a code older than one used must be refused: %v", err)
	}
	if err := s.CheckTOTP(ctx, op, code(30*time.Second), "192.0.2.1"); !errors.Is(err, ErrBadCode) {
		t.Errorf("a used code must be refused: %v", err)
	}
	if err := s.CheckTOTP(ctx, op, "12345", "192.0.2.1"); !errors.Is(err, ErrBadCode) {
		t.Errorf("a short code: %v", err)
	}
}

// silentChannel fails the test if the gateway asks for a second factor.
type silentChannel struct{ t *testing.T }

func (c silentChannel) Ask(context.Context, string, string, time.Duration) (string, error) {
	c.t.Error("asked for a code")
	return "", errors.New("no")
}

func (c silentChannel) Tell(string, string, time.Duration) error {
	c.t.Error("told to wait")
	return nil
}

// TestTokens: a token admits only its own operator, only until it expires,
// and not after the password changes.
func TestTokens(t *testing.T) {
	s, store, _, _, _ := setup(t, DefaultPolicy)
	ctx := context.Background()
	req := relay.AuthRequest{Role: wire.RoleBrowse, Control: "ctl", Operator: "erin", Password: "right password", PublicIP: "192.0.2.1"}
	res, err := s.Authenticate(ctx, req, silentChannel{t})
	if err != nil || res.Token == "" || res.Operator != "erin" {
		t.Fatalf("sign-in: %+v %v", res, err)
	}
	if !res.Expires.After(time.Now().Add(7*time.Hour)) || res.Expires.After(time.Now().Add(9*time.Hour)) {
		t.Errorf("expires %v, want in about 8 hours", res.Expires)
	}
	withToken := relay.AuthRequest{Role: wire.RoleBrowse, Control: "ctl", Operator: "erin", Token: res.Token, PublicIP: "192.0.2.1"}
	if got, err := s.Authenticate(ctx, withToken, silentChannel{t}); err != nil || got.Operator != "erin" || got.Token != "" {
		t.Fatalf("token: %+v %v", got, err)
	}
	other := withToken
	other.Operator = "mallory"
	if _, err := s.Authenticate(ctx, other, silentChannel{t}); codeOf(err) != wire.CodeTokenInvalid {
		t.Errorf("a token under another name: %v", err)
	}
	forged := withToken
	forged.Token = res.Token[:len(res.Token)-1] + "x"
	if _, err := s.Authenticate(ctx, forged, silentChannel{t}); codeOf(err) != wire.CodeTokenInvalid {
		t.Errorf("a forged token: %v", err)
	}
	hash, _ := password.Hash("a new password!")
	if err := store.UpdateOperator(ctx, "erin", hash, db.RoleOperator, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, withToken, silentChannel{t}); codeOf(err) != wire.CodeTokenInvalid {
		t.Errorf("a token after a password change: %v", err)
	}
	if _, err := s.Authenticate(ctx, req, silentChannel{t}); codeOf(err) != wire.CodeUnauthorized {
		t.Errorf("the old password after a change: %v", err)
	}
	req.Password = "a new password!"
	res, err = s.Authenticate(ctx, req, silentChannel{t})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Pool().Exec(ctx, "UPDATE control_tokens SET expires_at = now() - interval '1 second'"); err != nil {
		t.Fatal(err)
	}
	withToken.Token = res.Token
	if _, err := s.Authenticate(ctx, withToken, silentChannel{t}); codeOf(err) != wire.CodeTokenInvalid {
		t.Errorf("an expired token: %v", err)
	}
}

func codeOf(err error) string {
	var we *wire.Error
	if errors.As(err, &we) {
		return we.Code
	}
	return ""
}

// TestLockedMessageForUnknownNames: a name that is no operator is locked
// out like one that is, so the lock says nothing about existence.
func TestLockedMessageForUnknownNames(t *testing.T) {
	p := Policy{MaxFailures: 2, LockFor: time.Minute, MaxAddressFailures: 100, AddressWindow: time.Minute}
	s, _, _, _, _ := setup(t, p)
	ctx := context.Background()
	for _, name := range []string{"erin", "ghost"} {
		var last error
		for range p.MaxFailures + 1 {
			_, last = s.CheckPassword(ctx, name, "wrong", "192.0.2.10")
		}
		if !errors.Is(last, ErrLocked) {
			t.Errorf("%s after %d failures: %v", name, p.MaxFailures+1, last)
		}
	}
	if _, err := s.CheckPassword(ctx, "bad\nname", "x", "192.0.2.10"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("a name with a line break: %v", err)
	}
}
