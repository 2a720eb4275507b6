package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/internal/peer/agent"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
)

// balanceSlack is the test's --balance-slack: of 60 Clients on three nodes
// (a mean of 20), a node is over its share from 25 (more than the mean by
// 10 % and by at least 5); on two nodes (30), from 35.
const balanceSlack = 5

// overItsShare is the placer's rule (internal/gateway/placement.go).
func overItsShare(n int, mean float64) bool {
	return float64(n) > mean*1.1 && float64(n)-mean >= balanceSlack
}

// TestBalancedProcessesSpreadClients runs three `switchboard serve
// --role balanced` processes on one PostgreSQL and 60 Client agents all
// given the first node's URL: they end up spread, no node over its share.
// The first node is killed with SIGKILL: its Clients, which knew the
// other two only from the Nodes list it sent them, spread over those.
func TestBalancedProcessesSpreadClients(t *testing.T) {
	dbURL := pgtest.MustURL(t)
	var keyFile string
	type node struct {
		name, url string
		kill      func()
		out       *syncBuffer
	}
	var nodes []node
	for i, name := range []string{"bal-a", "bal-b", "bal-c"} {
		dir, addr := t.TempDir(), freePort(t)
		args := []string{"serve", "--listen", addr, "--database-url", dbURL, "--data-dir", dir, "--gateway-key", testKey,
			"--node", name, "--role", "balanced", "--no-tls", "--shutdown-grace", "1s", "--balance-slack", fmt.Sprint(balanceSlack)}
		if i > 0 {
			// Every node of a cluster needs the same secrets key.
			args = append(args, "--secrets-key-file", keyFile)
		}
		cmd, out := startProcess(t, nil, args...)
		waitHTTP(t, "http://"+addr+"/readyz")
		if i == 0 {
			keyFile = filepath.Join(dir, "secrets.key")
		}
		nodes = append(nodes, node{name: name, url: "http://" + addr, kill: func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }, out: out})
	}
	// All three joined (renewed their lease after their claim), so the
	// first knows where to send Clients.
	ctx := context.Background()
	st, err := db.Open(ctx, dbURL, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	waitFor(t, "three joined nodes", 20*time.Second, func() bool {
		ns, err := st.Nodes(ctx)
		joined := 0
		for _, n := range ns {
			if n.LastSeen.After(n.StartedAt) {
				joined++
			}
		}
		return err == nil && joined == 3
	})

	gw, err := peer.ParseGateway(nodes[0].url)
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var as []*agent.Agent
	for i := range 60 {
		a, err := agent.New(agent.Config{Dialer: peer.Dialer{Gateway: gw, Timeout: 5 * time.Second}, Key: testKey,
			Name: fmt.Sprintf("pc-%02d", i), Services: map[string]string{"ssh": "127.0.0.1:1"}, Version: "test",
			Logger: slog.New(slog.DiscardHandler), MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		as = append(as, a)
		wg.Add(1)
		go func() { defer wg.Done(); _ = a.Run(actx) }()
	}

	// spreadOver is "" once all 60 are on the given nodes and none holds
	// more than its share, else how they stand.
	spreadOver := func(ns ...node) string {
		count := map[string]int{}
		for _, a := range as {
			if a.Connected() {
				count[a.Gateway()]++
			}
		}
		mean := float64(len(as)) / float64(len(ns))
		total, bad := 0, false
		for _, n := range ns {
			total += count[n.url]
			bad = bad || overItsShare(count[n.url], mean)
		}
		if bad || total != len(as) {
			return fmt.Sprint(count)
		}
		return ""
	}
	waitSpread := func(what string, ns ...node) {
		t.Helper()
		start := time.Now()
		for {
			last := spreadOver(ns...)
			if last == "" {
				break
			}
			if time.Since(start) > 30*time.Second {
				t.Fatalf("timed out waiting for %s: Clients by node URL %s", what, last)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("%s in %s", what, time.Since(start).Round(time.Millisecond))
	}
	waitSpread("60 Clients given bal-a's URL spread over three nodes", nodes...)
	var moved int
	if err := st.Pool().QueryRow(ctx, "SELECT count(*) FROM events WHERE node = 'bal-a' AND message LIKE 'Client pc-__ moved to node bal-_ for load balancing'").Scan(&moved); err != nil {
		t.Fatal(err)
	}
	// Events are written in batches: most, not necessarily all, are in.
	if moved == 0 {
		t.Error("bal-a wrote no move events")
	}

	nodes[0].kill()
	waitSpread("bal-a's Clients spread over bal-b and bal-c after kill -9", nodes[1], nodes[2])
}
