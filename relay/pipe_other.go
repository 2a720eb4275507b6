//go:build !unix

package relay

import "net"

// pipePair is a connected pair for a local session; without Unix sockets,
// an in-memory pipe (no half-close).
func pipePair() (net.Conn, net.Conn, error) {
	a, b := net.Pipe()
	return a, b, nil
}
