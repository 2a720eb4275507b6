package relay_test

import (
	"sync"
	"testing"

	"github.com/switchboard/switchboard/relay"
)

// fakeCluster is the other nodes' Clients, as the gateway's snapshot of
// the presence table holds them: name/key -> present.
type fakeCluster struct {
	mu      sync.Mutex
	clients map[string]bool
}

func (f *fakeCluster) OtherClients(name, keyID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.clients)
	if f.clients[name+"/"+keyID] {
		n--
	}
	return n
}

// TestClusterLicence: the licence limit counts the other nodes' Clients
// too, but not the Client itself moving here from another node.
func TestClusterLicence(t *testing.T) {
	alphaID := keyFor(keyAlpha).KeyID
	cl := &fakeCluster{clients: map[string]bool{"pc-remote/" + alphaID: true}}
	g := MustStartGateway(t, []string{keyAlpha}, maxClients(2), func(c *relay.Config) { c.Cluster = cl })

	// One Client elsewhere, one here: the limit of 2 is reached.
	in := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.1", "203.0.113.1", "vnc")
	MustBeOverLicence(t, g, "pc-2", "10.0.0.2", "203.0.113.2")
	if st := g.Stats(); st.Clients != 1 {
		t.Fatalf("%d Clients, want 1", st.Clients)
	}
	in.MustBeAlive(t)
	g.Events.MustNotHave(t, "Client pc-2 connected")

	// The remote Client itself reconnecting here is the same Client: it
	// uses no new licence.
	moved := g.MustRegister(t, keyAlpha, "pc-remote", "10.0.0.9", "203.0.113.9", "vnc")
	moved.MustBeAlive(t)
	in.MustBeAlive(t)
	if st := g.Stats(); st.Clients != 2 {
		t.Fatalf("%d Clients, want 2", st.Clients)
	}

	// Once its row is here (the snapshot no longer lists it elsewhere),
	// both are local and the limit still holds.
	cl.mu.Lock()
	delete(cl.clients, "pc-remote/"+alphaID)
	cl.mu.Unlock()
	MustBeOverLicence(t, g, "pc-3", "10.0.0.3", "203.0.113.3")

}

// TestClusterLicenceUnlimited: without a limit the cluster is not asked.
func TestClusterLicenceUnlimited(t *testing.T) {
	cl := &fakeCluster{clients: map[string]bool{"a/k": true, "b/k": true, "c/k": true}}
	g := MustStartGateway(t, []string{keyAlpha}, func(c *relay.Config) { c.Cluster = cl })
	MustRegisterMany(t, g, 1, 3)
	if st := g.Stats(); st.Clients != 3 {
		t.Fatalf("%d Clients, want 3", st.Clients)
	}
}
