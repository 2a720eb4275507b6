package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
)

// Measurements taken on every path, each a median over rounds.
const (
	mBulk1    = "bulk_1_stream_mb_s"
	mBulkN    = "bulk_parallel_mb_s"
	mPingP50  = "pingpong_p50_us"
	mPingP99  = "pingpong_p99_us"
	mSetupP50 = "setup_p50_us"
	mSetupP99 = "setup_p99_us"
	// mSetupBurstP50 is set-up with the sessions back to back.
	mSetupBurstP50 = "setup_burst_p50_us"
	// CPU-seconds per GB (10^9 bytes) relayed over both bulk tests of a
	// round, of the process in the gateway's place and in the agent's.
	mGatewayCPU = "gateway_cpu_s_per_gb"
	mAgentCPU   = "agent_cpu_s_per_gb"
)

var measureOrder = []string{mBulk1, mBulkN, mGatewayCPU, mAgentCPU, mPingP50, mPingP99, mSetupP50, mSetupP99, mSetupBurstP50}

const baseline = "forwarder"

// report collects samples and renders them as a table or JSON.
type report struct {
	Machine  machine         `json:"machine"`
	Config   map[string]any  `json:"config"`
	Paths    []*pathFigures  `json:"paths,omitempty"`
	Targets  []targetVerdict `json:"targets"`
	Idle     *idleResult     `json:"idle,omitempty"`
	Failover *failoverResult `json:"failover,omitempty"`
	// Oneshot is the start-to-answer time of one-shot commands.
	Oneshot []*oneshotFigure `json:"oneshot,omitempty"`
	// Bridge compares the console's desktop WebSocket with a Control.
	Bridge  *bridgeResult `json:"bridge,omitempty"`
	streams int
}

type machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	NoFile    uint64 `json:"rlimit_nofile"`
}

// pathFigures are one path's samples and medians.
type pathFigures struct {
	Name    string               `json:"name"`
	Info    bool                 `json:"info,omitempty"`
	Floor   string               `json:"floor,omitempty"` // the same-shape path it is also compared with
	Median  map[string]float64   `json:"median"`
	Samples map[string][]float64 `json:"samples"`
}

type targetVerdict struct {
	Target string  `json:"target"`
	Value  float64 `json:"value"`
	Limit  float64 `json:"limit"`
	Unit   string  `json:"unit"`
	Pass   bool    `json:"pass"`
	Note   string  `json:"note,omitempty"`
}

func newReport(o options, nofile uint64) *report {
	return &report{
		Machine: machine{CPUs: runtime.NumCPU(), CPUModel: cpuModel(), Kernel: kernel(), GoVersion: runtime.Version(), NoFile: nofile},
		Config: map[string]any{
			"rounds": o.rounds, "bulk_mib": o.bulkMB, "parallel_mib_per_stream": o.parallelMB, "streams": o.streams,
			"pings": o.pings, "msg_size": o.msgSize, "sessions": o.sessions, "clients": o.clients,
			"hb_every_s": o.hbEvery.Seconds(), "cpu_window_s": o.cpuWindow.Seconds(), "only": o.only,
			"failover_clients": o.failover.clients, "failover_cycles": o.failover.cycles, "failover_sessions": o.failover.sessions,
			"probe_interval_s": o.failover.probe.Seconds(), "cross_mib": o.failover.crossMB,
		},
		streams: o.streams,
	}
}

func (r *report) addPath(p path) {
	r.Paths = append(r.Paths, &pathFigures{Name: p.Name, Info: p.Info, Floor: p.Floor, Median: map[string]float64{}, Samples: map[string][]float64{}})
}

func (r *report) path(name string) *pathFigures {
	for _, p := range r.Paths {
		if p.Name == name {
			return p
		}
	}
	return nil
}

func (r *report) sample(pathName, m string, v float64) {
	p := r.path(pathName)
	p.Samples[m] = append(p.Samples[m], v)
	p.Median[m] = median(p.Samples[m])
}

// judge compares the medians with the project's targets.
func (r *report) judge() {
	r.Targets = nil
	base := r.path(baseline)
	add := func(t targetVerdict, higherIsBetter bool) {
		if higherIsBetter {
			t.Pass = t.Value >= t.Limit
		} else {
			t.Pass = t.Value <= t.Limit
		}
		r.Targets = append(r.Targets, t)
	}
	for _, rp := range []struct {
		name  string
		ratio float64
	}{{"relay-http", 0.9}, {"relay-tls", 0.6}} {
		p := r.path(rp.name)
		if p == nil || base == nil {
			continue
		}
		for _, m := range []struct{ key, label string }{{mBulk1, "1 stream"}, {mBulkN, fmt.Sprintf("%d streams", r.streams)}} {
			if b, v := base.Median[m.key], p.Median[m.key]; b > 0 && v > 0 {
				add(targetVerdict{Target: fmt.Sprintf("%s throughput, %s, ≥ %.1f× forwarder", rp.name, m.label, rp.ratio), Value: v / b, Limit: rp.ratio, Unit: "×"}, true)
			}
		}
		if b, v := base.Median[mPingP50], p.Median[mPingP50]; b > 0 && v > 0 {
			add(targetVerdict{Target: rp.name + " added p50 latency ≤ 50 µs", Value: v - b, Limit: 50, Unit: "µs"}, false)
		}
		if v := p.Median[mSetupP50]; v > 0 {
			add(targetVerdict{Target: rp.name + " session set-up p50 ≤ 2 ms", Value: v / 1000, Limit: 2, Unit: "ms"}, false)
		}
	}
	// Issue 15: against the same shape without the gateway, in this run.
	for _, rp := range []struct {
		name  string
		ratio float64
	}{{"relay-http", 0.9}, {"relay-tls", 0.85}} {
		p := r.path(rp.name)
		if p == nil || p.Floor == "" || r.path(p.Floor) == nil {
			continue
		}
		f := r.path(p.Floor)
		for _, m := range []struct{ key, label string }{{mBulk1, "1 stream"}, {mBulkN, fmt.Sprintf("%d streams", r.streams)}} {
			if b, v := f.Median[m.key], p.Median[m.key]; b > 0 && v > 0 {
				add(targetVerdict{Target: fmt.Sprintf("%s throughput, %s, ≥ %.2f× %s", rp.name, m.label, rp.ratio, f.Name), Value: v / b, Limit: rp.ratio, Unit: "×"}, true)
			}
		}
	}
	if p := r.path("relay-http"); p != nil && r.path(p.Floor) != nil {
		if b, v := r.path(p.Floor).Median[mPingP50], p.Median[mPingP50]; b > 0 && v > 0 {
			add(targetVerdict{Target: "relay-http ping-pong p50 within 10 µs of " + p.Floor, Value: v - b, Limit: 10, Unit: "µs"}, false)
		}
	}
	if p := r.path("relay-tls"); p != nil {
		if v := p.Median[mGatewayCPU]; v > 0 {
			add(targetVerdict{Target: "relay-tls gateway CPU ≤ 3 s/GB relayed", Value: v, Limit: 3, Unit: "s/GB"}, false)
		}
	}
	for _, rp := range []struct {
		name  string
		limit float64
	}{{"relay-http", 1}, {"relay-tls", 1.5}} {
		if p := r.path(rp.name); p != nil && p.Median[mSetupP50] > 0 {
			add(targetVerdict{Target: fmt.Sprintf("%s set-up through Forward (--listen) p50 ≤ %g ms", rp.name, rp.limit), Value: p.Median[mSetupP50] / 1000, Limit: rp.limit, Unit: "ms"}, false)
			if base != nil && base.Median[mSetupP50] > 0 {
				add(targetVerdict{Target: rp.name + " set-up through Forward ≤ 3× forwarder's", Value: p.Median[mSetupP50] / base.Median[mSetupP50], Limit: 3, Unit: "×"}, false)
			}
		}
	}
	if r.Idle != nil {
		t := targetVerdict{Target: "gateway memory per idle Client ≤ 20 KiB at 100,000 Clients", Value: r.Idle.RSSPerClientKiB, Limit: 20, Unit: "KiB"}
		if r.Idle.Clients < 100000 {
			t.Note = fmt.Sprintf("measured at %d Clients", r.Idle.Clients)
		}
		add(t, false)
	}
	if f := r.Failover; f != nil && f.Failover.Max > 0 {
		add(targetVerdict{Target: "every Client on the secondary within 5 s of kill -9 of the primary", Value: f.Failover.Max / 1000, Limit: 5, Unit: "s",
			Note: fmt.Sprintf("%d Clients, worst of %d cycles", f.Clients, f.Cycles)}, false)
		if f.Sessions > 0 {
			add(targetVerdict{Target: "sessions cut by the fail-back = 0", Value: float64(f.SessionsLost), Limit: 0, Unit: "sessions",
				Note: fmt.Sprintf("of %d", f.Sessions)}, false)
		}
	}
}

func (r *report) writeJSON(w io.Writer) error {
	r.judge()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

func (r *report) writeTable(w io.Writer) {
	r.judge()
	fmt.Fprintf(w, "machine: %d CPUs, %s, Linux %s, %s\n\n", r.Machine.CPUs, r.Machine.CPUModel, r.Machine.Kernel, r.Machine.GoVersion)
	if len(r.Paths) > 0 {
		base := r.path(baseline)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		head := "median of rounds\t"
		for _, p := range r.Paths {
			head += p.Name + "\t"
			if p != base {
				head += "×fwd\t"
			}
			if p.Floor != "" {
				head += "×floor\t"
			}
		}
		fmt.Fprintln(tw, head)
		labels := map[string]string{
			mBulk1: "bulk 1 stream MB/s", mBulkN: fmt.Sprintf("bulk %d streams MB/s", r.streams),
			mGatewayCPU: "gateway CPU s/GB", mAgentCPU: "agent CPU s/GB",
			mPingP50: "ping-pong p50 µs", mPingP99: "ping-pong p99 µs",
			mSetupP50: "set-up p50 µs", mSetupP99: "set-up p99 µs", mSetupBurstP50: "set-up back to back p50 µs",
		}
		ratio := func(v, of float64) string {
			if v == 0 || of == 0 {
				return "\t"
			}
			return fmt.Sprintf("%.2f\t", v/of)
		}
		for _, m := range measureOrder {
			has := false
			for _, p := range r.Paths {
				has = has || len(p.Samples[m]) > 0
			}
			if !has {
				continue
			}
			line := labels[m] + "\t"
			for _, p := range r.Paths {
				if len(p.Samples[m]) == 0 {
					line += "-\t"
				} else if m == mGatewayCPU || m == mAgentCPU {
					line += fmt.Sprintf("%.2f\t", p.Median[m])
				} else {
					line += fmt.Sprintf("%.0f\t", p.Median[m])
				}
				if p != base {
					line += ratio(p.Median[m], base.Median[m])
				}
				if p.Floor != "" {
					if f := r.path(p.Floor); f != nil {
						line += ratio(p.Median[m], f.Median[m])
					} else {
						line += "\t"
					}
				}
			}
			fmt.Fprintln(tw, line)
		}
		if base != nil && len(base.Samples[mPingP50]) > 0 {
			line := "added p50 µs\t\t"
			for _, p := range r.Paths {
				if p == base {
					continue
				}
				line += fmt.Sprintf("%+.0f\t\t", p.Median[mPingP50]-base.Median[mPingP50])
				if p.Floor != "" {
					if f := r.path(p.Floor); f != nil {
						line += fmt.Sprintf("%+.0f\t", p.Median[mPingP50]-f.Median[mPingP50])
					} else {
						line += "\t"
					}
				}
			}
			fmt.Fprintln(tw, line)
		}
		tw.Flush()
		fmt.Fprintln(w, "\nFor context only: forwarder-rw32k is the forwarder copying like relay/session.go copyHalf (32 KiB Read/Write, no splice);")
		fmt.Fprintln(w, "forwarder-2hop is two plain forwarders in a row, the relay's shape (Control → gateway → Client agent → service) without the gateway;")
		fmt.Fprintln(w, "forwarder-2proc is the same two forwarders as two processes of their own, as the gateway and the Client agent are;")
		fmt.Fprintln(w, "forwarder-tls-2proc is those two processes over TLS (bench's ECDSA P-256 certificate, Go's default TLS): the bench is a TLS client of the")
		fmt.Fprintln(w, "front one, which is a TLS client of the back one, which dials the service plain, as Control → gateway ← Client agent → service.")
		fmt.Fprintln(w, "×floor: relay-http against forwarder-2proc, relay-tls against forwarder-tls-2proc (in the added p50 row: µs added over it).")
		fmt.Fprintln(w, "CPU s/GB: utime+stime of the process in the gateway's place (the front forwarder) and the agent's (the back one) over both bulk tests, per 10^9 bytes.")
		fmt.Fprintln(w, "Set-up of relay-http and relay-tls: a new local TCP connection to a listener served by control.Forward (as `control connect --listen`) → first echoed byte.")
	}
	if i := r.Idle; i != nil {
		fmt.Fprintf(w, "\nidle Clients on a fresh plain-HTTP gateway (CMPI 60 s): %d connected in %.1f s\n", i.Clients, i.ConnectSeconds)
		fmt.Fprintf(w, "  RSS        %d KiB → %d KiB: %.1f KiB per Client\n", i.RSSBeforeKiB, i.RSSAfterKiB, i.RSSPerClientKiB)
		fmt.Fprintf(w, "             of which Go stacks %.1f KiB and Go heap in use %.1f KiB per Client (go_memstats_*_inuse_bytes)\n", i.StackPerClientKiB, i.HeapPerClientKiB)
		fmt.Fprintf(w, "  goroutines %.0f → %.0f: %.2f per Client\n", i.GoroutinesBefore, i.GoroutinesAfter, i.GoroutinesPerClient)
		fmt.Fprintf(w, "  CPU        %.2f s over %.0f s with heartbeats paused; %.2f s over %.0f s with %d heartbeats (one per Client every %.0f s)\n",
			i.CPUQuietSeconds, i.WindowSeconds, i.CPUBusySeconds, i.WindowSeconds, i.HeartbeatsSent, i.HeartbeatEverySecond)
		fmt.Fprintf(w, "             %.1f µs per heartbeat → %.3f CPU-seconds per minute for %d Clients at CMPI 60 s (%.2f%% of one core)\n",
			i.CPUPerHeartbeatUs, i.CPUPerMinuteAt60s, i.Clients, i.CPUPerMinuteAt60s/60*100)
		if i.Dropped > 0 {
			fmt.Fprintf(w, "  WARNING: %d heartbeats found their connection dropped\n", i.Dropped)
		}
		if i.WarmClients > 0 {
			fmt.Fprintf(w, "  warm       %d of them then open a standby connection (as after a session): %.1f KiB RSS, %.2f goroutines per warm Client\n",
				i.WarmClients, i.RSSPerWarmKiB, i.GoroutinesPerWarm)
			fmt.Fprintf(w, "             of which Go stacks %.1f KiB and Go heap in use %.1f KiB per warm Client, on top of its idle cost\n", i.StackPerWarmKiB, i.HeapPerWarmKiB)
		}
	}
	if r.Bridge != nil {
		writeBridge(w, r.Bridge)
	}
	if len(r.Oneshot) > 0 {
		writeOneshot(w, r.Oneshot)
	}
	if f := r.Failover; f != nil {
		writeFailover(w, f)
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w, "\ntargets")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, t := range r.Targets {
			verdict := "PASS"
			if !t.Pass {
				verdict = "SHORT"
			}
			note := ""
			if t.Note != "" {
				note = " (" + t.Note + ")"
			}
			fmt.Fprintf(tw, "  %s\t%.2f %s\t%s%s\n", t.Target, t.Value, t.Unit, verdict, note)
		}
		tw.Flush()
	}
}

func writeFailover(w io.Writer, f *failoverResult) {
	fmt.Fprintf(w, "\nfailover: %d Clients with a primary and a secondary (plain HTTP, one PostgreSQL, probe every %.1f s), %d kill -9/restart cycles\n",
		f.Clients, f.ProbeIntervalMs/1000, f.Cycles)
	fmt.Fprintf(w, "  all on the primary %.1f s after starting; secondary /readyz %q; its browse listed all on %s %s\n",
		f.RegisterSeconds, f.StartState, primaryNode, presenceText(f.StartPresenceMs))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "per Client, every cycle, ms\tp50\tp95\tmax\tmissing\t")
	fmt.Fprintf(tw, "kill -9 of the primary → on the secondary\t%.0f\t%.0f\t%.0f\t%d\t\n", f.Failover.P50, f.Failover.P95, f.Failover.Max, f.Failover.Missing)
	fmt.Fprintf(tw, "primary restarted → back on the primary\t%.0f\t%.0f\t%.0f\t%d\t\n", f.Failback.P50, f.Failback.P95, f.Failback.Max, f.Failback.Missing)
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "cycle\tall on secondary ms\tlisted +ms\tsecondary is\trestarted primary up ms\tall back ms\tlisted +ms\tsecondary is\tsessions lost\tMiB each way\t")
	for i, c := range f.PerCycle {
		fmt.Fprintf(tw, "%d\t%.0f\t%s\t%s\t%.0f\t%.0f\t%s\t%s\t%d of %d\t%.1f\t\n", i+1,
			c.FailoverMaxMs, listedMs(c.PresenceSecondaryMs), strings.TrimPrefix(c.StateOnSecondary, "ready: "),
			c.PrimaryStartMs, c.FailbackMaxMs, listedMs(c.PresencePrimaryMs), strings.TrimPrefix(c.StateAfter, "ready: "),
			c.SessionsLost, c.Sessions, c.SessionMiB)
	}
	tw.Flush()
	fmt.Fprintf(w, "  all on secondary: from kill -9; up: /healthz answers; all back: from the restart, start-up included;\n")
	fmt.Fprintf(w, "  listed: a browse through the secondary lists every Client on the node the agents report, ms after them; secondary is: its /readyz\n")
	fmt.Fprintf(w, "  sessions through the secondary across the fail-backs, checked byte for byte: %d of %d lost\n", f.SessionsLost, f.Sessions)
	for _, e := range f.SessionFailures {
		fmt.Fprintf(w, "    %s\n", e)
	}
	if len(f.LogNotes) > 0 {
		fmt.Fprintln(w, "  the gateways' logs warned (counted by message):")
		for _, n := range f.LogNotes {
			fmt.Fprintf(w, "    %s\n", n)
		}
	}
	c := f.Cross
	if c == nil || len(c.Paths) == 0 {
		return
	}
	fmt.Fprintf(w, "\ncross-node sessions: Control on %s (A), Clients on %s (B), against a same-node one (median of rounds)\n", primaryNode, secondaryNode)
	same := c.Paths[0]
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "\t"
	for _, p := range c.Paths {
		if p.Error == "" {
			head += p.Name + "\t"
			if p != same {
				head += "×same\t"
			}
		}
	}
	fmt.Fprintln(tw, head)
	row := func(label string, v func(*crossPath) float64, added bool) {
		line := label + "\t"
		for _, p := range c.Paths {
			if p.Error != "" {
				continue
			}
			switch {
			case added && p == same:
				line += "\t"
			case added:
				line += fmt.Sprintf("%+.0f\t\t", v(p)-v(same))
			default:
				line += fmt.Sprintf("%.0f\t", v(p))
				if p != same {
					line += fmt.Sprintf("%.2f\t", v(p)/v(same))
				}
			}
		}
		fmt.Fprintln(tw, line)
	}
	if same.Error == "" {
		row(fmt.Sprintf("bulk 1 stream MB/s (%d MiB)", c.BulkMiB), func(p *crossPath) float64 { return p.MBs }, false)
		row("ping-pong 1 B p50 µs", func(p *crossPath) float64 { return p.PingP50 }, false)
		row("ping-pong 1 B p99 µs", func(p *crossPath) float64 { return p.PingP99 }, false)
		row("added p50 µs", func(p *crossPath) float64 { return p.PingP50 }, true)
	}
	tw.Flush()
	for _, p := range c.Paths {
		if p.Error != "" {
			fmt.Fprintf(w, "  %s: FAILED: %s\n", p.Name, p.Error)
		} else {
			proof := ""
			switch p.Name {
			case pathCrossNode:
				proof = fmt.Sprintf("; its Client dialled A %d times for %d sessions", p.DialsToA, p.Sessions)
			case pathCrossRelayed:
				proof = fmt.Sprintf("; its Client was refused A %d times for %d sessions", p.DialsToA, p.Sessions)
			}
			fmt.Fprintf(w, "  %s: %s%s\n", p.Name, p.Hops, proof)
		}
	}
}

func presenceText(ms float64) string {
	if ms < 0 {
		return "NOT within the wait"
	}
	return fmt.Sprintf("%.0f ms after the agents", ms)
}

func listedMs(ms float64) string {
	if ms < 0 {
		return "never"
	}
	return fmt.Sprintf("%.0f", ms)
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}
