package handlers

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/auth/password"
	"github.com/switchboard/switchboard/internal/auth/signin"
)

const rootPassword = "admin password 123"

// postForm posts values to u and returns the final page and status.
func postForm(t *testing.T, client *http.Client, u string, values url.Values) (string, int) {
	t.Helper()
	resp, err := client.PostForm(u, values)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return html.UnescapeString(string(b)), resp.StatusCode
}

// shownError is the message shown next to field id, "" when none.
func shownError(body, id string) string {
	m := regexp.MustCompile(`<div class="field-error" id="` + regexp.QuoteMeta(id) + `-error">([^<]*)</div>`).FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

func mustAddOperator(t *testing.T, store *db.DB, name, pw, role string) db.Operator {
	t.Helper()
	hash, err := password.Hash(pw)
	if err != nil {
		t.Fatal(err)
	}
	op, err := store.AddOperator(context.Background(), db.Operator{Name: name, PasswordHash: hash, Role: role})
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// signedInClient signs name in on a fresh cookie jar.
func signedInClient(t *testing.T, base, name, pw string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	body, code := postForm(t, client, base+"/console/signin", url.Values{"name": {name}, "password": {pw}})
	if code != http.StatusOK || strings.Contains(body, `action="/console/signin"`) {
		t.Fatalf("%s could not sign in: %d", name, code)
	}
	return client
}

func TestDuoSettingsValidated(t *testing.T) {
	store, client, base := consoleServer(t)
	ctx := context.Background()

	t.Run("an integration key alone is refused, kept, and explained", func(t *testing.T) {
		body, code := postForm(t, client, base+"/console/config/2fa", url.Values{
			"token_ttl": {"480"}, "duo_timeout": {"60"}, "duo_ikey": {"DIABCDEFGHIJ12345678"},
		})
		if code != http.StatusUnprocessableEntity {
			t.Errorf("status %d, want 422", code)
		}
		if strings.Contains(body, "Saved 2FA settings") {
			t.Error("an incomplete Duo setup says Saved")
		}
		for _, f := range []string{"duo_skey", "duo_host"} {
			if !strings.Contains(shownError(body, f), "Give the") {
				t.Errorf("no error next to %s: %q", f, shownError(body, f))
			}
		}
		if !strings.Contains(body, `value="DIABCDEFGHIJ12345678"`) {
			t.Error("the typed integration key is not shown again")
		}
		set, err := signin.LoadSettings(ctx, store)
		if err != nil || set.DuoIntegrationKey != "" {
			t.Errorf("stored integration key %q, %v", set.DuoIntegrationKey, err)
		}
	})
	t.Run("a malformed integration key and a URL for a host are refused", func(t *testing.T) {
		body, _ := postForm(t, client, base+"/console/config/2fa", url.Values{
			"token_ttl": {"480"}, "duo_timeout": {"60"}, "duo_ikey": {"not-a-key"}, "duo_skey": {"secret"}, "duo_host": {"https://api-1.duosecurity.com/"},
		})
		if !strings.Contains(shownError(body, "duo_ikey"), "starting with DI") || !strings.Contains(shownError(body, "duo_host"), "not a URL") {
			t.Errorf("errors: ikey %q, host %q", shownError(body, "duo_ikey"), shownError(body, "duo_host"))
		}
		if strings.Contains(body, `value="secret"`) {
			t.Error("the secret key is sent back to the browser")
		}
		if !strings.Contains(body, "type it again") {
			t.Error("the page does not say that the typed secret key must be typed again")
		}
	})
	t.Run("a number out of range is refused next to its field", func(t *testing.T) {
		body, _ := postForm(t, client, base+"/console/config/2fa", url.Values{"token_ttl": {"0"}, "duo_timeout": {"60"}})
		if !strings.Contains(shownError(body, "token_ttl"), "between 1 minute and 30 days") || !strings.Contains(body, `value="0"`) {
			t.Errorf("token_ttl error %q", shownError(body, "token_ttl"))
		}
	})
	t.Run("complete settings Duo cannot check are saved with a warning", func(t *testing.T) {
		body, code := postForm(t, client, base+"/console/config/2fa", url.Values{
			"token_ttl": {"480"}, "duo_timeout": {"60"}, "duo_ikey": {"DIABCDEFGHIJ12345678"}, "duo_skey": {"a secret key"}, "duo_host": {"127.0.0.1:1"},
		})
		if code != http.StatusOK || !strings.Contains(body, "Saved 2FA settings, but: Duo could not be reached") {
			t.Errorf("status %d; no warning", code)
		}
		set, _ := signin.LoadSettings(ctx, store)
		if !set.DuoConfigured() {
			t.Error("not saved")
		}
	})
	t.Run("requiring 2FA of all warns about who has no factor", func(t *testing.T) {
		body, _ := postForm(t, client, base+"/console/config/2fa", url.Values{"require_all": {"1"}, "token_ttl": {"480"}, "duo_timeout": {"60"},
			"duo_ikey": {"DIABCDEFGHIJ12345678"}, "duo_host": {"127.0.0.1:1"}})
		if !strings.Contains(body, "Operator root has no second factor that works yet") {
			t.Error("no warning about root")
		}
	})
	t.Run("Duo cannot be removed while an operator uses it", func(t *testing.T) {
		if err := store.SetSecondFactor(ctx, "root", db.FactorDuo, false); err != nil {
			t.Fatal(err)
		}
		body, code := postForm(t, client, base+"/console/config/2fa", url.Values{"token_ttl": {"480"}, "duo_timeout": {"60"}})
		if code != http.StatusUnprocessableEntity || !strings.Contains(body, "Operator root uses Duo Push") {
			t.Errorf("status %d", code)
		}
		if set, _ := signin.LoadSettings(ctx, store); !set.DuoConfigured() {
			t.Error("Duo was removed")
		}
		if err := store.SetSecondFactor(ctx, "root", db.FactorNone, false); err != nil {
			t.Fatal(err)
		}
		body, _ = postForm(t, client, base+"/console/config/2fa", url.Values{"token_ttl": {"480"}, "duo_timeout": {"60"}})
		if !strings.Contains(body, "Saved 2FA settings.") {
			t.Error("removing Duo nobody uses is not saved")
		}
		if set, _ := signin.LoadSettings(ctx, store); set.DuoSecretKey != "" || set.DuoConfigured() {
			t.Error("removing Duo kept its secret key")
		}
	})
}

func TestOperatorFactorValidated(t *testing.T) {
	store, client, base := consoleServer(t)
	ctx := context.Background()
	mustAddOperator(t, store, "bob", "bob's password", db.RoleOperator)

	t.Run("Duo Push is refused while Duo is not configured", func(t *testing.T) {
		body, code := postForm(t, client, base+"/console/config/operators/bob", url.Values{
			"role": {"admin"}, "factor": {"duo"}, "require_2fa": {"1"},
		})
		if code != http.StatusUnprocessableEntity {
			t.Errorf("status %d, want 422", code)
		}
		if !strings.Contains(shownError(body, "bob-factor"), "Duo Push is not configured") {
			t.Errorf("factor error %q", shownError(body, "bob-factor"))
		}
		row := body[strings.Index(body, `data-operator="bob"`):]
		if !regexp.MustCompile(`value="duo" selected`).MatchString(row) || !regexp.MustCompile(`value="admin" selected`).MatchString(row) {
			t.Error("the row does not show what was chosen")
		}
		op, _ := store.Operator(ctx, "bob")
		if op.Factor != db.FactorNone || op.Role != db.RoleOperator {
			t.Errorf("stored: factor %q role %q", op.Factor, op.Role)
		}
	})
	t.Run("TOTP before an app is enrolled is saved with a warning", func(t *testing.T) {
		body, code := postForm(t, client, base+"/console/config/operators/bob", url.Values{"role": {"operator"}, "factor": {"totp"}})
		if code != http.StatusOK || !strings.Contains(body, "Saved operator bob, but: bob has not set up an authenticator app") {
			t.Errorf("status %d, no warning", code)
		}
		if op, _ := store.Operator(ctx, "bob"); op.Factor != db.FactorTOTP {
			t.Errorf("factor %q", op.Factor)
		}
		// The row keeps saying so.
		page, _ := getPage(t, client, base+"/console/config/operators")
		if !strings.Contains(html.UnescapeString(page), "bob has not set up an authenticator app yet") {
			t.Error("the Operators tab does not warn about bob")
		}
	})
	t.Run("saving a row without the disabled field keeps the account's state", func(t *testing.T) {
		if err := store.UpdateOperator(ctx, "bob", "", db.RoleOperator, true); err != nil {
			t.Fatal(err)
		}
		postForm(t, client, base+"/console/config/operators/bob", url.Values{"role": {"operator"}, "factor": {""}})
		if op, _ := store.Operator(ctx, "bob"); !op.Disabled {
			t.Error("saving the row enabled bob")
		}
	})
}

func TestConfigFormsKeepInput(t *testing.T) {
	_, client, base := consoleServer(t)

	t.Run("a rejected General form shows what was typed", func(t *testing.T) {
		body, code := postForm(t, client, base+"/console/config/general", url.Values{
			"listen": {":443\n10.0.0.1:99999"}, "cmpi": {"90"}, "log_dir": {"/var/log/sb"}, "log_max_kb": {"2048"},
		})
		if code != http.StatusUnprocessableEntity {
			t.Errorf("status %d", code)
		}
		if !strings.Contains(shownError(body, "listen"), `"10.0.0.1:99999"`) {
			t.Errorf("listen error %q", shownError(body, "listen"))
		}
		for _, want := range []string{":443\n10.0.0.1:99999</textarea>", `value="90"`, `value="/var/log/sb"`, `value="2048"`} {
			if !strings.Contains(body, want) {
				t.Errorf("typed value %q is not shown again", want)
			}
		}
		if shownError(body, "cmpi") != "" {
			t.Errorf("a valid CMPI is blamed: %q", shownError(body, "cmpi"))
		}
	})
	t.Run("each bad field is named", func(t *testing.T) {
		body, _ := postForm(t, client, base+"/console/config/general", url.Values{
			"listen": {":443"}, "cmpi": {"ninety"}, "log_dir": {""}, "log_max_kb": {"0"},
		})
		if shownError(body, "cmpi") == "" || shownError(body, "log_dir") == "" {
			t.Errorf("cmpi %q, log_dir %q", shownError(body, "cmpi"), shownError(body, "log_dir"))
		}
	})
	t.Run("a rejected Servers form shows what was typed", func(t *testing.T) {
		body, code := postForm(t, client, base+"/console/config/servers", url.Values{"role": {"secondary"}, "peers": {"gw1.example:443\nnot a host"}})
		if code != http.StatusUnprocessableEntity || !strings.Contains(shownError(body, "peers"), "want host:port") {
			t.Errorf("status %d, peers error %q", code, shownError(body, "peers"))
		}
		if !strings.Contains(body, "gw1.example:443\nnot a host</textarea>") || !strings.Contains(body, `value="secondary" selected`) {
			t.Error("the typed values are not shown again")
		}
	})
	t.Run("htmx gets the page with its errors as a success, at the tab's URL", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, base+"/console/config/servers", strings.NewReader("role=nonsense&peers="))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("HX-Request", "true")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("HX-Push-Url") != "/console/config/servers" {
			t.Errorf("status %d, HX-Push-Url %q", resp.StatusCode, resp.Header.Get("HX-Push-Url"))
		}
	})
	t.Run("a valid form still applies", func(t *testing.T) {
		body, _ := postForm(t, client, base+"/console/config/servers", url.Values{"role": {"primary"}, "peers": {"gw2.example:443"}})
		if !strings.Contains(body, "Applied:") {
			t.Error("not applied")
		}
	})
}

func TestDeleteOperator(t *testing.T) {
	store, client, base := consoleServer(t)
	ctx := context.Background()
	mustAddOperator(t, store, "bob", "bob's password", db.RoleOperator)
	bob := signedInClient(t, base, "bob", "bob's password")

	t.Run("the tab asks before deleting and says what ends", func(t *testing.T) {
		page, _ := getPage(t, client, base+"/console/config/operators")
		if !strings.Contains(html.UnescapeString(page), `hx-confirm="Delete operator bob? This cannot be undone`) {
			t.Error("no confirmation on Delete")
		}
		if strings.Contains(page, `/console/config/operators/root/delete`) {
			t.Error("the signed-in admin is offered to delete themselves")
		}
	})
	t.Run("an operator is deleted and their console session ends", func(t *testing.T) {
		body, _ := postForm(t, client, base+"/console/config/operators/bob/delete", nil)
		if !strings.Contains(body, "Deleted operator bob.") {
			t.Error("no confirmation message")
		}
		if _, err := store.Operator(ctx, "bob"); err == nil {
			t.Error("bob is still there")
		}
		if page, _ := getPage(t, bob, base+"/console/account"); !strings.Contains(page, `action="/console/signin"`) {
			t.Error("bob's console session goes on")
		}
	})
	t.Run("nobody deletes themselves", func(t *testing.T) {
		body, _ := postForm(t, client, base+"/console/config/operators/root/delete", nil)
		if !strings.Contains(body, "You cannot delete yourself") {
			t.Error("no refusal")
		}
	})
	t.Run("the last enabled admin stays", func(t *testing.T) {
		if err := store.DeleteOperator(ctx, "root"); err == nil || !strings.Contains(err.Error(), db.ErrLastAdmin.Error()) {
			t.Errorf("err = %v", err)
		}
		if _, err := store.Operator(ctx, "root"); err != nil {
			t.Error("root was deleted")
		}
	})
}

func TestDisableOperatorConfirmed(t *testing.T) {
	store, client, base := consoleServer(t)
	ctx := context.Background()
	mustAddOperator(t, store, "bob", "bob's password", db.RoleOperator)
	page, _ := getPage(t, client, base+"/console/config/operators")
	if !strings.Contains(html.UnescapeString(page), `hx-confirm="Disable operator bob? They are signed out of the console, they have no session open`) {
		t.Error("no confirmation on Disable")
	}
	body, _ := postForm(t, client, base+"/console/config/operators/bob/disable", nil)
	if op, _ := store.Operator(ctx, "bob"); !op.Disabled || !strings.Contains(body, "Operator bob is disabled.") {
		t.Errorf("bob disabled %v", op.Disabled)
	}
	postForm(t, client, base+"/console/config/operators/bob/enable", nil)
	if op, _ := store.Operator(ctx, "bob"); op.Disabled {
		t.Error("bob is still disabled")
	}
	if body, _ := postForm(t, client, base+"/console/config/operators/root/disable", nil); !strings.Contains(body, "You cannot disable yourself") {
		t.Error("an admin disabled themselves")
	}
}

func TestChangeOwnPassword(t *testing.T) {
	store, _, base := consoleServer(t)
	ctx := context.Background()
	mustAddOperator(t, store, "bob", "bob's password", db.RoleOperator)
	bob := signedInClient(t, base, "bob", "bob's password")

	t.Run("the last sign-in is recorded and shown", func(t *testing.T) {
		op, _ := store.Operator(ctx, "bob")
		if op.LastSigninAt.IsZero() || op.LastSigninAddress != "127.0.0.1" {
			t.Errorf("last sign-in %v from %q", op.LastSigninAt, op.LastSigninAddress)
		}
		page, _ := getPage(t, bob, base+"/console/account")
		if !strings.Contains(page, "Last sign-in with your password") {
			t.Error("the Account page does not show the last sign-in")
		}
	})
	t.Run("a wrong current password is refused next to its field", func(t *testing.T) {
		body, code := postForm(t, bob, base+"/console/account/password", url.Values{
			"current_password": {"not it"}, "new_password": {"a new password 1"}, "new_password_again": {"a new password 1"},
		})
		if code != http.StatusUnprocessableEntity || shownError(body, "current_password") != "That is not your password." {
			t.Errorf("status %d, error %q", code, shownError(body, "current_password"))
		}
	})
	t.Run("the new password is typed twice", func(t *testing.T) {
		body, _ := postForm(t, bob, base+"/console/account/password", url.Values{
			"current_password": {"bob's password"}, "new_password": {"a new password 1"}, "new_password_again": {"a new password 2"},
		})
		if shownError(body, "new_password_again") != "The two new passwords differ." {
			t.Errorf("error %q", shownError(body, "new_password_again"))
		}
	})
	t.Run("the password changes", func(t *testing.T) {
		elsewhere := signedInClient(t, base, "bob", "bob's password") // another browser
		body, _ := postForm(t, bob, base+"/console/account/password", url.Values{
			"current_password": {"bob's password"}, "new_password": {"a new password 1"}, "new_password_again": {"a new password 1"},
		})
		if !strings.Contains(body, "Your password is changed.") {
			t.Fatal("no confirmation")
		}
		op, _ := store.Operator(ctx, "bob")
		if password.Check(op.PasswordHash, "a new password 1") != nil || !strings.HasPrefix(op.PasswordHash, "$argon2id$") {
			t.Error("the stored hash is not an argon2id hash of the new password")
		}
		signedInClient(t, base, "bob", "a new password 1")
		// The session that changed it goes on; every other one of bob's ends.
		if page, _ := getPage(t, bob, base+"/console/account"); strings.Contains(page, `action="/console/signin"`) {
			t.Error("the session that changed the password was signed out")
		}
		if page, _ := getPage(t, elsewhere, base+"/console/account"); !strings.Contains(page, `action="/console/signin"`) {
			t.Error("another session signed in with the old password still works")
		}
	})
	t.Run("wrong current passwords are throttled as sign-ins", func(t *testing.T) {
		var body string
		for range signin.DefaultPolicy.MaxFailures + 1 {
			body, _ = postForm(t, bob, base+"/console/account/password", url.Values{
				"current_password": {"guess"}, "new_password": {"a new password 3"}, "new_password_again": {"a new password 3"},
			})
		}
		if shownError(body, "current_password") != "Too many wrong passwords: try again later." {
			t.Errorf("after %d guesses: %q", signin.DefaultPolicy.MaxFailures+1, shownError(body, "current_password"))
		}
		if op, _ := store.Operator(ctx, "bob"); op.LockedUntil.IsZero() {
			t.Error("bob's address is not locked")
		}
	})
}

var recoveryCodeRE = regexp.MustCompile(`<li>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})</li>`)

// TestRecoveryCodes: ten codes shown once at enrolment, stored hashed,
// each signing in once in place of a TOTP code.
func TestRecoveryCodes(t *testing.T) {
	store, client, base := consoleServer(t)
	ctx := context.Background()

	postForm(t, client, base+"/console/account/totp/start", url.Values{"password": {rootPassword}})
	page, _ := getPage(t, client, base+"/console/account")
	m := regexp.MustCompile(`id="totp-secret">([A-Z2-7]+)<`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no secret on the enrolment page")
	}
	code, _ := totp.GenerateCode(m[1], time.Now())
	body, _ := postForm(t, client, base+"/console/account/totp/confirm", url.Values{"code": {code}})
	found := recoveryCodeRE.FindAllStringSubmatch(body, -1)
	if len(found) != signin.RecoveryCodeCount {
		t.Fatalf("%d recovery codes shown, want %d", len(found), signin.RecoveryCodeCount)
	}
	var codes []string
	for _, f := range found {
		codes = append(codes, f[1])
	}
	t.Run("shown once, stored hashed", func(t *testing.T) {
		page, _ := getPage(t, client, base+"/console/account")
		if recoveryCodeRE.MatchString(page) {
			t.Error("the codes are shown again")
		}
		if !strings.Contains(page, "10 recovery codes are left") {
			t.Error("the page does not count the codes")
		}
		op, _ := store.Operator(ctx, "root")
		stored, err := store.RecoveryCodes(ctx, op.ID)
		if err != nil || len(stored) != 10 {
			t.Fatalf("%d stored, %v", len(stored), err)
		}
		for _, s := range stored {
			if !strings.HasPrefix(s.Hash, "$argon2id$") || strings.Contains(s.Hash, strings.ReplaceAll(codes[0], "-", "")) {
				t.Errorf("stored %q", s.Hash)
			}
		}
	})
	signInWith := func(code string) string {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar}
		body, _ := postForm(t, c, base+"/console/signin", url.Values{"name": {"root"}, "password": {rootPassword}})
		if !strings.Contains(body, `name="recovery"`) {
			t.Fatal("the code page offers no recovery code")
		}
		body, _ = postForm(t, c, base+"/console/signin/totp", url.Values{"recovery": {code}})
		return body
	}
	t.Run("a code signs in once, typed loosely", func(t *testing.T) {
		if body := signInWith(" " + strings.ToUpper(codes[3]) + " "); !strings.Contains(body, "clients-table") && !strings.Contains(body, "Dashboard") {
			t.Fatal("the recovery code did not sign in")
		}
		if body := signInWith(codes[3]); !strings.Contains(body, "Wrong or already used code.") {
			t.Error("a used code signs in again")
		}
		if op, _ := store.Operator(ctx, "root"); op.RecoveryCodesLeft != 9 {
			t.Errorf("%d left", op.RecoveryCodesLeft)
		}
	})
	t.Run("a made-up code is refused", func(t *testing.T) {
		if body := signInWith("aaaa-bbbb-cccc-dddd"); !strings.Contains(body, "Wrong or already used code.") {
			t.Error("not refused")
		}
	})
	t.Run("new codes replace the old ones", func(t *testing.T) {
		body, _ := postForm(t, client, base+"/console/account/recovery-codes", url.Values{"password": {"wrong"}})
		if shownError(body, "recovery_password") != "That is not your password." || recoveryCodeRE.MatchString(body) {
			t.Error("new codes without the password")
		}
		body, _ = postForm(t, client, base+"/console/account/recovery-codes", url.Values{"password": {rootPassword}})
		if n := len(recoveryCodeRE.FindAllString(body, -1)); n != 10 {
			t.Fatalf("%d new codes shown", n)
		}
		if body := signInWith(codes[5]); !strings.Contains(body, "Wrong or already used code.") {
			t.Error("an old code still signs in")
		}
	})
	t.Run("removing the app removes the codes", func(t *testing.T) {
		if err := store.SetTOTP(ctx, "root", ""); err != nil {
			t.Fatal(err)
		}
		if op, _ := store.Operator(ctx, "root"); op.RecoveryCodesLeft != 0 {
			t.Errorf("%d codes left", op.RecoveryCodesLeft)
		}
	})
}
