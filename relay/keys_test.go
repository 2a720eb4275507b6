package relay_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/relay/wire"
)

const (
	keyAlpha   = "alpha-gateway-key"
	keyBravo   = "bravo-gateway-key"
	keyCharlie = "charlie-gateway-key"
	keyUnknown = "a-key-this-gateway-never-had"
)

// TestKeyMatching is the design's key-matching table, row by row: which key
// the Client and the Control hold, against the gateway's keys alpha and
// bravo, and what each of them may then do.
func TestKeyMatching(t *testing.T) {
	const (
		clientIP  = "203.0.113.7"
		realIP    = "10.0.0.5"
		controlIP = "198.51.100.9"
	)
	tests := []struct {
		name                  string
		clientKey, controlKey string

		clientEvent string // "" when the Client is admitted
		browseCode  string // "" when browse answers
		browseEvent string
		browseSees  bool
		connectCode string // "" when the session opens
		// connectEvent is the event of the connect attempt; when the
		// session opens, its start.
		connectEvent string
	}{
		{
			name:      "client key not on gateway: client cannot connect",
			clientKey: keyUnknown, controlKey: keyAlpha,
			clientEvent:  "Security check failed for Client pc-1 (10.0.0.5). Terminating connection from 203.0.113.7",
			browseSees:   false,
			connectCode:  wire.CodeNotFound,
			connectEvent: "",
		},
		{
			name:      "control key on gateway but different: client connects, control neither sees nor reaches it",
			clientKey: keyAlpha, controlKey: keyBravo,
			browseSees:   false,
			connectCode:  wire.CodeKeyMismatch,
			connectEvent: "Client/Control security check failed for Control op-1. Rejecting connection request to Client pc-1 from 198.51.100.9",
		},
		{
			name:      "same key: control sees and reaches the client",
			clientKey: keyAlpha, controlKey: keyAlpha,
			browseSees:   true,
			connectEvent: "Control op-1 connected to Client pc-1",
		},
		{
			name:      "control key not on gateway: control can neither browse nor connect",
			clientKey: keyAlpha, controlKey: keyUnknown,
			browseCode:   wire.CodeUnauthorized,
			browseEvent:  "Security check failed for Control browse. Terminating connection from 198.51.100.9",
			connectCode:  wire.CodeUnauthorized,
			connectEvent: "Security check failed for Control op-1. Rejecting connection request to Client pc-1 from 198.51.100.9",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := MustStartGateway(t, []string{keyAlpha, keyBravo})

			c, err := g.Register(t, tt.clientKey, "pc-1", realIP, clientIP, "vnc")
			if tt.clientEvent != "" {
				var we *wire.Error
				if !asWireError(err, &we) || we.Code != wire.CodeUnauthorized {
					t.Fatalf("registering: %v, want a refusal with code %q", err, wire.CodeUnauthorized)
				}
				e := g.Events.MustWait(t, tt.clientEvent)
				if e.Kind != event.KindSecurity || e.Client != "pc-1" || e.RealIP != realIP || e.PublicIP != clientIP || e.Node != testNode {
					t.Fatalf("security event = %+v", e)
				}
				if n := g.Stats().Clients; n != 0 {
					t.Fatalf("%d Clients registered, want none", n)
				}
				g.Events.MustNotHave(t, "Client pc-1 connected")
			} else {
				if err != nil {
					t.Fatalf("registering: %v", err)
				}
				e := g.Events.MustWait(t, "Client pc-1 connected")
				if e.Kind != event.KindClientConnect || e.RealIP != realIP || e.PublicIP != clientIP {
					t.Fatalf("connected event = %+v", e)
				}
			}

			list, err := g.Browse(t, tt.controlKey, "op-1", controlIP)
			switch {
			case tt.browseCode != "":
				var we *wire.Error
				if !asWireError(err, &we) || we.Code != tt.browseCode {
					t.Fatalf("browse: %v, want a refusal with code %q", err, tt.browseCode)
				}
				if len(list) != 0 {
					t.Fatalf("a refused browse listed %v", names(list))
				}
				g.Events.MustWait(t, tt.browseEvent)
			case err != nil:
				t.Fatalf("browse: %v", err)
			default:
				sees := slices.Contains(names(list), "pc-1")
				if sees != tt.browseSees || len(list) > 1 {
					t.Fatalf("browse lists %v; want pc-1 listed: %v", names(list), tt.browseSees)
				}
				if sees && (list[0].RealIP != realIP || list[0].PublicIP != clientIP || !slices.Equal(list[0].Services, []string{"vnc"})) {
					t.Fatalf("browse entry = %+v", list[0])
				}
			}

			if tt.connectCode != "" {
				g.MustConnectRefused(t, tt.controlKey, "op-1", "pc-1/vnc", controlIP, tt.connectCode)
				if tt.connectEvent != "" {
					g.Events.MustWait(t, tt.connectEvent)
				}
				if c != nil {
					// The refused Control must not have caused an open
					// request; a heartbeat answered proves the channel
					// carried nothing else first.
					c.MustBeAlive(t)
					select {
					case f := <-c.frames:
						t.Fatalf("Client got a %s frame for a refused Control", f.t)
					default:
					}
				}
				if n := g.Stats().Sessions; n != 0 {
					t.Fatalf("%d sessions, want none", n)
				}
				g.Events.MustNotHave(t, "Control op-1 connected to Client pc-1")
				return
			}
			ctl, acc := g.MustOpenSession(t, c, tt.controlKey, "op-1", "pc-1/vnc", controlIP)
			g.Events.MustWait(t, tt.connectEvent)
			MustExchange(t, ctl, acc, []byte("hello from the Control"), []byte("hello from the Client"))
		})
	}
}

func asWireError(err error, we **wire.Error) bool { return errors.As(err, we) }

// TestNoKeysRefusesEveryone: until an administrator adds a key, no Client
// or Control gets in, whatever it sends.
func TestNoKeysRefusesEveryone(t *testing.T) {
	g := MustStartGateway(t, nil)
	for _, role := range []string{wire.RoleClient, wire.RoleBrowse, wire.RoleConnect, wire.RoleAccept} {
		t.Run(role+" is refused", func(t *testing.T) {
			p := g.MustDial(t, "203.0.113.1")
			p.MustSendHello(t, keyAlpha, role, "pc-1", "pc-1/vnc", nil)
			p.MustBeRefused(t, wire.TypeWelcome, wire.CodeNoKeys)
		})
	}
	if g.HasKeys() {
		t.Fatal("HasKeys with no keys")
	}
	// Adding a key admits at once.
	g.SetKeys(keysFor(keyAlpha))
	g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.1", "203.0.113.1", "vnc")
}

// TestReplayedHelloIsRefused: a recorded handshake proves nothing on a new
// connection, since the proof is bound to the nonce of the challenge.
func TestReplayedHelloIsRefused(t *testing.T) {
	g := MustStartGateway(t, []string{keyAlpha})
	first := g.MustDial(t, "203.0.113.1")
	recorded := wire.NewHello(first.Challenge, keyAlpha, wire.RoleClient, "pc-1", "")

	second := g.MustDial(t, "203.0.113.66")
	if err := wireWrite(second, recorded); err != nil {
		t.Fatal(err)
	}
	second.MustBeRefused(t, wire.TypeWelcome, wire.CodeUnauthorized)
	g.Events.MustWait(t, "Security check failed for Client pc-1 (). Terminating connection from 203.0.113.66")
	if n := g.Stats().Clients; n != 0 {
		t.Fatalf("%d Clients registered with a replayed hello", n)
	}
}

func wireWrite(p *testPeer, h wire.Hello) error { return wire.WriteFrame(p.Conn, wire.TypeHello, h) }

// TestSetKeys covers keys changing at runtime: adding disturbs nobody;
// removing drops exactly the Clients and sessions that used the removed key
// and nobody else.
func TestSetKeys(t *testing.T) {
	g := MustStartGateway(t, []string{keyAlpha, keyBravo})
	a1 := g.MustRegister(t, keyAlpha, "a1", "10.0.1.1", "203.0.113.11", "ssh")
	a2 := g.MustRegister(t, keyAlpha, "a2", "10.0.1.2", "203.0.113.12", "ssh")
	b1 := g.MustRegister(t, keyBravo, "b1", "10.0.2.1", "203.0.113.21", "ssh")
	ctlA, accA := g.MustOpenSession(t, a1, keyAlpha, "opA", "a1/ssh", "198.51.100.1")
	ctlB, accB := g.MustOpenSession(t, b1, keyBravo, "opB", "b1/ssh", "198.51.100.2")

	// Adding a key disturbs nobody.
	{
		if !g.SetKeys(keysFor(keyAlpha, keyBravo, keyCharlie)) {
			t.Fatal("SetKeys reports no change after adding a key")
		}
		if g.SetKeys(keysFor(keyCharlie, keyBravo, keyAlpha)) {
			t.Fatal("SetKeys reports a change for the same keys in another order")
		}
		for _, c := range []*testClient{a1, a2, b1} {
			c.MustBeAlive(t)
		}
		MustExchange(t, ctlA, accA, []byte("still here A"), []byte("ok A"))
		MustExchange(t, ctlB, accB, []byte("still here B"), []byte("ok B"))
		if st := g.Stats(); st.Clients != 3 || st.Sessions != 2 {
			t.Fatalf("stats = %+v, want 3 Clients and 2 sessions", st)
		}
		g.MustRegister(t, keyCharlie, "c1", "10.0.3.1", "203.0.113.31", "ssh")
	}

	// Removing a key drops its Clients and sessions only.
	{
		if !g.SetKeys(keysFor(keyBravo, keyCharlie)) {
			t.Fatal("SetKeys reports no change after removing a key")
		}
		for _, c := range []*testClient{a1, a2} {
			if reason := c.MustBeDropped(t); !strings.Contains(reason, "key") {
				t.Errorf("Client %s was told %q, want the reason to name the removed key", c.Name, reason)
			}
			if e := g.Events.MustWait(t, "Client "+c.Name+" Disconnected"); e.Reason != "the gateway key this Client uses was removed" {
				t.Errorf("Client %s: disconnected event reason %q", c.Name, e.Reason)
			}
		}
		ctlA.MustBeClosed(t)
		accA.MustBeClosed(t)
		g.Events.MustWait(t, "Control opA disconnected from Client a1")

		b1.MustBeAlive(t)
		MustExchange(t, ctlB, accB, []byte("after the removal"), []byte("still relayed"))
		MustEventually(t, "the removed key's Clients and session to be gone", func() bool {
			st := g.Stats()
			return st.Clients == 2 && st.Sessions == 1
		})
		if got := names(clientInfos(g)); !slices.Equal(got, []string{"b1", "c1"}) {
			t.Fatalf("Clients = %v, want [b1 c1]", got)
		}
		g.Events.MustNotHave(t, "Client b1 Disconnected")
		g.Events.MustNotHave(t, "Client c1 Disconnected")
		g.Events.MustNotHave(t, "Control opB disconnected from Client b1")

		if _, err := g.Register(t, keyAlpha, "a3", "10.0.1.3", "203.0.113.13", "ssh"); err == nil {
			t.Fatal("a Client with the removed key registered")
		}
		if _, err := g.Browse(t, keyAlpha, "opA", "198.51.100.1"); err == nil {
			t.Fatal("a Control with the removed key browsed")
		}
	}
}

func clientInfos(g *testGateway) []wire.ClientInfo {
	var out []wire.ClientInfo
	for _, c := range g.Clients() {
		out = append(out, c.ClientInfo)
	}
	return out
}
