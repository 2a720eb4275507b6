// Package metrics exposes the gateway's state to Prometheus: connected
// Clients, active sessions and bytes relayed are read from the relay when
// scraped, and what happened (session set-ups, security-check failures,
// licence rejections) is counted from the event stream on its way to the
// event log, so the relay's hot paths carry no metrics code at all.
package metrics

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/relay"
)

// Sources are the live figures read at scrape time.
type Sources struct {
	Relay         func() relay.Stats
	EventsPending func() int
	EventsWritten func() uint64
	// EventsQuarantined counts events the store refused for good (moved to
	// the event log's quarantine file); nil exports nothing.
	EventsQuarantined func() uint64
	// EventsDropped counts events lost because the event log's memory or
	// spool was full; nil exports nothing.
	EventsDropped func() uint64
	// Standby is true while the node is a secondary holding no Client;
	// nil exports nothing.
	Standby func() bool
}

// Metrics holds the registry and the counters fed by events.
type Metrics struct {
	reg            *prometheus.Registry
	sessionSetups  prometheus.Counter
	securityFailed *prometheus.CounterVec
	licence        prometheus.Counter
	clientConnects prometheus.Counter
}

// New registers every metric on a registry of its own.
func New(src Sources) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		reg: reg,
		sessionSetups: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_session_setups_total", Help: "Sessions brokered between a Control and a Client.",
		}),
		securityFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_security_check_failures_total", Help: "Failed security checks, by check (client, browse, control, key_mismatch, unencrypted).",
		}, []string{"check"}),
		licence: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_licence_rejections_total", Help: "Clients rejected by the licence limit.",
		}),
		clientConnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_client_connects_total", Help: "Client registrations accepted.",
		}),
	}
	for _, c := range []string{event.CheckClient, event.CheckBrowse, event.CheckControl, event.CheckKeyMismatch, event.CheckUnencrypted, event.CheckSignin, event.CheckRemote} {
		m.securityFailed.WithLabelValues(c) // present at zero, so rate() works from the start
	}
	stat := func(f func(relay.Stats) float64) func() float64 {
		return func() float64 { return f(src.Relay()) }
	}
	reg.MustRegister(m.sessionSetups, m.securityFailed, m.licence, m.clientConnects,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_clients_connected", Help: "Clients connected to this gateway node."},
			stat(func(s relay.Stats) float64 { return float64(s.Clients) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_sessions_active", Help: "Sessions in progress on this gateway node."},
			stat(func(s relay.Stats) float64 { return float64(s.Sessions) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_relayed_bytes_total", Help: "Session bytes relayed, by direction.", ConstLabels: prometheus.Labels{"direction": "control_to_client"}},
			stat(func(s relay.Stats) float64 { return float64(s.BytesUp) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_relayed_bytes_total", Help: "Session bytes relayed, by direction.", ConstLabels: prometheus.Labels{"direction": "client_to_control"}},
			stat(func(s relay.Stats) float64 { return float64(s.BytesDown) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_warm_connections", Help: "Connections waiting on this node to start a session at once, by side: a Client's standby, a Control's warm one.", ConstLabels: prometheus.Labels{"side": "client"}},
			stat(func(s relay.Stats) float64 { return float64(s.Standbys) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_warm_connections", Help: "Connections waiting on this node to start a session at once, by side: a Client's standby, a Control's warm one.", ConstLabels: prometheus.Labels{"side": "control"}},
			stat(func(s relay.Stats) float64 { return float64(s.Warm) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_warm_sessions_total", Help: "Session set-ups that took a warm path, by side: an Open sent on a Client's standby, a target named on a Control's warm connection.", ConstLabels: prometheus.Labels{"side": "client"}},
			stat(func(s relay.Stats) float64 { return float64(s.OpensOnStandby) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_warm_sessions_total", Help: "Session set-ups that took a warm path, by side: an Open sent on a Client's standby, a target named on a Control's warm connection.", ConstLabels: prometheus.Labels{"side": "control"}},
			stat(func(s relay.Stats) float64 { return float64(s.WarmConnects) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_events_written_total", Help: "Events written to PostgreSQL."},
			func() float64 { return float64(src.EventsWritten()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_events_queued", Help: "Events waiting to be written to PostgreSQL (in memory or spooled)."},
			func() float64 { return float64(src.EventsPending()) }),
	)
	if src.EventsQuarantined != nil {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_events_quarantined_total", Help: "Events PostgreSQL refused for good, kept in the quarantine file instead."},
			func() float64 { return float64(src.EventsQuarantined()) }))
	}
	if src.EventsDropped != nil {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_events_dropped_total", Help: "Events lost because the event queue or spool was full."},
			func() float64 { return float64(src.EventsDropped()) }))
	}
	if src.Standby != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_node_standby",
			Help: "1 while this node is a secondary in standby (it holds no Clients), 0 otherwise."},
			func() float64 {
				if src.Standby() {
					return 1
				}
				return 0
			}))
	}
	return m
}

// Sink counts events and passes them on to next.
func (m *Metrics) Sink(next event.Sink) event.Sink {
	return event.SinkFunc(func(e event.Event) {
		switch {
		case e.Kind == event.KindSessionStart:
			m.sessionSetups.Inc()
		case e.Kind == event.KindClientConnect:
			m.clientConnects.Inc()
		case e.Kind == event.KindLicence:
			m.licence.Inc()
		case e.Check != "":
			m.securityFailed.WithLabelValues(e.Check).Inc()
		}
		next.Emit(e)
	})
}

// Handler serves the metrics to the given networks only.
func (m *Metrics) Handler(allow []netip.Prefix) http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowed(r.RemoteAddr, allow) {
			http.Error(w, "metrics are not served to this address", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func allowed(remote string, allow []netip.Prefix) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ParseAllow parses a comma-separated list of CIDR prefixes or addresses.
func ParseAllow(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if !strings.Contains(item, "/") {
			a, err := netip.ParseAddr(item)
			if err != nil {
				return nil, fmt.Errorf("metrics allow list: %q: %w", item, err)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return nil, fmt.Errorf("metrics allow list: %q: %w", item, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
