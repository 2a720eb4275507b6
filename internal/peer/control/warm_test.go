package control_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/peer/agent"
	"github.com/switchboard/switchboard/internal/peer/peertest"
)

// TestForwardWarmPaths: a Forward keeps its warm connections, a real
// Client keeps a standby after its first session, and the sessions after
// that use both (the gateway's counts of each go down as a session takes
// one and back up as they are replaced); both are retired when idle, and
// Forward's end closes its pool.
func TestForwardWarmPaths(t *testing.T) {
	t.Parallel()
	g := peertest.Start(t, peertest.Config{Keys: []string{keyA}})
	a, err := agent.New(agent.Config{
		Dialer: g.Dialer(), Key: keyA, Name: "pc", Services: map[string]string{"echo": peertest.EchoServer(t)},
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		StandbyIdle: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	actx, stopAgent := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(actx) }()
	t.Cleanup(func() { stopAgent(); <-agentDone })
	peertest.WaitFor(t, "Client pc to register", a.Connected)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := newControl(g, keyA)
	c.Warm, c.WarmIdle = 2, time.Second
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Forward(ctx, ln, "pc/echo", func(err error) { t.Errorf("onError: %v", err) }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Forward: %v", err)
		}
	}()

	warm := func() int { return g.Relay.Stats().Warm }
	standbys := func() int { return g.Relay.Stats().Standbys }
	peertest.WaitFor(t, "Forward's two warm connections", func() bool { return warm() == 2 })
	if n := standbys(); n != 0 {
		t.Fatalf("%d standbys before any session, want none", n)
	}

	session := func() {
		t.Helper()
		local, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer local.Close()
		_ = local.SetDeadline(time.Now().Add(peertest.Wait))
		peertest.MustEchoBothWays(t, local, 64<<10)
	}
	session()
	peertest.WaitFor(t, "the Client's standby after its first session", func() bool { return standbys() == 1 })
	peertest.WaitFor(t, "the pool to refill", func() bool { return warm() == 2 })

	if st := g.Relay.Stats(); st.WarmConnects != 1 || st.OpensOnStandby != 0 {
		t.Fatalf("first session: %d warm connects and %d opens on a standby, want 1 and 0", st.WarmConnects, st.OpensOnStandby)
	}
	// Each later session takes one of each, and both are replaced.
	for i := range 3 {
		session()
		if st := g.Relay.Stats(); st.WarmConnects != int64(i+2) || st.OpensOnStandby != int64(i+1) {
			t.Fatalf("session %d: %d warm connects and %d opens on a standby, want %d and %d", i+2, st.WarmConnects, st.OpensOnStandby, i+2, i+1)
		}
		peertest.WaitFor(t, "the standby replaced", func() bool { return standbys() == 1 })
		peertest.WaitFor(t, "the pool refilled", func() bool { return warm() == 2 })
	}
	// Used, not leaked: all four sessions ended and nothing else holds on.
	peertest.WaitFor(t, "the sessions to end", func() bool { return g.Relay.Stats().Sessions == 0 })

	// Idle: the Control retires its warm connections after WarmIdle, the
	// Client its standby after StandbyIdle; nobody dials new ones.
	peertest.WaitFor(t, "the warm connections retired", func() bool { return warm() == 0 })
	peertest.WaitFor(t, "the standby retired", func() bool { return standbys() == 0 })
	time.Sleep(300 * time.Millisecond)
	if w, s := warm(), standbys(); w != 0 || s != 0 {
		t.Fatalf("%d warm and %d standby connections after retiring, want none", w, s)
	}

	// The next session is cold again and starts both anew.
	before := g.Relay.Stats()
	session()
	if st := g.Relay.Stats(); st.WarmConnects != before.WarmConnects || st.OpensOnStandby != before.OpensOnStandby {
		t.Fatalf("a session after both retired went warm: %+v, before %+v", st, before)
	}
	peertest.WaitFor(t, "the pool to refill after a cold session", func() bool { return warm() == 2 })
	peertest.WaitFor(t, "a new standby", func() bool { return standbys() == 1 })

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Forward: %v", err)
	}
	done <- nil
	peertest.WaitFor(t, "Forward's pool closed with it", func() bool { return warm() == 0 })
}
