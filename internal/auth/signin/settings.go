package signin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/db"
)

// Settings are the console's 2FA tab.
type Settings struct {
	// Require2FA asks every operator for their second factor when they
	// start a remote connection; operators may also be required one by one.
	Require2FA bool
	// TokenTTL is how long a Control's sign-in lasts before it prompts again.
	TokenTTL time.Duration

	DuoIntegrationKey string
	DuoSecretKey      string // write-only: the console never shows it again
	// DuoSecretUnreadable tells that a Duo secret key is stored but cannot
	// be decrypted with the secrets key in use (DuoSecretKey is then
	// empty): Duo Push refuses every sign-in until it is entered again.
	DuoSecretUnreadable bool
	DuoAPIHost          string
	// DuoFailOpen admits operators without Duo when Duo cannot be reached;
	// the default is to refuse them (fail closed).
	DuoFailOpen bool
	// DuoTimeout is how long a Duo Push waits for an answer.
	DuoTimeout time.Duration
}

// DefaultSettings are what an installation starts with.
var DefaultSettings = Settings{TokenTTL: 8 * time.Hour, DuoTimeout: 60 * time.Second}

// DuoConfigured reports whether Duo Push can be used.
func (s Settings) DuoConfigured() bool {
	return s.DuoIntegrationKey != "" && s.DuoSecretKey != "" && s.DuoAPIHost != ""
}

// Validate reports the first problem in a form an administrator can act on.
func (s Settings) Validate() error {
	if s.TokenTTL < time.Minute || s.TokenTTL > 30*24*time.Hour {
		return fmt.Errorf("a Control sign-in must last between 1 minute and 30 days")
	}
	if s.DuoTimeout < 5*time.Second || s.DuoTimeout > 5*time.Minute {
		return fmt.Errorf("the Duo Push timeout must be between 5 and 300 seconds")
	}
	return nil
}

// FieldError is a problem with one field of the 2FA tab, worded for the
// administrator; Field is the form field's name.
type FieldError struct{ Field, Message string }

func (e FieldError) Error() string { return e.Message }

// ValidateDuo reports what keeps the Duo fields from working: Duo Push
// needs the integration key, the secret key and the API host together (or
// none of them, for no Duo). secretStored tells that a readable secret key
// is stored already, which an empty secret key field keeps.
func (s Settings) ValidateDuo(secretStored bool) []FieldError {
	ikey, host := s.DuoIntegrationKey, s.DuoAPIHost
	secret := s.DuoSecretKey != "" || secretStored
	if ikey == "" && host == "" && s.DuoSecretKey == "" {
		return nil // no Duo
	}
	var errs []FieldError
	switch {
	case ikey == "":
		errs = append(errs, FieldError{"duo_ikey", "Give the integration key too: Duo Push needs all three values of the Auth API application."})
	case !validDuoIKey(ikey):
		errs = append(errs, FieldError{"duo_ikey", "An integration key is 20 letters and digits starting with DI, as the Duo Admin Panel shows it."})
	}
	if !secret {
		msg := "Give the secret key too: Duo Push needs all three values of the Auth API application."
		if s.DuoSecretUnreadable {
			msg = "The stored secret key cannot be decrypted with this gateway's secrets key: enter it again."
		}
		errs = append(errs, FieldError{"duo_skey", msg})
	}
	switch {
	case host == "":
		errs = append(errs, FieldError{"duo_host", "Give the API host too: Duo Push needs all three values of the Auth API application."})
	case strings.Contains(host, "://") || strings.ContainsAny(host, "/ \t@?#"):
		errs = append(errs, FieldError{"duo_host", "The API host is a host name such as api-xxxxxxxx.duosecurity.com, not a URL."})
	}
	return errs
}

func validDuoIKey(k string) bool {
	if len(k) != 20 || !strings.HasPrefix(k, "DI") {
		return false
	}
	for _, r := range k {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

const (
	keyRequire     = "twofa_require_all"
	keyTokenTTL    = "control_token_ttl_seconds"
	keyDuoIKey     = "duo_integration_key"
	keyDuoSKey     = db.SettingDuoSecretKey // stored sealed
	keyDuoHost     = "duo_api_host"
	keyDuoFailOpen = "duo_fail_open"
	keyDuoTimeout  = "duo_timeout_seconds"
)

var settingNames = []string{keyRequire, keyTokenTTL, keyDuoIKey, keyDuoSKey, keyDuoHost, keyDuoFailOpen, keyDuoTimeout}

// SettingsStore is where settings rows live.
type SettingsStore interface {
	Settings(ctx context.Context, names []string) (map[string]string, error)
	SetSettings(ctx context.Context, values map[string]string) error
}

// LoadSettings reads the stored settings over the defaults. A Duo secret
// key that cannot be decrypted is no error: DuoSecretUnreadable says so,
// and only Duo Push refuses.
func LoadSettings(ctx context.Context, st SettingsStore) (Settings, error) {
	rows, err := st.Settings(ctx, settingNames)
	unreadable := errors.Is(err, db.ErrSecretUnreadable)
	if err != nil && !unreadable {
		return Settings{}, fmt.Errorf("signin: load settings: %w", err)
	}
	s := DefaultSettings
	boolean := func(name string, dst *bool) error {
		if v, ok := rows[name]; ok {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("signin: stored %s %q: %w", name, v, err)
			}
			*dst = b
		}
		return nil
	}
	seconds := func(name string, dst *time.Duration) error {
		if v, ok := rows[name]; ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("signin: stored %s %q: %w", name, v, err)
			}
			*dst = time.Duration(n) * time.Second
		}
		return nil
	}
	for _, err := range []error{
		boolean(keyRequire, &s.Require2FA), boolean(keyDuoFailOpen, &s.DuoFailOpen),
		seconds(keyTokenTTL, &s.TokenTTL), seconds(keyDuoTimeout, &s.DuoTimeout),
	} {
		if err != nil {
			return Settings{}, err
		}
	}
	s.DuoIntegrationKey, s.DuoSecretKey, s.DuoAPIHost = rows[keyDuoIKey], rows[keyDuoSKey], rows[keyDuoHost]
	s.DuoSecretUnreadable = unreadable && s.DuoSecretKey == ""
	return s, nil
}

// SaveSettings stores s. An empty DuoSecretKey keeps the stored one, so a
// form that never shows the secret can be saved without retyping it;
// unless the integration key and API host are empty too: that removes the
// Duo integration, secret key included. The
// store seals the secret key (db.UseSecretsKey).
func SaveSettings(ctx context.Context, st SettingsStore, s Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	rows := map[string]string{
		keyRequire:     strconv.FormatBool(s.Require2FA),
		keyTokenTTL:    strconv.Itoa(int(s.TokenTTL / time.Second)),
		keyDuoIKey:     s.DuoIntegrationKey,
		keyDuoHost:     s.DuoAPIHost,
		keyDuoFailOpen: strconv.FormatBool(s.DuoFailOpen),
		keyDuoTimeout:  strconv.Itoa(int(s.DuoTimeout / time.Second)),
	}
	switch {
	case s.DuoSecretKey != "":
		rows[keyDuoSKey] = s.DuoSecretKey
	case s.DuoIntegrationKey == "" && s.DuoAPIHost == "":
		// No Duo any more: the secret key goes with the rest.
		rows[keyDuoSKey] = ""
	}
	if err := st.SetSettings(ctx, rows); err != nil {
		return fmt.Errorf("signin: save settings: %w", err)
	}
	return nil
}
