package signin

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/auth/sealed"
)

// SecretsKeyName is the secrets key file's name in the data dir.
const SecretsKeyName = "secrets.key"

// ProtectSecrets gives the store the key that seals TOTP secrets and the
// Duo secret key (AES-256-GCM; each value bound to its row: "totp:"+name,
// "setting:duo_secret_key"), then seals in place what is still stored in
// clear. It runs at every start, before anything reads those secrets.
//
// The key is keyFile, which must exist (serve --secrets-key-file or
// SWITCHBOARD_SECRETS_KEY_FILE, for containers and clusters), or else
// DATA-DIR/secrets.key, created (mode 0600) on the first start. The key is
// never in the database: a copy or backup of the database alone does not
// reveal the secrets. Every node of a cluster must have the same key: a
// value sealed by one node opens only with its key.
//
// Losing the key loses the sealed secrets, and nothing else: passwords,
// keys, tokens and settings are not sealed. The gateway starts (a new
// secrets.key is made when the default one is missing), logs which sealed
// values it cannot open, and from then on sign-ins that need one fail with
// a message saying so: an operator with TOTP until an administrator runs
// `switchboard operators reset-totp NAME` and the operator enrols again;
// Duo Push until the Duo secret key is entered again on the 2FA tab.
func ProtectSecrets(ctx context.Context, st *db.DB, keyFile, dataDir string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	path := keyFile
	var box *sealed.Box
	var err error
	if path != "" {
		if box, err = sealed.LoadFile(path); err != nil {
			return fmt.Errorf("signin: --secrets-key-file: %w", err)
		}
	} else {
		path = filepath.Join(dataDir, SecretsKeyName)
		var created bool
		if box, created, err = sealed.LoadOrCreate(path); err != nil {
			return fmt.Errorf("signin: %w", err)
		}
		if created {
			log.Info("created the secrets key that encrypts TOTP secrets and the Duo secret key in the database: back it up, "+
				"and give every node of a cluster the same one (--secrets-key-file)", "file", path, "key_id", box.KeyID())
		}
	}
	if sealed.LooseMode(path) {
		log.Warn("the secrets key file can be read by others than its owner: chmod 600 it", "file", path)
	}
	st.UseSecretsKey(box)
	rep, err := st.SealClearSecrets(ctx)
	if err != nil {
		return fmt.Errorf("signin: %w", err)
	}
	if rep.Sealed > 0 {
		log.Info("encrypted secrets that were stored in clear", "count", rep.Sealed, "key_id", box.KeyID())
	}
	for _, u := range rep.Unreadable {
		log.Error("a stored secret cannot be decrypted with this gateway's secrets key: "+
			"restore the secrets.key it was stored with (every node needs the same one), or reset TOTP with "+
			"`switchboard operators reset-totp NAME` and enter the Duo secret key again on the 2FA tab",
			"secret", u, "file", path, "key_id", box.KeyID())
	}
	return nil
}
