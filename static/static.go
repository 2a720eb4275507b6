// Package static holds the console's CSS, scripts and images, embedded in
// the binary so the console works with no internet. Files are served under
// a URL carrying a hash of their content, with a year-long cache lifetime:
// a new release changes the URL, so browsers never use a stale copy.
package static

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed *.css *.js vendor/*.js *.svg
var files embed.FS

// Prefix is where the files are served.
const Prefix = "/static/"

// Assets maps file names to hashed URLs and serves them.
type Assets struct {
	urls   map[string]string // name → /static/<hash>/<name>
	hashes map[string]string // name → hash
}

// New hashes every embedded file once, at start.
func New() (*Assets, error) {
	a := &Assets{urls: map[string]string{}, hashes: map[string]string{}}
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
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

// ServeHTTP serves /static/<hash>/<name>. A hash that is not the file's
// current one is still served (a page from the previous release may ask),
// but without the long cache lifetime.
func (a *Assets) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, Prefix)
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
