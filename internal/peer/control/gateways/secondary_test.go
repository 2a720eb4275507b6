package gateways

import (
	"path/filepath"
	"testing"
)

// An entry's secondary gateway is kept across a save and a load, and an
// entry without one stays without.
func TestSecondaryRoundTrip(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "gateways.json")
	f := load(t, path)
	mustAdd(t, f, Entry{Name: "cluster", Gateway: "https://a.example.com", Secondary: "https://b.example.com:3085", Key: secretKey})
	mustAdd(t, f, Entry{Name: "single", Gateway: "https://c.example.com", Key: secretKey})
	save(t, f)
	back := load(t, path)
	if e, ok := back.Lookup("cluster"); !ok || e.Secondary != "https://b.example.com:3085" {
		t.Fatalf("cluster = %+v (found %v), want its secondary kept", e, ok)
	}
	if e, ok := back.Lookup("single"); !ok || e.Secondary != "" {
		t.Fatalf("single = %+v (found %v), want no secondary", e, ok)
	}
}
