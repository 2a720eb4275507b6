package sealed

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func mustBox(t *testing.T) *Box {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSealOpen(t *testing.T) {
	b := mustBox(t)
	s, err := b.SealString("JBSWY3DPEHPK3PXP", "totp:erin")
	if err != nil {
		t.Fatal(err)
	}
	if !IsSealed(s) || strings.Contains(s, "JBSWY3DPEHPK3PXP") {
		t.Fatalf("sealed %q", s)
	}
	if again, _ := b.SealString("JBSWY3DPEHPK3PXP", "totp:erin"); again == s {
		t.Error("two seals of one value are equal: the nonce is not fresh")
	}
	got, err := b.OpenString(s, "totp:erin")
	if err != nil || got != "JBSWY3DPEHPK3PXP" {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := b.OpenString(s, "totp:frank"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("another row's associated data: %v", err)
	}
	if _, err := mustBox(t).OpenString(s, "totp:erin"); !errors.Is(err, ErrWrongKey) {
		t.Errorf("another key: %v", err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(s, TextPrefix))
	for i := range raw {
		bad := bytes.Clone(raw)
		bad[i] ^= 1
		_, err := b.Open(bad, "totp:erin")
		if err == nil {
			t.Fatalf("byte %d changed, still opens", i)
		}
	}
	for _, bad := range []string{"", "sealed:", "sealed:!!", "JBSWY3DPEHPK3PXP", TextPrefix + base64.RawURLEncoding.EncodeToString([]byte{1, 2, 3})} {
		if _, err := b.OpenString(bad, "totp:erin"); err == nil {
			t.Errorf("%q opens", bad)
		}
	}
	if _, err := New(make([]byte, 16)); err == nil {
		t.Error("a 16-byte key is accepted")
	}
}

func TestKeyFileForms(t *testing.T) {
	dir := t.TempDir()
	key, _ := NewKey()
	want, _ := New(key)
	for name, content := range map[string][]byte{
		"raw":    key,
		"hex":    []byte(hex.EncodeToString(key) + "\n"),
		"base64": []byte("  " + base64.StdEncoding.EncodeToString(key) + "\n"),
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := LoadFile(p)
		if err != nil || b.KeyID() != want.KeyID() {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, content := range map[string][]byte{"short": key[:31], "text": []byte("plainly wrong content"), "long": bytes.Repeat([]byte("a"), 5000)} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadFile(p)
		if err == nil {
			t.Errorf("%s is accepted", name)
		} else if strings.Contains(err.Error(), string(content[:8])) {
			t.Errorf("%s: the error quotes the file: %v", name, err)
		}
	}
	if _, err := LoadFile(filepath.Join(dir, "absent")); err == nil {
		t.Error("a missing file is accepted")
	}
}

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "secrets.key")
	var wg sync.WaitGroup
	ids := make([]string, 8)
	created := make([]bool, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, c, err := LoadOrCreate(path)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i], created[i] = b.KeyID(), c
		}()
	}
	wg.Wait()
	n := 0
	for i := range ids {
		if ids[i] != ids[0] {
			t.Errorf("key %d is %s, key 0 is %s", i, ids[i], ids[0])
		}
		if created[i] {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d of 8 created the key", n)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != KeySize {
		t.Fatalf("key file %v, %v", fi, err)
	}
	if LooseMode(path) {
		t.Error("0600 is loose")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
	b, c, err := LoadOrCreate(path)
	if err != nil || c || b.KeyID() != ids[0] {
		t.Errorf("again: %v %v", c, err)
	}
}
