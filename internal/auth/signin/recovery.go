package signin

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strings"
	"sync"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/internal/auth/password"
)

// Recovery codes stand in for a TOTP code when the authenticator app is
// lost: RecoveryCodeCount of them are made at enrolment (and again on
// request), shown once, and each signs in once wherever a TOTP code is
// asked for (the console's code page, a Control's prompt). They are typed
// as four groups of four characters; case, spaces and dashes do not
// matter.
//
// A code is 80 random bits (16 base32 characters). Only an argon2id hash
// of each is stored (password.HashCode): the codes are not guessable, so
// the hash has to withstand only an offline search of 2^80, which no
// hash function's speed makes feasible; argon2id makes it costlier still
// and needs no key, so a lost secrets key does not lose the codes (they
// then are the way back in). An attempt with a code is throttled and
// counted exactly as a TOTP code is.
const RecoveryCodeCount = 10

// recoveryBytes is the randomness of one code: 80 bits, 16 base32 characters.
const recoveryBytes = 10

var recoveryEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// RecoveryStore is where recovery code hashes live.
type RecoveryStore interface {
	SetRecoveryCodes(ctx context.Context, id int64, hashes []string) error
	RecoveryCodes(ctx context.Context, id int64) ([]db.RecoveryCode, error)
	UseRecoveryCode(ctx context.Context, operatorID, codeID int64) (ok bool, left int, err error)
}

// NewRecoveryCodes makes n fresh codes, as shown to the operator, and the
// hashes to store of them.
func NewRecoveryCodes(n int) (codes, hashes []string, err error) {
	for range n {
		b := make([]byte, recoveryBytes)
		if _, err := rand.Read(b); err != nil {
			return nil, nil, fmt.Errorf("signin: recovery code: %w", err)
		}
		raw := strings.ToLower(recoveryEncoding.EncodeToString(b))
		h, err := password.HashCode(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("signin: recovery code: %w", err)
		}
		codes = append(codes, raw[0:4]+"-"+raw[4:8]+"-"+raw[8:12]+"-"+raw[12:16])
		hashes = append(hashes, h)
	}
	return codes, hashes, nil
}

// dummyCodeHash is checked against when an operator has no codes; made on
// first use, as argon2id costs time and memory.
var dummyCodeHash = sync.OnceValue(func() string {
	h, _ := password.HashCode("no operator has this code")
	return h
})

// recoveryCode reports whether s is typed like a recovery code, and its
// canonical form (what is hashed): lower case, without spaces or dashes.
func recoveryCode(s string) (string, bool) {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r == '-' || r == ' ' || r == '\t':
		case r >= 'a' && r <= 'z', r >= '2' && r <= '7':
			b.WriteRune(r)
		default:
			return "", false
		}
		if b.Len() > 16 {
			return "", false
		}
	}
	return b.String(), b.Len() == 16
}

// IssueRecoveryCodes replaces op's recovery codes with a new set and
// returns it, to be shown once: the old codes stop working.
func (s *Service) IssueRecoveryCodes(ctx context.Context, op db.Operator, ip string) ([]string, error) {
	st, ok := s.store.(RecoveryStore)
	if !ok {
		return nil, fmt.Errorf("signin: this store keeps no recovery codes")
	}
	codes, hashes, err := NewRecoveryCodes(RecoveryCodeCount)
	if err != nil {
		return nil, err
	}
	if err := st.SetRecoveryCodes(ctx, op.ID, hashes); err != nil {
		return nil, s.storeTrouble(ctx, err)
	}
	e := event.RecoveryCodesMade(op.Name, ip, len(codes))
	e.Time = s.now()
	s.events.Emit(e)
	return codes, nil
}

// checkRecovery checks a recovery code (canonical form) of op's, whose
// attempt has been counted: spent when it matches an unused one.
func (s *Service) checkRecovery(ctx context.Context, op db.Operator, code, ip string) error {
	st, ok := s.store.(RecoveryStore)
	if !ok {
		s.failed(ctx, op, ip)
		return ErrBadCode
	}
	stored, err := st.RecoveryCodes(ctx, op.ID)
	if err != nil {
		return s.storeTrouble(ctx, err)
	}
	// Each hash has its own salt, so each is checked; stopping at the
	// match tells only which of the operator's own codes it was.
	for _, c := range stored {
		if password.Check(c.Hash, code) != nil {
			continue
		}
		used, left, err := st.UseRecoveryCode(ctx, op.ID, c.ID)
		if err != nil {
			return s.storeTrouble(ctx, err)
		}
		if !used {
			break // spent in parallel: the other sign-in had it
		}
		e := event.RecoveryCodeUsed(op.Name, ip, left)
		e.Time = s.now()
		s.events.Emit(e)
		return nil
	}
	if len(stored) == 0 {
		// Nothing was compared: spend a check's time anyway, so that
		// whether an operator has codes does not show.
		_ = password.Check(dummyCodeHash(), code)
	}
	s.failed(ctx, op, ip)
	return ErrBadCode
}
