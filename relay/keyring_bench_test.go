package relay

import (
	"fmt"
	"testing"

	"github.com/switchboard/switchboard/relay/wire"
)

// BenchmarkKeyringCheck is the gateway's whole key check for one handshake
// (lookup by key ID, then wire.CheckProof) with a keyring of 1,000 keys:
// what every reconnecting peer costs, which must stay far below the KDF
// peers pay once.
func BenchmarkKeyringCheck(b *testing.B) {
	salt := []byte("switchboard relay bench salt 32b")
	var k keyring
	keys := make([]Key, 1000)
	for i := range keys {
		// Stand-in StoredKeys: the check's cost does not depend on how
		// they were derived, and 1,000 KDFs would dwarf the benchmark.
		stored := wire.StoredKey([]byte(fmt.Sprintf("client key %d", i)))
		keys[i] = Key{KeyID: wire.KeyID(stored), Verifier: stored}
	}
	const secret = "bench-gateway-key"
	real := wire.Verifier(salt, secret)
	keys[500] = Key{KeyID: wire.KeyID(real), Verifier: real}
	k.replace(keys)
	nonce := make([]byte, 32)
	h := wire.NewHello(wire.Challenge{Version: wire.HandshakeVersion, Salt: salt, Nonce: nonce}, secret, wire.RoleClient, "pc-1", "")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := k.check(nonce, h); !ok {
			b.Fatal("refused")
		}
	}
}
