package relay

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// kernelCount reads how many bytes a TCP connection has received since
// it was made, from the kernel (TCP_INFO's tcpi_bytes_received): the live
// count of a direction the kernel splices, which no user-space code sees.
// It can run ahead of what was written on by at most the socket's receive
// buffer; the splice's own total replaces it when the direction ends.
type kernelCount struct {
	rc   syscall.RawConn
	base uint64
}

// newKernelCount starts counting c's received bytes from now; nil when
// the kernel does not report them (Linux before 4.1 reports zero: c has
// received its HTTP request at least).
func newKernelCount(c *net.TCPConn) *kernelCount {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	k := &kernelCount{rc: rc}
	v, ok := k.received()
	if !ok || v == 0 {
		return nil
	}
	k.base = v
	return k
}

func (k *kernelCount) received() (uint64, bool) {
	var info *unix.TCPInfo
	var err error
	if cerr := k.rc.Control(func(fd uintptr) {
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); cerr != nil || err != nil {
		return 0, false
	}
	return info.Bytes_received, true
}

// read is the bytes received since newKernelCount.
func (k *kernelCount) read() (int64, bool) {
	v, ok := k.received()
	if !ok || v < k.base {
		return 0, false
	}
	return int64(v - k.base), true
}
