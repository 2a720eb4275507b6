package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestClientFailsOverToTheSecondaryProcess runs a primary and a secondary
// gateway as processes, each on its own database, and a Client process
// with --secondary. The primary is killed with SIGKILL: the Client shows
// up in a browse of the secondary (and of a Control given both addresses)
// within seconds. The primary is started again: the Client returns to it
// and leaves the secondary.
func TestClientFailsOverToTheSecondaryProcess(t *testing.T) {
	pcfg, scfg := baseConfig(t), baseConfig(t)
	paddr, saddr := freePort(t), freePort(t)
	serve := func(cfg, addr string, dataDir string) (func() error, *syncBuffer) {
		cmd, out := startProcess(t, nil, "serve", "--listen", addr, "--database-url", cfg,
			"--data-dir", dataDir, "--gateway-key", testKey, "--shutdown-grace", "1s")
		waitHTTP(t, "http://"+addr+"/healthz")
		return func() error { return cmd.Process.Kill() }, out
	}
	killPrimary, _ := serve(pcfg.DatabaseURL, paddr, pcfg.DataDir)
	serve(scfg.DatabaseURL, saddr, scfg.DataDir)
	primary, secondary := "http://"+paddr, "http://"+saddr

	// The same address twice is refused before anything is dialled.
	var errOut bytes.Buffer
	refuseCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := run(refuseCtx, []string{"client", "--gateway", primary, "--secondary", "http://" + paddr + "/", "--key", testKey}, nil, io.Discard, &errOut)
	if err == nil {
		t.Fatal("client with the primary as its secondary started")
	}
	if !strings.Contains(err.Error(), "is the same gateway as --gateway") {
		t.Fatalf("same primary and secondary: %v", err)
	}

	// And the settings reach the config file that install writes.
	conf := filepath.Join(t.TempDir(), "client.conf")
	if err := writeClientConfig(conf, clientFlags{gf: gatewayFlags{gateway: primary, secondary: secondary, key: testKey}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(conf)
	if err != nil || !strings.Contains(string(b), "secondary = "+secondary+"\n") {
		t.Fatalf("config file %q (%v) lacks the secondary", b, err)
	}

	echo := echoServer(t)
	client, clientOut := startProcess(t, nil, "client", "--config", conf, "--name", "pc-fo", "--service", "echo="+echo)
	browse := func(args ...string) string {
		var b bytes.Buffer
		if err := run(context.Background(), append([]string{"control", "browse", "--key", testKey}, args...), nil, &b, io.Discard); err != nil {
			return ""
		}
		return b.String()
	}
	on := func(gw string) func() bool {
		return func() bool { return strings.Contains(browse("--gateway", gw), "pc-fo") }
	}
	waitFor(t, "the Client process on the primary", 20*time.Second, on(primary))
	if on(secondary)() {
		t.Fatal("the Client is on the secondary while the primary is up")
	}

	if err := killPrimary(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, "the Client on the secondary after the primary was killed", 20*time.Second, on(secondary))
	took := time.Since(start)
	t.Logf("failover: the Client process was listed by the secondary %s after kill -9 of the primary", took.Round(time.Millisecond))
	fmt.Printf("failover (kill -9 of the primary process → Client listed on the secondary): %s\n", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("failover took %s, want under 5 s", took)
	}
	// The agent logs the switch once its registration is done, which may
	// be just after the secondary lists it.
	waitFor(t, "the Client to log the switch", 5*time.Second, func() bool {
		return strings.Contains(clientOut.String(), "switched to the secondary gateway")
	})
	// A Control given both addresses browses through the secondary.
	if out := browse("--gateway", primary, "--secondary", secondary); !strings.Contains(out, "pc-fo") {
		t.Errorf("browse with the primary down and a secondary: %q", out)
	}

	// So does a remembered gateway with a secondary.
	gwFile := filepath.Join(t.TempDir(), "gateways.json")
	if err := run(context.Background(), []string{"control", "gateways", "add", "same", "--gateway", primary, "--secondary", primary,
		"--key", testKey, "--gateways-file", gwFile}, nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "is the same gateway") {
		t.Errorf("gateways add with the primary as its secondary: %v", err)
	}
	if err := run(context.Background(), []string{"control", "gateways", "add", "cluster", "--gateway", primary, "--secondary", secondary,
		"--key", testKey, "--gateways-file", gwFile}, nil, io.Discard, io.Discard); err != nil {
		t.Fatalf("gateways add: %v", err)
	}
	if out := browse("cluster", "--gateways-file", gwFile); !strings.Contains(out, "pc-fo") {
		t.Errorf("browse of a remembered gateway whose primary is down: %q", out)
	}

	// The primary comes back, on its own database: the Client returns.
	serve(pcfg.DatabaseURL, paddr, pcfg.DataDir)
	start = time.Now()
	waitFor(t, "the Client back on the primary", 20*time.Second, func() bool { return on(primary)() && !on(secondary)() })
	took = time.Since(start)
	t.Logf("fail-back: the Client process was back on the primary %s after it answered again", took.Round(time.Millisecond))
	fmt.Printf("fail-back (primary answering again → Client listed on the primary only): %s\n", took.Round(time.Millisecond))
	if !strings.Contains(clientOut.String(), "returned to the primary gateway") {
		t.Errorf("the Client did not log the return:\n%s", clientOut)
	}
	_ = client.Process.Signal(syscall.SIGTERM)
	if err := waitProcess(client, 10*time.Second); err != nil {
		t.Errorf("client exit after SIGTERM: %v", err)
	}
}
