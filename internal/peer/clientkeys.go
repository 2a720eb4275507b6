package peer

import (
	"bytes"
	"sync"

	"github.com/switchboard/switchboard/relay/wire"
)

// KeyCache keeps ClientKeys beyond one process: the Control's gateways
// file, so that `control connect --stdio` started by ssh for every
// connection does not pay the KDF each time. A ClientKey proves the key to
// the gateway of that salt, so a cache must be kept like the key itself.
type KeyCache interface {
	// ClientKey returns the ClientKey kept for salt, if any.
	ClientKey(salt []byte) ([]byte, bool)
	// SetClientKey keeps a freshly derived ClientKey for salt.
	SetClientKey(salt, clientKey []byte)
}

// ClientKeys is one gateway key and the ClientKey derived from it for the
// gateway's salt (wire.DeriveClientKey, deliberately slow). It derives on
// the first handshake, through wire.CachedClientKey so that a process pays
// the KDF once per key however many peers it runs, and answers every later
// handshake from memory; with a Cache it first asks the cache and keeps
// what it derived there. It is safe
// for concurrent use: connections that handshake at once wait for a single
// derivation (which also bounds the KDF's memory to one at a time).
type ClientKeys struct {
	Key   string
	Cache KeyCache // nil: memory only

	// Derive computes a ClientKey; nil means wire.CachedClientKey. Tests
	// count its calls.
	Derive func(salt []byte, key string) []byte

	mu   sync.Mutex
	salt []byte
	ck   []byte
}

// ClientKey returns the ClientKey for salt. One salt is kept in memory:
// a peer talks to one installation, whose nodes share the salt.
func (k *ClientKeys) ClientKey(salt []byte) []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ck != nil && bytes.Equal(k.salt, salt) {
		return k.ck
	}
	if k.Cache != nil {
		if ck, ok := k.Cache.ClientKey(salt); ok && len(ck) == wire.KeySize {
			k.salt, k.ck = bytes.Clone(salt), ck
			return ck
		}
	}
	derive := k.Derive
	if derive == nil {
		derive = wire.CachedClientKey
	}
	ck := derive(salt, k.Key)
	k.salt, k.ck = bytes.Clone(salt), ck
	if k.Cache != nil {
		k.Cache.SetClientKey(salt, ck)
	}
	return ck
}
