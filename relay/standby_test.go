package relay_test

import (
	"testing"

	"github.com/switchboard/switchboard/relay/wire"
)

// mustStandby opens a standby connection for Client c, as the agent does
// after a session.
func (g *testGateway) mustStandby(tb testing.TB, c *testClient) *testPeer {
	tb.Helper()
	before := g.Stats().Standbys
	st := g.MustDial(tb, c.PublicIP)
	st.MustSendHello(tb, c.Secret, wire.RoleStandby, c.Name, "", nil)
	// Nothing answers a standby until it is used.
	MustEventually(tb, "the standby to be listed", func() bool { return g.Stats().Standbys == before+1 })
	return st
}

// mustWarm opens a warm Control connection and waits for its Standby.
func (g *testGateway) mustWarm(tb testing.TB, key, control, ip string) *testPeer {
	tb.Helper()
	w := g.MustDial(tb, ip)
	w.MustSendHello(tb, key, wire.RoleWarm, control, "", nil)
	w.MustExpect(tb, wire.TypeStandby, &wire.Empty{})
	return w
}

func mustSend(tb testing.TB, p *testPeer, t wire.Type, v any) {
	tb.Helper()
	if err := wire.WriteFrame(p, t, v); err != nil {
		tb.Fatalf("sending %s: %v", t, err)
	}
}

// TestWarmSession is the warm path end to end: a Control's connection
// verified ahead of its target, and a Client's standby that takes the Open
// instead of the control channel. The session is a session like any
// other: Ready to both, bytes both ways, the same events.
func TestWarmSession(t *testing.T) {
	g := MustStartGateway(t, []string{keyAlpha})
	c := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.5", "203.0.113.7", "ssh", "vnc")
	st := g.mustStandby(t, c)
	w := g.mustWarm(t, keyAlpha, "op-1", "198.51.100.9")

	mustSend(t, w, wire.TypeConnectTo, wire.ConnectTo{Target: "pc-1/vnc"})
	var open wire.Open
	st.MustExpect(t, wire.TypeOpen, &open)
	if open.Service != "vnc" || open.Control != "op-1" || open.SessionID == "" {
		t.Fatalf("open on the standby = %+v", open)
	}
	mustSend(t, st, wire.TypeAccept, wire.Accept{SessionID: open.SessionID})
	var r1, r2 wire.Ready
	st.MustExpect(t, wire.TypeReady, &r1)
	w.MustExpect(t, wire.TypeReady, &r2)
	if r1.SessionID != open.SessionID || r2.SessionID != open.SessionID {
		t.Fatalf("ready frames name %q and %q, want %q", r1.SessionID, r2.SessionID, open.SessionID)
	}
	g.Events.MustWait(t, sessionStarted)
	MustExchange(t, w, st, randomBytes(1<<20, 3), randomBytes(1<<20+7, 4))
	// The channel never saw the Open and carries on.
	c.MustBeAlive(t)
	w.Close()
	st.MustBeClosed(t)
	st.Close()
	g.Events.MustWait(t, sessionEnded)

	// The standby was used up: the next session asks on the channel.
	ctl, acc := g.MustOpenSession(t, c, keyAlpha, "op-1", "pc-1/ssh", "198.51.100.9")
	MustExchange(t, ctl, acc, []byte("up"), []byte("down"))
}

// TestStandbyOpenFailed: a Client that cannot reach its service says so on
// the standby, and the Control hears the reason at once.
func TestStandbyOpenFailed(t *testing.T) {
	g := MustStartGateway(t, []string{keyAlpha})
	c := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.5", "203.0.113.7", "vnc")
	st := g.mustStandby(t, c)
	ctl := g.MustDial(t, "198.51.100.9")
	ctl.MustSendHello(t, keyAlpha, wire.RoleConnect, "op-1", "pc-1/vnc", nil)
	var open wire.Open
	st.MustExpect(t, wire.TypeOpen, &open)
	mustSend(t, st, wire.TypeOpenFailed, wire.OpenFailed{SessionID: open.SessionID, Message: "the service is not reachable on the Client"})
	we := ctl.MustBeRefused(t, wire.TypeReady, wire.CodeUnavailable)
	if want := `Client "pc-1" could not open service "vnc": the service is not reachable on the Client`; we.Message != want {
		t.Fatalf("refusal = %q, want %q", we.Message, want)
	}
	st.MustBeClosed(t)
}

// TestStandbyLostFallsBack: a standby that closes under the Open (the
// agent retiring it at that moment) costs the session nothing but the
// wait: the gateway asks on the control channel.
func TestStandbyLostFallsBack(t *testing.T) {
	g := MustStartGateway(t, []string{keyAlpha})
	c := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.5", "203.0.113.7", "vnc")
	st := g.mustStandby(t, c)
	ctl := g.MustDial(t, "198.51.100.9")
	ctl.MustSendHello(t, keyAlpha, wire.RoleConnect, "op-1", "pc-1/vnc", nil)
	var open wire.Open
	st.MustExpect(t, wire.TypeOpen, &open)
	st.Close()

	again := c.MustNextOpen(t)
	if again.SessionID != open.SessionID {
		t.Fatalf("channel open for %q, want the same session %q", again.SessionID, open.SessionID)
	}
	acc := g.MustDial(t, c.PublicIP)
	acc.MustSendHello(t, c.Secret, wire.RoleAccept, c.Name, again.SessionID, nil)
	acc.MustExpect(t, wire.TypeReady, &wire.Ready{})
	ctl.MustExpect(t, wire.TypeReady, &wire.Ready{})
	MustExchange(t, ctl, acc, []byte("ping"), []byte("pong"))
}

// TestStandbyRefusals: a standby must prove the key, name a Client
// registered here (a lone node brokers nothing else) and stay within the
// per-Client cap; a warm Control connection must prove its key, sign in
// with a token only and then name a well-formed target.
func TestStandbyRefusals(t *testing.T) {
	g := MustStartGateway(t, []string{keyAlpha, keyBravo})
	c := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.5", "203.0.113.7", "vnc")

	bad := g.MustDial(t, "203.0.113.8")
	bad.MustSendHello(t, keyBravo, wire.RoleStandby, "pc-2", "", nil)
	bad.MustBeRefused(t, wire.TypeOpen, wire.CodeUnavailable)

	wrong := g.MustDial(t, "203.0.113.8")
	wrong.MustSendHello(t, keyUnknown, wire.RoleStandby, "pc-1", "", nil)
	wrong.MustBeRefused(t, wire.TypeOpen, wire.CodeUnauthorized)

	g.mustStandby(t, c)
	g.mustStandby(t, c)
	third := g.MustDial(t, c.PublicIP)
	third.MustSendHello(t, c.Secret, wire.RoleStandby, c.Name, "", nil)
	third.MustBeRefused(t, wire.TypeOpen, wire.CodeUnavailable)

	pw := g.MustDial(t, "198.51.100.9")
	pw.MustSendHello(t, keyAlpha, wire.RoleWarm, "op-1", "", func(h *wire.Hello) { h.Operator, h.Password = "alice", "secret" })
	pw.MustBeRefused(t, wire.TypeStandby, wire.CodeBadRequest)

	w := g.mustWarm(t, keyAlpha, "op-1", "198.51.100.9")
	mustSend(t, w, wire.TypeConnectTo, wire.ConnectTo{Target: "pc-1/\x1b[2J"})
	w.MustBeRefused(t, wire.TypeReady, wire.CodeBadRequest)

	w = g.mustWarm(t, keyAlpha, "op-1", "198.51.100.9")
	mustSend(t, w, wire.TypeConnectTo, wire.ConnectTo{Target: "pc-9"})
	w.MustBeRefused(t, wire.TypeReady, wire.CodeNotFound)

	// A key removed while a warm connection waits no longer opens anything.
	w = g.mustWarm(t, keyBravo, "op-2", "198.51.100.9")
	g.SetKeys(keysFor(keyAlpha))
	mustSend(t, w, wire.TypeConnectTo, wire.ConnectTo{Target: "pc-1"})
	w.MustBeRefused(t, wire.TypeReady, wire.CodeUnauthorized)
}
