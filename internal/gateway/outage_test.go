package gateway

import (
	"errors"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/pg/pgtest"
	"github.com/switchboard/switchboard/relay/wire"
)

// TestOutageStopsAdmittingClients: a node of a cluster that loses its
// database keeps its Clients, and once its lease has run out (the other
// nodes count it lost) refuses new ones as unavailable, so they go to
// another node; with the database back it admits them again.
func TestOutageStopsAdmittingClients(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the 15 s node lease")
	}
	url := pgtest.MustURL(t)
	proxy, viaProxy := pgtest.NewProxy(t, url)
	a := presenceNode(t, viaProxy, "gw-a")
	presenceNode(t, url, "gw-b")
	runAgent(t, a, "pc-held")
	waitUntil(t, "gw-a to see gw-b", func() bool {
		a.lease.mu.Lock()
		defer a.lease.mu.Unlock()
		return a.lease.others
	})

	proxy.Cut()
	cut := time.Now()
	var refused *wire.Error
	deadline := time.Now().Add(30 * time.Second)
	for refused == nil {
		if time.Now().After(deadline) {
			t.Fatal("gw-a still admits new Clients 30 s into its outage")
		}
		err := registerOnce(t, a, "pc-new", "10.0.0.9")
		if errors.As(err, &refused) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if took := time.Since(cut); took < 14*time.Second {
		t.Errorf("refused new Clients %s into the outage, before the lease ran out", took)
	}
	if refused.Code != wire.CodeUnavailable || refused.Message != notAdmitting {
		t.Fatalf("refused with %+v", refused)
	}
	if localConn(a, "pc-held") == "" {
		t.Fatalf("gw-a dropped the Client it held: %+v", a.Relay().Clients())
	}

	proxy.Restore()
	waitUntil(t, "gw-a to admit again", func() bool { return registerOnce(t, a, "pc-new", "10.0.0.9") == nil })
}
