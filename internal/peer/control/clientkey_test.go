package control

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/relay/wire"
)

// checkingGateway answers browse for peers whose proof checks against
// stored, as the relay does, and refuses the others.
func checkingGateway(t *testing.T, salt, stored []byte) peer.Dialer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(conn)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+wire.Protocol+"\r\n\r\n")
				nonce := make([]byte, 32)
				_, _ = rand.Read(nonce)
				_ = wire.WriteFrame(conn, wire.TypeChallenge, wire.Challenge{Version: wire.HandshakeVersion, Nonce: nonce, Salt: salt})
				var h wire.Hello
				if err := wire.Expect(br, wire.TypeHello, &h); err != nil {
					return
				}
				if h.KeyID != wire.KeyID(stored) || !wire.CheckProof(stored, nonce, h) {
					_ = wire.WriteFrame(conn, wire.TypeError, wire.Error{Code: wire.CodeUnauthorized, Message: "security check failed"})
					return
				}
				_ = wire.WriteFrame(conn, wire.TypeClientList, wire.ClientList{Clients: []wire.ClientInfo{{Name: "pc-1"}}})
			}()
		}
	}()
	return peer.Dialer{Gateway: peer.Gateway{Host: ln.Addr().String()}, Timeout: 5 * time.Second}
}

type memCache struct {
	mu   sync.Mutex
	m    map[string][]byte
	sets int
}

func (c *memCache) ClientKey(salt []byte) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ck, ok := c.m[string(salt)]
	return bytes.Clone(ck), ok
}

func (c *memCache) SetClientKey(salt, ck []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string][]byte{}
	}
	c.m[string(salt)] = bytes.Clone(ck)
	c.sets++
}

// TestControlCacheHitSkipsTheKDF: the first Control derives the ClientKey
// once for all its connections and keeps it in the cache; a later one (the
// next `connect --stdio`) finds it there, derives nothing, and is admitted.
func TestControlCacheHitSkipsTheKDF(t *testing.T) {
	const key = "the-controls-gateway-key"
	salt := []byte("0123456789abcdef0123456789abcdef")
	d := checkingGateway(t, salt, wire.StoredKey(wire.DeriveClientKey(salt, key)))
	var derived atomic.Int32
	derive := func(salt []byte, key string) []byte {
		derived.Add(1)
		return wire.DeriveClientKey(salt, key)
	}
	cache := &memCache{}
	browse := func(c *Control) {
		t.Helper()
		list, err := c.Browse(context.Background())
		if err != nil || len(list) != 1 {
			t.Fatalf("Browse = %+v, %v", list, err)
		}
	}

	first := &Control{Dialer: d, Key: key, Name: "op", KeyCache: cache, derive: derive}
	for range 3 {
		browse(first)
	}
	if derived.Load() != 1 || cache.sets != 1 {
		t.Fatalf("first Control: %d derivations, %d cache writes; want 1 and 1", derived.Load(), cache.sets)
	}

	next := &Control{Dialer: d, Key: key, Name: "op", KeyCache: cache, derive: derive}
	start := time.Now()
	browse(next)
	if derived.Load() != 1 || cache.sets != 1 {
		t.Fatalf("a cache hit ran the KDF: %d derivations, %d cache writes", derived.Load(), cache.sets)
	}
	t.Logf("browse with a cached ClientKey: %v", time.Since(start))

	// Without a cache the ClientKey lives as long as the Control.
	memOnly := &Control{Dialer: d, Key: key, Name: "op", derive: derive}
	for range 3 {
		browse(memOnly)
	}
	if derived.Load() != 2 {
		t.Fatalf("a Control without a cache derived %d times for 3 browses, want 1", derived.Load()-1)
	}

	// A Control with the wrong key is refused, cache or not.
	wrong := &Control{Dialer: d, Key: "not-the-gateway-key", Name: "op", KeyCache: &memCache{}}
	if _, err := wrong.Browse(context.Background()); err == nil {
		t.Fatal("a wrong key was admitted")
	}
}
