package relay_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

// fakePresence records what the relay reports, as the gateway's queue would.
type fakePresence struct {
	mu    sync.Mutex
	rows  map[string]relay.Registration // name/key -> the registered connection
	calls []string
}

func (f *fakePresence) Registered(r relay.Registration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rows == nil {
		f.rows = map[string]relay.Registration{}
	}
	f.rows[r.Name+"/"+r.KeyID] = r
	f.calls = append(f.calls, "registered "+r.Name)
}

func (f *fakePresence) Unregistered(name, keyID, connID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// Conditional, as the database's delete is.
	if r, ok := f.rows[name+"/"+keyID]; ok && r.ConnID == connID {
		delete(f.rows, name+"/"+keyID)
	}
	f.calls = append(f.calls, "unregistered "+name)
}

func (f *fakePresence) row(name, keyID string) (relay.Registration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.rows[name+"/"+keyID]
	return r, ok
}

// fakeDirectory is the cluster's list as another node sees it.
type fakeDirectory struct {
	mu      sync.Mutex
	clients []relay.ClientInfo
	err     error
}

func (d *fakeDirectory) ClientsForKey(_ context.Context, keyID string) ([]wire.ClientInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return nil, d.err
	}
	var out []wire.ClientInfo
	for _, c := range d.clients {
		if c.KeyID == keyID {
			out = append(out, c.ClientInfo)
		}
	}
	return out, nil
}

func (d *fakeDirectory) Clients(context.Context) ([]relay.ClientInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.clients), d.err
}

func TestPresenceRegisterUnregister(t *testing.T) {
	p := &fakePresence{}
	g := MustStartGateway(t, []string{keyAlpha}, func(c *relay.Config) { c.Presence = p })
	alphaID := keyFor(keyAlpha).KeyID

	a := g.MustRegister(t, keyAlpha, "pc-a", "10.0.0.1", "203.0.113.1", "ssh", "vnc")
	r, ok := p.row("pc-a", alphaID)
	if !ok || r.ConnID == "" || r.Node != testNode || r.RealIP != "10.0.0.1" || !slices.Equal(r.Services, []string{"ssh", "vnc"}) {
		t.Fatalf("registration %+v (%v)", r, ok)
	}
	regs := g.Registrations()
	if len(regs) != 1 || regs[0].ConnID != r.ConnID || regs[0].KeyID != alphaID {
		t.Fatalf("Registrations() = %+v", regs)
	}

	// The same Client again: a new connection id; the old connection's
	// unregister does not remove the new one's row.
	a2 := g.MustRegister(t, keyAlpha, "pc-a", "10.0.0.1", "203.0.113.1", "ssh")
	a.MustBeDropped(t)
	MustEventually(t, "the old connection to unregister", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return slices.Contains(p.calls, "unregistered pc-a")
	})
	r2, ok := p.row("pc-a", alphaID)
	if !ok || r2.ConnID == r.ConnID {
		t.Fatalf("after the reconnect the row is %+v (%v), want the new connection", r2, ok)
	}

	// An orderly end removes it.
	a2.Close()
	MustEventually(t, "the row to go", func() bool { _, ok := p.row("pc-a", alphaID); return !ok })
}

func TestDropClient(t *testing.T) {
	p := &fakePresence{}
	g := MustStartGateway(t, []string{keyAlpha}, func(c *relay.Config) { c.Presence = p })
	alphaID := keyFor(keyAlpha).KeyID
	a := g.MustRegister(t, keyAlpha, "pc-a", "10.0.0.1", "203.0.113.1", "ssh")
	r, _ := p.row("pc-a", alphaID)

	if g.DropClient("pc-a", alphaID, "another connection", "moved") {
		t.Fatal("DropClient dropped a connection of another id")
	}
	if g.DropClient("pc-zz", alphaID, "", "moved") || g.DropClient("pc-a", "other-key", "", "moved") {
		t.Fatal("DropClient dropped a Client that is not here")
	}
	a.MustBeAlive(t)
	if !g.DropClient("pc-a", alphaID, r.ConnID, "Client pc-a is connected to node B now") {
		t.Fatal("DropClient did not drop the connection")
	}
	if bye := a.MustBeDropped(t); bye != "Client pc-a is connected to node B now" {
		t.Errorf("goodbye %q", bye)
	}
	MustEventually(t, "pc-a to leave the registry", func() bool { return len(g.Clients()) == 0 })
	// The Client is connected elsewhere: no Disconnected event.
	time.Sleep(50 * time.Millisecond)
	g.Events.MustNotHave(t, "Client pc-a Disconnected")
}

func TestBrowseCluster(t *testing.T) {
	dir := &fakeDirectory{}
	g := MustStartGateway(t, []string{keyAlpha, keyBravo}, func(c *relay.Config) { c.Directory = dir })
	alphaID, bravoID := keyFor(keyAlpha).KeyID, keyFor(keyBravo).KeyID
	g.MustRegister(t, keyAlpha, "pc-local", "10.0.0.1", "203.0.113.1", "ssh")
	dir.clients = []relay.ClientInfo{
		{ClientInfo: wire.ClientInfo{Name: "pc-remote", Node: "node-b", Services: []string{"vnc"}}, KeyID: alphaID},
		{ClientInfo: wire.ClientInfo{Name: "pc-other-key", Node: "node-b"}, KeyID: bravoID},
		// This node's own row, possibly stale: the relay's own list wins.
		{ClientInfo: wire.ClientInfo{Name: "pc-gone", Node: testNode}, KeyID: alphaID},
	}
	got, err := g.Browse(t, keyAlpha, "op", "198.51.100.1")
	if err != nil {
		t.Fatal(err)
	}
	if n := names(got); !slices.Equal(n, []string{"pc-local", "pc-remote"}) {
		t.Fatalf("browse lists %v", n)
	}
	if got[0].Node != testNode || got[1].Node != "node-b" {
		t.Errorf("nodes %q, %q", got[0].Node, got[1].Node)
	}
	all, err := g.ClusterClients(context.Background())
	if err != nil || len(all) != 3 {
		t.Fatalf("ClusterClients = %+v, %v", all, err)
	}

	// The database away: this node's Clients alone.
	dir.mu.Lock()
	dir.err = errors.New("database away")
	dir.mu.Unlock()
	got, err = g.Browse(t, keyAlpha, "op", "198.51.100.1")
	if err != nil {
		t.Fatal(err)
	}
	if n := names(got); !slices.Equal(n, []string{"pc-local"}) {
		t.Fatalf("browse during an outage lists %v", n)
	}
	if all, err := g.ClusterClients(context.Background()); err == nil || len(all) != 1 {
		t.Fatalf("ClusterClients during an outage = %+v, %v", all, err)
	}
}
