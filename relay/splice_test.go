package relay

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// tcpPair is both ends of one loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// Between bare TCP connections a direction is spliced by the kernel, and
// its count is still live: a trickle of five bytes shows while the session
// runs, the final count is exact, and EOF is passed on as a half-close.
func TestSplicedDirectionCountsLive(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the kernel's byte counters are read on Linux only")
	}
	from, src := tcpPair(t) // the Control writes on from; the gateway reads src
	dst, to := tcpPair(t)   // the gateway writes dst; the Client reads to
	// Something received before the copy starts (the handshake) is not
	// the session's.
	if _, err := from.Write([]byte("hello frame")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(src, make([]byte, len("hello frame"))); err != nil {
		t.Fatal(err)
	}
	// Taken before Ready, as runSession does.
	c := counter{k: baseline(src)}
	var total atomic.Int64
	s := &Server{}
	done := make(chan error, 1)
	go func() { done <- s.copyHalf(dst, src, &c, &total) }()

	if _, err := from.Write([]byte("ls -l")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(to, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for c.Load() != 5 {
		if time.Now().After(deadline) {
			t.Fatalf("live count %d a second after 5 bytes went through", c.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if c.live.Load() == nil {
		t.Fatal("the direction was not spliced (no kernel count)")
	}
	if got := c.pending(); got != 5 {
		t.Fatalf("pending %d, want 5 while the splice runs", got)
	}

	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	go func() { _, _ = from.Write(big); _ = from.CloseWrite() }()
	got, err := io.ReadAll(to) // EOF only if the half-close was passed on
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read %d bytes, %v; want the 1 MiB exactly", len(got), err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := c.Load(); n != 5+int64(len(big)) || total.Load() != n || c.pending() != 0 {
		t.Fatalf("after the splice: count %d, total %d, pending %d", n, total.Load(), c.pending())
	}
}
