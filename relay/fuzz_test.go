package relay_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

// The fuzz targets run each input in a synctest bubble over net.Pipe: the
// handshake timeout then passes in no real time, so an input that stalls
// costs the fuzzer nothing, and "closed by the handshake timeout" is exact
// instead of a guess about the machine's speed.

const fuzzHandshakeTimeout = 200 * time.Millisecond

func MustStartFuzzGateway(t *testing.T) *testGateway {
	return MustStartPipeGateway(t, []string{keyAlpha}, func(c *relay.Config) {
		c.HandshakeTimeout = fuzzHandshakeTimeout
		c.OpenTimeout = time.Second
	})
}

func frameBytes(t wire.Type, v any) []byte {
	var b bytes.Buffer
	if err := wire.WriteFrame(&b, t, v); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// drain reads the peer's side until the gateway ends it.
func drain(p *testPeer) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(io.Discard, p.Conn)
	}()
	return done
}

// MustFinish closes the gateway and checks that it has nothing left to
// serve. In a bubble the wait costs no real time.
func MustFinish(t *testing.T, g *testGateway) {
	t.Helper()
	g.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := g.Wait(ctx); err != nil {
		t.Fatalf("relay still serving a minute after Close: %v", err)
	}
}

// FuzzHandshake feeds arbitrary bytes as the first bytes a peer sends. No
// such peer can know the nonce, so whatever it sends, the gateway must
// refuse it and close the connection within the handshake timeout, without
// panicking.
func FuzzHandshake(f *testing.F) {
	unproved := func(role, name, target string) []byte {
		h := wire.NewHello(wire.Challenge{Salt: testSalt, Nonce: make([]byte, 32)}, keyAlpha, role, name, target)
		return frameBytes(wire.TypeHello, h)
	}
	f.Add(unproved(wire.RoleClient, "pc-1", ""))
	f.Add(unproved(wire.RoleBrowse, "op-1", ""))
	f.Add(unproved(wire.RoleConnect, "op-1", "pc-1/vnc"))
	f.Add(unproved(wire.RoleAccept, "pc-1", "0123456789abcdef0123456789abcdef"))
	f.Add(append(unproved(wire.RoleClient, "pc-1", ""), frameBytes(wire.TypeHeartbeat, wire.Empty{})...))
	f.Add(frameBytes(wire.TypeHello, wire.Hello{Role: "nobody"}))
	f.Add(frameBytes(wire.TypeHeartbeat, wire.Empty{}))
	f.Add([]byte{byte(wire.TypeHello), 0, 0, 0, 9, '{'})
	f.Add([]byte{byte(wire.TypeHello), 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{byte(wire.TypeHello), 0, 0, 0, 2, '[', ']'})
	f.Add([]byte("GET /relay/v1 HTTP/1.1\r\nHost: gw\r\n\r\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		synctest.Test(t, func(t *testing.T) {
			g := MustStartFuzzGateway(t)
			p := g.MustDial(t, "198.51.100.77")
			closed := drain(p)
			go func() { _, _ = p.Conn.Write(data) }()

			time.Sleep(fuzzHandshakeTimeout)
			synctest.Wait()
			select {
			case <-closed:
			default:
				t.Fatalf("connection still open after the handshake timeout")
			}
			if n := g.Stats().Clients; n != 0 {
				t.Fatalf("%d Clients registered without a proof", n)
			}
			MustFinish(t, g)
		})
	})
}

// FuzzHello sends a Hello with a valid proof for fuzzed fields, followed
// by arbitrary frames: the paths a peer holding a key reaches (names,
// targets, services, the control channel's frames). A Client named pc-1
// with services ssh and vnc is connected, so that connects can find it.
func FuzzHello(f *testing.F) {
	hb := frameBytes(wire.TypeHeartbeat, wire.Empty{})
	f.Add(wire.RoleClient, "pc-2", "", "10.0.0.2", "ssh,vnc", hb)
	f.Add(wire.RoleClient, "pc-1", "", "10.0.0.2", "ssh", frameBytes(wire.TypeOpenFailed, wire.OpenFailed{SessionID: "00ff", Message: "no"}))
	f.Add(wire.RoleClient, "pc-2", "", "", "", frameBytes(wire.TypeAuthAnswer, wire.AuthAnswer{Code: "123456"}))
	f.Add(wire.RoleClient, "pc-2", "", "::1", "", append(hb, 5, 0, 0))
	f.Add(wire.RoleBrowse, "op-1", "", "", "", []byte(nil))
	f.Add(wire.RoleConnect, "op-1", "pc-1/vnc", "", "", []byte(nil))
	f.Add(wire.RoleConnect, "op-1", "pc-1", "", "", []byte("early bytes"))
	f.Add(wire.RoleConnect, "op-1", "pc-9/ssh", "", "", []byte(nil))
	f.Add(wire.RoleAccept, "pc-1", "0123456789abcdef0123456789abcdef", "", "", []byte(nil))
	f.Add("admin", "x", "", "", "", []byte(nil))
	f.Fuzz(func(t *testing.T, role, name, target, realIP, services string, tail []byte) {
		synctest.Test(t, func(t *testing.T) {
			g := MustStartFuzzGateway(t)
			pc1 := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.1", "203.0.113.1", "ssh", "vnc")
			p := g.MustDial(t, "198.51.100.77")
			h := wire.NewHello(p.Challenge, keyAlpha, role, name, target)
			h.RealIP = realIP
			if services != "" {
				for _, s := range strings.Split(services, ",") {
					h.Services = append(h.Services, wire.Service{Name: s})
				}
			}
			closed := drain(p)
			go func() { _, _ = p.Conn.Write(append(frameBytes(wire.TypeHello, h), tail...)) }()

			// Long enough, in the bubble's time, for every timeout of a
			// refused or stalled peer; a registered Client may stay.
			time.Sleep(5 * time.Minute)
			synctest.Wait()
			select {
			case <-closed:
			default:
				if role != wire.RoleClient {
					t.Fatalf("a %q connection is still open after five minutes", role)
				}
			}
			p.Close()
			pc1.Close()
			MustFinish(t, g)
		})
	})
}
