package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/internal/peer/control"
)

// bridgeResult compares one desktop session's round trips through the
// console's WebSocket bridge (what noVNC in a browser uses) with the same
// session through a Control (`control connect`), against one gateway, one
// Client agent and one echo service standing in for the VNC server.
type bridgeResult struct {
	Pings       int     `json:"pings"`
	Size        int     `json:"msg_size"`
	ControlP50  float64 `json:"control_p50_us"`
	ControlP99  float64 `json:"control_p99_us"`
	BridgeP50   float64 `json:"bridge_p50_us"`
	BridgeP99   float64 `json:"bridge_p99_us"`
	AddedP50    float64 `json:"bridge_added_p50_us"`
	SessionOpen float64 `json:"bridge_open_ms"` // sign-in excluded: WebSocket dial → first echo
}

const bridgeOperator, bridgePassword = "bench", "bench-operator-password"

// runBridge measures the bridge: a plain-HTTP gateway with an operator, a
// Client offering "vnc" (an echo service), a console sign-in over HTTP,
// then rounds of ping-pong through each way in turn.
func runBridge(ctx context.Context, o options, dir string, rep *report) (err error) {
	echoSrv, err := listen(echo)
	if err != nil {
		return err
	}
	defer echoSrv.Close()
	data := filepath.Join(dir, "bridge-data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return err
	}
	logf("bridge: starting a gateway with an operator")
	g, err := startGateway(ctx, dir, "gateway-bridge", gatewayOpts{bin: o.bin, key: benchKey, cmpi: 60, dataDir: data})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, g.Stop(30*time.Second)) }()
	add := exec.CommandContext(ctx, o.bin, "operators", "--data-dir", data, "add", bridgeOperator, "--admin")
	add.Stdin = strings.NewReader(bridgePassword + "\n")
	if out, err := add.CombinedOutput(); err != nil {
		return fmt.Errorf("bridge: operators add: %w: %s", err, out)
	}
	ag, err := startAgent(dir, "agent-bridge", o.bin, g, benchKey, benchClient, map[string]string{"vnc": echoSrv.Addr()}, "")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, ag.Stop(10*time.Second)) }()
	// The console is https only (the gateway's own self-signed
	// certificate): take its fingerprint on first use, on loopback, and
	// pin it for the console client and the Control alike, so that both
	// ways run over TLS.
	fp, err := certFingerprint(ctx, g.addr)
	if err != nil {
		return err
	}
	d := g.Dialer()
	d.Gateway.TLS, d.Fingerprint = true, fp
	ctl := &control.Control{Dialer: d, Key: benchKey, Name: "bench-bridge", Operator: bridgeOperator,
		Password: func(context.Context) (string, error) { return bridgePassword, nil }}
	if err := waitClient(ctx, ctl, benchClient, 30*time.Second); err != nil {
		return fmt.Errorf("bridge: %w (agent log %s)", err, ag.log.Name())
	}

	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: pinned(fp)}}
	base := "https://" + g.addr
	resp, err := hc.PostForm(base+"/console/signin", url.Values{"name": {bridgeOperator}, "password": {bridgePassword}, "next": {"/console/clients"}})
	if err != nil {
		return fmt.Errorf("bridge: console sign-in: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Request.URL.Path, "/console/clients") {
		return fmt.Errorf("bridge: console sign-in ended at %s (%s)", resp.Request.URL, resp.Status)
	}

	res := &bridgeResult{Pings: o.pings, Size: o.msgSize}
	var ctlP50, ctlP99, brP50, brP99, opens []float64
	for r := range max(o.rounds, 1) {
		logf("bridge: round %d", r+1)
		l, err := pingPong(ctx, path{Name: "control", Dial: func(ctx context.Context, _ string) (net.Conn, error) {
			return ctl.Connect(ctx, benchClient+"/vnc")
		}}, o.pings, 200, o.msgSize)
		if err != nil {
			return err
		}
		ctlP50, ctlP99 = append(ctlP50, l.P50), append(ctlP99, l.P99)
		open, l, err := bridgePingPong(ctx, hc, "wss://"+g.addr+"/console/remote/"+benchClient+"/vnc", o.pings, 200, o.msgSize)
		if err != nil {
			return err
		}
		brP50, brP99, opens = append(brP50, l.P50), append(brP99, l.P99), append(opens, open)
	}
	res.ControlP50, res.ControlP99 = median(ctlP50), median(ctlP99)
	res.BridgeP50, res.BridgeP99 = median(brP50), median(brP99)
	res.AddedP50 = res.BridgeP50 - res.ControlP50
	res.SessionOpen = median(opens)
	rep.Bridge = res
	return nil
}

// bridgePingPong opens the desktop WebSocket as noVNC does and times
// round trips of size-byte binary messages through it.
func bridgePingPong(ctx context.Context, hc *http.Client, wsURL string, n, warm, size int) (openMS float64, l latency, err error) {
	t0 := time.Now()
	ws, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		if resp != nil {
			return 0, l, fmt.Errorf("bridge: WebSocket refused: %s", resp.Status)
		}
		return 0, l, fmt.Errorf("bridge: WebSocket: %w", err)
	}
	defer ws.CloseNow()
	msg := make([]byte, size)
	samples := make([]time.Duration, 0, n)
	got := 0
	// An echo may come back in pieces (the session's bytes are a stream;
	// the bridge sends what each read returns): a round trip ends when all
	// size bytes are back.
	roundTrip := func() error {
		if err := ws.Write(ctx, websocket.MessageBinary, msg); err != nil {
			return err
		}
		for got = 0; got < size; {
			_, b, err := ws.Read(ctx)
			if err != nil {
				return err
			}
			got += len(b)
		}
		return nil
	}
	if err := roundTrip(); err != nil {
		return 0, l, fmt.Errorf("bridge: first echo: %w", err)
	}
	openMS = float64(time.Since(t0).Microseconds()) / 1000
	for i := range warm + n {
		t := time.Now()
		if err := roundTrip(); err != nil {
			return 0, l, fmt.Errorf("bridge: ping-pong: %w", err)
		}
		if i >= warm {
			samples = append(samples, time.Since(t))
		}
	}
	_ = ws.Close(websocket.StatusNormalClosure, "")
	return openMS, summarize(samples), nil
}

func writeBridge(w io.Writer, b *bridgeResult) {
	fmt.Fprintf(w, "\ndesktop session through the console's WebSocket bridge vs through a Control (both over TLS to one gateway, %d round trips of %d bytes)\n", b.Pings, b.Size)
	fmt.Fprintf(w, "  control connect         ping-pong p50 %7.1f µs  p99 %7.1f µs\n", b.ControlP50, b.ControlP99)
	fmt.Fprintf(w, "  WebSocket bridge        ping-pong p50 %7.1f µs  p99 %7.1f µs  (adds %+.1f µs at p50)\n", b.BridgeP50, b.BridgeP99, b.AddedP50)
	fmt.Fprintf(w, "  bridge session open     %.1f ms (WebSocket dial, console session check, relay set-up, first echo)\n", b.SessionOpen)
}

// certFingerprint is the SHA-256 of the certificate addr serves.
func certFingerprint(ctx context.Context, addr string) (string, error) {
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} // read only, then pinned
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("bridge: gateway certificate: %w", err)
	}
	defer c.Close()
	cs := c.(*tls.Conn).ConnectionState()
	sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
	return hex.EncodeToString(sum[:]), nil
}

// pinned trusts exactly the certificate of fingerprint fp.
func pinned(fp string) *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no certificate")
		}
		sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
		if hex.EncodeToString(sum[:]) != fp {
			return errors.New("not the gateway's certificate")
		}
		return nil
	}}
}
