package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/internal/pg/pgembed"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

// Store says where the installation's database is. Every command that
// uses the database (serve, keys, operators) opens it the same way.
type Store struct {
	// DatabaseURL is a PostgreSQL URL; empty runs a private PostgreSQL in
	// DataDir.
	DatabaseURL string
	DataDir     string
}

// DefaultDataDir is /var/lib/switchboard for root (the embedded PostgreSQL
// then runs as the postgres user, which cannot enter /root) and the user's
// data folder otherwise.
func DefaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/switchboard"
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "switchboard")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "switchboard")
	}
	return "switchboard-data"
}

// Open connects to DatabaseURL, or starts (or attaches to) the embedded
// PostgreSQL in DataDir. closeFn releases both.
func (s Store) Open(ctx context.Context, log *slog.Logger) (store *db.DB, closeFn func(), err error) {
	url := s.DatabaseURL
	var pg *pgembed.Instance
	if url == "" {
		if err := os.MkdirAll(s.DataDir, 0o755); err != nil {
			return nil, nil, fmt.Errorf("data dir: %w", err)
		}
		pg, err = pgembed.Start(ctx, s.DataDir, log)
		if err != nil {
			return nil, nil, err
		}
		url = pg.URL()
	}
	store, err = db.Open(ctx, url, log)
	if err != nil {
		if pg != nil {
			_ = pg.Stop(context.WithoutCancel(ctx))
		}
		return nil, nil, err
	}
	return store, func() {
		store.Close()
		if pg != nil {
			if err := pg.Stop(context.Background()); err != nil {
				log.Error("stop embedded PostgreSQL", "err", err)
			}
		}
	}, nil
}

const saltSetting = "key_salt"

// KeySalt is the installation's salt for key verifiers, created once and
// shared by every node of the installation.
func KeySalt(ctx context.Context, store *db.DB) ([]byte, error) {
	v, err := store.SettingOrCreate(ctx, saltSetting, func() (string, error) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		return base64.StdEncoding.EncodeToString(b), nil
	})
	if err != nil {
		return nil, err
	}
	salt, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("stored key salt is corrupt: %w", err)
	}
	return salt, nil
}

// AddKey stores a gateway key as its StoredKey (wire.StoredKey) under its
// KeyID. Adding a key that exists already is not an error: it reports
// added=false. It costs the handshake's KDF (wire.DeriveClientKey), which
// is not kept: the gateway has no use for a ClientKey.
func AddKey(ctx context.Context, store *db.DB, salt []byte, key, label string) (id string, added bool, err error) {
	if len(key) < wire.MinKeyLength {
		return "", false, fmt.Errorf("a gateway key must be at least %d characters", wire.MinKeyLength)
	}
	id, stored := KeyIDOf(salt, key)
	_, err = store.AddKey(ctx, db.Key{KeyID: id, Label: label, StoredKey: stored})
	if errors.Is(err, db.ErrConflict) {
		return id, false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("add key %s: %w", id, err)
	}
	return id, true, nil
}

// KeyIDOf is the key ID and StoredKey of a key on this installation, e.g.
// to find the row of a key given as text (keys remove KEY). It costs the
// KDF.
func KeyIDOf(salt []byte, key string) (id string, stored []byte) {
	stored = wire.StoredKey(wire.DeriveClientKey(salt, key))
	return wire.KeyID(stored), stored
}

// UpgradeKeys converts the rows a version 1 gateway stored (a v1 verifier,
// wire.VerifierV1) to handshake version 2 (migrations/00005): since
// ClientKey = KDF(v1 verifier, salt), the gateway derives each row's
// ClientKey, StoredKey and KeyID without knowing the key, stores the last
// two and deletes the v1 verifier, which would otherwise still prove the
// key to any peer speaking version 1 and shortcut guesses. Idempotent:
// converted rows are left alone, and nodes converting at once do each row
// once (db.ConvertKey). A row that cannot be converted is reported and
// left; the others go on.
//
// A v1 verifier taken earlier (an old backup) still derives the same
// ClientKey, so it still proves its key after the upgrade. Adding the key
// anew, or better a new key, after upgrading ends that (docs/protocol.md).
func UpgradeKeys(ctx context.Context, store *db.DB, salt []byte, log *slog.Logger) (converted int, err error) {
	keys, err := store.Keys(ctx)
	if err != nil {
		return 0, fmt.Errorf("upgrade gateway keys: %w", err)
	}
	return upgradeKeys(ctx, store, salt, keys, log)
}

func upgradeKeys(ctx context.Context, store *db.DB, salt []byte, keys []db.Key, log *slog.Logger) (converted int, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	for _, k := range keys {
		if k.StoredKey != nil || k.V1Verifier == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return converted, fmt.Errorf("upgrade gateway keys: %w", err)
		}
		stored := wire.StoredKey(wire.ClientKeyFromV1(salt, k.V1Verifier))
		id := wire.KeyID(stored)
		ok, err := store.ConvertKey(ctx, k.ID, id, stored)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			converted++
			// Key IDs are public handles: logging the old one lets an
			// administrator follow a script or a note that used it.
			log.Info("gateway key converted to handshake version 2", "old_key_id", k.KeyID, "key_id", id, "label", k.Label)
		}
	}
	if len(errs) > 0 {
		return converted, fmt.Errorf("upgrade gateway keys: %w", errors.Join(errs...))
	}
	return converted, nil
}

// loadKeys returns the gateway keys, converting version 1 rows first. Such
// rows are there once, in a database an older gateway used (an older
// `switchboard keys add` cannot write one after migration 00005), and again
// only if a conversion failed; only then is the salt read and the KDF paid,
// so the key poll costs its one query and retries a failed conversion.
func loadKeys(ctx context.Context, store *db.DB, log *slog.Logger) ([]db.Key, error) {
	keys, err := store.Keys(ctx)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(keys, func(k db.Key) bool { return k.StoredKey == nil }) {
		return keys, nil
	}
	salt, err := KeySalt(ctx, store)
	if err != nil {
		return nil, err
	}
	n, err := upgradeKeys(ctx, store, salt, keys, log)
	if err != nil {
		// The keys converted so far and the ones that were fine still
		// admit; the rest is reported and tried again on the next load.
		log.Error("cannot convert every gateway key to handshake version 2", "err", err)
	}
	if n == 0 {
		return keys, nil
	}
	return store.Keys(ctx)
}

// relayKeys is what the relay checks proofs against. Rows not converted to
// version 2 yet have no StoredKey and admit nobody.
func relayKeys(keys []db.Key) []relay.Key {
	out := make([]relay.Key, 0, len(keys))
	for _, k := range keys {
		if k.StoredKey == nil {
			continue
		}
		out = append(out, relay.Key{KeyID: k.KeyID, Label: k.Label, Verifier: k.StoredKey})
	}
	return out
}

// lateStore lets the event log exist before the database is open, so that
// events of a failed start still reach the log file and the spool, and from
// there the database on a later start.
type lateStore struct{ db atomic.Pointer[db.DB] }

var errStoreNotOpen = errors.New("database not open yet")

func (l *lateStore) InsertEvents(ctx context.Context, evs []event.Event) error {
	d := l.db.Load()
	if d == nil {
		return errStoreNotOpen
	}
	return d.InsertEvents(ctx, evs)
}
