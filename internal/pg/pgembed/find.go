package pgembed

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrNotInstalled is returned by Find when no usable PostgreSQL exists. Its
// text tells the operator what to do, so callers can show it as it is.
var ErrNotInstalled = errors.New("no PostgreSQL installation found: install it (Debian/Ubuntu: apt-get install postgresql) or pass --database-url")

// requiredPrograms are the server programs Start runs; pg_ctl finds postgres
// next to itself, so all three must live in one directory.
var requiredPrograms = []string{"initdb", "pg_ctl", "postgres"}

// Find locates a PostgreSQL server installation and returns its bin
// directory. It tries, in order: `pg_config --bindir` (the installation the
// administrator put on PATH), the highest version under
// /usr/lib/postgresql/*/bin (Debian and Ubuntu), /usr/local/pgsql/bin (a
// source build), and finally initdb and pg_ctl found on PATH.
func Find() (string, error) {
	var candidates []string
	if pgConfig, err := exec.LookPath("pg_config"); err == nil {
		// pg_config is a quick local program; no context is needed.
		if out, err := exec.Command(pgConfig, "--bindir").Output(); err == nil {
			candidates = append(candidates, strings.TrimSpace(string(out)))
		}
	}
	candidates = append(candidates, debianBinDirs()...)
	candidates = append(candidates, "/usr/local/pgsql/bin")
	if pgCtl, err := exec.LookPath("pg_ctl"); err == nil {
		if _, err := exec.LookPath("initdb"); err == nil {
			// Wrappers on PATH are often symlinks into the real bin
			// directory, where postgres also lives.
			if real, err := filepath.EvalSymlinks(pgCtl); err == nil {
				candidates = append(candidates, filepath.Dir(real))
			}
			candidates = append(candidates, filepath.Dir(pgCtl))
		}
	}
	for _, dir := range candidates {
		if hasPrograms(dir) {
			return dir, nil
		}
	}
	return "", ErrNotInstalled
}

// debianBinDirs returns /usr/lib/postgresql/<version>/bin, highest version
// first, so that an upgrade that leaves the old cluster's binaries installed
// still picks the new ones.
func debianBinDirs() []string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) float64 {
		v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		if err != nil {
			return -1
		}
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int {
		va, vb := version(a), version(b)
		switch {
		case va > vb:
			return -1
		case va < vb:
			return 1
		}
		return strings.Compare(a, b)
	})
	return dirs
}

func hasPrograms(dir string) bool {
	if dir == "" {
		return false
	}
	for _, name := range requiredPrograms {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// program returns the path of a server program in binDir.
func program(binDir, name string) string {
	return filepath.Join(binDir, name)
}

func errorf(format string, args ...any) error {
	return fmt.Errorf("pgembed: "+format, args...)
}
