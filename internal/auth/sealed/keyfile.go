package sealed

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// maxKeyFile bounds what LoadFile reads: a key file is tiny, and a path
// pointing at something else must not be read whole.
const maxKeyFile = 1024

// LoadFile reads a key file: exactly 32 bytes, or (surrounding whitespace
// ignored) 64 hex digits or the standard base64 of 32 bytes, the forms a
// container secret is usually given in. Errors name the file, never its
// content.
func LoadFile(path string) (*Box, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sealed: secrets key: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("sealed: secrets key %s: %w", path, err)
	}
	key, err := parseKey(b)
	if err != nil {
		return nil, fmt.Errorf("sealed: secrets key %s: %w", path, err)
	}
	return New(key)
}

func parseKey(b []byte) ([]byte, error) {
	if len(b) == KeySize {
		return b, nil
	}
	if len(b) > maxKeyFile {
		return nil, errors.New("not a key file: too long")
	}
	t := bytes.TrimSpace(b)
	if len(t) == 2*KeySize {
		if k, err := hex.DecodeString(string(t)); err == nil {
			return k, nil
		}
	}
	if k, err := base64.StdEncoding.DecodeString(string(t)); err == nil && len(k) == KeySize {
		return k, nil
	}
	return nil, fmt.Errorf("not a key file: it must hold %d bytes, or %d hex digits, or their base64", KeySize, 2*KeySize)
}

// LoadOrCreate reads the key file at path or, when there is none, creates
// it (mode 0600, its folder 0700 if missing) with a new random key.
// created reports which. Two processes creating it at once end up with the
// same key: the file appears whole or not at all, and the loser reads the
// winner's.
func LoadOrCreate(path string) (box *Box, created bool, err error) {
	box, err = LoadFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return box, false, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("sealed: secrets key folder: %w", err)
	}
	key, err := NewKey()
	if err != nil {
		return nil, false, err
	}
	tmp, err := os.CreateTemp(dir, ".secrets.key-*")
	if err != nil {
		return nil, false, fmt.Errorf("sealed: create secrets key: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600 already; say so for whoever reads this.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, false, fmt.Errorf("sealed: create secrets key: %w", err)
	}
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return nil, false, fmt.Errorf("sealed: create secrets key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, false, fmt.Errorf("sealed: create secrets key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, false, fmt.Errorf("sealed: create secrets key: %w", err)
	}
	// Link, unlike rename, never replaces a key another process made.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			box, err = LoadFile(path)
			return box, false, err
		}
		return nil, false, fmt.Errorf("sealed: create secrets key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	box, err = New(key)
	return box, err == nil, err
}

// LooseMode reports whether the key file can be read by others than its
// owner, which deserves a warning (but not a refusal: container runtimes
// often mount secrets 0644 inside a private filesystem).
func LooseMode(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().Perm()&0o077 != 0
}
