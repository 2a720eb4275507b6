// Package sealed encrypts the few secrets Switchboard must be able to read
// back (TOTP secrets, the Duo secret key) before they go into PostgreSQL,
// with AES-256-GCM under a key that is kept out of the database: a 32-byte
// key file (secrets.key in the data dir, or a file given to serve). A copy
// of the database, a backup or a read-only SQL injection then yields no
// usable second factor.
//
// A sealed value is
//
//	version (1 byte, 1) | key ID (4 bytes) | nonce (12 bytes) | ciphertext and tag
//
// and, where it is stored as text, "sealed:" followed by that in unpadded
// base64url. The key ID (the first 4 bytes of a SHA-256 of the key, which
// tells nothing about the key) says which key sealed a value, so that a
// later version can rotate keys: open with the old, seal with the new. The
// associated data binds a value to the row it belongs to (for example
// "totp:"+operator name), so a value copied into another row does not open.
package sealed

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the length of a key: AES-256.
const KeySize = 32

const (
	version1  byte = 1
	keyIDSize      = 4
	nonceSize      = 12
	header         = 1 + keyIDSize
	// TextPrefix starts every sealed value kept as text. No clear value
	// Switchboard stores (a base32 TOTP secret, a Duo secret key) can
	// contain its colon.
	TextPrefix = "sealed:"
)

// Why a value does not open. Neither error says anything about the value.
var (
	// ErrWrongKey: the value was sealed with another key (a lost and
	// re-created key file, or nodes of one cluster with different keys).
	ErrWrongKey = errors.New("sealed with another secrets key")
	// ErrCorrupt: the value is not a sealed value, or was changed, or
	// belongs to another row.
	ErrCorrupt = errors.New("sealed value is corrupt or belongs elsewhere")
)

// Box seals and opens with one key. It is safe for concurrent use.
type Box struct {
	id   [keyIDSize]byte
	aead cipher.AEAD
}

// New returns a Box for a KeySize-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("sealed: a key is %d bytes, not %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("sealed: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("sealed: %w", err)
	}
	b := &Box{aead: aead}
	sum := sha256.Sum256(append([]byte("switchboard secrets key id\x00"), key...))
	copy(b.id[:], sum[:])
	return b, nil
}

// NewKey returns a fresh random key.
func NewKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("sealed: new key: %w", err)
	}
	return k, nil
}

// KeyID names the Box's key in messages: hex of its 4-byte ID.
func (b *Box) KeyID() string { return hex.EncodeToString(b.id[:]) }

// additional is what GCM authenticates besides the ciphertext: the header,
// so that neither version nor key ID can be changed, and the caller's
// associated data.
func additional(head []byte, ad string) []byte {
	return append(append(make([]byte, 0, len(head)+len(ad)), head...), ad...)
}

// Seal encrypts plaintext for the row that ad names.
func (b *Box) Seal(plaintext []byte, ad string) ([]byte, error) {
	out := make([]byte, header+nonceSize, header+nonceSize+len(plaintext)+b.aead.Overhead())
	out[0] = version1
	copy(out[1:header], b.id[:])
	if _, err := rand.Read(out[header:]); err != nil {
		return nil, fmt.Errorf("sealed: nonce: %w", err)
	}
	return b.aead.Seal(out, out[header:], plaintext, additional(out[:header], ad)), nil
}

// Open decrypts what Seal returned for the same ad.
func (b *Box) Open(sealed []byte, ad string) ([]byte, error) {
	if len(sealed) < header+nonceSize+b.aead.Overhead() || sealed[0] != version1 {
		return nil, ErrCorrupt
	}
	if [keyIDSize]byte(sealed[1:header]) != b.id {
		return nil, fmt.Errorf("%w (key ID %s, this key is %s)", ErrWrongKey, hex.EncodeToString(sealed[1:header]), b.KeyID())
	}
	plain, err := b.aead.Open(nil, sealed[header:header+nonceSize], sealed[header+nonceSize:], additional(sealed[:header], ad))
	if err != nil {
		return nil, ErrCorrupt
	}
	return plain, nil
}

// SealString is Seal for a text column: TextPrefix and base64url.
func (b *Box) SealString(plaintext, ad string) (string, error) {
	s, err := b.Seal([]byte(plaintext), ad)
	if err != nil {
		return "", err
	}
	return TextPrefix + base64.RawURLEncoding.EncodeToString(s), nil
}

// OpenString opens what SealString returned.
func (b *Box) OpenString(sealed, ad string) (string, error) {
	raw, ok := strings.CutPrefix(sealed, TextPrefix)
	if !ok {
		return "", ErrCorrupt
	}
	bin, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil {
		return "", ErrCorrupt
	}
	plain, err := b.Open(bin, ad)
	if err != nil {
		return "", err
	}
	return string(plain), nil
}

// IsSealed reports whether a stored text value is sealed (rather than a
// clear value stored before encryption at rest existed).
func IsSealed(s string) bool { return strings.HasPrefix(s, TextPrefix) }
