package peer

import "io"

// Pipe copies both ways between a and b until both directions end. A
// direction that ends cleanly half-closes its destination (CloseWrite when it
// has one, Close otherwise) so the far side sees EOF and may still answer; an
// error in either direction closes both.
func Pipe(a, b io.ReadWriteCloser) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyHalf(a, b)
	}()
	copyHalf(b, a)
	<-done
}

type closeWriter interface{ CloseWrite() error }

func copyHalf(dst, src io.ReadWriteCloser) {
	_, err := io.Copy(dst, src)
	if err != nil {
		dst.Close()
		src.Close()
		return
	}
	if cw, ok := dst.(closeWriter); ok {
		_ = cw.CloseWrite()
	} else {
		dst.Close()
	}
}
