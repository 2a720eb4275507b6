//go:build linux

package pgembed

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// zombieHelperEnv makes the test binary run zombieHelper instead of the
// tests: see TestRestartAfterKill.
const zombieHelperEnv = "PGEMBED_TEST_ZOMBIE_HELPER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(zombieHelperEnv); dir != "" {
		if err := zombieHelper(dir); err != nil {
			fmt.Fprintln(os.Stderr, "zombie helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// zombieHelper plays a gateway that dies with its server: it starts the
// server on dir, kills the postmaster with SIGKILL without letting pgembed
// stop it, and keeps the dead postmaster a zombie until its stdin closes.
// Being a child subreaper, it becomes the postmaster's parent once pg_ctl
// exits, and it does not reap it, which is what a slow init does: the zombie
// answers kill(pid, 0), so pg_ctl status calls the server running. In a
// process of its own so that the subreaper setting does not adopt the
// servers of the tests running in parallel.
func zombieHelper(dir string) error {
	const prSetChildSubreaper = 36 // <linux/prctl.h>
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", errno)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	inst, err := Start(ctx, dir, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	if inst.Attached() {
		return fmt.Errorf("attached to a server on %s; want a fresh one", dir)
	}
	pid, err := postmasterPID(inst.pgData)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill postmaster %d: %w", pid, err)
	}
	for procStateLetter(pid) != 'Z' {
		if ctx.Err() != nil {
			return fmt.Errorf("postmaster %d did not become a zombie: state %q", pid, procStateLetter(pid))
		}
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Printf("zombie %d\n", pid)
	io.Copy(io.Discard, os.Stdin)
	return nil // exiting hands the zombie to init, which reaps it
}

func postmasterPID(pgData string) (int, error) {
	b, err := os.ReadFile(filepath.Join(pgData, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(first)
}

// procStateLetter returns the state in /proc/PID/stat, 0 if there is none.
func procStateLetter(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	j := bytes.LastIndexByte(b, ')')
	if j < 0 || j+2 >= len(b) {
		return 0
	}
	return b[j+2]
}

// TestRestartAfterKill is the gateway and its server killed together with
// kill -9 and the gateway restarted at once: the postmaster is a zombie that
// pg_ctl status calls running. Start must start a new server rather than
// attach to the dead one and wait readyTimeout for it.
func TestRestartAfterKill(t *testing.T) {
	skipWithoutPostgres(t)
	t.Parallel()
	dir := tempDataDir(t)

	// Not bound to ctx, which ends before the cleanup that waits for it;
	// the helper exits when its stdin closes.
	helper := exec.Command(os.Args[0])
	helper.Env = append(os.Environ(), zombieHelperEnv+"="+dir)
	helper.Stderr = os.Stderr
	stdin, err := helper.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		if err := helper.Wait(); err != nil {
			t.Errorf("zombie helper: %v", err)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("zombie helper: %v", err)
	}
	var pid int
	if _, err := fmt.Sscanf(line, "zombie %d", &pid); err != nil {
		t.Fatalf("zombie helper said %q: %v", line, err)
	}
	// The condition that fooled pg_ctl status.
	if err := syscall.Kill(pid, 0); err != nil || procStateLetter(pid) != 'Z' {
		t.Fatalf("postmaster %d: kill(0) = %v, state %q; want a zombie", pid, err, procStateLetter(pid))
	}

	// Well under readyTimeout, so that falling back to attaching to the
	// dead server fails. It starts only now: initdb in the helper can take
	// long on a busy machine.
	ctx, cancel := context.WithTimeout(t.Context(), restartTimeout)
	defer cancel()
	began := time.Now()
	inst, err := Start(ctx, dir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := inst.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	if inst.Attached() {
		t.Fatal("Start attached to the killed postmaster")
	}
	if got := queryOne(t, ctx, inst.URL(), "SELECT 'up'"); got != "up" {
		t.Fatalf("query = %q", got)
	}
	t.Logf("restart after kill -9 of the postmaster: %v to a working connection", time.Since(began).Round(time.Millisecond))
	newPID, err := postmasterPID(inst.pgData)
	if err != nil {
		t.Fatal(err)
	}
	if newPID == pid {
		t.Fatalf("postmaster.pid still names the killed PID %d", pid)
	}
}
