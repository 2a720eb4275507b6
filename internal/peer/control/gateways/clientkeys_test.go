package gateways

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func ck(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestClientKeysRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateways.json")
	f := load(t, path)
	mustAdd(t, f, Entry{Name: "office", Gateway: "gw.example.com", Key: secretKey})
	saltA, saltB := []byte("salt A"), []byte("salt B")
	f.SetClientKey(secretKey, saltA, ck(1))
	f.SetClientKey("a-key-no-entry-holds", saltA, ck(2))
	save(t, f)

	g := load(t, path)
	if got, ok := g.ClientKey(secretKey, saltA); !ok || !bytes.Equal(got, ck(1)) {
		t.Fatalf("ClientKey after reload = %x, %v", got, ok)
	}
	if _, ok := g.ClientKey(secretKey, saltB); ok {
		t.Fatal("a ClientKey for another salt")
	}
	if _, ok := g.ClientKey("another-key-entirely", saltA); ok {
		t.Fatal("a ClientKey for another key")
	}
	if _, ok := g.ClientKey("a-key-no-entry-holds", saltA); ok {
		t.Fatal("the file kept the ClientKey of a key no gateway entry holds")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(data, []byte(secretKey)) != 1 {
		t.Error("the key appears in the file other than in its entry")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi, err)
	}
}

// Removing the last entry that holds a key removes its ClientKeys; another
// entry with the same key keeps them.
func TestClientKeysGoWithTheirKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateways.json")
	f := load(t, path)
	mustAdd(t, f, Entry{Name: "node-a", Gateway: "a.example.com", Key: secretKey})
	mustAdd(t, f, Entry{Name: "node-b", Gateway: "b.example.com", Key: secretKey})
	salt := []byte("the cluster's salt")
	f.SetClientKey(secretKey, salt, ck(7))
	save(t, f)
	if err := f.Remove("node-a"); err != nil {
		t.Fatal(err)
	}
	save(t, f)
	if _, ok := load(t, path).ClientKey(secretKey, salt); !ok {
		t.Fatal("the ClientKey went with one of two entries holding the key")
	}
	if err := f.Remove("node-b"); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.ClientKey(secretKey, salt); ok {
		t.Fatal("the ClientKey stayed after the last entry with its key went")
	}
	save(t, f)
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), "client_key") {
		t.Fatalf("file still holds a ClientKey:\n%s", data)
	}
}

// A key keeps at most maxSaltsPerKey ClientKeys, the most recent ones: a
// machine in the middle sending salts of its choosing cannot grow the file.
func TestClientKeysBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateways.json")
	f := load(t, path)
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	f.now = func() time.Time { return now }
	mustAdd(t, f, Entry{Name: "office", Gateway: "gw.example.com", Key: secretKey})
	for i := range 10 {
		now = now.Add(time.Minute)
		f.SetClientKey(secretKey, []byte(fmt.Sprintf("salt %d", i)), ck(byte(i)))
	}
	save(t, f)
	g := load(t, path)
	for i := range 10 {
		_, ok := g.ClientKey(secretKey, []byte(fmt.Sprintf("salt %d", i)))
		if want := i >= 10-maxSaltsPerKey; ok != want {
			t.Errorf("salt %d kept = %v, want %v", i, ok, want)
		}
	}
}

// Save merges: a ClientKey one process keeps survives another process's
// save of other changes, and the other way round.
func TestClientKeysMergeAcrossProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateways.json")
	f := load(t, path)
	mustAdd(t, f, Entry{Name: "office", Gateway: "gw.example.com", Key: secretKey})
	save(t, f)

	connect := load(t, path) // a long-running `control connect`
	add := load(t, path)     // a `gateways add` meanwhile
	connect.SetClientKey(secretKey, []byte("salt"), ck(3))
	save(t, connect)
	mustAdd(t, add, Entry{Name: "lab", Gateway: "lab.example.com", Key: "lab-key-123"})
	save(t, add)

	got := load(t, path)
	if _, ok := got.Lookup("lab"); !ok {
		t.Fatal("the other process's entry was lost")
	}
	if c, ok := got.ClientKey(secretKey, []byte("salt")); !ok || !bytes.Equal(c, ck(3)) {
		t.Fatal("the ClientKey was lost to another process's save")
	}
}

// Cache entries that cannot be right are dropped on read, not reported: a
// cache can always be rebuilt. A file from before client_keys reads as is.
func TestClientKeysMalformedDropped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateways.json")
	f := load(t, path)
	mustAdd(t, f, Entry{Name: "office", Gateway: "gw.example.com", Key: secretKey})
	salt := []byte("salt")
	f.SetClientKey(secretKey, salt, ck(4))
	save(t, f)
	id := clientKeyID(secretKey, salt)
	for name, ck := range map[string]string{
		"short key":  `{"salt":"c2FsdA==","client_key":"AAAA","saved":"2025-01-01T00:00:00Z"}`,
		"other salt": `{"salt":"b3RoZXI=","client_key":"` + strings.Repeat("A", 43) + `=","saved":"2025-01-01T00:00:00Z"}`,
	} {
		doc := `{"version":1,"gateways":[{"name":"office","gateway":"gw.example.com","key":"` + secretKey + `"}],"client_keys":{"` + id + `":` + ck + `}}`
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		g, err := Load(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, ok := g.ClientKey(secretKey, salt); ok {
			t.Errorf("%s: a malformed ClientKey was returned", name)
		}
	}
	old := `{"version":1,"gateways":[{"name":"office","gateway":"gw.example.com","key":"` + secretKey + `"}]}`
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	if g := load(t, path); len(g.Entries()) != 1 {
		t.Fatal("a file without client_keys lost its entry")
	}
}

// KeyCache saves as soon as a ClientKey is kept, so the next process finds
// it.
func TestKeyCacheSaves(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateways.json")
	f := load(t, path)
	mustAdd(t, f, Entry{Name: "office", Gateway: "gw.example.com", Key: secretKey})
	save(t, f)
	var saveErr error
	kc := f.KeyCache(secretKey, func(err error) { saveErr = err })
	if _, ok := kc.ClientKey([]byte("salt")); ok {
		t.Fatal("hit on an empty cache")
	}
	kc.SetClientKey([]byte("salt"), ck(5))
	if saveErr != nil {
		t.Fatal(saveErr)
	}
	if c, ok := load(t, path).KeyCache(secretKey, nil).ClientKey([]byte("salt")); !ok || !bytes.Equal(c, ck(5)) {
		t.Fatal("the next process does not find the ClientKey")
	}
}
