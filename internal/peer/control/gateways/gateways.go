// Package gateways keeps the Control CLI's address book: named gateways
// (address, key, operator, pinned certificate) that `switchboard control
// browse NAME` and `connect NAME ...` use instead of repeating flags, the
// sign-in tokens gateways issued, so that an operator is not asked for a
// password on every run, and the ClientKeys derived from the remembered
// keys, so that a Control started per connection (`connect --stdio` as an
// ssh ProxyCommand) does not pay the handshake's slow KDF every time.
//
// The file holds gateway keys, ClientKeys and tokens in clear, so it is
// treated like an ssh private key: it is written readable by its owner only, and a file that
// others can read or write is refused rather than used. Nothing this package
// returns as an error contains a key or a token.
//
// A File may be used from several goroutines (a forwarding Control refreshes
// its token from whichever session signs in). Several processes may share
// the file too: Save writes what this File changed since it was loaded on top
// of what is on disk now, so a long-running `connect` that keeps a new token
// does not undo a `gateways add` run meanwhile. The read-merge-write is not
// locked across processes; two saves in the same instant can still lose one.
package gateways

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/internal/transport"
	"github.com/switchboard/switchboard/relay/wire"
)

// Entry is one remembered gateway.
type Entry struct {
	Name string `json:"name"`
	// Gateway is the address as the operator gave it: http://host:port,
	// https://host:port or a bare host:port (which means https), the forms
	// peer.ParseGateway accepts.
	Gateway string `json:"gateway"`
	// Secondary is the gateway tried when the primary (Gateway) cannot be
	// reached, in the same forms; empty for none. It uses the entry's key,
	// operator and fingerprint.
	Secondary string `json:"secondary,omitempty"`
	// Key is the gateway key, at least wire.MinKeyLength characters.
	Key string `json:"key"`
	// User is the operator to sign in as; empty for gateways without
	// operators.
	User        string `json:"user,omitempty"`
	Description string `json:"description,omitempty"`
	// Fingerprint pins the gateway's TLS certificate by its SHA-256. Add
	// stores it as lowercase hex, the form peer.Dialer compares.
	Fingerprint string `json:"fingerprint,omitempty"`
	// SecondaryFingerprint pins the secondary's certificate; empty pins
	// it to Fingerprint.
	SecondaryFingerprint string `json:"secondary_fingerprint,omitempty"`
}

// CachedKey is a remembered key's ClientKey for one installation's salt
// (wire.DeriveClientKey). It proves the key to that installation only, and
// it is kept beside the key itself, which proves more.
type CachedKey struct {
	Salt      []byte    `json:"salt"`
	ClientKey []byte    `json:"client_key"`
	Saved     time.Time `json:"saved"`
}

// maxSaltsPerKey bounds the ClientKeys kept for one key. A key normally
// meets one installation (its nodes share the salt); a gateway reinstalled,
// or a machine in the middle of an http:// connection sending salts of its
// choosing, must not grow the file without end.
const maxSaltsPerKey = 4

// Token is a short-lived Control sign-in token the gateway issued.
type Token struct {
	Value    string    `json:"value"`
	Operator string    `json:"operator"`
	Expires  time.Time `json:"expires"`
}

var (
	// ErrExists is returned by Add for a name already in the file.
	ErrExists = errors.New("already exists")
	// ErrNotFound is returned by Remove for a name not in the file.
	ErrNotFound = errors.New("not found")
	// ErrInsecureMode is returned by Load (and Save) for a file that
	// others can read or write.
	ErrInsecureMode = errors.New("it holds gateway keys and must be accessible by its owner only")
)

// fileVersion is the format written. A file from a newer version is refused
// rather than rewritten, since saving would drop what this one cannot read.
// client_keys did not change it: an older switchboard ignores them and drops
// them on save, which only costs a KDF again.
const fileVersion = 1

type fileJSON struct {
	Version    int                  `json:"version"`
	Gateways   []Entry              `json:"gateways"`
	Tokens     map[string]Token     `json:"tokens,omitempty"`
	ClientKeys map[string]CachedKey `json:"client_keys,omitempty"`
}

// contents is what the file holds, as maps keyed the way the file is.
type contents struct {
	entries    map[string]Entry
	tokens     map[string]Token
	clientKeys map[string]CachedKey
}

// File is the gateways file in memory. Changes stay in memory until Save.
type File struct {
	path string
	now  func() time.Time // tests move the clock

	mu         sync.Mutex
	entries    map[string]Entry
	tokens     map[string]Token
	clientKeys map[string]CachedKey
	// What was on disk when last read or written: Save writes only the
	// difference from it, so it does not undo other processes' changes.
	baseEntries    map[string]Entry
	baseTokens     map[string]Token
	baseClientKeys map[string]CachedKey
}

// DefaultPath is gateways.json in the user's config folder (on Linux
// $XDG_CONFIG_HOME/switchboard or ~/.config/switchboard).
func DefaultPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "switchboard", "gateways.json"), nil
}

// Load reads the file at path. A missing file is an empty File, so the first
// `gateways add` needs no setup; Save creates it.
func Load(path string) (*File, error) {
	c, err := read(path)
	if err != nil {
		return nil, err
	}
	return &File{
		path:           path,
		now:            time.Now,
		entries:        c.entries,
		tokens:         c.tokens,
		clientKeys:     c.clientKeys,
		baseEntries:    maps.Clone(c.entries),
		baseTokens:     maps.Clone(c.tokens),
		baseClientKeys: maps.Clone(c.clientKeys),
	}, nil
}

// read parses the file; a missing one gives empty maps.
func read(path string) (contents, error) {
	c := contents{entries: map[string]Entry{}, tokens: map[string]Token{}, clientKeys: map[string]CachedKey{}}
	fh, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return contents{}, err
	}
	defer fh.Close()
	// Checked on the open file, so the mode is the one of what is read.
	st, err := fh.Stat()
	if err != nil {
		return contents{}, err
	}
	if !st.Mode().IsRegular() {
		return contents{}, fmt.Errorf("%s is not a regular file", path)
	}
	if err := checkMode(path, st.Mode()); err != nil {
		return contents{}, err
	}
	data, err := io.ReadAll(fh)
	if err != nil {
		return contents{}, err
	}
	// An empty file (touch, then chmod 600) is an empty address book.
	if len(bytes.TrimSpace(data)) == 0 {
		return c, nil
	}
	var doc fileJSON
	if err := json.Unmarshal(data, &doc); err != nil {
		return contents{}, fmt.Errorf("%s is not a valid gateways file: %s", path, describeJSONError(data, err))
	}
	if doc.Version > fileVersion {
		return contents{}, fmt.Errorf("%s was written by a newer switchboard (format version %d, this one knows %d): upgrade switchboard", path, doc.Version, fileVersion)
	}
	for i, e := range doc.Gateways {
		// A hand edit that the CLI would refuse is reported here rather
		// than at dial time, and duplicates would make names ambiguous.
		ne, err := validate(e)
		if err != nil {
			return contents{}, fmt.Errorf("%s, entry %d: %w", path, i+1, err)
		}
		if _, dup := c.entries[ne.Name]; dup {
			return contents{}, fmt.Errorf("%s: gateway %q appears twice", path, ne.Name)
		}
		c.entries[ne.Name] = ne
	}
	for id, t := range doc.Tokens {
		c.tokens[id] = t
	}
	for id, k := range doc.ClientKeys {
		// A cache: an entry that cannot be right is dropped, not
		// reported; the ClientKey is derived again when needed.
		if _, sh, ok := strings.Cut(id, "."); ok && sh == saltHash(k.Salt) && len(k.ClientKey) == wire.KeySize {
			c.clientKeys[id] = k
		}
	}
	return c, nil
}

// checkMode refuses a file others can read or write, as ssh does with
// private keys: keys in such a file may already have leaked, and using it
// quietly would hide that. Windows has no such bits to check.
func checkMode(path string, mode fs.FileMode) error {
	if runtime.GOOS == "windows" || mode.Perm()&0o077 == 0 {
		return nil
	}
	return fmt.Errorf("%s: permissions %04o are too open (%w): run chmod 600 %s",
		path, mode.Perm(), ErrInsecureMode, shellQuote(path))
}

// describeJSONError turns a decoding error into line:column and what went
// wrong, without the offending value: that value may be a key.
func describeJSONError(data []byte, err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		line, col := position(data, syn.Offset)
		return fmt.Sprintf("line %d, column %d: %s", line, col, syn.Error())
	case errors.As(err, &typ):
		// typ.Error() would quote a number's digits.
		line, col := position(data, typ.Offset)
		where, want := typ.Field, "something else"
		if where == "" {
			where = "the file"
		}
		if typ.Type != nil {
			want = jsonKind(typ.Type.Kind().String())
		}
		found, _, _ := strings.Cut(typ.Value, " ")
		return fmt.Sprintf("line %d, column %d: %s must be %s, not %s", line, col, where, want, jsonKind(found))
	default:
		return err.Error()
	}
}

// jsonKind names a Go kind or a JSON value type the way the file spells it.
func jsonKind(kind string) string {
	switch kind {
	case "struct", "map", "object":
		return "an object"
	case "slice", "array":
		return "a list"
	case "int", "int64", "float64", "number":
		return "a number"
	case "bool":
		return "true or false"
	case "":
		return "something else"
	default:
		return "a " + kind
	}
}

// position converts a byte offset into 1-based line and column.
func position(data []byte, off int64) (line, col int) {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:])
	return line, max(col, 1)
}

// shellQuote makes the chmod hint paste-able for paths with spaces.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("/._-+:=@%,", r)))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Path is where the file is read from and saved to.
func (f *File) Path() string { return f.path }

// Entries returns the gateways sorted by name.
func (f *File) Entries() []Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Collect(maps.Values(f.entries))
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Lookup finds a gateway by its exact name.
func (f *File) Lookup(name string) (Entry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entries[name]
	return e, ok
}

// Add remembers a gateway under a new name. Entries may share an address:
// one gateway often has several keys (a team's and a contractor's). The
// fingerprint is stored normalized.
func (f *File) Add(e Entry) error {
	ne, err := validate(e)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.entries[ne.Name]; ok {
		return fmt.Errorf("gateway %q %w (remove it first to change it)", ne.Name, ErrExists)
	}
	if f.entries == nil {
		f.entries = map[string]Entry{}
	}
	f.entries[ne.Name] = ne
	return nil
}

// validate checks an entry the way the dialer will use it, so that a bad
// entry fails when it is added rather than on every later connect. Errors
// never quote the key.
func validate(e Entry) (Entry, error) {
	if err := checkName(e.Name); err != nil {
		return Entry{}, err
	}
	gw, err := checkGateway(e.Gateway)
	if err != nil {
		return Entry{}, fmt.Errorf("gateway %q: %w", e.Name, err)
	}
	if len(e.Key) < wire.MinKeyLength {
		return Entry{}, fmt.Errorf("gateway %q: the key must be at least %d characters", e.Name, wire.MinKeyLength)
	}
	if e.Fingerprint != "" {
		fp, err := transport.NormalizeFingerprint(e.Fingerprint)
		if err != nil {
			return Entry{}, fmt.Errorf("gateway %q: fingerprint: %w", e.Name, err)
		}
		if !gw.TLS {
			return Entry{}, fmt.Errorf("gateway %q: a fingerprint pins a TLS certificate, which %s does not use: give an https:// address", e.Name, e.Gateway)
		}
		e.Fingerprint = fp
	}
	if e.SecondaryFingerprint != "" {
		fp, err := transport.NormalizeFingerprint(e.SecondaryFingerprint)
		if err != nil {
			return Entry{}, fmt.Errorf("gateway %q: secondary fingerprint: %w", e.Name, err)
		}
		e.SecondaryFingerprint = fp
	}
	return e, nil
}

// checkName keeps names usable as a command-line word: `connect NAME
// CLIENT/SERVICE` must not mistake a name for a flag or a target.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("a gateway needs a name")
	case !utf8.ValidString(name):
		return errors.New("a gateway name must be valid UTF-8")
	case strings.HasPrefix(name, "-"):
		return fmt.Errorf("gateway name %q must not start with '-' (it would read as a flag)", name)
	case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		return fmt.Errorf("gateway name %q must not contain spaces or control characters", name)
	case strings.Contains(name, "/"):
		return fmt.Errorf("gateway name %q must not contain '/'", name)
	}
	return nil
}

// checkGateway accepts what peer.ParseGateway accepts, minus what it would
// silently ignore or only reject when dialling.
func checkGateway(s string) (peer.Gateway, error) {
	const want = "want https://host:port, http://host:port or host:port"
	switch {
	case s == "":
		return peer.Gateway{}, errors.New("a gateway address is required (" + want + ")")
	case strings.Contains(s, "@"):
		// Not quoted: user:password@ is a secret. The dialer would drop it.
		return peer.Gateway{}, errors.New("the gateway address must not contain user@ or user:password@: the operator goes in the user field, the key in the key field")
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		return peer.Gateway{}, fmt.Errorf("gateway address %q must not contain spaces", s)
	case strings.ContainsAny(s, "?#"):
		return peer.Gateway{}, fmt.Errorf("gateway address %q: a query or fragment is not allowed (%s)", s, want)
	}
	g, err := peer.ParseGateway(s)
	if err != nil {
		return peer.Gateway{}, fmt.Errorf("%w (%s)", err, want)
	}
	host, port, err := net.SplitHostPort(g.Host)
	if err != nil || host == "" {
		return peer.Gateway{}, fmt.Errorf("gateway address %q has no host (%s)", s, want)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return peer.Gateway{}, fmt.Errorf("gateway address %q: the port must be a number from 1 to 65535 (%s)", s, want)
	}
	return g, nil
}

// Remove forgets a gateway and the tokens kept for its address and key,
// whichever operator they were for: a removed gateway should leave no
// sign-in behind. Tokens another entry with the same address and key can
// still use are kept.
func (f *File) Remove(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entries[name]
	if !ok {
		return fmt.Errorf("gateway %q %w", name, ErrNotFound)
	}
	delete(f.entries, name)
	prefix := tokenPrefix(e.Gateway, e.Key)
	sharedKey, sharedUser := false, false
	for _, o := range f.entries {
		if tokenPrefix(o.Gateway, o.Key) == prefix {
			sharedKey = true
			sharedUser = sharedUser || o.User == e.User
		}
	}
	switch {
	case !sharedKey:
		maps.DeleteFunc(f.tokens, func(id string, _ Token) bool { return strings.HasPrefix(id, prefix) })
	case !sharedUser:
		delete(f.tokens, TokenID(e.Gateway, e.Key, e.User))
	}
	// ClientKeys belong to the key, wherever it is used: they go with the
	// last entry that holds it.
	keyInUse := false
	for _, o := range f.entries {
		keyInUse = keyInUse || o.Key == e.Key
	}
	if !keyInUse {
		ckPrefix := clientKeyPrefix(e.Key)
		maps.DeleteFunc(f.clientKeys, func(id string, _ CachedKey) bool { return strings.HasPrefix(id, ckPrefix) })
	}
	return nil
}

// ClientKey returns the ClientKey kept for key and an installation's salt.
func (f *File) ClientKey(key string, salt []byte) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.clientKeys[clientKeyID(key, salt)]
	if !ok || !bytes.Equal(k.Salt, salt) || len(k.ClientKey) != wire.KeySize {
		return nil, false
	}
	return bytes.Clone(k.ClientKey), true
}

// SetClientKey keeps clientKey, derived from key for salt. Save writes it
// only while an entry holds key: the file keeps no secret of a gateway it
// no longer remembers. At most maxSaltsPerKey salts are kept per key, the
// most recent ones.
func (f *File) SetClientKey(key string, salt, clientKey []byte) {
	if len(clientKey) != wire.KeySize || len(salt) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.clientKeys == nil {
		f.clientKeys = map[string]CachedKey{}
	}
	f.clientKeys[clientKeyID(key, salt)] = CachedKey{Salt: bytes.Clone(salt), ClientKey: bytes.Clone(clientKey), Saved: f.clock().UTC()}
	prefix := clientKeyPrefix(key)
	var ids []string
	for id := range f.clientKeys {
		if strings.HasPrefix(id, prefix) {
			ids = append(ids, id)
		}
	}
	if len(ids) <= maxSaltsPerKey {
		return
	}
	slices.SortFunc(ids, func(a, b string) int { return f.clientKeys[b].Saved.Compare(f.clientKeys[a].Saved) })
	for _, id := range ids[maxSaltsPerKey:] {
		delete(f.clientKeys, id)
	}
}

// KeyCache is the cache a Control uses for key (peer.KeyCache): a ClientKey
// it derives is kept and the file saved at once, so that the next process
// finds it. A failed save goes to saveFailed (nil: ignored); the Control
// works on without the cache.
func (f *File) KeyCache(key string, saveFailed func(error)) peer.KeyCache {
	return &keyCache{f: f, key: key, saveFailed: saveFailed}
}

type keyCache struct {
	f          *File
	key        string
	saveFailed func(error)
}

func (c *keyCache) ClientKey(salt []byte) ([]byte, bool) { return c.f.ClientKey(c.key, salt) }

func (c *keyCache) SetClientKey(salt, clientKey []byte) {
	c.f.SetClientKey(c.key, salt, clientKey)
	if err := c.f.Save(); err != nil && c.saveFailed != nil {
		c.saveFailed(err)
	}
}

// clientKeyID is the id a ClientKey is kept under: hashes of the key and of
// the salt, so that Remove finds a key's ClientKeys by prefix and the file
// holds no key a second time.
func clientKeyID(key string, salt []byte) string {
	return clientKeyPrefix(key) + saltHash(salt)
}

func clientKeyPrefix(key string) string {
	h := sha256.New()
	writeField(h, "switchboard control client key v1")
	writeField(h, key)
	return hex.EncodeToString(h.Sum(nil)[:16]) + "."
}

func saltHash(salt []byte) string {
	sum := sha256.Sum256(salt)
	return hex.EncodeToString(sum[:16])
}

// Token returns the token kept under id if it has not expired.
func (f *File) Token(id string) (Token, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tokens[id]
	if !ok || !f.clock().Before(t.Expires) {
		return Token{}, false
	}
	return t, true
}

// SetToken keeps t under id (see TokenID). A token with no value or no
// future expiry forgets id instead: it could never be returned, and the
// file should not keep secrets that are of no use.
func (f *File) SetToken(id string, t Token) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.Value == "" || !f.clock().Before(t.Expires) {
		delete(f.tokens, id)
		return
	}
	if f.tokens == nil {
		f.tokens = map[string]Token{}
	}
	f.tokens[id] = t
}

// ForgetToken drops the token kept under id, typically one the gateway
// refused.
func (f *File) ForgetToken(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.tokens, id)
}

func (f *File) clock() time.Time {
	if f.now == nil {
		return time.Now()
	}
	return f.now()
}

// TokenID is the id a token is kept under for a gateway address, key and
// operator. It is a hash so that the file does not hold each key a second
// time; the address is canonicalized first, so "h:443" and "https://h"
// share tokens. Its first half depends on address and key only, which lets
// Remove find an entry's tokens for any operator.
func TokenID(gateway, key, user string) string {
	gk := gatewayKeyHash(gateway, key)
	h := sha256.New()
	h.Write(gk[:])
	writeField(h, user)
	return hex.EncodeToString(gk[:16]) + "." + hex.EncodeToString(h.Sum(nil)[:16])
}

func tokenPrefix(gateway, key string) string {
	gk := gatewayKeyHash(gateway, key)
	return hex.EncodeToString(gk[:16]) + "."
}

func gatewayKeyHash(gateway, key string) [sha256.Size]byte {
	if g, err := peer.ParseGateway(gateway); err == nil {
		gateway = g.String()
	}
	h := sha256.New()
	writeField(h, "switchboard control token id v1")
	writeField(h, gateway)
	writeField(h, key)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// writeField length-prefixes s, so that no two field lists hash alike
// ("ab"+"c" vs "a"+"bc").
func writeField(w io.Writer, s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	w.Write(n[:])
	io.WriteString(w, s)
}

// Save writes the file atomically (a reader sees the old or the new file,
// never half of one) and readable by its owner only, creating its folder
// owner-only if needed. What this File changed since it was loaded is
// applied to the file as it is on disk now; see the package doc. Expired
// tokens are dropped.
func (f *File) Save() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.path == "" {
		return errors.New("gateways file has no path (use Load)")
	}
	// Follow a symlink (a dotfiles checkout) so that it stays one.
	path := f.path
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	disk, err := read(path)
	if err != nil {
		return fmt.Errorf("save gateways: %w", err)
	}
	entries := applyDiff(disk.entries, f.baseEntries, f.entries, func(a, b Entry) bool { return a == b })
	tokens := applyDiff(disk.tokens, f.baseTokens, f.tokens, func(a, b Token) bool {
		return a.Value == b.Value && a.Operator == b.Operator && a.Expires.Equal(b.Expires)
	})
	now := f.clock()
	maps.DeleteFunc(tokens, func(_ string, t Token) bool { return !now.Before(t.Expires) })
	clientKeys := applyDiff(disk.clientKeys, f.baseClientKeys, f.clientKeys, func(a, b CachedKey) bool {
		return bytes.Equal(a.Salt, b.Salt) && bytes.Equal(a.ClientKey, b.ClientKey) && a.Saved.Equal(b.Saved)
	})
	// ClientKeys of keys no entry holds any more (removed here or by
	// another process) are of no use.
	held := map[string]bool{}
	for _, e := range entries {
		held[clientKeyPrefix(e.Key)] = true
	}
	maps.DeleteFunc(clientKeys, func(id string, _ CachedKey) bool {
		prefix, _, _ := strings.Cut(id, ".")
		return !held[prefix+"."]
	})

	doc := fileJSON{Version: fileVersion, Gateways: slices.Collect(maps.Values(entries)), Tokens: tokens, ClientKeys: clientKeys}
	slices.SortFunc(doc.Gateways, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	if doc.Gateways == nil {
		doc.Gateways = []Entry{}
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("save gateways: %w", err)
	}
	if err := writeAtomic(path, append(data, '\n')); err != nil {
		return fmt.Errorf("save gateways to %s: %w", f.path, err)
	}
	f.entries, f.tokens, f.clientKeys = entries, tokens, clientKeys
	f.baseEntries, f.baseTokens, f.baseClientKeys = maps.Clone(entries), maps.Clone(tokens), maps.Clone(clientKeys)
	return nil
}

// applyDiff returns disk with the changes from base to cur applied: keys
// removed from cur are deleted, keys added or changed are set. Keys this
// process never touched keep what disk has.
func applyDiff[V any](disk, base, cur map[string]V, equal func(a, b V) bool) map[string]V {
	out := maps.Clone(disk)
	if out == nil {
		out = map[string]V{}
	}
	for k := range base {
		if _, ok := cur[k]; !ok {
			delete(out, k)
		}
	}
	for k, v := range cur {
		if b, ok := base[k]; !ok || !equal(b, v) {
			out[k] = v
		}
	}
	return out
}

// writeAtomic writes data beside path and renames it into place. The temp
// file is created 0600, so the secrets are never briefly readable by others,
// and synced before the rename so that a crash cannot leave an empty file
// where the keys were.
func writeAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// CreateTemp already uses 0600; being explicit costs nothing and does
	// not depend on that.
	if err := tmp.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// Make the rename itself durable. Best effort: some file systems
	// cannot sync a directory, and the data is in place either way.
	if runtime.GOOS != "windows" {
		if d, err := os.Open(dir); err == nil {
			_ = d.Sync()
			d.Close()
		}
	}
	return nil
}
