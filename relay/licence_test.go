package relay_test

import (
	"fmt"
	"testing"

	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

func maxClients(n int) func(*relay.Config) { return func(c *relay.Config) { c.MaxClients = n } }

// MustRegisterMany registers pc-1 ... pc-n.
func MustRegisterMany(tb testing.TB, g *testGateway, from, to int) []*testClient {
	tb.Helper()
	var cs []*testClient
	for i := from; i <= to; i++ {
		cs = append(cs, g.MustRegister(tb, keyAlpha, fmt.Sprintf("pc-%d", i), fmt.Sprintf("10.0.0.%d", i), fmt.Sprintf("203.0.113.%d", i), "vnc"))
	}
	return cs
}

// MustBeOverLicence expects the Client to be refused for the licence, with
// the event naming both of its addresses.
func MustBeOverLicence(tb testing.TB, g *testGateway, name, realIP, publicIP string) {
	tb.Helper()
	_, err := g.Register(tb, keyAlpha, name, realIP, publicIP, "vnc")
	var we *wire.Error
	if !asWireError(err, &we) || we.Code != wire.CodeLicence {
		tb.Fatalf("registering %s: %v, want a refusal with code %q", name, err, wire.CodeLicence)
	}
	msg := fmt.Sprintf("Licence exceed. Rejecting connection from Client %s (%s, %s)", name, realIP, publicIP)
	e := g.Events.MustWait(tb, msg)
	if e.Kind != event.KindLicence || e.Client != name || e.RealIP != realIP || e.PublicIP != publicIP {
		tb.Fatalf("licence event = %+v", e)
	}
}

func TestLicenceLimit(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("client %d of %d is refused", n+1, n), func(t *testing.T) {
			g := MustStartGateway(t, []string{keyAlpha}, maxClients(n))
			in := MustRegisterMany(t, g, 1, n)
			MustBeOverLicence(t, g, "pc-next", "192.168.1.50", "198.51.100.50")
			if st := g.Stats(); st.Clients != n {
				t.Fatalf("%d Clients, want %d", st.Clients, n)
			}
			// The refusal cost nobody already in their connection.
			for _, c := range in {
				c.MustBeAlive(t)
			}
			g.Events.MustNotHave(t, "Client pc-next connected")
		})
	}

	t.Run("a client registering again uses no new licence", func(t *testing.T) {
		g := MustStartGateway(t, []string{keyAlpha}, maxClients(2))
		old := MustRegisterMany(t, g, 1, 2)[0]
		again := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.1", "203.0.113.99", "vnc")
		old.MustBeDropped(t)
		again.MustBeAlive(t)
		if st := g.Stats(); st.Clients != 2 {
			t.Fatalf("%d Clients, want 2", st.Clients)
		}
		MustBeOverLicence(t, g, "pc-3", "10.0.0.3", "203.0.113.3")
	})

	t.Run("a client that leaves frees its licence", func(t *testing.T) {
		g := MustStartGateway(t, []string{keyAlpha}, maxClients(1))
		c := MustRegisterMany(t, g, 1, 1)[0]
		c.Close()
		g.Events.MustWait(t, "Client pc-1 Disconnected")
		MustEventually(t, "pc-1 to be unregistered", func() bool { return g.Stats().Clients == 0 })
		g.MustRegister(t, keyAlpha, "pc-2", "10.0.0.2", "203.0.113.2", "vnc")
	})
}

// TestSetMaxClients changes the licence limit at runtime: raising it admits
// more at once, lowering it keeps the Clients already in and refuses new
// ones, and zero lifts it.
func TestSetMaxClients(t *testing.T) {
	g := MustStartGateway(t, []string{keyAlpha}, maxClients(1))
	in := MustRegisterMany(t, g, 1, 1)
	MustBeOverLicence(t, g, "pc-2", "10.0.0.2", "203.0.113.2")

	g.SetMaxClients(3)
	in = append(in, MustRegisterMany(t, g, 2, 3)...)
	MustBeOverLicence(t, g, "pc-4", "10.0.0.4", "203.0.113.4")

	g.SetMaxClients(1)
	for _, c := range in {
		c.MustBeAlive(t)
	}
	if st := g.Stats(); st.Clients != 3 {
		t.Fatalf("%d Clients after lowering the limit, want the 3 already in", st.Clients)
	}
	MustBeOverLicence(t, g, "pc-5", "10.0.0.5", "203.0.113.5")

	g.SetMaxClients(0)
	MustRegisterMany(t, g, 4, 6)
	if st := g.Stats(); st.Clients != 6 {
		t.Fatalf("%d Clients with no limit, want 6", st.Clients)
	}
}

// A node closed to new Clients (its database is away, see gateway) refuses
// them as unavailable, with its reason, and keeps those it holds.
func TestNotAdmittingClients(t *testing.T) {
	g := MustStartGateway(t, []string{keyAlpha})
	held := g.MustRegister(t, keyAlpha, "pc-held", "10.0.0.5", "203.0.113.7", "vnc")
	g.SetAdmitClients(false, "this gateway cannot reach its database: connect to another node of its cluster")
	c := g.MustDial(t, "203.0.113.8")
	c.MustSendHello(t, keyAlpha, wire.RoleClient, "pc-new", "", nil)
	we := c.MustBeRefused(t, wire.TypeWelcome, wire.CodeUnavailable)
	if we.Message != "this gateway cannot reach its database: connect to another node of its cluster" {
		t.Fatalf("refused with %q", we.Message)
	}
	held.MustBeAlive(t)
	g.SetAdmitClients(true, "")
	g.MustRegister(t, keyAlpha, "pc-new", "10.0.0.6", "203.0.113.8", "vnc")
}
