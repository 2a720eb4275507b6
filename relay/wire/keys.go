package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sync"

	"golang.org/x/crypto/argon2"
)

// The key handshake, version 2. docs/protocol.md ("Handshake and keys") is
// the specification for other peers; this is the reference code.
//
// Version 1 had the gateway store HMAC-SHA256(salt, key) and the peer prove
// HMAC(that, nonce...): whoever read the stored value could prove the key,
// and a captured handshake let one core test ~400,000 guesses a second.
// Version 2 follows SCRAM (RFC 5802/7677): the gateway stores a hash of what
// proves the key, and a slow KDF stands between a guess and both.

// HandshakeVersion is the handshake this code speaks. The gateway sends it in
// Challenge.Version and refuses a Hello whose Handshake differs; a peer
// refuses a Challenge of another version. Changing the KDF parameters or any
// derivation below is a new version.
const HandshakeVersion = 2

// The KDF's argon2id parameters. They are fixed by the protocol rather than
// sent in the Challenge: a machine in the middle of an http:// connection
// could otherwise ask for a cheap KDF and test guesses against the proof it
// gets back at that cost. Measured with BenchmarkDeriveClientKey -cpu 1 at
// 70-100 ms of CPU per derivation on the reference machine (a shared AMD
// EPYC; t=1 at 32 MiB and t=2 at 16 MiB measured 30-50 ms, below the 50 ms
// aimed at). One lane, so a Client on a small machine pays it on one core,
// once per process, and 32 MiB, which a Raspberry Pi-class machine can
// spare for that moment.
const (
	KDFTime    = 2        // passes over the memory
	KDFMemory  = 32 << 10 // KiB
	KDFThreads = 1
)

// KeySize is the size of a ClientKey, a StoredKey and a Proof.
const KeySize = sha256.Size

// VerifierV1 is what a version 1 gateway stored for a key:
// HMAC-SHA256(key = salt, message = key). Version 2 keeps it as the KDF's
// input only so that an upgraded gateway can convert its stored v1 rows
// into StoredKeys without knowing the keys (ClientKeyFromV1).
func VerifierV1(salt []byte, key string) []byte {
	m := hmac.New(sha256.New, salt)
	m.Write([]byte(key))
	return m.Sum(nil)
}

// ClientKeyFromV1 is the slow step: argon2id of a version 1 verifier, salted
// with the installation's salt. A peer computes it once per gateway salt and
// keeps it; it proves the key to that installation, so it is as secret as
// the key there.
func ClientKeyFromV1(salt, v1 []byte) []byte {
	return argon2.IDKey(v1, salt, KDFTime, KDFMemory, KDFThreads, KeySize)
}

// DeriveClientKey computes a key's ClientKey for an installation's salt.
// It costs the KDF every time: callers that handshake more than once keep
// the result (internal/peer.ClientKeys does).
func DeriveClientKey(salt []byte, key string) []byte {
	return ClientKeyFromV1(salt, VerifierV1(salt, key))
}

// StoredKey is what the gateway stores for a key: SHA-256(ClientKey). It
// checks a proof but cannot make one.
func StoredKey(clientKey []byte) []byte {
	sum := sha256.Sum256(clientKey)
	return sum[:]
}

// KeyID is the public lookup handle of a key, from its StoredKey. Being a
// function of the KDF's output, a guessed key costs the KDF to check against
// it, like against anything else the gateway stores or a peer sends.
func KeyID(storedKey []byte) string {
	m := hmac.New(sha256.New, storedKey)
	m.Write([]byte("switchboard key id v2"))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// CachedClientKey is DeriveClientKey remembered for the life of the
// process (a few dozen salt and key pairs at most), so that everything in
// one process that handshakes with one key pays the KDF once. Peers use it;
// a gateway, which has no reason to keep ClientKeys, uses DeriveClientKey.
func CachedClientKey(salt []byte, key string) []byte {
	return memoClientKey(salt, key)
}

// Verifier is what the gateway stores for a key (its StoredKey), computed
// from the key itself. It is meant for tests and tools: it keeps the
// ClientKey in this process's memory (CachedClientKey), so the gateway
// derives with DeriveClientKey instead.
func Verifier(salt []byte, key string) []byte {
	return StoredKey(memoClientKey(salt, key))
}

// AuthMessage is what a proof signs: the handshake version, the gateway's
// nonce for this connection and everything the Hello asks for with the key
// (its ID, role, name and target). Each field is length-prefixed (uint32,
// big-endian) so that no two field lists give the same message.
func AuthMessage(nonce []byte, keyID, role, name, target string) []byte {
	const label = "switchboard-relay handshake"
	b := make([]byte, 0, len(label)+4+5*4+len(nonce)+len(keyID)+len(role)+len(name)+len(target))
	b = append(b, label...)
	b = binary.BigEndian.AppendUint32(b, HandshakeVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(len(nonce)))
	b = append(b, nonce...)
	for _, s := range []string{keyID, role, name, target} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

func clientSignature(storedKey, nonce []byte, keyID, role, name, target string) []byte {
	m := hmac.New(sha256.New, storedKey)
	m.Write(AuthMessage(nonce, keyID, role, name, target))
	return m.Sum(nil)
}

// ClientProof is ClientKey XOR HMAC-SHA256(StoredKey, AuthMessage): it shows
// ClientKey to the one holding StoredKey for this message only. Someone who
// saw it learns nothing they could reuse on another connection, and someone
// who holds StoredKey (a database dump) cannot make it.
func ClientProof(clientKey, nonce []byte, role, name, target string) []byte {
	stored := StoredKey(clientKey)
	sig := clientSignature(stored, nonce, KeyID(stored), role, name, target)
	proof := make([]byte, KeySize)
	subtle.XORBytes(proof, clientKey, sig)
	return proof
}

// CheckProof is the gateway's check of a Hello against a key's StoredKey and
// the connection's nonce: it recovers ClientKey' = Proof XOR HMAC(StoredKey,
// AuthMessage) and compares SHA-256(ClientKey') with StoredKey in constant
// time. Two SHA-256 based hashes, no KDF: the gateway checks thousands of
// reconnecting peers a second.
func CheckProof(storedKey, nonce []byte, h Hello) bool {
	// Lengths and the version are public; only the comparison involves a
	// secret.
	if h.Handshake != HandshakeVersion || len(h.Proof) != KeySize || len(storedKey) != KeySize {
		return false
	}
	sig := clientSignature(storedKey, nonce, h.KeyID, h.Role, h.Name, h.Target)
	var ck [KeySize]byte
	subtle.XORBytes(ck[:], h.Proof, sig)
	sum := sha256.Sum256(ck[:])
	return subtle.ConstantTimeCompare(sum[:], storedKey) == 1
}

// NewHelloWithClientKey builds a Hello that proves the key whose ClientKey
// for c.Salt is clientKey.
func NewHelloWithClientKey(c Challenge, clientKey []byte, role, name, target string) Hello {
	return Hello{
		Handshake: HandshakeVersion,
		Role:      role,
		KeyID:     KeyID(StoredKey(clientKey)),
		Proof:     ClientProof(clientKey, c.Nonce, role, name, target),
		Name:      name,
		Target:    target,
	}
}

// NewHello builds a Hello that proves knowledge of key for challenge c,
// with the ClientKey from CachedClientKey: repeated handshakes with one key
// (tests, tools, a process that dials in a loop) pay the KDF once. The
// Client agent and the Control use internal/peer.ClientKeys, which also
// lets the Control keep ClientKeys on disk.
func NewHello(c Challenge, key, role, name, target string) Hello {
	return NewHelloWithClientKey(c, memoClientKey(c.Salt, key), role, name, target)
}

// CheckChallenge refuses a Challenge of another handshake version, with a
// message that says which side to upgrade.
func CheckChallenge(c Challenge) error {
	switch {
	case c.Version == HandshakeVersion:
		return nil
	case c.Version < HandshakeVersion:
		return fmt.Errorf("the gateway speaks handshake version %d and this peer needs version %d: upgrade the gateway", c.Version, HandshakeVersion)
	default:
		return fmt.Errorf("the gateway speaks handshake version %d and this peer only version %d: upgrade this Client or Control", c.Version, HandshakeVersion)
	}
}

// VersionError is the gateway's refusal of a Hello of another handshake
// version (one from a version 1 peer carries none). Old peers show the
// message as it is, so it says what to do.
func VersionError(h Hello) Error {
	got := "version 1 (no handshake field)"
	if h.Handshake != 0 {
		got = fmt.Sprintf("version %d", h.Handshake)
	}
	return Error{
		Code: CodeVersion,
		Message: fmt.Sprintf("this gateway needs handshake version %d and the peer sent %s: upgrade this Client or Control to a Switchboard that speaks handshake version %d",
			HandshakeVersion, got, HandshakeVersion),
	}
}

// memo keeps the ClientKeys NewHello and Verifier derived, keyed by a hash
// of salt and key so that it holds no key text. Bounded: when full it starts
// over, which only costs a KDF again.
var memo struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]*memoEntry
}

type memoEntry struct {
	once sync.Once
	ck   []byte
}

const memoMax = 64

func memoClientKey(salt []byte, key string) []byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(salt)))
	h.Write(n[:])
	h.Write(salt)
	h.Write([]byte(key))
	var id [sha256.Size]byte
	h.Sum(id[:0])

	memo.mu.Lock()
	if memo.m == nil || len(memo.m) >= memoMax {
		memo.m = make(map[[sha256.Size]byte]*memoEntry)
	}
	e := memo.m[id]
	if e == nil {
		e = &memoEntry{}
		memo.m[id] = e
	}
	memo.mu.Unlock()
	// Derived outside the lock, once per entry: concurrent handshakes with
	// the same key wait for one derivation instead of each running one
	// (and each allocating the KDF's memory).
	e.once.Do(func() { e.ck = DeriveClientKey(salt, key) })
	return e.ck
}
