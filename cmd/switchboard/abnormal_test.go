package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/audit/event"
)

// TestKilledGatewayLeavesNoHoles kills a gateway process with a Client and a
// session on it (kill -9: no stop event, no Disconnected), starts it again
// on the same database, and checks that the new run records the Client and
// the session as ended by an abnormal stop before its own start.
func TestKilledGatewayLeavesNoHoles(t *testing.T) {
	cfg := baseConfig(t)
	addr := freePort(t)
	serveArgs := []string{"serve", "--listen", addr, "--database-url", cfg.DatabaseURL,
		"--data-dir", cfg.DataDir, "--gateway-key", testKey, "--node", "node-k", "--no-tls"}
	gw, _ := startProcess(t, nil, serveArgs...)
	waitHTTP(t, "http://"+addr+"/healthz")

	echo := echoServer(t)
	client, _ := startProcess(t, nil, "client", "--gateway", "http://"+addr, "--key", testKey,
		"--name", "pc-killed", "--service", "echo="+echo)
	defer func() { _ = client.Process.Kill() }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	fwd := ln.Addr().String()
	startProcess(t, nil, "control", "connect", "--gateway", "http://"+addr, "--key", testKey,
		"--name", "op-killed", "pc-killed/echo", "--listen", fwd)
	var conn net.Conn
	waitFor(t, "a session through the forwarded port", 20*time.Second, func() bool {
		c, err := net.Dial("tcp", fwd)
		if err != nil {
			return false
		}
		_, _ = c.Write([]byte("x"))
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			c.Close()
			return false
		}
		conn = c
		return true
	})
	defer conn.Close()
	waitFor(t, "the session start to be stored", 10*time.Second, func() bool {
		return hasEvent(t, cfg.DatabaseURL, "Control op-killed connected to Client pc-killed")
	})

	if err := gw.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = gw.Wait()
	if hasEvent(t, cfg.DatabaseURL, "Client pc-killed Disconnected") {
		t.Fatal("a killed gateway recorded the disconnect itself")
	}

	startProcess(t, nil, serveArgs...)
	waitHTTP(t, "http://"+addr+"/healthz")
	var evs []event.Event
	waitFor(t, "the previous run's ends to be recorded", 20*time.Second, func() bool {
		evs = readEvents(t, cfg.DatabaseURL)
		return hasMessage(evs, "Gateway stopped abnormally")
	})
	want := []string{
		"Control op-killed disconnected from Client pc-killed",
		"Client pc-killed Disconnected",
		"Gateway stopped abnormally",
	}
	var got []event.Event
	started := 0
	for _, e := range evs {
		if strings.HasPrefix(e.Message, event.GatewayStartedPrefix) {
			started++
			continue
		}
		if started == 1 && (e.Reason != "" || e.Message == "Gateway stopped abnormally") {
			got = append(got, e)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("recorded after the kill, before the new start: %q, want %q", messages(got), want)
	}
	for i, e := range got {
		if e.Message != want[i] || e.Reason != event.ReasonAbnormalStop || e.Node != "node-k" {
			t.Errorf("event %d = %q (reason %q, node %q), want %q with reason %q", i, e.Message, e.Reason, e.Node, want[i], event.ReasonAbnormalStop)
		}
	}
}

func hasMessage(evs []event.Event, msg string) bool {
	for _, e := range evs {
		if e.Message == msg {
			return true
		}
	}
	return false
}

func hasEvent(t *testing.T, url, msg string) bool {
	t.Helper()
	return hasMessage(readEvents(t, url), msg)
}
