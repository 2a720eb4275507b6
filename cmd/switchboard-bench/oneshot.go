package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// oneshotRuns is how many times each one-shot command is timed per round.
const oneshotRuns = 10

// oneshotFigure is one command's start-to-answer time, in milliseconds.
type oneshotFigure struct {
	Name    string    `json:"name"`
	Samples []float64 `json:"samples_ms"`
	P50     float64   `json:"p50_ms"`
	Max     float64   `json:"max_ms"`
}

// oneshotBare times `switchboard version`: the floor of any one-shot
// command, a process of this binary starting and exiting.
func oneshotBare(ctx context.Context, bin string) (time.Duration, error) {
	t0 := time.Now()
	if out, err := exec.CommandContext(ctx, bin, "version").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("switchboard version: %w: %s", err, out)
	}
	return time.Since(t0), nil
}

// remember makes a gateways file in dir holding g as "bench", as `control
// gateways add` does, and connects once through it so that the file keeps
// the key's ClientKey.
func remember(ctx context.Context, bin, dir string, g *gateway, ca string) (string, error) {
	file := filepath.Join(dir, "gateways-"+strings.NewReplacer(":", "_", ".", "_").Replace(g.addr)+".json")
	args := []string{"control", "gateways", "add", "bench", "--gateway", g.URL(), "--gateways-file", file}
	if ca != "" {
		args = append(args, "--ca", ca)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(cmd.Environ(), "SWITCHBOARD_KEY="+benchKey)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("control gateways add: %w: %s", err, out)
	}
	if _, err := oneshotStdio(ctx, bin, g, ca, file); err != nil {
		return "", err
	}
	return file, nil
}

// oneshotStdio times what an ssh ProxyCommand costs: from the start of
// `switchboard control connect --stdio CLIENT/echo` to the first byte the
// echo service sends back through it. With file, the Control uses the
// gateway remembered there as "bench" (its ClientKey kept, so no key
// derivation); without, it is given the URL and the key, and derives.
func oneshotStdio(ctx context.Context, bin string, g *gateway, ca, file string) (time.Duration, error) {
	args := []string{"control", "connect", "--gateway", g.URL(), "--stdio", benchClient + "/" + svcEcho}
	if file != "" {
		args = []string{"control", "connect", "bench", "--gateways-file", file, "--stdio", benchClient + "/" + svcEcho}
	}
	if ca != "" {
		args = append(args, "--ca", ca)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	if file == "" {
		cmd.Env = append(cmd.Environ(), "SWITCHBOARD_KEY="+benchKey)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	// The byte waits in the pipe until the session is up, as an ssh
	// client's first bytes do.
	_, werr := in.Write([]byte{42})
	var b [1]byte
	_, rerr := io.ReadFull(out, b[:])
	d := time.Since(t0)
	in.Close()
	_ = cmd.Wait()
	if werr != nil || rerr != nil {
		return 0, fmt.Errorf("control connect --stdio through %s: write %v, read %v: %s", g.URL(), werr, rerr, stderr.Bytes())
	}
	return d, nil
}

// addOneshot records one sample of the named figure.
func (r *report) addOneshot(name string, d time.Duration) {
	ms := float64(d.Microseconds()) / 1e3
	for _, f := range r.Oneshot {
		if f.Name == name {
			f.Samples = append(f.Samples, ms)
			f.P50 = median(f.Samples)
			f.Max = max(f.Max, ms)
			return
		}
	}
	r.Oneshot = append(r.Oneshot, &oneshotFigure{Name: name, Samples: []float64{ms}, P50: ms, Max: ms})
}

func writeOneshot(w io.Writer, fs []*oneshotFigure) {
	fmt.Fprintf(w, "\none-shot commands, process start → answer (%d runs per round)\n", oneshotRuns)
	for _, f := range fs {
		fmt.Fprintf(w, "  %-52s p50 %6.1f ms  max %6.1f ms\n", f.Name, f.P50, f.Max)
	}
}
