package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// forwardEnv makes the bench binary, started again with it set to a
// target address, a plain forwarder process: it prints its listening
// address and forwards until its standard input closes. Two of them in a
// row are the relay's shape with the relay's process boundaries (the
// gateway and the Client agent are processes of their own), so that the
// cost of crossing processes is measured apart from the gateway's.
const forwardEnv = "SWITCHBOARD_BENCH_FORWARD_TO"

// serveForwarder is main for a forwarder process.
func serveForwarder(target string) error {
	s, err := listen(forward(target))
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Println(s.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent goes away
	return nil
}

// procForwarders are forwarder processes chained hops deep in front of
// each service.
type procForwarders struct {
	procs  []*exec.Cmd
	stdins []io.Closer
	front  map[string]string
}

func startProcForwarders(services map[string]string, hops int) (*procForwarders, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("forwarder processes: %w", err)
	}
	f := &procForwarders{front: make(map[string]string)}
	for name, addr := range services {
		for range hops {
			cmd := exec.Command(self)
			cmd.Env = append(os.Environ(), forwardEnv+"="+addr)
			cmd.Stderr = os.Stderr
			stdin, err := cmd.StdinPipe()
			if err != nil {
				f.Close()
				return nil, err
			}
			out, err := cmd.StdoutPipe()
			if err != nil {
				f.Close()
				return nil, err
			}
			if err := cmd.Start(); err != nil {
				f.Close()
				return nil, fmt.Errorf("forwarder process for %s: %w", name, err)
			}
			f.procs, f.stdins = append(f.procs, cmd), append(f.stdins, stdin)
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("forwarder process for %s: %w", name, err)
			}
			addr = strings.TrimSpace(line)
		}
		f.front[name] = addr
	}
	return f, nil
}

// Close ends the processes by closing their standard input, the way they
// also end when the bench itself dies.
func (f *procForwarders) Close() {
	for _, in := range f.stdins {
		_ = in.Close()
	}
	for _, c := range f.procs {
		_ = c.Wait()
	}
}
