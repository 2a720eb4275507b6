package signin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

const (
	attacker = "198.51.100.66"
	usual    = "192.0.2.20"
)

// signInOnce completes a sign-in of erin from ip, as the console or the
// relay does after the factors, so that ip becomes known.
func signInOnce(t *testing.T, s *Service, ip string) {
	t.Helper()
	ctx := context.Background()
	op, err := s.CheckPassword(ctx, "erin", "right password", ip)
	if err != nil {
		t.Fatalf("sign-in from %s: %v", ip, err)
	}
	if err := s.Completed(ctx, op, ip); err != nil {
		t.Fatal(err)
	}
}

// TestAttackerCannotLockOutOperator: 50 wrong passwords from one address
// neither stop the operator's sign-in from their usual address, at the
// console or from a Control, nor from an address never used before.
func TestAttackerCannotLockOutOperator(t *testing.T) {
	s, _, rec, _, _ := setup(t, DefaultPolicy)
	ctx := context.Background()
	signInOnce(t, s, usual)
	refused := 0
	for i := range 50 {
		_, err := s.CheckPassword(ctx, "erin", fmt.Sprintf("guess %d", i), attacker)
		switch {
		case i < DefaultPolicy.MaxFailures && !errors.Is(err, ErrBadCredentials):
			t.Fatalf("guess %d: %v", i, err)
		case i >= DefaultPolicy.MaxFailures && !errors.Is(err, ErrLocked) && !errors.Is(err, ErrThrottled):
			t.Fatalf("guess %d must be refused unchecked: %v", i, err)
		case err != nil && !errors.Is(err, ErrBadCredentials):
			refused++
		}
	}
	if refused != 50-DefaultPolicy.MaxFailures {
		t.Errorf("%d guesses refused unchecked, want %d", refused, 50-DefaultPolicy.MaxFailures)
	}
	if _, err := s.CheckPassword(ctx, "erin", "right password", attacker); !errors.Is(err, ErrLocked) && !errors.Is(err, ErrThrottled) {
		t.Errorf("the attacker's address with the right password: %v", err)
	}
	if op, err := s.CheckPassword(ctx, "erin", "right password", usual); err != nil || op.Name != "erin" {
		t.Fatalf("the console sign-in from the usual address: %v", err)
	}
	req := relay.AuthRequest{Role: wire.RoleBrowse, Control: "ctl", Operator: "erin", Password: "right password", PublicIP: usual}
	if res, err := s.Authenticate(ctx, req, silentChannel{t}); err != nil || res.Operator != "erin" || res.Token == "" {
		t.Fatalf("the Control's sign-in from the usual address: %+v %v", res, err)
	}
	if _, err := s.CheckPassword(ctx, "erin", "right password", "203.0.113.5"); err != nil {
		t.Errorf("an address never used before (5 failures are no delay yet): %v", err)
	}
	if n := rec.count("Operator erin locked out for " + attacker); n != 1 {
		t.Errorf("%d lock events for the attacker's address, want 1: %v", n, rec.evs)
	}
	if n := rec.count("Sign-in failed for operator erin from " + attacker); n != 51 {
		t.Errorf("%d failure events, want 51", n)
	}
}

// TestPairLockout: MaxFailures failures lock that (operator, address)
// pair only, for LockFor; operators unlock ends it.
func TestPairLockout(t *testing.T) {
	p := Policy{MaxFailures: 5, LockFor: time.Hour, MaxAddressFailures: 1000, DelayAfter: 1000}
	s, store, rec, _, op := setup(t, p)
	ctx := context.Background()
	for i := range 5 {
		if _, err := s.CheckPassword(ctx, "erin", "wrong", attacker); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
		if want := 0; i < 4 && rec.count("Operator erin locked out for "+attacker) != want {
			t.Fatalf("locked after %d failures", i+1)
		}
	}
	if rec.count("Operator erin locked out for "+attacker) != 1 {
		t.Fatalf("no lock event after 5 failures: %v", rec.evs)
	}
	if _, err := s.CheckPassword(ctx, "erin", "right password", attacker); !errors.Is(err, ErrLocked) {
		t.Errorf("the locked pair with the right password: %v", err)
	}
	if _, err := s.CheckPassword(ctx, "erin", "right password", "192.0.2.99"); err != nil {
		t.Errorf("another address: %v", err)
	}
	// An IPv6 pair is the /64.
	for i := range 5 {
		if _, err := s.CheckPassword(ctx, "erin", "wrong", fmt.Sprintf("2001:db8:1:2::%x", i+1)); !errors.Is(err, ErrBadCredentials) {
			t.Fatal(err)
		}
	}
	if _, err := s.CheckPassword(ctx, "erin", "right password", "2001:db8:1:2:ffff::1"); !errors.Is(err, ErrLocked) {
		t.Errorf("another address of the locked /64: %v", err)
	}
	if rec.count("Operator erin locked out for 2001:db8:1:2::/64") != 1 {
		t.Errorf("events %v", rec.evs)
	}
	if _, err := s.CheckPassword(ctx, "erin", "right password", "2001:db8:1:3::1"); err != nil {
		t.Errorf("the next /64: %v", err)
	}
	got, err := store.Operator(ctx, "erin")
	if err != nil || !got.LockedUntil.After(time.Now().Add(50*time.Minute)) {
		t.Errorf("LockedUntil %v, %v", got.LockedUntil, err)
	}
	// What `operators unlock` does.
	if err := store.SigninSucceeded(ctx, op.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckPassword(ctx, "erin", "right password", attacker); err != nil {
		t.Errorf("after unlock: %v", err)
	}
	if got, _ := store.Operator(ctx, "erin"); !got.LockedUntil.IsZero() || got.FailedSignins != 0 {
		t.Errorf("after unlock: locked until %v, %d attempts", got.LockedUntil, got.FailedSignins)
	}
}

// TestProgressiveDelay: past DelayAfter attempts for one operator from
// anywhere, an address the operator never signed in from waits, more and
// more up to DelayMax, while a known address does not; a second factor
// after a right password is not held back.
func TestProgressiveDelay(t *testing.T) {
	p := Policy{MaxFailures: 5, MaxAddressFailures: 1000, DelayAfter: 3, DelayBase: 4 * time.Second, DelayMax: 16 * time.Second}
	s, store, _, _, _ := setup(t, p)
	ctx := context.Background()
	signInOnce(t, s, usual)
	// Waiting out a delay, without the wait: the delay ends now.
	waitOut := func() {
		t.Helper()
		if _, err := store.Pool().Exec(ctx, "UPDATE operators SET signin_delay_until = now() - interval '1 millisecond'"); err != nil {
			t.Fatal(err)
		}
	}
	// delayed checks that a new address is refused for about want (the
	// tests's argon2 checks take their time under -race).
	delayed := func(want time.Duration) {
		t.Helper()
		_, err := s.CheckPassword(ctx, "erin", "right password", "203.0.113.99")
		var d *DelayError
		if !errors.As(err, &d) || !errors.Is(err, ErrThrottled) || d.Wait > want || d.Wait < want-3*time.Second {
			t.Fatalf("a new address during a delay of %v: %v", want, err)
		}
	}
	guess := func(ip string) {
		t.Helper()
		if _, err := s.CheckPassword(ctx, "erin", "wrong", ip); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("guess from %s: %v", ip, err)
		}
	}
	// A distributed guesser: one guess from each of many addresses. The
	// 4th attempt is checked, and makes the next wait DelayBase.
	for i := range 4 {
		guess(fmt.Sprintf("203.0.113.%d", i+1))
	}
	delayed(4 * time.Second)
	_, err := s.CheckPassword(ctx, "erin", "right password", "203.0.113.5")
	if codeOf(refusalFor(err)) != wire.CodeLocked || !strings.Contains(err.Error(), "try again in") {
		t.Errorf("the refusal: %v, wire code %q", err, codeOf(refusalFor(err)))
	}
	// The known address is exempt.
	if _, err := s.CheckPassword(ctx, "erin", "right password", usual); err != nil {
		t.Fatalf("the usual address during the delay: %v", err)
	}
	// Each attempt doubles the wait, up to DelayMax.
	for i, want := range []time.Duration{8 * time.Second, 16 * time.Second, 16 * time.Second} {
		waitOut()
		guess(fmt.Sprintf("203.0.113.%d", 10+i))
		delayed(want)
	}
	// A second factor right after its password is not held back.
	if err := s.CheckTOTP(ctx, withTOTP(t, store), "000000", "203.0.113.50"); !errors.Is(err, ErrBadCode) {
		t.Errorf("a TOTP code during the delay must be checked: %v", err)
	}
	// Once the delay has passed, a new address signs in.
	waitOut()
	if _, err := s.CheckPassword(ctx, "erin", "right password", "203.0.113.77"); err != nil {
		t.Errorf("a new address after the delay: %v", err)
	}
	// The attempts are forgotten after the window: no more delay.
	if _, err := store.Pool().Exec(ctx, "UPDATE signin_throttle SET last_attempt_at = now() - interval '16 minutes'"); err != nil {
		t.Fatal(err)
	}
	waitOut()
	guess("203.0.113.200")
	if _, err := s.CheckPassword(ctx, "erin", "right password", "203.0.113.201"); err != nil {
		t.Errorf("after the window: %v", err)
	}
}

func withTOTP(t *testing.T, store *db.DB) db.Operator {
	t.Helper()
	e, err := NewEnrolment("Switchboard", "erin")
	if err != nil {
		t.Fatal(err)
	}
	if err := store.SetTOTP(context.Background(), "erin", e.Secret); err != nil {
		t.Fatal(err)
	}
	op, err := store.Operator(context.Background(), "erin")
	if err != nil {
		t.Fatal(err)
	}
	return op
}

func TestDelaySteps(t *testing.T) {
	l := DefaultPolicy.limits()
	want := map[int]time.Duration{1: 0, 5: 0, 6: time.Second, 7: 2 * time.Second, 8: 4 * time.Second, 10: 16 * time.Second, 11: 30 * time.Second, 100: 30 * time.Second}
	for n, w := range want {
		if got := l.Delay(n); got != w {
			t.Errorf("Delay(%d) = %v, want %v", n, got, w)
		}
	}
}

// TestParallelGuessesCountedBeforeChecked: guesses sent at once are
// counted before any is checked, so no more are checked than the throttle
// allows: from one address, MaxFailures; from as many addresses as
// guesses, DelayAfter and the one that starts the delay.
func TestParallelGuessesCountedBeforeChecked(t *testing.T) {
	p := Policy{MaxFailures: 3, MaxAddressFailures: 1000, DelayAfter: 4, DelayBase: time.Minute, DelayMax: time.Minute}
	s, _, _, _, _ := setup(t, p)
	ctx := context.Background()
	parallel := func(ip func(i int) string) (checked, admitted int) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i := range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pw := "wrong"
				if i == 29 {
					pw = "right password"
				}
				_, err := s.CheckPassword(ctx, "erin", pw, ip(i))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					admitted++
				case errors.Is(err, ErrBadCredentials):
					checked++
				case !errors.Is(err, ErrLocked) && !errors.Is(err, ErrThrottled):
					t.Errorf("attempt %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
		return checked, admitted
	}
	if checked, _ := parallel(func(int) string { return "192.0.2.9" }); checked > p.MaxFailures {
		t.Errorf("one address: %d of 30 parallel wrong guesses were checked, the limit is %d", checked, p.MaxFailures)
	}
	s2, _, _, _, _ := setup(t, p)
	s = s2
	checked, admitted := parallel(func(i int) string { return fmt.Sprintf("203.0.113.%d", i+1) })
	if checked+admitted > p.DelayAfter+1 {
		t.Errorf("30 addresses: %d parallel attempts were checked, the limit is %d", checked+admitted, p.DelayAfter+1)
	}
}

// TestGhostsThrottledAlike: a name that is no operator gets the same
// refusals as one that is: pair lock and delay.
func TestGhostsThrottledAlike(t *testing.T) {
	p := Policy{MaxFailures: 2, MaxAddressFailures: 1000, DelayAfter: 3, DelayBase: time.Minute, DelayMax: time.Minute}
	s, _, _, _, _ := setup(t, p)
	ctx := context.Background()
	for _, name := range []string{"erin", "ghost"} {
		var errs []error
		for _, ip := range []string{"203.0.113.1", "203.0.113.1", "203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"} {
			_, err := s.CheckPassword(ctx, name, "wrong", ip)
			errs = append(errs, err)
		}
		// 2 failures, the pair's lock, 2 more failures (the 4th attempt
		// starts the delay), then the delay.
		var d *DelayError
		if !errors.Is(errs[0], ErrBadCredentials) || !errors.Is(errs[1], ErrBadCredentials) || !errors.Is(errs[2], ErrLocked) ||
			!errors.Is(errs[3], ErrBadCredentials) || !errors.Is(errs[4], ErrBadCredentials) || !errors.As(errs[5], &d) {
			t.Errorf("%s: %v", name, errs)
		}
	}
}
