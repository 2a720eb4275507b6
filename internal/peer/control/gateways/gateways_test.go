package gateways

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// secretKey is distinctive so that a leak into any error text is found.
const secretKey = "k3y-SECRET-do-not-print"

func load(t *testing.T, path string) *File {
	t.Helper()
	f, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return f
}

func mustAdd(t *testing.T, f *File, e Entry) {
	t.Helper()
	if err := f.Add(e); err != nil {
		t.Fatalf("Add(%s): %v", e.Name, err)
	}
}

func save(t *testing.T, f *File) {
	t.Helper()
	if err := f.Save(); err != nil {
		t.Fatalf("Save: %v", err)
	}
}

func noKey(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), secretKey) {
		t.Errorf("error text contains the key: %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateways.json")
	f := load(t, path)
	if len(f.Entries()) != 0 || f.Path() != path {
		t.Fatalf("missing file: entries %v, path %q", f.Entries(), f.Path())
	}
	prod := Entry{Name: "prod", Gateway: "https://gw.example.com:8443", Key: secretKey, User: "alice",
		Description: "production", Fingerprint: strings.Repeat("AB:", 31) + "AB"}
	lab := Entry{Name: "lab", Gateway: "lab.example.com:443", Key: "another-key"}
	mustAdd(t, f, prod)
	mustAdd(t, f, lab)
	id := TokenID(prod.Gateway, prod.Key, prod.User)
	tok := Token{Value: "tok-1", Operator: "alice", Expires: time.Now().Add(time.Hour).Round(0)}
	f.SetToken(id, tok)
	save(t, f)

	g := load(t, path)
	got := g.Entries()
	if len(got) != 2 || got[0].Name != "lab" || got[1].Name != "prod" {
		t.Fatalf("Entries = %+v, want lab then prod", got)
	}
	prod.Fingerprint = strings.Repeat("ab", 32)
	if got[1] != prod || got[0] != lab {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, []Entry{lab, prod})
	}
	if e, ok := g.Lookup("prod"); !ok || e != prod {
		t.Errorf("Lookup(prod) = %+v, %v", e, ok)
	}
	if _, ok := g.Lookup("Prod"); ok {
		t.Error("Lookup is case-insensitive; names are exact")
	}
	gt, ok := g.Token(id)
	if !ok || gt.Value != tok.Value || gt.Operator != tok.Operator || !gt.Expires.Equal(tok.Expires) {
		t.Errorf("Token = %+v, %v; want %+v", gt, ok, tok)
	}

	// Entries is a copy.
	got[0].Name = "changed"
	if _, ok := g.Lookup("changed"); ok || g.Entries()[0].Name != "lab" {
		t.Error("changing Entries' result changed the File")
	}

	// Save leaves nothing but the file behind.
	files, _ := os.ReadDir(filepath.Dir(path))
	if len(files) != 1 {
		t.Errorf("folder holds %d files after Save, want 1 (temp file left?)", len(files))
	}
	raw, _ := os.ReadFile(path)
	if n := strings.Count(string(raw), secretKey); n != 1 {
		t.Errorf("key appears %d times in the file, want once (token ids must not repeat it)", n)
	}
}

func TestModes(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permission bits")
	}
	dir := filepath.Join(t.TempDir(), "config", "switchboard")
	path := filepath.Join(dir, "gateways.json")
	f := load(t, path)
	mustAdd(t, f, Entry{Name: "a", Gateway: "h:1", Key: secretKey})
	save(t, f)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := st.Mode().Perm(); m != 0o600 {
		t.Errorf("file mode %04o, want 0600", m)
	}
	st, err = os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m := st.Mode().Perm(); m != 0o700 {
		t.Errorf("folder mode %04o, want 0700", m)
	}
}

func TestLoadRefusesOpenPermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permission bits")
	}
	for _, name := range []string{"gateways.json", "my gateways.json"} {
		path := filepath.Join(t.TempDir(), name)
		f := load(t, path)
		mustAdd(t, f, Entry{Name: "a", Gateway: "h:1", Key: secretKey})
		save(t, f)
		for _, mode := range []os.FileMode{0o644, 0o640, 0o602} {
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if !errors.Is(err, ErrInsecureMode) {
				t.Fatalf("Load of a %04o file: err = %v, want ErrInsecureMode", mode, err)
			}
			want := "chmod 600 " + shellQuote(path)
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not say %q", err, want)
			}
			noKey(t, err)
			// Save refuses too rather than hide the exposure by rewriting.
			if err := f.Save(); !errors.Is(err, ErrInsecureMode) {
				t.Errorf("Save over a %04o file: err = %v, want ErrInsecureMode", mode, err)
			}
		}
		if !strings.Contains(name, " ") {
			continue
		}
		if q := shellQuote(path); q != "'"+path+"'" {
			t.Errorf("shellQuote(%q) = %q", path, q)
		}
		if err := os.Chmod(path, 0o600); err != nil {
			t.Fatal(err)
		}
		load(t, path)
	}
}

func TestSameAddressDifferentKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateways.json")
	f := load(t, path)
	mustAdd(t, f, Entry{Name: "team", Gateway: "https://gw:8443", Key: "team-key-1"})
	mustAdd(t, f, Entry{Name: "contractor", Gateway: "https://gw:8443", Key: "contractor-key"})
	save(t, f)
	g := load(t, path)
	a, _ := g.Lookup("team")
	b, _ := g.Lookup("contractor")
	if a.Key != "team-key-1" || b.Key != "contractor-key" || a.Gateway != b.Gateway {
		t.Errorf("got %+v and %+v", a, b)
	}
	if TokenID(a.Gateway, a.Key, "") == TokenID(b.Gateway, b.Key, "") {
		t.Error("different keys share a token id")
	}
}

func TestDuplicateName(t *testing.T) {
	f := load(t, filepath.Join(t.TempDir(), "gateways.json"))
	mustAdd(t, f, Entry{Name: "prod", Gateway: "gw:1", Key: "first-key"})
	err := f.Add(Entry{Name: "prod", Gateway: "other:2", Key: secretKey})
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), `"prod"`) {
		t.Fatalf("err = %v, want ErrExists naming prod", err)
	}
	noKey(t, err)
	if e, _ := f.Lookup("prod"); e.Key != "first-key" {
		t.Error("a refused Add replaced the entry")
	}
}

func TestAddValidation(t *testing.T) {
	ok := Entry{Name: "gw", Gateway: "https://gw.example.com:8443", Key: secretKey}
	for _, s := range []string{"https://h:1", "http://h:1", "h:1", "https://h", "h", "[::1]:8443", "https://h:1/", "http://[::1]:80"} {
		e := ok
		e.Gateway = s
		if _, err := validate(e); err != nil {
			t.Errorf("gateway %q refused: %v", s, err)
		}
	}
	f := load(t, filepath.Join(t.TempDir(), "gateways.json"))
	for _, tc := range []struct {
		name string
		edit func(*Entry)
		want string // in the error text
	}{
		{"empty name", func(e *Entry) { e.Name = "" }, "needs a name"},
		{"space in name", func(e *Entry) { e.Name = "my gw" }, "spaces"},
		{"tab in name", func(e *Entry) { e.Name = "my\tgw" }, "spaces"},
		{"slash in name", func(e *Entry) { e.Name = "a/b" }, "'/'"},
		{"flag-like name", func(e *Entry) { e.Name = "-v" }, "'-'"},
		{"no gateway", func(e *Entry) { e.Gateway = "" }, "address is required"},
		{"ftp scheme", func(e *Entry) { e.Gateway = "ftp://h:21" }, "scheme must be http or https"},
		{"path", func(e *Entry) { e.Gateway = "https://h:1/relay" }, "path is not allowed"},
		{"query", func(e *Entry) { e.Gateway = "https://h:1?x=1" }, "query"},
		{"port word", func(e *Entry) { e.Gateway = "h:https" }, "port must be a number"},
		{"port range", func(e *Entry) { e.Gateway = "h:70000" }, "port must be a number"},
		{"port zero", func(e *Entry) { e.Gateway = "h:0" }, "port must be a number"},
		{"url port word", func(e *Entry) { e.Gateway = "https://h:abc" }, "invalid port"},
		{"no host", func(e *Entry) { e.Gateway = ":8443" }, "no host"},
		{"no host url", func(e *Entry) { e.Gateway = "https://" }, "no host"},
		{"space in address", func(e *Entry) { e.Gateway = "h :1" }, "spaces"},
		{"userinfo", func(e *Entry) { e.Gateway = "https://bob:" + secretKey + "@h:1" }, "user:password@"},
		{"short key", func(e *Entry) { e.Key = "1234567" }, "at least 8 characters"},
		{"no key", func(e *Entry) { e.Key = "" }, "at least 8 characters"},
		{"bad fingerprint", func(e *Entry) { e.Fingerprint = "abcd" }, "fingerprint"},
		{"fingerprint on http", func(e *Entry) {
			e.Gateway = "http://h:1"
			e.Fingerprint = strings.Repeat("0", 64)
		}, "https://"},
	} {
		e := ok
		tc.edit(&e)
		err := f.Add(e)
		if err == nil {
			t.Errorf("%s: Add(%+v) succeeded", tc.name, e)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.name, err, tc.want)
		}
		// A bad address is quoted so the operator sees what was taken,
		// except one with a password in it.
		if e.Gateway != ok.Gateway && e.Gateway != "" && !strings.Contains(e.Gateway, "@") &&
			!strings.Contains(err.Error(), e.Gateway) {
			t.Errorf("%s: error %q does not quote the address", tc.name, err)
		}
		noKey(t, err)
	}
	if n := len(f.Entries()); n != 0 {
		t.Errorf("refused entries were added: %d", n)
	}
}

func TestRemove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateways.json")
	f := load(t, path)
	err := f.Remove("nope")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("Remove(unknown) = %v, want ErrNotFound naming it", err)
	}
	mustAdd(t, f, Entry{Name: "a", Gateway: "https://gw", Key: secretKey, User: "alice"})
	mustAdd(t, f, Entry{Name: "b", Gateway: "gw:443", Key: secretKey, User: "bob"}) // same gateway and key
	mustAdd(t, f, Entry{Name: "c", Gateway: "gw:443", Key: "other-key"})
	tok := Token{Value: "v", Expires: time.Now().Add(time.Hour)}
	// The CLI computes ids from the parsed address and may sign in as an
	// operator given by flag rather than the entry's.
	alice, bob, carol := TokenID("https://gw:443", secretKey, "alice"), TokenID("https://gw:443", secretKey, "bob"), TokenID("https://gw:443", secretKey, "carol")
	other := TokenID("https://gw:443", "other-key", "")
	for _, id := range []string{alice, bob, carol, other} {
		f.SetToken(id, tok)
	}

	// b shares a's gateway and key: only a's operator's token goes.
	if err := f.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Lookup("a"); ok {
		t.Error("a still there")
	}
	has := func(id string) bool { _, ok := f.Token(id); return ok }
	if has(alice) || !has(bob) || !has(carol) || !has(other) {
		t.Errorf("after removing a: alice %v bob %v carol %v other %v; want false true true true", has(alice), has(bob), has(carol), has(other))
	}
	// b was the last entry with that gateway and key: all its tokens go.
	if err := f.Remove("b"); err != nil {
		t.Fatal(err)
	}
	if has(bob) || has(carol) || !has(other) {
		t.Errorf("after removing b: bob %v carol %v other %v; want false false true", has(bob), has(carol), has(other))
	}
	save(t, f)
	g := load(t, path)
	if es := g.Entries(); len(es) != 1 || es[0].Name != "c" {
		t.Errorf("saved entries %+v, want only c", es)
	}
	if err := g.Remove("a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("removing twice: %v", err)
	}
}

func TestExpiredTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateways.json")
	f := load(t, path)
	now := time.Now()
	f.now = func() time.Time { return now }
	f.SetToken("short", Token{Value: "short-lived-token", Expires: now.Add(time.Minute)})
	f.SetToken("long", Token{Value: "long-lived-token", Expires: now.Add(time.Hour)})
	f.SetToken("past", Token{Value: "past-token", Expires: now.Add(-time.Second)})
	f.SetToken("forever", Token{Value: "no-expiry-token"})
	if _, ok := f.Token("short"); !ok {
		t.Fatal("fresh token not returned")
	}
	for _, id := range []string{"past", "forever"} {
		if _, ok := f.Token(id); ok {
			t.Errorf("token %q without a future expiry returned", id)
		}
	}
	now = now.Add(2 * time.Minute)
	if _, ok := f.Token("short"); ok {
		t.Error("expired token returned")
	}
	save(t, f)
	raw, _ := os.ReadFile(path)
	for _, v := range []string{"short-lived-token", "past-token", "no-expiry-token"} {
		if strings.Contains(string(raw), v) {
			t.Errorf("saved file still holds %s", v)
		}
	}
	if !strings.Contains(string(raw), "long-lived-token") {
		t.Error("saved file lost a valid token")
	}

	f.SetToken("long", Token{}) // a refused token, as Control reports it
	if _, ok := f.Token("long"); ok {
		t.Error("SetToken with an empty token did not forget")
	}
	f.SetToken("long", Token{Value: "x", Expires: now.Add(time.Hour)})
	f.ForgetToken("long")
	if _, ok := f.Token("long"); ok {
		t.Error("ForgetToken did not forget")
	}
}

func TestMalformed(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, body, want string }{
		{"syntax", "{\n  \"gateways\": [\n    {\"name\": \"a\", \"key\": \"" + secretKey + "\",,}\n", "line 3"},
		{"truncated", `{"gateways": [{"name": "a", "key": "` + secretKey, "unexpected end"},
		{"key as number", `{"gateways": [{"name": "a", "gateway": "h:1", "key": 12345678901234}]}`, "must be a string, not a number"},
		{"gateways not a list", `{"gateways": {}}`, "must be a list"},
		{"invalid entry", `{"gateways": [{"name": "a", "gateway": "h:1", "key": "short"}]}`, "at least 8"},
		{"duplicate", `{"gateways": [{"name": "a", "gateway": "h:1", "key": "` + secretKey + `"}, {"name": "a", "gateway": "h:2", "key": "` + secretKey + `"}]}`, "twice"},
		{"newer", `{"version": 2, "gateways": []}`, "newer switchboard"},
	} {
		path := filepath.Join(dir, tc.name+".json")
		if err := os.WriteFile(path, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if err == nil {
			t.Errorf("%s: Load succeeded", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q should name %s and say %q", tc.name, err, path, tc.want)
		}
		if strings.Contains(err.Error(), "12345678901234") {
			t.Errorf("%s: error quotes the key: %v", tc.name, err)
		}
		noKey(t, err)
	}

	// An empty file (touch; chmod 600) is an empty address book.
	path := filepath.Join(dir, "empty.json")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if f := load(t, path); len(f.Entries()) != 0 {
		t.Error("empty file has entries")
	}
	// A folder where the file should be is an error, not an empty File.
	if _, err := Load(dir); err == nil {
		t.Error("Load of a folder succeeded")
	}
}

// A long-running connect that keeps a new token must not undo a
// `gateways add` or `remove` run in another process since it loaded.
func TestSaveKeepsOtherProcessesChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateways.json")
	f := load(t, path)
	mustAdd(t, f, Entry{Name: "old", Gateway: "h:1", Key: secretKey})
	mustAdd(t, f, Entry{Name: "gone", Gateway: "h:2", Key: secretKey})
	save(t, f)

	connect := load(t, path)
	admin := load(t, path)
	mustAdd(t, admin, Entry{Name: "new", Gateway: "h:3", Key: secretKey})
	if err := admin.Remove("gone"); err != nil {
		t.Fatal(err)
	}
	save(t, admin)

	id := TokenID("h:1", secretKey, "")
	connect.SetToken(id, Token{Value: "v", Expires: time.Now().Add(time.Hour)})
	save(t, connect)

	g := load(t, path)
	var names []string
	for _, e := range g.Entries() {
		names = append(names, e.Name)
	}
	if got := strings.Join(names, ","); got != "new,old" {
		t.Errorf("entries after both saves: %s, want new,old", got)
	}
	if _, ok := g.Token(id); !ok {
		t.Error("connect's token was lost")
	}
	// The saving File now sees the merged state too.
	if _, ok := connect.Lookup("new"); !ok {
		t.Error("Save did not refresh the File")
	}
}

func TestConcurrentUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateways.json")
	f := load(t, path)
	mustAdd(t, f, Entry{Name: "a", Gateway: "h:1", Key: secretKey})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			id := TokenID("h:1", secretKey, string(rune('a'+i)))
			f.SetToken(id, Token{Value: "v", Expires: time.Now().Add(time.Hour)})
			if err := f.Save(); err != nil {
				t.Error(err)
			}
			f.Token(id)
			f.Entries()
		})
	}
	wg.Wait()
	g := load(t, path)
	for i := range 8 {
		if _, ok := g.Token(TokenID("h:1", secretKey, string(rune('a'+i)))); !ok {
			t.Errorf("token %d lost", i)
		}
	}
}

func TestTokenID(t *testing.T) {
	id := TokenID("https://gw:443", secretKey, "alice")
	if strings.Contains(id, secretKey) {
		t.Fatal("id holds the key")
	}
	for _, same := range []string{"gw", "gw:443", "https://gw", "https://gw/"} {
		if TokenID(same, secretKey, "alice") != id {
			t.Errorf("%q and https://gw:443 give different ids", same)
		}
	}
	for _, other := range [][3]string{
		{"http://gw:443", secretKey, "alice"},
		{"https://gw:444", secretKey, "alice"},
		{"https://gw:443", secretKey + "x", "alice"},
		{"https://gw:443", secretKey, "bob"},
		{"https://gw:443", secretKey, ""},
		// Length prefixes: moving bytes between fields changes the id.
		{"https://gw:443", secretKey[:len(secretKey)-1], secretKey[len(secretKey)-1:] + "alice"},
	} {
		if TokenID(other[0], other[1], other[2]) == id {
			t.Errorf("TokenID%q collides", other)
		}
	}
}

func TestSymlinkStaysALink(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symlinks need privileges")
	}
	dir := t.TempDir()
	target := filepath.Join(dir, "dotfiles", "gateways.json")
	link := filepath.Join(dir, "gateways.json")
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(target, []byte(`{"gateways": []}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	f := load(t, link)
	mustAdd(t, f, Entry{Name: "a", Gateway: "h:1", Key: secretKey})
	save(t, f)
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("Save replaced the symlink: %v", err)
	}
	if _, ok := load(t, target).Lookup("a"); !ok {
		t.Error("the link's target was not updated")
	}
}
