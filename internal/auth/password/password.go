// Package password hashes operator passwords with argon2id and checks them
// in constant time. Hashes are self-describing PHC strings, so parameters
// can be raised later without invalidating stored hashes.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
)

// Parameters follow RFC 9106's second recommended option (64 MiB would
// make a burst of sign-ins a memory problem on a small gateway): 19 MiB,
// 2 passes, 1 lane, as OWASP recommends for argon2id.
const (
	memoryKiB = 19 * 1024
	passes    = 2
	lanes     = 1
	saltLen   = 16
	keyLen    = 32
)

// MinLength is the shortest password accepted for an operator.
const MinLength = 10

// ErrMismatch means the password does not match the hash.
var ErrMismatch = errors.New("password does not match")

// Hash returns the PHC string of an argon2id hash of pw.
func Hash(pw string) (string, error) { return hash(pw, memoryKiB, passes) }

// Recovery codes are hashed with a lighter argon2id: a code carries 80
// random bits (see internal/auth/signin), so no dictionary helps and an
// offline search of a stolen table costs 2^79 hashes on average whatever
// their price; the KDF is defence in depth. Light, because a sign-in with
// a code checks it against up to ten hashes.
const (
	codeMemoryKiB = 4 * 1024
	codePasses    = 1
)

// HashCode returns the PHC string of an argon2id hash of a high-entropy
// one-time code; Check verifies it.
func HashCode(code string) (string, error) { return hash(code, codeMemoryKiB, codePasses) }

func hash(pw string, memoryKiB, passes uint32) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password: salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, passes, memoryKiB, lanes, keyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, memoryKiB, passes, lanes,
		enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// Check returns nil if pw matches hash, ErrMismatch if not, and another
// error if hash is not a hash this package understands.
func Check(hash, pw string) error {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return errors.New("password: not an argon2id hash")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return errors.New("password: unsupported argon2 version")
	}
	var m uint32
	var t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return fmt.Errorf("password: parameters: %w", err)
	}
	enc := base64.RawStdEncoding
	salt, err := enc.DecodeString(parts[4])
	if err != nil {
		return fmt.Errorf("password: salt: %w", err)
	}
	want, err := enc.DecodeString(parts[5])
	if err != nil {
		return fmt.Errorf("password: key: %w", err)
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrMismatch
	}
	return nil
}

// dummyHash is checked against when an operator does not exist, so that a
// sign-in for an unknown name takes as long as one with a wrong password
// and does not reveal which names exist. It is made on first use, not at
// package init: that cost 75 ms and 20 MB at the start of every command,
// the Client agent and the Control included, which never check passwords.
var dummyHash = sync.OnceValue(func() string {
	h, _ := Hash("no operator has this password")
	return h
})

// CheckDummy spends the time of one Check.
func CheckDummy(pw string) { _ = Check(dummyHash(), pw) }
