package main

// Real servers for the browser tests of remote control (remote_test.go):
// a VNC desktop (Xvfb with x11vnc, an xterm on it) and an OpenSSH sshd
// with a temporary user, all from Debian's packages (.ci/run installs
// them). A test skips, saying which, only when a binary is missing.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needBinaries skips the test when one of the programs is not installed.
func needBinaries(t testing.TB, names ...string) map[string]string {
	t.Helper()
	paths := map[string]string{}
	var missing []string
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin"} {
				if _, serr := os.Stat(filepath.Join(dir, n)); serr == nil {
					p, err = filepath.Join(dir, n), nil
					break
				}
			}
		}
		if err != nil {
			missing = append(missing, n)
			continue
		}
		paths[n] = p
	}
	if len(missing) > 0 {
		t.Skipf("needs %s (Debian packages: xvfb x11vnc xterm x11-xserver-utils xdotool openssh-server; .ci/run installs them)", strings.Join(missing, ", "))
	}
	return paths
}

// randomWord is a lowercase word no terminal or desktop shows by chance.
func randomWord(prefix string) string {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	b := []byte(prefix)
	for range 10 {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(letters))))
		b = append(b, letters[n.Int64()])
	}
	return string(b)
}

// freeTCPPort is a loopback TCP port nothing listens on right now.
func freeTCPPort(t testing.TB) int {
	t.Helper()
	_, port, err := net.SplitHostPort(freePort(t))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return n
}

// waitListening waits until addr accepts TCP connections.
func waitListening(t testing.TB, what, addr string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if p != nil && p.exited() {
			t.Fatalf("%s exited before listening on %s:\n%s", what, addr, p.output())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not listen on %s: %v\n%s", what, addr, err, p.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// proc is a server process the test started, in its own process group,
// stopped (group and all) when the test ends.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func startProc(t testing.TB, env []string, extra []*os.File, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: filepath.Base(name), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.ExtraFiles = extra
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("output of %s:\n%s", p.name, p.output())
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) output() string {
	if p == nil {
		return ""
	}
	return p.out.String()
}

// stop ends the process's group: TERM, then KILL; safe to call twice.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

// desktop is a VNC server on a virtual X display 800×600 whose root
// window is one known colour, with an xterm in its top-left corner that
// writes the first line typed into it to typedFile.
type desktop struct {
	display   string // ":N"
	addr      string // the VNC server, 127.0.0.1:port
	typedFile string
	xvfb      *proc
	vnc       *proc
	env       []string
}

const (
	desktopW, desktopH = 800, 600
	// desktopColour is the root window's colour, #3366cc.
	desktopR, desktopG, desktopB = 0x33, 0x66, 0xcc
)

// startDesktop starts Xvfb, paints its root, starts x11vnc (with the VNC
// password vncPassword, or none) and the xterm, focused.
func startDesktop(t testing.TB, vncPassword string) *desktop {
	t.Helper()
	bin := needBinaries(t, "Xvfb", "x11vnc", "xsetroot", "xdotool", "xterm")
	dir := t.TempDir()
	d := &desktop{typedFile: filepath.Join(dir, "typed.txt")}

	// Xvfb picks a free display itself and writes its number to fd 3.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	d.xvfb = startProc(t, nil, []*os.File{w}, bin["Xvfb"], "-displayfd", "3", "-screen", "0",
		fmt.Sprintf("%dx%dx24", desktopW, desktopH), "-nolisten", "tcp", "-noreset")
	w.Close()
	num := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		r.Close()
		num <- strings.TrimSpace(line)
	}()
	select {
	case n := <-num:
		if _, err := strconv.Atoi(n); err != nil {
			t.Fatalf("Xvfb gave no display number (%q):\n%s", n, d.xvfb.output())
		}
		d.display = ":" + n
	case <-time.After(15 * time.Second):
		t.Fatalf("Xvfb did not start:\n%s", d.xvfb.output())
	}
	d.env = []string{"DISPLAY=" + d.display, "XAUTHORITY=" + filepath.Join(dir, "no-xauthority")}
	d.run(t, bin["xsetroot"], "-solid", "#3366cc")

	port := freeTCPPort(t)
	args := []string{"-display", d.display, "-rfbport", strconv.Itoa(port), "-localhost", "-forever", "-shared",
		"-noxdamage", "-nossl", "-nocmds", "-norc"}
	if vncPassword != "" {
		args = append(args, "-passwd", vncPassword)
	} else {
		args = append(args, "-nopw")
	}
	d.vnc = startProc(t, d.env, nil, bin["x11vnc"], args...)
	d.addr = fmt.Sprintf("127.0.0.1:%d", port)
	waitListening(t, "x11vnc", d.addr, d.vnc)

	// The xterm, 40×6 at the top-left corner, reads one line into the
	// file; focused explicitly, so the pointer's place does not matter.
	// The file is written whole by a rename, so the test never reads half.
	script := fmt.Sprintf(`read line; printf '%%s\n' "$line" > %[1]s.part && mv %[1]s.part %[1]s; sleep 60`, quoteSh(d.typedFile))
	startProc(t, d.env, nil, bin["xterm"], "-geometry", "40x6+0+0", "-title", "switchboard-test", "-e", "sh", "-c", script)
	var win string
	waitFor(t, "the xterm's window", 15*time.Second, func() bool {
		out, err := d.output(bin["xdotool"], "search", "--onlyvisible", "--name", "switchboard-test")
		win = strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
		return err == nil && win != ""
	})
	d.run(t, bin["xdotool"], "windowfocus", "--sync", win)
	return d
}

func (d *desktop) output(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), d.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (d *desktop) run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := d.output(name, args...); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// typed is what the xterm wrote to its file, "" before a line was typed.
func (d *desktop) typed() string {
	b, err := os.ReadFile(d.typedFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func quoteSh(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// sshServer is OpenSSH's sshd on a loopback port, with a host key of its
// own, password and public-key sign-in, and an authorized_keys file the
// test writes.
type sshServer struct {
	t        testing.TB
	bin      map[string]string
	dir      string
	port     int
	addr     string
	hostKey  string // the private host key file; .pub beside it
	config   string
	authKeys string
	p        *proc
	keys     int
}

// startSSHD generates a host key and starts sshd with it.
func startSSHD(t testing.TB) *sshServer {
	t.Helper()
	bin := needBinaries(t, "sshd", "ssh-keygen", "useradd", "userdel", "chpasswd")
	if os.Geteuid() != 0 {
		t.Skip("the sshd tests create a temporary user and run sshd as root: run them as root (CI does)")
	}
	// sshd wants its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "switchboard-sshd-")
	if err != nil {
		t.Fatal(err)
	}
	// sshd reads these as root and the user's session reads none of them;
	// the directory must be reachable for AuthorizedKeysFile.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &sshServer{t: t, bin: bin, dir: dir, port: freeTCPPort(t), authKeys: filepath.Join(dir, "authorized_keys")}
	s.addr = fmt.Sprintf("127.0.0.1:%d", s.port)
	if err := os.WriteFile(s.authKeys, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s.newHostKey()
	s.start()
	return s
}

// newHostKey generates another host key and points the config at it.
func (s *sshServer) newHostKey() {
	s.t.Helper()
	s.keys++
	s.hostKey = filepath.Join(s.dir, fmt.Sprintf("hostkey%d", s.keys))
	s.keygen(s.hostKey)
	s.config = filepath.Join(s.dir, "sshd_config")
	cfg := fmt.Sprintf(`ListenAddress 127.0.0.1:%d
HostKey %s
PidFile %s
AuthorizedKeysFile %s
PasswordAuthentication yes
PubkeyAuthentication yes
KbdInteractiveAuthentication no
PermitEmptyPasswords no
PermitRootLogin no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
LogLevel VERBOSE
`, s.port, s.hostKey, filepath.Join(s.dir, "sshd.pid"), s.authKeys)
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

func (s *sshServer) keygen(file string) {
	s.t.Helper()
	if out, err := exec.Command(s.bin["ssh-keygen"], "-q", "-t", "ed25519", "-N", "", "-C", "switchboard-test", "-f", file).CombinedOutput(); err != nil {
		s.t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
}

func (s *sshServer) start() {
	s.t.Helper()
	s.p = startProc(s.t, nil, nil, s.bin["sshd"], "-D", "-e", "-f", s.config)
	waitListening(s.t, "sshd", s.addr, s.p)
}

// restartWithNewKey stops sshd and starts it again, on the same port,
// with another host key.
func (s *sshServer) restartWithNewKey() {
	s.t.Helper()
	s.p.stop()
	s.newHostKey()
	s.start()
}

// fingerprint is ssh-keygen's SHA256 fingerprint of the current host key.
func (s *sshServer) fingerprint() string {
	s.t.Helper()
	out, err := exec.Command(s.bin["ssh-keygen"], "-l", "-E", "sha256", "-f", s.hostKey+".pub").Output()
	if err != nil {
		s.t.Fatalf("ssh-keygen -l: %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 || !strings.HasPrefix(f[1], "SHA256:") {
		s.t.Fatalf("ssh-keygen -l printed %q", out)
	}
	return f[1]
}

// authorizeNewKey generates a key pair, authorizes its public half and
// returns the private key's PEM.
func (s *sshServer) authorizeNewKey() string {
	s.t.Helper()
	file := filepath.Join(s.dir, "userkey")
	s.keygen(file)
	pub, err := os.ReadFile(file + ".pub")
	if err != nil {
		s.t.Fatal(err)
	}
	f, err := os.OpenFile(s.authKeys, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	_, err = f.Write(pub)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.t.Fatal(err)
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		s.t.Fatal(err)
	}
	return string(pem)
}

// tempUser creates a local user with a password and a home for the test,
// removed when it ends.
func tempUser(t testing.TB, password string) string {
	t.Helper()
	bin := needBinaries(t, "useradd", "userdel", "chpasswd")
	name := randomWord("sbt")[:12]
	if out, err := exec.Command(bin["useradd"], "-m", "-s", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		// Its sessions' processes may take a moment to go after sshd.
		var out []byte
		var err error
		for range 20 {
			if out, err = exec.Command(bin["userdel"], "-r", name).CombinedOutput(); err == nil {
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
		if out, err = exec.Command(bin["userdel"], "-r", "-f", name).CombinedOutput(); err != nil {
			t.Logf("userdel %s: %v\n%s", name, err, out)
		}
	})
	cmd := exec.Command(bin["chpasswd"])
	cmd.Stdin = strings.NewReader(name + ":" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v\n%s", err, out)
	}
	return name
}

// goroutineLevel is the test process's goroutine count, the gateway's
// included (it runs in-process).
func goroutineLevel() int { return runtime.NumGoroutine() }

// waitGoroutines waits until the goroutines are back to base (within a
// small tolerance: HTTP/2's and the browser connection's come and go).
func waitGoroutines(t testing.TB, base int) {
	t.Helper()
	const tolerance = 8
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := goroutineLevel()
		if n <= base+tolerance {
			t.Logf("goroutines: %d, %d before the browser sessions", n, base)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines stay at %d, %d before the browser sessions:\n%s", n, base, goroutineDump())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// goroutineDump is every goroutine's stack, grouped, for a failure.
func goroutineDump() string {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
	return buf.String()
}
