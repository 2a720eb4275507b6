package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/pg/pgtest"
)

// runCLIStderr is runCLI that also returns what the command said on stderr.
func runCLIStderr(ctx context.Context, t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut syncBuffer
	err = run(ctx, args, nil, &out, &errOut)
	return out.String(), errOut.String(), err
}

func writeSecret(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestServeNoTLSWithKeyFile runs `serve --no-tls` through the CLI, with its
// key from a file, and relays a session through it: --no-tls used to panic
// right after it started listening.
func TestServeNoTLSWithKeyFile(t *testing.T) {
	dir := t.TempDir()
	keyFile := writeSecret(t, dir, "gateway.keys", "# our keys\n"+testKey+"\n\n", 0o600)
	addr := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--no-tls", "--listen", addr, "--database-url", pgtest.MustURL(t),
			"--data-dir", filepath.Join(dir, "data"), "--gateway-key-file", keyFile, "--shutdown-grace", "1s"},
			nil, &syncBuffer{}, &stderr)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v\n%s", err, stderr.String())
		}
		if strings.Contains(stderr.String(), "panic") || strings.Contains(stderr.String(), "warning: --") {
			t.Errorf("serve said:\n%s", stderr.String())
		}
	}()
	waitFor(t, "serve --no-tls to listen", 20*time.Second, func() bool {
		return strings.Contains(stderr.String(), "the console is http://")
	})
	url := "http://" + addr
	clientErr := runClientInBackground(t, url, "pc-notls")
	waitFor(t, "the Client to show in a browse", 10*time.Second, func() bool {
		out, err := runCLI(ctx, t, nil, "control", "browse", "--gateway", url, "--key-file", writeSecret(t, dir, "k", testKey, 0o600))
		return err == nil && strings.Contains(out, "pc-notls")
	})
	select {
	case err := <-clientErr:
		t.Fatalf("client stopped: %v", err)
	default:
	}
}

// runClientInBackground runs `switchboard client` with its key in the
// environment until the test ends.
func runClientInBackground(t *testing.T, url, name string) <-chan error {
	t.Helper()
	t.Setenv("SWITCHBOARD_KEY", testKey)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	var stderr syncBuffer
	go func() {
		errc <- run(ctx, []string{"client", "--gateway", url, "--name", name, "--service", "echo=" + echoServer(t)}, nil, &syncBuffer{}, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		<-errc
		if strings.Contains(stderr.String(), "warning: --") {
			t.Errorf("a key from the environment was warned about:\n%s", stderr.String())
		}
	})
	return errc
}

func TestSecretFlags(t *testing.T) {
	g := mustStartGateway(t)
	ctx := context.Background()
	dir := t.TempDir()

	t.Run("a key on the command line works and is warned about", func(t *testing.T) {
		_, stderr, err := runCLIStderr(ctx, t, "control", "browse", "--gateway", g.url, "--key", testKey)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stderr, "warning: --key on the command line") || !strings.Contains(stderr, "--key-file") {
			t.Fatalf("no warning naming --key-file:\n%s", stderr)
		}
		if strings.Contains(stderr, testKey) {
			t.Fatal("the warning repeats the key")
		}
	})
	t.Run("a key file of mode 600 works without a warning", func(t *testing.T) {
		f := writeSecret(t, dir, "ok.key", testKey+"\n", 0o600)
		_, stderr, err := runCLIStderr(ctx, t, "control", "browse", "--gateway", g.url, "--key-file", f)
		if err != nil || strings.Contains(stderr, "warning") {
			t.Fatalf("err %v, stderr:\n%s", err, stderr)
		}
	})
	t.Run("a key file others can read is refused with the fix", func(t *testing.T) {
		f := writeSecret(t, dir, "open.key", testKey+"\n", 0o644)
		_, _, err := runCLIStderr(ctx, t, "control", "browse", "--gateway", g.url, "--key-file", f)
		if err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("err = %v, want a refusal naming chmod 600", err)
		}
	})
	t.Run("a key in the environment is not warned about", func(t *testing.T) {
		t.Setenv("SWITCHBOARD_KEY", testKey)
		_, stderr, err := runCLIStderr(ctx, t, "control", "browse", "--gateway", g.url)
		if err != nil || strings.Contains(stderr, "warning") {
			t.Fatalf("err %v, stderr:\n%s", err, stderr)
		}
	})
	t.Run("key and key file together are refused", func(t *testing.T) {
		f := writeSecret(t, dir, "both.key", testKey, 0o600)
		_, _, err := runCLIStderr(ctx, t, "control", "browse", "--gateway", g.url, "--key", testKey, "--key-file", f)
		if err == nil {
			t.Fatal("both were accepted")
		}
	})
}
