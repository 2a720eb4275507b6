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

// AddKey stores a gateway key as its verifier. Adding a key that exists
// already is not an error: it reports added=false.
func AddKey(ctx context.Context, store *db.DB, salt []byte, key, label string) (id string, added bool, err error) {
	if len(key) < wire.MinKeyLength {
		return "", false, fmt.Errorf("a gateway key must be at least %d characters", wire.MinKeyLength)
	}
	v := wire.Verifier(salt, key)
	id = wire.KeyID(v)
	_, err = store.AddKey(ctx, db.Key{KeyID: id, Label: label, Verifier: v})
	if errors.Is(err, db.ErrConflict) {
		return id, false, nil
	}
	return id, err == nil, err
}

func relayKeys(keys []db.Key) []relay.Key {
	out := make([]relay.Key, len(keys))
	for i, k := range keys {
		out[i] = relay.Key{KeyID: k.KeyID, Label: k.Label, Verifier: k.Verifier}
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
