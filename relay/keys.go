package relay

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/relay/wire"
)

// Key is a gateway key as the relay knows it: never the key itself, only its
// public lookup ID and the verifier a peer's proof is checked against.
type Key struct {
	KeyID string
	Label string
	// Verifier is the key's StoredKey (wire.StoredKey): it checks a proof
	// (wire.CheckProof) but cannot make one, so a copy of the keyring or of
	// the database admits nobody.
	Verifier []byte
}

// keyring is read on every handshake and replaced whole when keys change, so
// readers never lock.
type keyring struct {
	salt []byte
	keys atomic.Pointer[map[string]Key]
}

func (k *keyring) lookup(id string) (Key, bool) {
	m := k.keys.Load()
	if m == nil {
		return Key{}, false
	}
	key, ok := (*m)[id]
	return key, ok
}

func (k *keyring) empty() bool {
	m := k.keys.Load()
	return m == nil || len(*m) == 0
}

// replace installs keys and returns the IDs that were there before and are
// gone now.
func (k *keyring) replace(keys []Key) (removed []string, changed bool) {
	next := make(map[string]Key, len(keys))
	for _, key := range keys {
		next[key.KeyID] = key
	}
	prev := k.keys.Swap(&next)
	if prev == nil {
		return nil, len(next) > 0
	}
	for id, old := range *prev {
		nk, ok := next[id]
		if !ok {
			removed = append(removed, id)
			changed = true
		} else if nk.Label != old.Label {
			changed = true
		}
	}
	if len(next) != len(*prev)-len(removed) {
		changed = true
	}
	return removed, changed
}

// check verifies a Hello against the keyring: the key must exist and the
// proof must match this connection's nonce. Its cost is a map lookup and
// two hashes (BenchmarkKeyringCheck), whatever the KDF costs peers.
func (k *keyring) check(nonce []byte, h wire.Hello) (Key, bool) {
	key, ok := k.lookup(h.KeyID)
	if !ok {
		return Key{}, false
	}
	if !wire.CheckProof(key.Verifier, nonce, h) {
		return Key{}, false
	}
	return key, true
}

// refuseVersion turns away a Hello of another handshake version (a peer
// from before version 2 sends none) with an error that names the version
// it needs: an old peer shows the message as it is and retries later,
// rather than reporting a wrong key or waiting. The refusal is the role's
// security event, so the administrator sees which Clients still need an
// upgrade; nothing in the Hello has been believed yet.
func (s *Server) refuseVersion(p *peerConn) error {
	h := p.hello
	switch h.Role {
	case wire.RoleBrowse:
		s.emit(event.BrowseSecurityFailed(p.publicIP))
	case wire.RoleConnect, wire.RoleWarm:
		client, _, _ := strings.Cut(h.Target, "/")
		s.emit(event.ControlSecurityFailed(h.Name, client, p.publicIP))
	default:
		s.emit(event.ClientSecurityFailed(h.Name, h.RealIP, p.publicIP))
	}
	e := wire.VersionError(h)
	s.refuse(p, e.Code, e.Message)
	return fmt.Errorf("relay: %s hello from %s: handshake version %d, want %d", h.Role, p.publicIP, h.Handshake, wire.HandshakeVersion)
}
