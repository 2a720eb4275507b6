package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMeasureForwarder runs every path measurement against the plain
// forwarder with tiny sizes: it checks the tool still works, not how fast.
func TestMeasureForwarder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tg, err := startTargets()
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	fwd, err := startForwarders(tg.addrs(), 1, pipeHalf)
	if err != nil {
		t.Fatal(err)
	}
	defer fwd.Close()
	p := tcpPath("forwarder", false, fwd.front)

	rep := newReport(options{streams: 3}, 0)
	rep.addPath(p)
	for _, streams := range []int{1, 3} {
		v, err := bulk(ctx, p, streams, 1<<20+17)
		if err != nil {
			t.Fatalf("bulk, %d streams: %v", streams, err)
		}
		if v <= 0 {
			t.Errorf("bulk, %d streams: %v MB/s", streams, v)
		}
		rep.sample(p.Name, map[int]string{1: mBulk1, 3: mBulkN}[streams], v)
	}
	l, err := pingPong(ctx, p, 50, 5, 64)
	if err != nil {
		t.Fatalf("ping-pong: %v", err)
	}
	if l.P50 <= 0 || l.P99 < l.P50 {
		t.Errorf("ping-pong: %+v", l)
	}
	rep.sample(p.Name, mPingP50, l.P50)
	if l, err = setup(ctx, p, 10, 0); err != nil {
		t.Fatalf("set-up: %v", err)
	}
	rep.sample(p.Name, mSetupP50, l.P50)

	var out bytes.Buffer
	rep.writeTable(&out)
	if !strings.Contains(out.String(), "ping-pong p50") {
		t.Errorf("table lacks ping-pong:\n%s", out.String())
	}
	out.Reset()
	if err := rep.writeJSON(&out); err != nil {
		t.Fatal(err)
	}
}

func TestSummarize(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Microsecond)
	}
	l := summarize(ds)
	if l.P50 != 50 || l.P99 != 99 {
		t.Errorf("summarize 1..100 µs = %+v, want p50 50 and p99 99", l)
	}
	if m := median([]float64{3, 1, 2, 10}); m != 2.5 {
		t.Errorf("median = %v, want 2.5", m)
	}
}

// TestMain lets the test binary be a forwarder process too, as the bench
// binary is for forwarder-2proc.
func TestMain(m *testing.M) {
	if target := os.Getenv(forwardEnv); target != "" {
		if err := serveForwarder(target); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestProcForwarders: two forwarder processes in a row relay to the echo
// service and end when closed.
func TestProcForwarders(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tg, err := startTargets()
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	f, err := startProcForwarders(tg.addrs(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.procs) != 4 {
		t.Errorf("%d processes, want 2 hops × 2 services", len(f.procs))
	}
	p := tcpPath("forwarder-2proc", true, f.front)
	if _, err := pingPong(ctx, p, 20, 2, 64); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, c := range f.procs {
		if c.ProcessState == nil || !c.ProcessState.Exited() {
			t.Errorf("forwarder process %d still runs", c.Process.Pid)
		}
	}
}

// TestProcForwardersTLS: the TLS floor's two processes relay TLS 1.3 to
// the sink and the echo byte for byte, and report their PIDs.
func TestProcForwardersTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tg, err := startTargets()
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	cert, err := makeCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f, err := startProcForwardersTLS(tg.addrs(), cert)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := procPath(tlsPath(floorTLS, true, f.front, cert), f, "")
	if p.GatewayPID == 0 || p.AgentPID == 0 || p.GatewayPID == p.AgentPID {
		t.Errorf("PIDs: gateway %d, agent %d", p.GatewayPID, p.AgentPID)
	}
	c, err := p.Dial(ctx, svcEcho)
	if err != nil {
		t.Fatal(err)
	}
	if st := c.(*tls.Conn).ConnectionState(); st.Version != tls.VersionTLS13 {
		t.Errorf("TLS version %x, want TLS 1.3", st.Version)
	}
	c.Close()
	if _, err := bulk(ctx, p, 2, 1<<20+17); err != nil {
		t.Fatal(err)
	}
	if _, err := pingPong(ctx, p, 20, 2, 64); err != nil {
		t.Fatal(err)
	}
	if _, err := setup(ctx, p, 5, 0); err != nil {
		t.Fatal(err)
	}
}
