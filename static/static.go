// Package static holds the console's CSS, scripts and images, embedded in
// the binary so the console works with no internet. Files are served under
// a URL carrying a hash of their content, with a year-long cache lifetime:
// a new release changes the URL, so browsers never use a stale copy.
//
// The exception is a vendored library kept as a directory tree,
// vendor/<name>-<version>/ (noVNC, xterm.js, asciinema-player): its ES
// modules import each other by relative URL, which per-file hashes would
// break, so its files are served at the fixed /static/vendor/<name>-<version>/…
// with the same long cache lifetime, the version in the path being the
// cache-buster. Such a directory's name must end in its version, and its
// SHA256SUMS lists every file in it (see VENDORED.md and the tests).
package static

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"strings"
)

//go:embed *.css *.js vendor/*.js *.svg
//go:embed vendor/novnc-1.7.0 vendor/xterm-6.0.0 vendor/xterm-addon-fit-0.11.0 vendor/asciinema-player-3.18.0
var files embed.FS

// Prefix is where the files are served.
const Prefix = "/static/"

// versioned is the name a vendored directory must have: <name>-<version>.
var versioned = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*-[0-9]+\.[0-9]+\.[0-9]+$`)

// Assets maps file names to hashed URLs and serves them.
type Assets struct {
	urls   map[string]string // name → /static/<hash>/<name>, or /static/<name> if fixed
	hashes map[string]string // name → hash, of the files served under a hash
	fixed  map[string]bool   // names served at their fixed, versioned path
}

// fixedDir is the versioned vendor directory a file is in, or "".
func fixedDir(p string) string {
	parts := strings.SplitN(p, "/", 3)
	if len(parts) == 3 && parts[0] == "vendor" {
		return parts[1]
	}
	return ""
}

// New hashes every embedded file once, at start.
func New() (*Assets, error) {
	a := &Assets{urls: map[string]string{}, hashes: map[string]string{}, fixed: map[string]bool{}}
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if dir := fixedDir(p); dir != "" {
			if !versioned.MatchString(dir) {
				return fmt.Errorf("static: vendored directory %q does not end in its version", dir)
			}
			a.fixed[p] = true
			a.urls[p] = Prefix + p
			return nil
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:6])
		a.hashes[p] = h
		a.urls[p] = Prefix + h + "/" + p
		return nil
	})
	return a, err
}

// URL is the cache-busted URL of a file; it panics on a name that is not
// embedded, which the tests catch before any release could.
func (a *Assets) URL(name string) string {
	u, ok := a.urls[name]
	if !ok {
		panic("static: no file " + name)
	}
	return u
}

// ServeHTTP serves /static/<hash>/<name>, and the files of the versioned
// vendor directories at /static/vendor/<name>-<version>/…. A hash that is
// not the file's current one is still served (a page from the previous
// release may ask), but without the long cache lifetime.
func (a *Assets) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, Prefix)
	if name := path.Clean(rest); a.fixed[name] {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		http.ServeFileFS(w, r, files, name)
		return
	}
	hash, name, ok := strings.Cut(rest, "/")
	name = path.Clean(name)
	want, known := a.hashes[name]
	if !ok || !known {
		http.NotFound(w, r)
		return
	}
	if hash == want {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	http.ServeFileFS(w, r, files, name)
}
