package main

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
)

// TestTwoNodesOnOneDatabase runs two `switchboard serve` processes on one
// database: each says its state on /readyz, both are on the Servers tab of
// either, a third process with a live node's name is refused, and an
// orderly stop takes a node off the list.
func TestTwoNodesOnOneDatabase(t *testing.T) {
	dbURL := pgtest.MustURL(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	addrA, addrB := freePort(t), freePort(t)
	startProcess(t, nil, "serve", "--listen", addrA, "--database-url", dbURL, "--data-dir", dirA,
		"--gateway-key", testKey, "--node", "node-a", "--role", "primary", "--no-tls")
	waitHTTP(t, "http://"+addrA+"/readyz")
	// Every node of a cluster needs the same secrets key.
	keyFile := filepath.Join(dirA, "secrets.key")
	b, _ := startProcess(t, nil, "serve", "--listen", addrB, "--database-url", dbURL, "--data-dir", dirB,
		"--secrets-key-file", keyFile, "--node", "node-b", "--role", "secondary", "--no-tls",
		"--advertise", "http://node-b.example:3085")
	waitHTTP(t, "http://"+addrB+"/readyz")

	for addr, want := range map[string]string{addrA: "ready: active\n", addrB: "ready: standby\n"} {
		if body := nodesGet(t, http.DefaultClient, "http://"+addr+"/readyz"); body != want {
			t.Errorf("%s /readyz = %q, want %q", addr, body, want)
		}
	}

	// A third process with node-a's name is refused.
	out, err := exec.Command(binary(t), "serve", "--listen", freePort(t), "--database-url", dbURL,
		"--data-dir", t.TempDir(), "--secrets-key-file", keyFile, "--node", "node-a", "--no-tls").CombinedOutput()
	if err == nil {
		t.Fatalf("a second node-a started:\n%s", out)
	}
	if want := "node node-a is already running (last seen "; !strings.Contains(string(out), want) ||
		!strings.Contains(string(out), "ago at http://"+addrA+"); give this gateway another --node") {
		t.Fatalf("second node-a:\n%s", out)
	}

	// The Servers tab, as a signed-in administrator sees it.
	ctx := context.Background()
	st, err := db.Open(ctx, dbURL, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	admin := adminClient(t, dbURL, "http://"+addrB)
	page := nodesGet(t, admin, "http://"+addrB+"/console/config/servers")
	for _, want := range []string{
		`<tr data-node="node-a" data-state="active">`, "http://" + addrA, "<td>primary</td>",
		`<tr data-node="node-b" data-state="standby">`, "http://node-b.example:3085", "<td>secondary</td>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("Servers tab lacks %q:\n%s", want, page)
		}
	}

	// An orderly stop leaves the registry.
	if err := b.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := b.Wait(); err != nil {
		t.Fatalf("node-b exit: %v", err)
	}
	waitFor(t, "node-b off the list", 10*time.Second, func() bool {
		nodes, err := st.Nodes(ctx)
		return err == nil && len(nodes) == 1 && nodes[0].Name == "node-a"
	})
	// node-b's --listen did not move node-a (settings are the cluster's).
	if body := nodesGet(t, http.DefaultClient, "http://"+addrA+"/readyz"); body != "ready: active\n" {
		t.Errorf("node-a /readyz after node-b came and went = %q", body)
	}
	if !hasEvent(t, dbURL, "Node node-b left the cluster") || !hasEvent(t, dbURL, "Node node-a joined the cluster as primary (http://"+addrA+")") {
		t.Errorf("node events missing: %q", messages(readEvents(t, dbURL)))
	}
}

func nodesGet(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
