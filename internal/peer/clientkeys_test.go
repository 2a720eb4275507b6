package peer

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/relay/wire"
)

// countingDerive is a stand-in KDF that counts its calls; it is not slow,
// and the tests only care how often it runs.
func countingDerive(n *atomic.Int32) func([]byte, string) []byte {
	return func(salt []byte, key string) []byte {
		n.Add(1)
		return wire.StoredKey(append(bytes.Clone(salt), key...)) // 32 bytes, deterministic
	}
}

type mapCache struct {
	mu   sync.Mutex
	m    map[string][]byte
	sets int
}

func (c *mapCache) ClientKey(salt []byte) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ck, ok := c.m[string(salt)]
	return ck, ok
}

func (c *mapCache) SetClientKey(salt, ck []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string][]byte{}
	}
	c.m[string(salt)] = ck
	c.sets++
}

func TestClientKeysDeriveOncePerSalt(t *testing.T) {
	var n atomic.Int32
	k := &ClientKeys{Key: "a-gateway-key", Derive: countingDerive(&n)}
	saltA, saltB := []byte("salt of installation A"), []byte("salt of installation B")
	first := k.ClientKey(saltA)
	// Concurrent handshakes (Forward, a Client's sessions) wait for the one
	// derivation.
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if !bytes.Equal(k.ClientKey(saltA), first) {
				t.Error("another ClientKey for the same salt")
			}
		})
	}
	wg.Wait()
	if got := n.Load(); got != 1 {
		t.Fatalf("%d derivations for one salt, want 1", got)
	}
	if bytes.Equal(k.ClientKey(saltB), first) || n.Load() != 2 {
		t.Fatalf("another salt: %d derivations, want 2 and another ClientKey", n.Load())
	}
}

func TestClientKeysCacheHitSkipsTheKDF(t *testing.T) {
	salt := []byte("the gateway's salt")
	var n atomic.Int32
	cache := &mapCache{}
	first := &ClientKeys{Key: "a-gateway-key", Cache: cache, Derive: countingDerive(&n)}
	ck := first.ClientKey(salt)
	if n.Load() != 1 || cache.sets != 1 || !bytes.Equal(cache.m[string(salt)], ck) {
		t.Fatalf("miss: %d derivations, %d cache writes; want 1 and 1 with the ClientKey", n.Load(), cache.sets)
	}
	// The next process (a new ClientKeys on the same cache) derives nothing.
	next := &ClientKeys{Key: "a-gateway-key", Cache: cache, Derive: countingDerive(&n)}
	if !bytes.Equal(next.ClientKey(salt), ck) || n.Load() != 1 || cache.sets != 1 {
		t.Fatalf("hit: %d derivations, %d cache writes; want still 1 and 1", n.Load(), cache.sets)
	}
	// A cached value of the wrong size is not used.
	cache.m[string(salt)] = []byte("short")
	third := &ClientKeys{Key: "a-gateway-key", Cache: cache, Derive: countingDerive(&n)}
	if !bytes.Equal(third.ClientKey(salt), ck) || n.Load() != 2 {
		t.Fatalf("a malformed cache entry was used (%d derivations)", n.Load())
	}
}

// A gateway of another handshake version is refused before anything is
// derived or sent, with a message that says which side to upgrade.
func TestSendRefusesAnotherHandshakeVersion(t *testing.T) {
	for _, tt := range []struct {
		version int
		want    string
	}{{1, "upgrade the gateway"}, {3, "upgrade this Client or Control"}} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		challenge := fuzzFrame(wire.TypeChallenge, fuzzJSON(wire.Challenge{Version: tt.version, Nonce: make([]byte, 32), Salt: []byte("salt")}))
		served := serveOnce(ln, append([]byte(switching), challenge...))
		d := Dialer{Gateway: Gateway{Host: ln.Addr().String()}, Timeout: 5 * time.Second}
		conn, err := d.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		<-served
		var n atomic.Int32
		keys := &ClientKeys{Key: "a-gateway-key", Derive: countingDerive(&n)}
		for name, send := range map[string]func() error{
			"Send":    func() error { return conn.Send("a-gateway-key", wire.RoleBrowse, "op", "", nil) },
			"SendKey": func() error { return conn.SendKey(keys, wire.RoleBrowse, "op", "", nil) },
		} {
			err := send()
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), ln.Addr().String()) {
				t.Errorf("version %d, %s: %v; want an error naming the gateway and saying %q", tt.version, name, err, tt.want)
			}
		}
		if n.Load() != 0 {
			t.Errorf("version %d: the KDF ran for a gateway that cannot check the proof", tt.version)
		}
		conn.Close()
	}
}
