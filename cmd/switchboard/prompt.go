package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/term"
)

// prompter asks the person at the Control for a password or a code. It
// reads the terminal when there is one; otherwise lines from standard
// input, so scripts and tests can answer through a pipe. With --stdio,
// standard input carries the session, so only the terminal (/dev/tty) can
// be asked.
type prompter struct {
	mu    sync.Mutex // one question at a time on one terminal
	in    *bufio.Reader
	fd    int // terminal file descriptor, or -1
	out   io.Writer
	close func()
}

func (e *cmdEnv) newPrompter(stdio bool) *prompter {
	p := &prompter{fd: -1, out: e.stderr, close: func() {}}
	if stdio {
		tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
		if err != nil {
			return p // nothing to ask: in stays nil
		}
		p.in, p.fd, p.out, p.close = bufio.NewReader(tty), int(tty.Fd()), tty, func() { tty.Close() }
		return p
	}
	p.in = bufio.NewReader(e.stdin)
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.fd = int(f.Fd())
	}
	return p
}

var errNoTerminal = errors.New("no terminal to ask on (with --stdio give the password in SWITCHBOARD_PASSWORD or --password-file)")

// ask shows label and reads one answer; secret answers are not echoed on a
// terminal. ctx ending stops the wait only between lines: a terminal read
// cannot be interrupted portably, and the process is ending then anyway.
func (p *prompter) ask(ctx context.Context, label string, secret bool) (string, error) {
	if p.in == nil {
		return "", errNoTerminal
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return "", err
	}
	fmt.Fprint(p.out, label)
	if secret && p.fd >= 0 {
		b, err := term.ReadPassword(p.fd)
		fmt.Fprintln(p.out)
		if err != nil {
			return "", fmt.Errorf("read from terminal: %w", err)
		}
		return string(b), nil
	}
	line, err := p.in.ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", fmt.Errorf("read answer: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}
