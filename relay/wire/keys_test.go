package wire

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"testing"
	"time"
)

var (
	vecSalt  = []byte("0123456789abcdef0123456789abcdef")
	vecNonce = func() []byte {
		b := make([]byte, 32)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}()
)

const vecKey = "correct horse battery"

// TestHandshakeVector pins every derivation to the values in
// docs/protocol.md, which were checked against the reference argon2
// library (libargon2 via Python). A change here breaks every deployed peer:
// it is a new HandshakeVersion, not a fix.
func TestHandshakeVector(t *testing.T) {
	hexOf := func(b []byte) string { return hex.EncodeToString(b) }
	v1 := VerifierV1(vecSalt, vecKey)
	ck := DeriveClientKey(vecSalt, vecKey)
	stored := StoredKey(ck)
	for _, tt := range []struct{ name, got, want string }{
		{"v1 verifier", hexOf(v1), "50472b585d0de8fcf61fed8c89aa87409b91ee5c7a38f9e8f4b5759ff65e0eca"},
		{"ClientKey", hexOf(ck), "1e70bc44a99894b1dba9f0e2e9cd9ecd11f24e2c65dd5ee448ab72f384fc9be3"},
		{"ClientKey from the v1 verifier", hexOf(ClientKeyFromV1(vecSalt, v1)), "1e70bc44a99894b1dba9f0e2e9cd9ecd11f24e2c65dd5ee448ab72f384fc9be3"},
		{"StoredKey", hexOf(stored), "d8f89fb082ac334e791a8e3dd1430b142dedd9871b3f8ee1c39ca9c1680a096f"},
		{"Verifier", hexOf(Verifier(vecSalt, vecKey)), "d8f89fb082ac334e791a8e3dd1430b142dedd9871b3f8ee1c39ca9c1680a096f"},
		{"KeyID", KeyID(stored), "e1864d7bf3ddacbe"},
		{"Proof", hexOf(ClientProof(ck, vecNonce, RoleConnect, "op@laptop", "pc-1/ssh")), "ede08a58b278cfabd9658001a1441e4e8774cc210ae8e1d7c91bc8f8c5337ba5"},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %s, want %s", tt.name, tt.got, tt.want)
		}
	}
}

func TestProofRoundTrip(t *testing.T) {
	c := Challenge{Version: HandshakeVersion, Salt: vecSalt, Nonce: vecNonce}
	stored := Verifier(vecSalt, vecKey)
	for _, role := range []string{RoleClient, RoleBrowse, RoleConnect, RoleAccept} {
		h := NewHello(c, vecKey, role, "pc-1", "t")
		if h.Handshake != HandshakeVersion || h.KeyID != KeyID(stored) || len(h.Proof) != KeySize {
			t.Fatalf("%s hello = %+v", role, h)
		}
		if !CheckProof(stored, vecNonce, h) {
			t.Fatalf("a correct %s proof is refused", role)
		}
	}
	// The ClientKey path that peers use gives the same Hello.
	a := NewHello(c, vecKey, RoleConnect, "op", "pc/ssh")
	b := NewHelloWithClientKey(c, DeriveClientKey(vecSalt, vecKey), RoleConnect, "op", "pc/ssh")
	if a.KeyID != b.KeyID || !bytes.Equal(a.Proof, b.Proof) {
		t.Fatal("NewHello and NewHelloWithClientKey disagree")
	}
}

func TestProofBoundToItsHandshake(t *testing.T) {
	c := Challenge{Version: HandshakeVersion, Salt: vecSalt, Nonce: vecNonce}
	stored := Verifier(vecSalt, vecKey)
	h := NewHello(c, vecKey, RoleConnect, "op", "pc/ssh")
	for name, mutate := range map[string]func(*Hello){
		"another target":        func(h *Hello) { h.Target = "pc/vnc" },
		"another name":          func(h *Hello) { h.Name = "op2" },
		"another role":          func(h *Hello) { h.Role = RoleBrowse },
		"shifted field bounds":  func(h *Hello) { h.Name, h.Target = "o", "ppc/ssh" },
		"another key id":        func(h *Hello) { h.KeyID = "0000000000000000" },
		"version 1":             func(h *Hello) { h.Handshake = 0 },
		"another version":       func(h *Hello) { h.Handshake = 3 },
		"flipped proof bit":     func(h *Hello) { h.Proof = flip(h.Proof) },
		"short proof":           func(h *Hello) { h.Proof = h.Proof[:16] },
		"long proof":            func(h *Hello) { h.Proof = append(append([]byte{}, h.Proof...), 0) },
		"no proof":              func(h *Hello) { h.Proof = nil },
		"proof of another role": func(h *Hello) { h.Proof = NewHello(c, vecKey, RoleBrowse, "op", "pc/ssh").Proof },
	} {
		t.Run(name+" is refused", func(t *testing.T) {
			h2 := h
			mutate(&h2)
			if CheckProof(stored, vecNonce, h2) {
				t.Fatal("proof accepted")
			}
		})
	}
	other := bytes.Clone(vecNonce)
	other[0] ^= 1
	if CheckProof(stored, other, h) {
		t.Fatal("proof replayed against another nonce accepted")
	}
	if CheckProof(Verifier(vecSalt, "the-wrong-key"), vecNonce, h) {
		t.Fatal("proof accepted by another key")
	}
	wrong := NewHello(c, "the-wrong-key", RoleConnect, "op", "pc/ssh")
	wrong.KeyID = h.KeyID // claims the right key's ID
	if CheckProof(stored, vecNonce, wrong) {
		t.Fatal("a proof of the wrong key accepted under the right key's ID")
	}
	if CheckProof(Verifier([]byte("another installation's salt!!!!!"), vecKey), vecNonce, h) {
		t.Fatal("a proof for one installation accepted by another with the same key")
	}
}

func flip(b []byte) []byte {
	b = bytes.Clone(b)
	b[len(b)-1] ^= 1
	return b
}

// TestStoredValuesAdmitNobody plays someone who read gateway_keys (a backup,
// a replica, a dump): they have the salt, the key ID and the StoredKey, and
// every way of building a proof from those is refused. That was the point
// of version 2: in version 1 the stored verifier was the proving key.
func TestStoredValuesAdmitNobody(t *testing.T) {
	stored := Verifier(vecSalt, vecKey)
	id := KeyID(stored)
	am := AuthMessage(vecNonce, id, RoleClient, "pc-1", "")
	mac := func(key, msg []byte) []byte { m := hmac.New(sha256.New, key); m.Write(msg); return m.Sum(nil) }
	xor := func(a, b []byte) []byte { out := make([]byte, len(a)); subtle.XORBytes(out, a, b); return out }
	sig := mac(stored, am)
	for name, proof := range map[string][]byte{
		"the StoredKey as the ClientKey":   ClientProof(stored, vecNonce, RoleClient, "pc-1", ""),
		"StoredKey XOR signature":          xor(stored, sig),
		"the signature alone":              sig,
		"the StoredKey itself":             stored,
		"a version 1 proof from StoredKey": mac(stored, append(bytes.Clone(vecNonce), "client"...)),
		"the KDF of the StoredKey":         xor(ClientKeyFromV1(vecSalt, stored), sig),
	} {
		h := Hello{Handshake: HandshakeVersion, Role: RoleClient, KeyID: id, Proof: proof, Name: "pc-1"}
		if CheckProof(stored, vecNonce, h) {
			t.Errorf("a peer built from the stored values (%s) is admitted", name)
		}
	}
	// And the version 1 verifier of a converted row (an old backup) is no
	// shortcut around the KDF: it still has to go through it.
	v1 := VerifierV1(vecSalt, vecKey)
	if bytes.Equal(StoredKey(v1), stored) || KeyID(v1) == id {
		t.Fatal("the v1 verifier gives the StoredKey or the key ID without the KDF")
	}
}

func TestCheckChallenge(t *testing.T) {
	if err := CheckChallenge(Challenge{Version: HandshakeVersion}); err != nil {
		t.Fatalf("version %d refused: %v", HandshakeVersion, err)
	}
	for v, want := range map[int]string{1: "upgrade the gateway", 0: "upgrade the gateway", 3: "upgrade this Client or Control"} {
		err := CheckChallenge(Challenge{Version: v})
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("version %d: %v, want an error saying %q", v, err, want)
		}
	}
	e := VersionError(Hello{})
	if e.Code != CodeVersion || !bytes.Contains([]byte(e.Message), []byte("needs handshake version 2")) {
		t.Errorf("VersionError = %+v", e)
	}
}

// TestKDFCost keeps the KDF from being weakened by accident: it must take
// the memory the protocol promises and a measurable time.
func TestKDFCost(t *testing.T) {
	if KDFMemory < 32<<10 || KDFTime < 2 {
		t.Fatalf("argon2id t=%d m=%d KiB is below the protocol's minimum (t=2, 32 MiB)", KDFTime, KDFMemory)
	}
	start := time.Now()
	DeriveClientKey(vecSalt, "timing")
	if d := time.Since(start); d < 10*time.Millisecond {
		t.Fatalf("one derivation took %v: the KDF is not slow", d)
	}
}

// processCPU is the process's CPU time where the platform tells it
// (keys_linux_test.go), else nil.
var processCPU func() time.Duration

// BenchmarkDeriveClientKey is what a peer pays once per gateway salt and
// what every offline guess at a key costs. Besides wall time it reports
// cpu-ms/op, the CPU time of one derivation (all of it on one core: the
// KDF has one lane), which a loaded machine inflates much less.
func BenchmarkDeriveClientKey(b *testing.B) {
	var cpu0 time.Duration
	if processCPU != nil {
		cpu0 = processCPU()
	}
	for b.Loop() {
		DeriveClientKey(vecSalt, vecKey)
	}
	if processCPU != nil {
		b.ReportMetric(float64(processCPU()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
	}
}

// BenchmarkCheckProof is the gateway's side of one handshake.
func BenchmarkCheckProof(b *testing.B) {
	c := Challenge{Version: HandshakeVersion, Salt: vecSalt, Nonce: vecNonce}
	stored := Verifier(vecSalt, vecKey)
	h := NewHello(c, vecKey, RoleClient, "pc-1", "")
	b.ReportAllocs()
	for b.Loop() {
		if !CheckProof(stored, vecNonce, h) {
			b.Fatal("refused")
		}
	}
}
