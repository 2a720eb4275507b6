package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds switchboard once per test run, for tests that need real
// processes (signals, standard streams).
func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "switchboard-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "switchboard")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// freePort finds a loopback port that was free a moment ago.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProcess runs the binary with args and returns the process and its
// combined output so far.
func startProcess(t testing.TB, stdin io.Reader, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &out, stdin
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, &out
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitHTTP(t testing.TB, url string) {
	t.Helper()
	waitFor(t, url+" to answer", 30*time.Second, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// TestSIGTERMStopsGracefully runs the gateway, a Client and a Control as
// processes, sends SIGTERM to the gateway and checks the stop event and a
// clean exit.
func TestSIGTERMStopsGracefully(t *testing.T) {
	cfg := baseConfig(t)
	addr := freePort(t)
	gw, out := startProcess(t, nil, "serve", "--listen", addr, "--database-url", cfg.DatabaseURL,
		"--data-dir", cfg.DataDir, "--gateway-key", testKey, "--shutdown-grace", "1s")
	waitHTTP(t, "http://"+addr+"/healthz")

	echo := echoServer(t)
	client, clientOut := startProcess(t, nil, "client", "--gateway", "http://"+addr, "--key", testKey,
		"--name", "pc-proc", "--service", "echo="+echo)
	var listed string
	waitFor(t, "the Client process to register", 20*time.Second, func() bool {
		var b bytes.Buffer
		err := run(context.Background(), []string{"control", "browse", "--gateway", "http://" + addr, "--key", testKey}, nil, &b, io.Discard)
		listed = b.String()
		return err == nil && strings.Contains(listed, "pc-proc")
	})
	if !strings.Contains(listed, "echo") || !strings.Contains(listed, "127.0.0.1") {
		t.Errorf("browse output:\n%s", listed)
	}

	// A Control process with --stdio, as ssh would run it.
	pr, pw := io.Pipe()
	ctl, ctlOut := startProcess(t, pr, "control", "connect", "--gateway", "http://"+addr, "--key", testKey, "--stdio", "pc-proc/echo")
	fmt.Fprintln(pw, "ping over stdio")
	waitFor(t, "the echo on the Control's stdout", 20*time.Second, func() bool {
		return strings.Contains(ctlOut.String(), "ping over stdio")
	})
	pw.Close()
	if err := waitProcess(ctl, 20*time.Second); err != nil {
		t.Fatalf("control --stdio after stdin EOF: %v\n%s", err, ctlOut)
	}

	if err := gw.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitProcess(gw, 30*time.Second); err != nil {
		t.Fatalf("gateway exit after SIGTERM: %v\n%s", err, out)
	}
	logText, err := os.ReadFile(filepath.Join(cfg.DataDir, "logs", "GW001.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(logText)), "\n")
	if last := lines[len(lines)-1]; !strings.HasSuffix(last, ", Gateway stopped") {
		t.Errorf("last log line %q, want the stop event", last)
	}
	msgs := messages(readEvents(t, cfg.DatabaseURL))
	if msgs[len(msgs)-1] != "Gateway stopped" {
		t.Errorf("last stored event %q", msgs[len(msgs)-1])
	}
	waitFor(t, "the Client to notice the gateway went", 10*time.Second, func() bool {
		return strings.Contains(clientOut.String(), "reconnecting")
	})
	_ = client.Process.Signal(syscall.SIGTERM)
	if err := waitProcess(client, 10*time.Second); err != nil {
		t.Errorf("client exit after SIGTERM: %v", err)
	}
}

func waitProcess(cmd *exec.Cmd, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		return fmt.Errorf("still running after %s", timeout)
	}
}

// TestMetrics scrapes /metrics while a Client and a session exist.
func TestMetrics(t *testing.T) {
	g := mustStartGateway(t)
	a := g.startAgent(t, testKey, "pc-metrics", map[string]string{"echo": echoServer(t)})
	g.waitConnected(t, a)
	conn, err := g.control(testKey, "op").Connect(context.Background(), "pc-metrics/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mustEcho(t, conn, bytes.Repeat([]byte("m"), 1000))
	_, _ = g.control("not-a-key-here", "op").Browse(context.Background())

	resp, err := http.Get(g.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "switchboard_") {
			name, val, _ := strings.Cut(line, " ")
			got[name] = val
		}
	}
	for name, want := range map[string]string{
		"switchboard_clients_connected":                                   "1",
		"switchboard_node_standby":                                        "0",
		"switchboard_sessions_active":                                     "1",
		"switchboard_session_setups_total":                                "1",
		`switchboard_relayed_bytes_total{direction="control_to_client"}`:  "1000",
		`switchboard_relayed_bytes_total{direction="client_to_control"}`:  "1000",
		`switchboard_security_check_failures_total{check="browse"}`:       "1",
		`switchboard_security_check_failures_total{check="key_mismatch"}`: "0",
		"switchboard_licence_rejections_total":                            "0",
	} {
		if got[name] != want {
			t.Errorf("%s = %q, want %s", name, got[name], want)
		}
	}
	if _, ok := got["switchboard_events_written_total"]; !ok {
		t.Error("switchboard_events_written_total missing")
	}
}

// TestMetricsRestricted serves /metrics only to the allowed networks.
func TestMetricsRestricted(t *testing.T) {
	cfg := baseConfig(t)
	cfg.GatewayKeys = []string{testKey}
	cfg.MetricsAllow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	g := mustStartGatewayConfig(t, cfg)
	resp, err := http.Get(g.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("/metrics from 127.0.0.1 with only 10.0.0.0/8 allowed: %d", resp.StatusCode)
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200} {
		resp, err := http.Get(g.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s = %d", path, resp.StatusCode)
		}
	}
}
