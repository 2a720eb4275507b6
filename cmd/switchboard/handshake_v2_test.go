package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/relay/wire"
)

// helloFrom writes h on a fresh connection and returns the gateway's answer
// as an error (a *wire.Error when it refused).
func (g *testGateway) helloFrom(t *testing.T, build func(wire.Challenge) wire.Hello) error {
	t.Helper()
	d := g.dialer()
	conn, err := d.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := wire.WriteFrame(conn, wire.TypeHello, build(conn.Challenge)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	var w wire.Welcome
	err = wire.Expect(conn.Reader(), wire.TypeWelcome, &w)
	if err == nil {
		return nil
	}
	// A refusal closes the connection: no silent hang.
	if _, cerr := io.Copy(io.Discard, conn.Reader()); cerr != nil {
		t.Errorf("connection not closed after the refusal: %v", cerr)
	}
	return err
}

// v1Hello is what a peer of handshake version 1 sends: no handshake field,
// a key ID and a proof from HMAC-SHA256(salt, key).
func v1Hello(c wire.Challenge, key, role, name, target string) wire.Hello {
	v := wire.VerifierV1(c.Salt, key)
	idMAC := hmac.New(sha256.New, v)
	idMAC.Write([]byte("switchboard key id"))
	return wire.Hello{Role: role, KeyID: hex.EncodeToString(idMAC.Sum(nil)[:8]), Proof: v1Proof(v, c.Nonce, role, name, target), Name: name, RealIP: "10.9.9.9"}
}

// v1Proof is version 1's HMAC(verifier, nonce || role || name || target).
func v1Proof(verifier, nonce []byte, role, name, target string) []byte {
	m := hmac.New(sha256.New, verifier)
	m.Write(nonce)
	for _, s := range []string{role, name, target} {
		n := len(s)
		m.Write([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}) // uint32, big-endian
		m.Write([]byte(s))
	}
	return m.Sum(nil)
}

// TestOldPeerIsToldToUpgrade: a version 1 Client, with a key the gateway
// holds, gets an error naming the version it needs (and closes), and the
// administrator sees the refusal as an event.
func TestOldPeerIsToldToUpgrade(t *testing.T) {
	g := mustStartGateway(t)
	err := g.helloFrom(t, func(c wire.Challenge) wire.Hello {
		if c.Version != wire.HandshakeVersion {
			t.Errorf("challenge version %d, want %d", c.Version, wire.HandshakeVersion)
		}
		return v1Hello(c, testKey, wire.RoleClient, "pc-old", "")
	})
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeVersion || !strings.Contains(we.Message, "needs handshake version 2") || !strings.Contains(we.Message, "upgrade") {
		t.Fatalf("a version 1 Client got %v; want a %q error that names version 2", err, wire.CodeVersion)
	}
	g.waitEvent(t, "Security check failed for Client pc-old (10.9.9.9). Terminating connection from 127.0.0.1")
	if n := g.Relay().Stats().Clients; n != 0 {
		t.Fatalf("%d Clients registered", n)
	}
}

// TestDatabaseAdmitsNobody is the finding this handshake fixes: someone who
// read gateway_keys (and the salt) builds peers from the stored values
// alone, and the gateway refuses every one, while the key itself is
// admitted.
func TestDatabaseAdmitsNobody(t *testing.T) {
	g := mustStartGateway(t)
	keys, err := g.DB().Keys(context.Background())
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys = %+v, %v", keys, err)
	}
	id, stored := keys[0].KeyID, keys[0].StoredKey
	if len(stored) != wire.KeySize || keys[0].V1Verifier != nil {
		t.Fatalf("stored row = %+v", keys[0])
	}
	xor := func(a, b []byte) []byte { out := make([]byte, len(a)); subtle.XORBytes(out, a, b); return out }
	sig := func(c wire.Challenge) []byte {
		m := hmac.New(sha256.New, stored)
		m.Write(wire.AuthMessage(c.Nonce, id, wire.RoleClient, "pc-thief", ""))
		return m.Sum(nil)
	}
	for name, proof := range map[string]func(wire.Challenge) []byte{
		"StoredKey used as the ClientKey": func(c wire.Challenge) []byte {
			return wire.ClientProof(stored, c.Nonce, wire.RoleClient, "pc-thief", "")
		},
		"StoredKey XOR signature":    func(c wire.Challenge) []byte { return xor(stored, sig(c)) },
		"the signature alone":        sig,
		"StoredKey as a v1 verifier": func(c wire.Challenge) []byte { return v1Proof(stored, c.Nonce, wire.RoleClient, "pc-thief", "") },
	} {
		t.Run(name, func(t *testing.T) {
			err := g.helloFrom(t, func(c wire.Challenge) wire.Hello {
				return wire.Hello{Handshake: wire.HandshakeVersion, Role: wire.RoleClient, KeyID: id, Proof: proof(c), Name: "pc-thief"}
			})
			if wireCode(err) != wire.CodeUnauthorized {
				t.Fatalf("a peer built from the database got %v, want %s", err, wire.CodeUnauthorized)
			}
		})
	}
	if err := g.helloFrom(t, func(c wire.Challenge) wire.Hello {
		return wire.NewHello(c, testKey, wire.RoleClient, "pc-real", "")
	}); err != nil {
		t.Fatalf("the key itself is refused: %v", err)
	}
}

// TestControlKeepsClientKeyInGatewaysFile: browsing a remembered gateway
// keeps the key's ClientKey in the gateways file (0600, keyed by the
// gateway's salt); the next run uses it instead of the KDF, which shows
// when the kept value is spoiled; removing the gateway removes it.
func TestControlKeepsClientKeyInGatewaysFile(t *testing.T) {
	g := mustStartGateway(t)
	a := g.startAgent(t, testKey, "pc-cached", nil)
	g.waitConnected(t, a)
	ctx := context.Background()
	gwFile := filepath.Join(t.TempDir(), "gateways.json")
	if _, err := runCLI(ctx, t, nil, "control", "gateways", "add", "office", "--gateway", g.url, "--key", testKey, "--gateways-file", gwFile); err != nil {
		t.Fatal(err)
	}
	browse := func() (string, error) {
		return runCLI(ctx, t, nil, "control", "browse", "office", "--gateways-file", gwFile)
	}
	if out, err := browse(); err != nil || !strings.Contains(out, "pc-cached") {
		t.Fatalf("first browse: %v\n%s", err, out)
	}
	salt, err := gateway.KeySalt(ctx, g.DB())
	if err != nil {
		t.Fatal(err)
	}
	type cached struct {
		Salt      []byte `json:"salt"`
		ClientKey []byte `json:"client_key"`
	}
	readFile := func() (map[string]any, map[string]cached) {
		t.Helper()
		data, err := os.ReadFile(gwFile)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		var keys struct {
			ClientKeys map[string]cached `json:"client_keys"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &keys); err != nil {
			t.Fatal(err)
		}
		return doc, keys.ClientKeys
	}
	_, cks := readFile()
	if len(cks) != 1 {
		t.Fatalf("%d ClientKeys kept after a browse, want 1", len(cks))
	}
	var id string
	for k, c := range cks {
		id = k
		if !bytes.Equal(c.Salt, salt) || !bytes.Equal(c.ClientKey, wire.DeriveClientKey(salt, testKey)) {
			t.Fatalf("kept %+v, want the ClientKey for the gateway's salt", c)
		}
	}
	if fi, err := os.Stat(gwFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("gateways file mode: %v, %v", fi, err)
	}

	// Spoil the kept ClientKey: a run that used the KDF would not notice;
	// one that uses the cache is refused.
	doc, _ := readFile()
	spoiled := bytes.Repeat([]byte{0x42}, wire.KeySize)
	doc["client_keys"] = map[string]cached{id: {Salt: salt, ClientKey: spoiled}}
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gwFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := browse(); wireCode(err) != wire.CodeUnauthorized {
		t.Fatalf("browse with a spoiled cached ClientKey: %v; want %s, which shows the cache is used", err, wire.CodeUnauthorized)
	}

	if _, err := runCLI(ctx, t, nil, "control", "gateways", "remove", "office", "--gateways-file", gwFile); err != nil {
		t.Fatal(err)
	}
	if _, cks := readFile(); len(cks) != 0 {
		t.Fatalf("ClientKeys kept for a removed gateway: %v", cks)
	}
}
