package static

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

func get(t *testing.T, a *Assets, url string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	a.ServeHTTP(w, httptest.NewRequest(http.MethodGet, url, nil))
	return w
}

func TestHashedAndFixedURLs(t *testing.T) {
	a, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"app.css", "live.js", "remote-desktop.js", "remote-terminal.js", "recording.js", "vendor/htmx-2.0.11.min.js"} {
		u := a.URL(name)
		if !regexp.MustCompile(`^/static/[0-9a-f]{12}/` + regexp.QuoteMeta(name) + `$`).MatchString(u) {
			t.Errorf("URL(%q) = %q, want a hashed URL", name, u)
		}
		w := get(t, a, u)
		if w.Code != 200 || !strings.Contains(w.Header().Get("Cache-Control"), "immutable") {
			t.Errorf("%s: %d %q", u, w.Code, w.Header().Get("Cache-Control"))
		}
		if w := get(t, a, "/static/000000000000/"+name); w.Code != 200 || w.Header().Get("Cache-Control") != "no-cache" {
			t.Errorf("old hash of %s: %d %q", name, w.Code, w.Header().Get("Cache-Control"))
		}
	}
	for name, ctype := range map[string]string{
		"vendor/novnc-1.7.0/core/rfb.js":                         "text/javascript",
		"vendor/novnc-1.7.0/vendor/pako/lib/zlib/inflate.js":     "text/javascript",
		"vendor/xterm-6.0.0/xterm.mjs":                           "text/javascript",
		"vendor/xterm-6.0.0/xterm.css":                           "text/css",
		"vendor/xterm-addon-fit-0.11.0/addon-fit.mjs":            "text/javascript",
		"vendor/asciinema-player-3.18.0/asciinema-player.min.js": "text/javascript",
		"vendor/asciinema-player-3.18.0/asciinema-player.css":    "text/css",
	} {
		u := a.URL(name)
		if u != "/static/"+name {
			t.Errorf("URL(%q) = %q, want its fixed path", name, u)
		}
		w := get(t, a, u)
		if w.Code != 200 || !strings.Contains(w.Header().Get("Cache-Control"), "immutable") || !strings.HasPrefix(w.Header().Get("Content-Type"), ctype) {
			t.Errorf("%s: %d %q %q", u, w.Code, w.Header().Get("Cache-Control"), w.Header().Get("Content-Type"))
		}
	}
	for _, u := range []string{
		"/static/vendor/novnc-1.7.0/core/nothere.js",
		"/static/vendor/novnc-1.7.0/",
		"/static/vendor/novnc-1.7.0/../../static.go",
		"/static/000000000000/vendor/novnc-1.7.0/core/rfb.js",
		"/static/app.css",
	} {
		if w := get(t, a, u); w.Code != 404 {
			t.Errorf("%s: %d, want 404", u, w.Code)
		}
	}
}

// Every vendored directory's SHA256SUMS lists exactly its files, and
// VENDORED.md records the hash of that SHA256SUMS.
func TestVendoredSums(t *testing.T) {
	md, err := os.ReadFile("VENDORED.md")
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := fs.ReadDir(files, "vendor")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		n++
		root := "vendor/" + d.Name()
		sums, err := files.ReadFile(root + "/SHA256SUMS")
		if err != nil {
			t.Errorf("%s: %v", root, err)
			continue
		}
		whole := sha256.Sum256(sums)
		if !strings.Contains(string(md), hex.EncodeToString(whole[:])) {
			t.Errorf("VENDORED.md does not record the sha256 of %s/SHA256SUMS", root)
		}
		want := map[string]string{}
		sc := bufio.NewScanner(strings.NewReader(string(sums)))
		for sc.Scan() {
			sum, name, ok := strings.Cut(sc.Text(), "  ")
			if !ok {
				t.Errorf("%s/SHA256SUMS: bad line %q", root, sc.Text())
				continue
			}
			want[name] = sum
		}
		var got []string
		fs.WalkDir(files, root, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || p == root+"/SHA256SUMS" {
				return err
			}
			name := strings.TrimPrefix(p, root+"/")
			got = append(got, name)
			b, _ := files.ReadFile(p)
			s := sha256.Sum256(b)
			if w, ok := want[name]; !ok {
				t.Errorf("%s: not in SHA256SUMS", p)
			} else if w != hex.EncodeToString(s[:]) {
				t.Errorf("%s: sha256 differs from SHA256SUMS", p)
			}
			return nil
		})
		if len(got) != len(want) {
			sort.Strings(got)
			t.Errorf("%s: %d files embedded, SHA256SUMS lists %d", root, len(got), len(want))
		}
	}
	if n < 4 {
		t.Errorf("%d vendored directories embedded, want 4", n)
	}
}

// The page scripts import the vendored libraries by their fixed paths:
// each must be embedded.
func TestPageScriptImports(t *testing.T) {
	a, err := New()
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`"(/static/vendor/[^"]+)"`)
	for _, name := range []string{"remote-desktop.js", "remote-terminal.js", "recording.js"} {
		b, err := files.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		m := re.FindAllStringSubmatch(string(b), -1)
		if len(m) == 0 {
			t.Errorf("%s imports nothing vendored", name)
		}
		for _, s := range m {
			if !a.fixed[strings.TrimPrefix(s[1], Prefix)] {
				t.Errorf("%s: %s is not embedded", name, s[1])
			}
		}
	}
}
