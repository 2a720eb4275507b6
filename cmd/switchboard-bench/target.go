package main

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// server accepts connections on a loopback listener and runs handle for each
// until Close, which also closes every connection still open.
type server struct {
	ln     net.Listener
	handle func(net.Conn)
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

func listen(handle func(net.Conn)) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on loopback: %w", err)
	}
	return listenOn(ln, handle), nil
}

// listenOn serves ln (a TLS listener, say) as listen does.
func listenOn(ln net.Listener, handle func(net.Conn)) *server {
	s := &server{ln: ln, handle: handle, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.accept()
	return s
}

// Addr is the server's host:port.
func (s *server) Addr() string { return s.ln.Addr().String() }

func (s *server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
			s.handle(c)
		}()
	}
}

// Close stops accepting, closes every open connection and waits for the
// handlers to return.
func (s *server) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// echo sends back everything it reads, then half-closes.
func echo(c net.Conn) {
	if _, err := io.Copy(c, c); err == nil {
		_ = closeWrite(c)
	}
}

// sinkBufSize is large so the sink costs the same few syscalls on every path.
const sinkBufSize = 256 << 10

// sink discards everything it reads and, at EOF, answers the byte count as
// a big-endian uint64, so the sender knows every byte arrived.
func sink(c net.Conn) {
	buf := make([]byte, sinkBufSize)
	var n uint64
	for {
		k, err := c.Read(buf)
		n += uint64(k)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return
		}
	}
	var out [8]byte
	binary.BigEndian.PutUint64(out[:], n)
	_, _ = c.Write(out[:])
}

// forward is the plain TCP forwarder, the baseline: for each connection it
// dials target and copies both ways with io.Copy, which Linux turns into
// splice(2) between two TCP sockets. A clean EOF half-closes the other side.
func forward(target string) func(net.Conn) { return forwardWith(target, pipeHalf) }

// forwardWith is a forwarder copying each direction with half.
func forwardWith(target string, half func(dst, src net.Conn)) func(net.Conn) {
	return forwardDial(dialTCP(target), half)
}

// forwardDial is a forwarder to what dial connects to. A TLS connection
// from the listener completes its handshake first, then the forwarder
// dials, as the gateway answers its Control before it opens the session.
func forwardDial(dial func(ctx context.Context) (net.Conn, error), half func(dst, src net.Conn)) func(net.Conn) {
	return func(c net.Conn) {
		if tc, ok := c.(*tls.Conn); ok {
			if err := tc.HandshakeContext(context.Background()); err != nil {
				return
			}
		}
		up, err := dial(context.Background())
		if err != nil {
			return
		}
		defer up.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			half(up, c)
		}()
		half(c, up)
		<-done
	}
}

func pipeHalf(dst, src net.Conn) {
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		src.Close()
		return
	}
	_ = closeWrite(dst)
}

// readWriteHalf copies like the gateway's relay/session.go copyHalf: a
// 32 KiB buffer, Read then Write, never splice(2). A forwarder using it shows
// what not splicing costs, everything else equal.
func readWriteHalf(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				dst.Close()
				src.Close()
				return
			}
		}
		if errors.Is(err, io.EOF) {
			_ = closeWrite(dst)
			return
		}
		if err != nil {
			dst.Close()
			src.Close()
			return
		}
	}
}

// closeWrite half-closes c when it can (TCP, TLS, relay streams), or closes it.
func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
