//go:build unix

package relay

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

// pipePair is a connected pair of sockets for a local session: unlike
// net.Pipe they buffer, half-close and take deadlines like the peers'
// TCP connections.
func pipePair() (net.Conn, net.Conn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	conn := func(fd int, name string) (net.Conn, error) {
		syscall.CloseOnExec(fd)
		f := os.NewFile(uintptr(fd), name)
		defer f.Close() // FileConn dups it
		return net.FileConn(f)
	}
	a, err := conn(fds[0], "local-session-gateway")
	if err != nil {
		syscall.Close(fds[1])
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	b, err := conn(fds[1], "local-session-control")
	if err != nil {
		a.Close()
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return a, b, nil
}
