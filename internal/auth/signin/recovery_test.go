package signin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard/switchboard/db"
)

func TestRecoveryCodeForm(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"abcd-efgh-ijkl-mn23", "abcdefghijklmn23", true},
		{" ABCD EFGH IJKL MN23 ", "abcdefghijklmn23", true},
		{"abcdefghijklmn23", "abcdefghijklmn23", true},
		{"123456", "", false},             // a TOTP code
		{"abcd-efgh-ijkl-mn2", "", false}, // short
		{"abcd-efgh-ijkl-mn234", "", false},
		{"abcd-efgh-ijkl-mn18", "", false}, // not base32
		{"", "", false},
	} {
		got, ok := recoveryCode(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("recoveryCode(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	codes, hashes, err := NewRecoveryCodes(RecoveryCodeCount)
	if err != nil || len(codes) != 10 || len(hashes) != 10 {
		t.Fatalf("%d codes, %d hashes, %v", len(codes), len(hashes), err)
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if _, ok := recoveryCode(c); !ok || seen[c] {
			t.Errorf("code %q does not read back, or repeats", c)
		}
		seen[c] = true
	}
}

// TestRecoveryCodes: a recovery code stands in for a TOTP code once, on
// the same path (CheckTOTP) the console and Controls use, with an event;
// its attempts count as a TOTP code's do.
func TestRecoveryCodes(t *testing.T) {
	s, store, rec, _, op := setup(t, Policy{MaxFailures: 3})
	ctx := context.Background()
	if err := store.SetTOTP(ctx, op.Name, "JBSWY3DPEHPK3PXP"); err != nil {
		t.Fatal(err)
	}
	op, _ = store.Operator(ctx, op.Name)
	codes, err := s.IssueRecoveryCodes(ctx, op, "192.0.2.1")
	if err != nil || len(codes) != RecoveryCodeCount {
		t.Fatalf("%d codes, %v", len(codes), err)
	}
	if rec.count("Operator erin generated 10 new recovery codes from 192.0.2.1") != 1 {
		t.Errorf("events: %q", rec.evs)
	}

	t.Run("a code works once", func(t *testing.T) {
		if err := s.CheckTOTP(ctx, op, codes[0], "192.0.2.1"); err != nil {
			t.Fatalf("refused: %v", err)
		}
		if rec.count("Operator erin used a recovery code from 192.0.2.1 instead of a TOTP code (9 left)") != 1 {
			t.Errorf("events: %q", rec.evs)
		}
		if err := s.CheckTOTP(ctx, op, codes[0], "192.0.2.1"); !errors.Is(err, ErrBadCode) {
			t.Errorf("a used code: %v", err)
		}
	})
	t.Run("the same code in parallel signs in once", func(t *testing.T) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok := 0
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if s.CheckTOTP(ctx, op, codes[1], fmt.Sprintf("192.0.2.%d", 10+i)) == nil {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if ok != 1 {
			t.Errorf("%d parallel sign-ins with one code", ok)
		}
	})
	t.Run("a code works when the TOTP secret cannot be read", func(t *testing.T) {
		broken := op
		broken.TOTPUnreadable = true
		if err := s.CheckTOTP(ctx, broken, "123456", "192.0.2.1"); !errors.Is(err, ErrTOTPUnreadable) {
			t.Errorf("a TOTP code: %v", err)
		}
		if err := s.CheckTOTP(ctx, broken, strings.ToUpper(codes[2]), "192.0.2.1"); err != nil {
			t.Errorf("a recovery code: %v", err)
		}
	})
	t.Run("wrong codes are throttled like TOTP codes", func(t *testing.T) {
		for range 3 {
			if err := s.CheckTOTP(ctx, op, "aaaa-bbbb-cccc-dddd", "198.51.100.1"); !errors.Is(err, ErrBadCode) {
				t.Fatalf("a wrong code: %v", err)
			}
		}
		if err := s.CheckTOTP(ctx, op, codes[3], "198.51.100.1"); !errors.Is(err, ErrLocked) {
			t.Errorf("after 3 wrong codes, a right one: %v", err)
		}
		if rec.count("Sign-in failed for operator erin from 198.51.100.1") < 3 {
			t.Errorf("events: %q", rec.evs)
		}
	})
	t.Run("new codes end the old ones", func(t *testing.T) {
		if _, err := s.IssueRecoveryCodes(ctx, op, "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
		if err := s.CheckTOTP(ctx, op, codes[4], "203.0.113.9"); !errors.Is(err, ErrBadCode) {
			t.Errorf("an old code: %v", err)
		}
	})
}

// TestConfirmPassword: typing the password again is checked and throttled
// as a sign-in but is none: no sign-in event, no last sign-in.
func TestConfirmPassword(t *testing.T) {
	s, store, rec, _, op := setup(t, Policy{MaxFailures: 2})
	ctx := context.Background()
	if _, err := s.ConfirmPassword(ctx, op.Name, "right password", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := store.Operator(ctx, op.Name); !got.LastSigninAt.IsZero() || rec.count("Operator erin signed in from 192.0.2.1") != 0 {
		t.Error("confirming the password counted as a sign-in")
	}
	for range 2 {
		if _, err := s.ConfirmPassword(ctx, op.Name, "wrong", "192.0.2.1"); !errors.Is(err, ErrBadCredentials) {
			t.Fatal(err)
		}
	}
	if _, err := s.ConfirmPassword(ctx, op.Name, "right password", "192.0.2.1"); !errors.Is(err, ErrLocked) {
		t.Errorf("after 2 wrong passwords: %v", err)
	}
}

// TestDuoFieldsTogether: the three Duo values go together, or none.
func TestDuoFieldsTogether(t *testing.T) {
	fields := func(errs []FieldError) string {
		var f []string
		for _, e := range errs {
			f = append(f, e.Field)
		}
		return strings.Join(f, ",")
	}
	const ikey = "DIABCDEFGHIJ12345678"
	for _, tc := range []struct {
		name   string
		s      Settings
		stored bool
		want   string
	}{
		{"none is no Duo", Settings{}, false, ""},
		{"none with a stored secret removes Duo", Settings{}, true, ""},
		{"all three", Settings{DuoIntegrationKey: ikey, DuoSecretKey: "s", DuoAPIHost: "api-1.duosecurity.com"}, false, ""},
		{"the stored secret counts", Settings{DuoIntegrationKey: ikey, DuoAPIHost: "api-1.duosecurity.com"}, true, ""},
		{"an integration key alone", Settings{DuoIntegrationKey: ikey}, false, "duo_skey,duo_host"},
		{"a host alone", Settings{DuoAPIHost: "api-1.duosecurity.com"}, false, "duo_ikey,duo_skey"},
		{"a bad integration key", Settings{DuoIntegrationKey: "DI123", DuoSecretKey: "s", DuoAPIHost: "h"}, false, "duo_ikey"},
		{"a URL for a host", Settings{DuoIntegrationKey: ikey, DuoSecretKey: "s", DuoAPIHost: "https://api-1.duosecurity.com"}, false, "duo_host"},
		{"an unreadable secret", Settings{DuoIntegrationKey: ikey, DuoAPIHost: "h", DuoSecretUnreadable: true}, false, "duo_skey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fields(tc.s.ValidateDuo(tc.stored)); got != tc.want {
				t.Errorf("fields %q, want %q", got, tc.want)
			}
		})
	}
}

var _ RecoveryStore = (*db.DB)(nil)
