package relay_test

import (
	"bytes"
	"testing"
	"testing/synctest"
	"time"

	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/relay"
	"github.com/switchboard/switchboard/relay/wire"
)

func cmpiOf(d time.Duration) func(*relay.Config) { return func(c *relay.Config) { c.CMPI = d } }

// heartbeatEvery sends heartbeats every d until stop is closed, as the
// agent does every CMPI.
func heartbeatEvery(c *testClient, d time.Duration, stop <-chan struct{}) (done <-chan struct{}) {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		tk := time.NewTicker(d)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				if c.Heartbeat() != nil {
					return
				}
			}
		}
	}()
	return ch
}

// TestHeartbeatExpiry runs in a synctest bubble over net.Pipe: the clock is
// fake, so "three CMPIs of silence" is exact, and the test can check both
// that a silent Client is dropped and that it is not dropped a moment
// early, without sleeping for real or depending on the machine's load.
func TestHeartbeatExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const cmpi = time.Second
		g := MustStartPipeGateway(t, []string{keyAlpha}, cmpiOf(cmpi))
		beating := g.MustRegister(t, keyAlpha, "beating", "10.0.0.1", "203.0.113.1", "vnc")
		silent := g.MustRegister(t, keyAlpha, "silent", "10.0.0.2", "203.0.113.2", "vnc")

		stop := make(chan struct{})
		done := heartbeatEvery(beating, cmpi, stop)
		defer func() { close(stop); <-done }()

		// The silent Client beats twice and then stops.
		for range 2 {
			time.Sleep(cmpi)
			if err := silent.Heartbeat(); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if n := silent.Acks(); n != 2 {
			t.Fatalf("silent Client got %d acks for 2 heartbeats", n)
		}

		// Three CMPIs of silence are tolerated...
		time.Sleep(3*cmpi - time.Millisecond)
		synctest.Wait()
		if !silent.Alive() {
			t.Fatal("Client dropped before three CMPIs of silence")
		}
		// ...and not a moment more.
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if silent.Alive() {
			t.Fatal("Client still connected after three CMPIs of silence")
		}
		e := g.Events.MustWait(t, "Client silent Disconnected")
		if e.Kind != event.KindClientDisconnect || e.RealIP != "10.0.0.2" || e.PublicIP != "203.0.113.2" ||
			e.Reason != "no heartbeat for "+(3*cmpi).String() {
			t.Fatalf("disconnected event = %+v", e)
		}

		// The Client that beats stays, however long it stays.
		time.Sleep(50 * cmpi)
		synctest.Wait()
		if !beating.Alive() {
			t.Fatalf("heartbeating Client dropped: %v", beating.readErr)
		}
		if n := beating.Acks(); n < 50 {
			t.Fatalf("heartbeating Client got %d acks in 50 CMPIs", n)
		}
		if got := names(clientInfos(g)); len(got) != 1 || got[0] != "beating" {
			t.Fatalf("Clients = %v, want [beating]", got)
		}
		g.Events.MustNotHave(t, "Client beating Disconnected")
	})
}

// TestSetCMPI: a new interval is told to every connected Client and is
// what their silence is measured against from then on.
func TestSetCMPI(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := MustStartPipeGateway(t, []string{keyAlpha}, cmpiOf(2*time.Second))
		c := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.1", "203.0.113.1", "vnc")
		if c.Welcome.CMPISeconds != 2 || c.Welcome.Node != testNode {
			t.Fatalf("welcome = %+v, want cmpi_seconds 2 from %s", c.Welcome, testNode)
		}

		g.SetCMPI(10 * time.Second)
		var cfg wire.Config
		c.MustNextFrame(t, wire.TypeConfig, &cfg)
		if cfg.CMPISeconds != 10 || g.CMPI() != 10*time.Second {
			t.Fatalf("config = %+v, CMPI() = %s; want 10 s", cfg, g.CMPI())
		}
		// The deadline of the frame being waited for was set under the old
		// interval; from the next frame on, three new intervals count.
		if err := c.Heartbeat(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30*time.Second - time.Millisecond)
		synctest.Wait()
		if !c.Alive() {
			t.Fatal("Client dropped within three of the new, longer intervals")
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if c.Alive() {
			t.Fatal("Client still connected after three new intervals of silence")
		}
	})
}

// TestHeartbeatsBackToBack: heartbeats that arrive together, some split
// across reads and one with no payload at all, are each answered, and the
// channel stays in step for the frames after them.
func TestHeartbeatsBackToBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := MustStartPipeGateway(t, []string{keyAlpha}, cmpiOf(time.Second))
		c := g.MustRegister(t, keyAlpha, "pc-1", "10.0.0.1", "203.0.113.1", "vnc")
		var b bytes.Buffer
		for range 3 {
			_ = wire.WriteFrame(&b, wire.TypeHeartbeat, wire.Empty{})
		}
		b.Write([]byte{byte(wire.TypeHeartbeat), 0, 0, 0, 0})
		_ = wire.WriteFrame(&b, wire.TypeHeartbeat, wire.Empty{})
		if _, err := c.Conn.Write(b.Bytes()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if n := c.Acks(); n != 5 {
			t.Fatalf("5 heartbeats in one write got %d acks", n)
		}
		// The frame after them is read as one, not as the tail of a
		// heartbeat: a channel out of step would read garbage and drop.
		if err := c.Heartbeat(); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if n := c.Acks(); n != 6 || !c.Alive() {
			t.Fatalf("after one more heartbeat: %d acks, alive %v; want 6 and alive", n, c.Alive())
		}
	})
}
