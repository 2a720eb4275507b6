package gateway_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/internal/peer/agent"
	"github.com/switchboard/switchboard/internal/peer/control"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
)

const key = "gateway-test-key"

// TestStartRelayShutdown starts whole gateways in-process, as the serve
// command does, in both TLS modes, and relays a session through each.
func TestStartRelayShutdown(t *testing.T) {
	for _, tc := range []struct {
		name  string
		noTLS bool
	}{{"self-signed TLS", false}, {"no TLS", true}} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := gateway.Start(context.Background(), gateway.Config{
				Store:       gateway.Store{DatabaseURL: pgtest.MustURL(t), DataDir: t.TempDir()},
				Listen:      []string{"127.0.0.1:0"},
				GatewayKeys: []string{key},
				NoTLS:       tc.noTLS,
				Node:        "node-a",
				Grace:       time.Second,
				Logger:      slog.New(slog.DiscardHandler),
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- g.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
				g.Shutdown() // a second stop does nothing
			}()

			if got := g.Fingerprint() != ""; got == tc.noTLS {
				t.Errorf("Fingerprint() = %q with NoTLS=%v", g.Fingerprint(), tc.noTLS)
			}
			if g.SelfSigned() == tc.noTLS {
				t.Errorf("SelfSigned() = %v with NoTLS=%v", g.SelfSigned(), tc.noTLS)
			}
			url := "https://" + g.Addrs()[0].String()
			if tc.noTLS {
				url = "http://" + g.Addrs()[0].String()
			}
			gw, err := peer.ParseGateway(url)
			if err != nil {
				t.Fatal(err)
			}
			d := peer.Dialer{Gateway: gw, Timeout: 5 * time.Second, Fingerprint: g.Fingerprint()}
			echo := mustEcho(t)
			a, err := agent.New(agent.Config{Dialer: d, Key: key, Name: "pc-1",
				Services: map[string]string{"echo": echo}, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			actx, stopAgent := context.WithCancel(context.Background())
			agentDone := make(chan struct{})
			go func() { defer close(agentDone); _ = a.Run(actx) }()
			defer func() { stopAgent(); <-agentDone }()
			waitFor(t, a.Connected)

			c := &control.Control{Dialer: d, Key: key, Name: "op"}
			conn, err := c.Connect(context.Background(), "pc-1/echo")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			msg := []byte("through a gateway started in-process")
			if _, err := conn.Write(msg); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(conn, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("echoed %q, want %q", got, msg)
			}
			if n := len(g.Relay().Sessions()); n != 1 {
				t.Errorf("relay reports %d sessions, want 1", n)
			}
		})
	}
}

func mustEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the Client to register")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
