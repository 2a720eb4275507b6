package control_test

import (
	"bufio"
	"context"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/peer"
	"github.com/switchboard/switchboard/internal/peer/agent"
	"github.com/switchboard/switchboard/internal/peer/control"
	"github.com/switchboard/switchboard/internal/peer/peertest"
	"github.com/switchboard/switchboard/relay/wire"
)

const foKey = "control-failover-key"

// foClient runs a Client called pc on g until the test ends.
func foClient(t *testing.T, g *peertest.Gateway, services map[string]string) {
	t.Helper()
	a, err := agent.New(agent.Config{Dialer: g.Dialer(), Key: foKey, Name: "pc", Services: services,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	peertest.WaitFor(t, "pc to register", func() bool { _, ok := g.Client("pc"); return ok })
}

func foCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), peertest.Wait)
	t.Cleanup(cancel)
	return ctx
}

// A primary that cannot be reached sends the Control to the secondary, for
// a browse and for a session.
func TestFallsBackToTheSecondaryWhenThePrimaryIsDown(t *testing.T) {
	t.Parallel()
	s := peertest.Start(t, peertest.Config{Keys: []string{foKey}})
	foClient(t, s, map[string]string{"echo": peertest.EchoServer(t)})
	down := peer.Dialer{Gateway: peer.Gateway{Host: peertest.ClosedAddr(t)}, Timeout: peertest.Wait}
	sec := s.Dialer()
	c := &control.Control{Dialer: down, Secondary: &sec, Key: foKey, Name: "ctl"}

	clients, err := c.Browse(foCtx(t))
	if err != nil {
		t.Fatalf("Browse: %v", err)
	}
	if got := names(clients); !slices.Equal(got, []string{"pc"}) {
		t.Fatalf("browse through the secondary lists %v, want [pc]", got)
	}
	conn, err := c.Connect(foCtx(t), "pc/echo")
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(peertest.Wait))
	peertest.MustEchoBothWays(t, conn, 256<<10)

	// Both down: the error tells of both.
	c.Secondary = &peer.Dialer{Gateway: peer.Gateway{Host: peertest.ClosedAddr(t)}, Timeout: peertest.Wait}
	_, err = c.Browse(foCtx(t))
	if err == nil || !strings.Contains(err.Error(), "secondary") || strings.Count(err.Error(), "connect to gateway") != 2 {
		t.Fatalf("both down: err = %v, want both dial errors", err)
	}
}

// A primary that answers and refuses the key is the answer: the Control
// does not try the secondary (which would hold another key space, or the
// same refusal).
func TestNoFallbackOnARefusal(t *testing.T) {
	t.Parallel()
	p := peertest.Start(t, peertest.Config{Keys: []string{"another-gateway-key"}})
	var hellos atomic.Int32
	sec := peertest.FakeGateway(t, func(conn net.Conn, br *bufio.Reader, h wire.Hello) {
		hellos.Add(1)
		_ = wire.WriteFrame(conn, wire.TypeClientList, wire.ClientList{})
	})
	c := &control.Control{Dialer: p.Dialer(), Secondary: &sec, Key: foKey, Name: "ctl"}
	_, err := c.Browse(foCtx(t))
	peertest.WireError(t, err, wire.CodeUnauthorized, "")
	_, err = c.Connect(foCtx(t), "pc/echo")
	peertest.WireError(t, err, wire.CodeUnauthorized, "")
	p.WaitEvent(t, "Security check failed for Control browse. Terminating connection from 127.0.0.1")
	if n := hellos.Load(); n != 0 {
		t.Fatalf("the Control went to the secondary %d times after the primary refused its key", n)
	}
}

// A password is not sent to a secondary where it could be read.
func TestNoCleartextPasswordToTheSecondary(t *testing.T) {
	t.Parallel()
	down := peer.Dialer{Gateway: peer.Gateway{TLS: true, Host: peertest.ClosedAddr(t)}, Timeout: peertest.Wait}
	sec := peer.Dialer{Gateway: peer.Gateway{Host: "192.0.2.1:3085"}, Timeout: peertest.Wait}
	c := &control.Control{Dialer: down, Secondary: &sec, Key: foKey, Name: "ctl", Operator: "ann",
		Password: func(context.Context) (string, error) { return "pw-123456", nil }}
	_, err := c.Browse(foCtx(t))
	if err == nil || !strings.Contains(err.Error(), "unencrypted") {
		t.Fatalf("err = %v, want the cleartext refusal", err)
	}
}
