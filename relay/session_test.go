package relay_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

const (
	sessionStarted = "Control op-1 connected to Client pc-1"
	sessionEnded   = "Control op-1 disconnected from Client pc-1"
)

// TestSession brokers one session and relays a few MiB both ways at once;
// the console's view of it (Stats, Sessions) follows.
func TestSession(t *testing.T) {
	g := MustStartGateway(t, []string{keyAlpha})
	c := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.5", "203.0.113.7", "ssh", "vnc")
	ctl, acc := g.MustOpenSession(t, c, keyAlpha, "op-1", "pc-1/vnc", "198.51.100.9")

	e := g.Events.MustWait(t, sessionStarted)
	if e.Kind != event.KindSessionStart || e.Control != "op-1" || e.Client != "pc-1" || e.PublicIP != "198.51.100.9" || e.Node != testNode {
		t.Fatalf("session start event = %+v", e)
	}
	ss := g.Sessions()
	if len(ss) != 1 {
		t.Fatalf("%d sessions listed, want 1", len(ss))
	}
	if s := ss[0]; s.Control != "op-1" || s.Client != "pc-1" || s.Service != "vnc" || s.ControlIP != "198.51.100.9" || s.ID == "" {
		t.Fatalf("session = %+v", s)
	}
	if st := g.Stats(); st.Sessions != 1 || st.Clients != 1 {
		t.Fatalf("stats = %+v, want 1 Client and 1 session", st)
	}

	const up, down = 4 << 20, 3<<20 + 12345
	MustExchange(t, ctl, acc, randomBytes(up, 1), randomBytes(down, 2))
	// The counters are added after each write returns, which may be just
	// after the far side has read the bytes.
	MustEventually(t, "the byte counters to reach what was relayed", func() bool {
		st, ss := g.Stats(), g.Sessions()
		return st.BytesUp == up && st.BytesDown == down && len(ss) == 1 && ss[0].BytesUp == up && ss[0].BytesDown == down
	})

	// The session is a connection of its own: the Client's channel carries
	// on beside it.
	c.MustBeAlive(t)

	ctl.Close()
	acc.MustBeClosed(t)
	acc.Close()
	e = g.Events.MustWait(t, sessionEnded)
	if e.Kind != event.KindSessionEnd || e.Control != "op-1" || e.Client != "pc-1" {
		t.Fatalf("session end event = %+v", e)
	}
	MustEventually(t, "the session to be gone", func() bool { return g.Stats().Sessions == 0 && len(g.Sessions()) == 0 })
	if n := g.Events.Count(sessionEnded); n != 1 {
		t.Fatalf("%d session end events, want 1", n)
	}
	c.MustBeAlive(t)
	if st := g.Stats(); st.BytesUp != up || st.BytesDown != down {
		t.Fatalf("stats = %+v after the session, want the totals kept", st)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	g.Shutdown(ctx)
	if !g.Closed() {
		t.Fatal("not Closed after Shutdown")
	}
	c.MustBeDropped(t)
	if err := g.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	g.Events.MustWait(t, "Client pc-1 Disconnected")
}

// TestSessionTeardown: however a session ends, both sides end, the gateway
// forgets it and says so once, and the Client's channel is untouched.
func TestSessionTeardown(t *testing.T) {
	tests := []struct {
		name string
		end  func(t *testing.T, g *testGateway, ctl, acc *testPeer)
	}{
		{"control closes and the client answers the EOF by closing", func(t *testing.T, g *testGateway, ctl, acc *testPeer) {
			ctl.Close()
			acc.MustBeClosed(t)
			acc.Close()
		}},
		{"client closes and the control answers the EOF by closing", func(t *testing.T, g *testGateway, ctl, acc *testPeer) {
			acc.Close()
			ctl.MustBeClosed(t)
			ctl.Close()
		}},
		{"client reset ends both sides", func(t *testing.T, g *testGateway, ctl, acc *testPeer) {
			acc.MustReset(t)
			ctl.MustBeClosed(t)
		}},
		{"control reset ends both sides", func(t *testing.T, g *testGateway, ctl, acc *testPeer) {
			ctl.MustReset(t)
			acc.MustBeClosed(t)
		}},
		{"an administrator terminates it", func(t *testing.T, g *testGateway, ctl, acc *testPeer) {
			id := g.Sessions()[0].ID
			if !g.TerminateSession(id) {
				t.Fatal("TerminateSession found no session")
			}
			ctl.MustBeClosed(t)
			acc.MustBeClosed(t)
			MustEventually(t, "the session to be gone", func() bool { return g.Stats().Sessions == 0 })
			if g.TerminateSession(id) {
				t.Fatal("TerminateSession found a session that has ended")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := MustStartGateway(t, []string{keyAlpha})
			c := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.5", "203.0.113.7", "vnc")
			ctl, acc := g.MustOpenSession(t, c, keyAlpha, "op-1", "pc-1", "198.51.100.9")
			MustExchange(t, ctl, acc, randomBytes(64<<10, 3), randomBytes(64<<10, 4))

			tt.end(t, g, ctl, acc)
			g.Events.MustWait(t, sessionEnded)
			MustEventually(t, "the session to be gone", func() bool { return g.Stats().Sessions == 0 })
			if n := g.Events.Count(sessionEnded); n != 1 {
				t.Fatalf("%d session end events, want 1", n)
			}
			c.MustBeAlive(t)
			g.Events.MustNotHave(t, "Client pc-1 Disconnected")
		})
	}
}

// TestHalfClose: a FIN from one side reaches the other, which can still
// answer; the session ends when both sides have finished.
func TestHalfClose(t *testing.T) {
	tests := []struct {
		name  string
		first func(ctl, acc *testPeer) (closer, answerer *testPeer)
	}{
		{"control finishes first, client still answers", func(ctl, acc *testPeer) (*testPeer, *testPeer) { return ctl, acc }},
		{"client finishes first, control still answers", func(ctl, acc *testPeer) (*testPeer, *testPeer) { return acc, ctl }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := MustStartGateway(t, []string{keyAlpha})
			c := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.5", "203.0.113.7", "vnc")
			closer, answerer := tt.first(g.MustOpenSession(t, c, keyAlpha, "op-1", "pc-1/vnc", "198.51.100.9"))

			request := randomBytes(256<<10, 5)
			if _, err := closer.Write(request); err != nil {
				t.Fatal(err)
			}
			closer.MustCloseWrite(t)
			if got := MustReadAll(t, answerer); !bytes.Equal(got, request) {
				t.Fatalf("the half-closing side's %d bytes arrived as %d bytes", len(request), len(got))
			}

			// The half-closed direction does not end the session.
			if n := g.Stats().Sessions; n != 1 {
				t.Fatalf("%d sessions after a half-close, want 1", n)
			}
			response := randomBytes(1<<20, 6)
			if _, err := answerer.Write(response); err != nil {
				t.Fatalf("answering after the other side's half-close: %v", err)
			}
			answerer.MustCloseWrite(t)
			if got := MustReadAll(t, closer); !bytes.Equal(got, response) {
				t.Fatalf("the answer of %d bytes arrived as %d bytes", len(response), len(got))
			}

			g.Events.MustWait(t, sessionEnded)
			MustEventually(t, "the session to be gone", func() bool { return g.Stats().Sessions == 0 })
			closer.Close()
			answerer.Close()
		})
	}
}

// MustReadAll reads until EOF: the other side's half-close.
func MustReadAll(tb testing.TB, p *testPeer) []byte {
	tb.Helper()
	_ = p.SetReadDeadline(time.Now().Add(waitFor))
	defer p.SetReadDeadline(time.Time{})
	b, err := io.ReadAll(p)
	if err != nil {
		tb.Fatalf("reading until EOF after %d bytes: %v", len(b), err)
	}
	return b
}

// TestConnectOutcomes: the brokering rules between a Control's connect
// and the Client's answer.
func TestConnectOutcomes(t *testing.T) {
	const ctlIP = "198.51.100.9"
	t.Run("client with one service is reached without naming it", func(t *testing.T) {
		g := MustStartGateway(t, []string{keyAlpha})
		c := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.5", "203.0.113.7", "rdp")
		ctl, acc := g.MustOpenSession(t, c, keyAlpha, "op-1", "pc-1", ctlIP)
		if s := g.Sessions(); len(s) != 1 || s[0].Service != "rdp" {
			t.Fatalf("sessions = %+v, want one to rdp", s)
		}
		MustExchange(t, ctl, acc, []byte("x"), []byte("y"))
	})
	for _, tt := range []struct {
		name, target, code string
	}{
		{"client with several services must be told which", "pc-1", wire.CodeBadRequest},
		{"a service the client does not offer is not found", "pc-1/telnet", wire.CodeNotFound},
		{"a client that is not connected is not found", "pc-9/ssh", wire.CodeNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := MustStartGateway(t, []string{keyAlpha})
			c := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.5", "203.0.113.7", "ssh", "vnc")
			g.MustConnectRefused(t, keyAlpha, "op-1", tt.target, ctlIP, tt.code)
			c.MustBeAlive(t)
			if len(c.frames) != 0 {
				t.Fatal("the Client was asked to open a session for a refused connect")
			}
		})
	}

	t.Run("client that cannot open the service makes the connect unavailable", func(t *testing.T) {
		g := MustStartGateway(t, []string{keyAlpha})
		c := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.5", "203.0.113.7", "vnc")
		ctl := g.MustDial(t, ctlIP)
		ctl.MustSendHello(t, keyAlpha, wire.RoleConnect, "op-1", "pc-1/vnc", nil)
		open := c.MustNextOpen(t)
		if err := c.Send(wire.TypeOpenFailed, wire.OpenFailed{SessionID: open.SessionID, Message: "connection refused by 127.0.0.1:5900"}); err != nil {
			t.Fatal(err)
		}
		we := ctl.MustBeRefused(t, wire.TypeReady, wire.CodeUnavailable)
		if !strings.Contains(we.Message, "connection refused by 127.0.0.1:5900") {
			t.Fatalf("the Control was told %q, want the Client's reason", we.Message)
		}
		c.MustBeAlive(t)
		g.Events.MustNotHave(t, sessionStarted)
		e := g.Events.MustWait(t, "Control op-1 could not connect to Client pc-1")
		if e.Reason != "the Client could not open service vnc: connection refused by 127.0.0.1:5900" || e.PublicIP != ctlIP || e.Control != "op-1" {
			t.Fatalf("session failed event = %+v", e)
		}
	})

	t.Run("client that never answers makes the connect unavailable", func(t *testing.T) {
		g := MustStartGateway(t, []string{keyAlpha}, func(c *relay.Config) { c.OpenTimeout = 50 * time.Millisecond })
		c := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.5", "203.0.113.7", "vnc")
		ctl := g.MustDial(t, ctlIP)
		ctl.MustSendHello(t, keyAlpha, wire.RoleConnect, "op-1", "pc-1/vnc", nil)
		c.MustNextOpen(t)
		ctl.MustBeRefused(t, wire.TypeReady, wire.CodeUnavailable)
		c.MustBeAlive(t)
		g.Events.MustNotHave(t, sessionStarted)
		if e := g.Events.MustWait(t, "Control op-1 could not connect to Client pc-1"); e.Reason != "the Client did not answer within 50ms" {
			t.Fatalf("session failed event = %+v", e)
		}
	})

	t.Run("an accept after the control was refused is refused too", func(t *testing.T) {
		g := MustStartGateway(t, []string{keyAlpha})
		c := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.5", "203.0.113.7", "vnc")
		// The window is narrow; a few tries hit it on most runs.
		for range 20 {
			ctl := g.MustDial(t, ctlIP)
			ctl.MustSendHello(t, keyAlpha, wire.RoleConnect, "op-1", "pc-1/vnc", nil)
			open := c.MustNextOpen(t)
			if err := c.Send(wire.TypeOpenFailed, wire.OpenFailed{SessionID: open.SessionID, Message: "no"}); err != nil {
				t.Fatal(err)
			}
			ctl.MustBeRefused(t, wire.TypeReady, wire.CodeUnavailable)
			acc := g.MustDial(t, c.PublicIP)
			acc.MustSendHello(t, keyAlpha, wire.RoleAccept, "pc-1", open.SessionID, nil)
			acc.MustBeRefused(t, wire.TypeReady, wire.CodeNotFound)
			ctl.Close()
			acc.Close()
		}
	})

	t.Run("only the client that was asked may accept, and only once", func(t *testing.T) {
		g := MustStartGateway(t, []string{keyAlpha, keyBravo})
		c := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.5", "203.0.113.7", "vnc")
		other := g.MustRegister(t, keyAlpha, "pc-2", "10.0.0.6", "203.0.113.8", "vnc")
		sameNameOtherKey := g.MustRegister(t, keyBravo, "pc-1", "10.0.0.7", "203.0.113.9", "vnc")
		ctl := g.MustDial(t, ctlIP)
		ctl.MustSendHello(t, keyAlpha, wire.RoleConnect, "op-1", "pc-1/vnc", nil)
		open := c.MustNextOpen(t)

		for _, impostor := range []*testClient{other, sameNameOtherKey} {
			p := g.MustDial(t, impostor.PublicIP)
			p.MustSendHello(t, impostor.Secret, wire.RoleAccept, impostor.Name, open.SessionID, nil)
			p.MustBeRefused(t, wire.TypeReady, wire.CodeNotFound)
		}
		bad := g.MustDial(t, c.PublicIP)
		bad.MustSendHello(t, keyUnknown, wire.RoleAccept, "pc-1", open.SessionID, nil)
		bad.MustBeRefused(t, wire.TypeReady, wire.CodeUnauthorized)

		acc := g.MustDial(t, c.PublicIP)
		acc.MustSendHello(t, keyAlpha, wire.RoleAccept, "pc-1", open.SessionID, nil)
		acc.MustExpect(t, wire.TypeReady, &wire.Ready{})
		ctl.MustExpect(t, wire.TypeReady, &wire.Ready{})
		MustExchange(t, ctl, acc, []byte("reached"), []byte("the right one"))

		again := g.MustDial(t, c.PublicIP)
		again.MustSendHello(t, keyAlpha, wire.RoleAccept, "pc-1", open.SessionID, nil)
		again.MustBeRefused(t, wire.TypeReady, wire.CodeNotFound)
	})
}

// TestShutdown: Shutdown tells Clients at once but lets sessions in
// progress finish; it returns when they have, or when its context ends.
func TestShutdown(t *testing.T) {
	t.Run("sessions in progress finish before shutdown returns", func(t *testing.T) {
		g := MustStartGateway(t, []string{keyAlpha})
		c := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.5", "203.0.113.7", "vnc")
		ctl, acc := g.MustOpenSession(t, c, keyAlpha, "op-1", "pc-1/vnc", "198.51.100.9")

		done := make(chan struct{})
		go func() {
			defer close(done)
			g.Shutdown(context.Background())
		}()
		if reason := c.MustBeDropped(t); reason == "" {
			t.Error("the Client was not told why it was dropped")
		}
		g.Events.MustWait(t, "Client pc-1 Disconnected")
		MustEventually(t, "the gateway to refuse new connections", g.Closed)
		refused := g.MustDialRaw(t, "203.0.113.50")
		refused.MustBeClosed(t)

		// The session outlives its Client's channel.
		MustExchange(t, ctl, acc, randomBytes(128<<10, 7), randomBytes(128<<10, 8))
		select {
		case <-done:
			t.Fatal("Shutdown returned while a session was in progress")
		default:
		}

		ctl.Close()
		acc.MustBeClosed(t)
		acc.Close()
		select {
		case <-done:
		case <-time.After(waitFor):
			t.Fatalf("Shutdown did not return within %s of the last session ending", waitFor)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := g.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		g.Events.MustWait(t, sessionEnded)
	})

	t.Run("the end of its context cuts sessions still in progress", func(t *testing.T) {
		g := MustStartGateway(t, []string{keyAlpha})
		c := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.5", "203.0.113.7", "vnc")
		ctl, acc := g.MustOpenSession(t, c, keyAlpha, "op-1", "pc-1/vnc", "198.51.100.9")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			g.Shutdown(ctx)
		}()
		c.MustBeDropped(t)
		cancel()
		ctl.MustBeClosed(t)
		acc.MustBeClosed(t)
		select {
		case <-done:
		case <-time.After(waitFor):
			t.Fatalf("Shutdown did not return within %s of its context ending", waitFor)
		}
		wctx, wcancel := context.WithTimeout(context.Background(), waitFor)
		defer wcancel()
		if err := g.Wait(wctx); err != nil {
			t.Fatal(err)
		}
		g.Events.MustWait(t, sessionEnded)
	})
}
