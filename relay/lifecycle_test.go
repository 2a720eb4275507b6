package relay_test

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

// TestNoGoroutineLeak: once Shutdown and Wait have returned and the peers
// are gone, everything the relay started has ended, whatever the peers did:
// register, heartbeat, browse, sessions (whole, half-closed, cut), refusals
// and garbage.
func TestNoGoroutineLeak(t *testing.T) {
	baseline := runtime.NumGoroutine()

	t.Run("serve and shut down", func(t *testing.T) {
		g := MustStartGateway(t, []string{keyAlpha, keyBravo}, maxClients(3))
		a := g.MustRegister(t, keyAlpha, "pc-a", "10.0.0.1", "203.0.113.1", "ssh", "vnc")
		b := g.MustRegister(t, keyBravo, "pc-b", "10.0.0.2", "203.0.113.2", "ssh")
		g.MustRegister(t, keyAlpha, "pc-c", "10.0.0.3", "203.0.113.3", "ssh")
		MustBeOverLicence(t, g, "pc-d", "10.0.0.4", "203.0.113.4")
		if _, err := g.Register(t, keyUnknown, "pc-e", "10.0.0.5", "203.0.113.5"); err == nil {
			t.Fatal("a Client with an unknown key registered")
		}
		a.MustBeAlive(t)
		g.SetCMPI(30 * time.Second)

		if _, err := g.Browse(t, keyAlpha, "op-1", "198.51.100.1"); err != nil {
			t.Fatal(err)
		}
		g.MustConnectRefused(t, keyAlpha, "op-1", "pc-b/ssh", "198.51.100.1", wire.CodeKeyMismatch)

		ctl1, acc1 := g.MustOpenSession(t, a, keyAlpha, "op-1", "pc-a/ssh", "198.51.100.1")
		MustExchange(t, ctl1, acc1, randomBytes(512<<10, 9), randomBytes(512<<10, 10))
		ctl2, acc2 := g.MustOpenSession(t, a, keyAlpha, "op-2", "pc-a/vnc", "198.51.100.2")
		ctl2.MustCloseWrite(t)
		MustReadAll(t, acc2)
		ctl3, acc3 := g.MustOpenSession(t, b, keyBravo, "op-3", "pc-b", "198.51.100.3")
		ctl3.Close()
		acc3.MustBeClosed(t)
		acc3.Close()

		junk := g.MustDial(t, "192.0.2.1")
		if _, err := junk.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		MustBeEnded(t, junk)

		// An ended context makes Shutdown cut the sessions still running.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		g.Shutdown(ctx)
		wctx, wcancel := context.WithTimeout(context.Background(), waitFor)
		defer wcancel()
		if err := g.Wait(wctx); err != nil {
			t.Fatal(err)
		}
	})

	deadline := time.Now().Add(waitFor)
	for {
		n := runtime.NumGoroutine()
		if n <= baseline {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines %s after Shutdown, %d before the gateway started:\n%s", n, waitFor, baseline, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// MustBeEnded expects the gateway to end the connection, with or without an
// error frame first.
func MustBeEnded(tb testing.TB, p *testPeer) {
	tb.Helper()
	_ = p.SetReadDeadline(time.Now().Add(waitFor))
	defer p.SetReadDeadline(time.Time{})
	for {
		_, _, err := wire.ReadFrame(p.r)
		if err == nil {
			continue
		}
		if isTimeout(err) {
			tb.Fatalf("connection still open after %s", waitFor)
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "reset") {
			tb.Fatalf("reading until the end: %v", err)
		}
		return
	}
}

// TestCloseEndsEveryConnection: Close "ends every connection", and the HTTP
// layer relies on it (handlers: "the relay ends connections itself on
// Shutdown and Close"), including those that are not a Client's channel or
// a session yet. Their long timeouts are set far beyond waitFor so that
// only Close can end them in time.
func TestCloseEndsEveryConnection(t *testing.T) {
	long := func(c *relay.Config) { c.HandshakeTimeout, c.OpenTimeout = time.Minute, time.Minute }

	t.Run("a control waiting for the client to accept", func(t *testing.T) {
		g := MustStartGateway(t, []string{keyAlpha}, long)
		c := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.5", "203.0.113.7", "vnc")
		ctl := g.MustDial(t, "198.51.100.9")
		ctl.MustSendHello(t, keyAlpha, wire.RoleConnect, "op-1", "pc-1/vnc", nil)
		c.MustNextOpen(t)
		g.Close()
		c.MustBeDropped(t)
		MustBeEnded(t, ctl)
		MustWaitRelay(t, g)
	})

	t.Run("a peer still in its handshake", func(t *testing.T) {
		g := MustStartGateway(t, []string{keyAlpha}, long)
		p := g.MustDial(t, "198.51.100.9")
		g.Close()
		MustBeEnded(t, p)
		MustWaitRelay(t, g)
	})
}

func MustWaitRelay(tb testing.TB, g *testGateway) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := g.Wait(ctx); err != nil {
		tb.Fatal(err)
	}
}

// TestUnauthenticatedPeerWritesBoundedEvents holds the design's promise
// that a peer without a valid key "can write nothing but a sanitised,
// size-bounded security event": whatever it puts in its hello, the event
// is one line of bounded length, so it can neither forge GW log lines nor
// fill the log.
func TestUnauthenticatedPeerWritesBoundedEvents(t *testing.T) {
	const maxEvent = 1024 // far above any legitimate event, far below a frame
	forged := "pc-1\n29-Jun-22, 16:11:20, Client pc-1 connected\r"
	huge := strings.Repeat("A", 200_000)
	for _, tt := range []struct {
		role, name, target, realIP string
		// A hello too large to read at all may be refused without an
		// event; any other refused hello is a security event.
		event bool
	}{
		{wire.RoleClient, forged, "", "10.0.0.1\n29-Jun-22, 16:11:20, Gateway stopped", true},
		{wire.RoleClient, "pc-1", "", forged, true},
		{wire.RoleClient, huge, "", huge, false},
		{wire.RoleConnect, forged, forged + "/vnc", "", true},
		{wire.RoleConnect, "op-1", huge[:4000] + "/vnc", "", true},
		{wire.RoleConnect, huge, huge, "", false},
		{wire.RoleAccept, forged, "0123abcd", "", true},
		{wire.RoleAccept, huge, huge, "", false},
	} {
		t.Run(tt.role+" "+strings.ToValidUTF8(tt.name[:min(len(tt.name), 8)], ""), func(t *testing.T) {
			g := MustStartGateway(t, []string{keyAlpha})
			p := g.MustDial(t, "203.0.113.66")
			p.MustSendHello(t, keyUnknown, tt.role, tt.name, tt.target, func(h *wire.Hello) { h.RealIP = tt.realIP })
			// The refusal's code is the relay's choice (a bad field or a
			// bad key); that it is refused and closed is not.
			var we *wire.Error
			if err := p.Expect(wire.TypeWelcome, new(wire.Welcome)); !errors.As(err, &we) {
				t.Fatalf("got %v, want a refusal", err)
			}
			MustBeEnded(t, p)
			if tt.event {
				MustEventually(t, "a security event", func() bool { return len(g.Events.Events()) > 0 })
			}
			for _, e := range g.Events.Events() {
				if len(e.LogLine()) > maxEvent {
					t.Errorf("a %d-byte event from an unauthenticated peer", len(e.LogLine()))
				}
				for _, f := range []string{e.Message, e.Client, e.Control, e.RealIP} {
					if i := strings.IndexFunc(f, unicode.IsControl); i >= 0 {
						t.Errorf("event field %.60q... holds control character %q", f, f[i])
					}
				}
			}
		})
	}
}
