package relay_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/switchboard/switchboard/relay/wire"
)

// BenchmarkHeartbeat is the gateway's side of an idle Client's heartbeat:
// registered Clients on loopback TCP, one heartbeat sent and its ack read
// per op, round robin over the Clients so that every op wakes a channel
// that was parked. The Client's side writes pre-encoded bytes and reads
// into a fixed buffer, so allocs/op is the gateway's alone; ns/op includes
// both ends' syscalls. For a profile of the gateway's part:
//
//	go test ./relay -run '^$' -bench Heartbeat -cpuprofile cpu.out
//	go tool pprof -top -focus clientLoop relay.test cpu.out
func BenchmarkHeartbeat(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			g := MustStartGateway(b, []string{keyAlpha}, cmpiOf(time.Minute))
			var hb bytes.Buffer
			_ = wire.WriteFrame(&hb, wire.TypeHeartbeat, wire.Empty{})
			var ack bytes.Buffer
			_ = wire.WriteFrame(&ack, wire.TypeHeartbeatAck, wire.Empty{})
			peers := make([]*testPeer, n)
			for i := range peers {
				p := g.MustDial(b, "203.0.113.1")
				p.MustSendHello(b, keyAlpha, wire.RoleClient, fmt.Sprintf("pc-%d", i), "", func(h *wire.Hello) {
					h.RealIP, h.OS, h.Version = "10.0.0.1", "linux/amd64", "bench"
				})
				var w wire.Welcome
				p.MustExpect(b, wire.TypeWelcome, &w)
				peers[i] = p
			}
			buf := make([]byte, ack.Len())
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p := peers[i%n]
				i++
				if _, err := p.Conn.Write(hb.Bytes()); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(p, buf); err != nil {
					b.Fatal(err)
				}
				if !bytes.Equal(buf, ack.Bytes()) {
					b.Fatalf("got % x, want a heartbeat ack", buf)
				}
			}
		})
	}
}
