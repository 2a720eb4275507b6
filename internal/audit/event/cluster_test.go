package event

import (
	"strings"
	"testing"
)

func TestClusterEvents(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    Event
		want string
	}{
		{"switched", ClientSwitchedToSecondary("pc-1", "10.0.0.5", "203.0.113.9"), "Client pc-1 switched to the Secondary"},
		{"returned", ClientReturnedToPrimary("pc-1", "10.0.0.5", "203.0.113.9"), "Client pc-1 returned to the Primary"},
		{"moved", ClientMoved("pc-1", "gw-b", "10.0.0.5", "203.0.113.9"), "Client pc-1 moved to node gw-b for load balancing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.e.Message != tc.want {
				t.Errorf("text %q, want %q", tc.e.Message, tc.want)
			}
			if tc.e.Kind != KindGateway {
				t.Errorf("kind %q, want %q: a Client's connect/disconnect pairs must stay pairs", tc.e.Kind, KindGateway)
			}
			if tc.e.Client != "pc-1" || tc.e.RealIP != "10.0.0.5" || tc.e.PublicIP != "203.0.113.9" {
				t.Errorf("fields %+v", tc.e)
			}
			if tc.e.Time.IsZero() || tc.e.Node != "" {
				t.Errorf("time %v, node %q: the time is set, the node is stamped by the sink", tc.e.Time, tc.e.Node)
			}
		})
	}
}

func TestClusterEventsSanitise(t *testing.T) {
	bad := strings.Repeat("x", 500) + "\n01-Jan-26, 00:00:00, Gateway stopped"
	for _, e := range []Event{
		ClientSwitchedToSecondary(bad, bad, bad),
		ClientReturnedToPrimary(bad, bad, bad),
		ClientMoved(bad, bad, bad, bad),
	} {
		if strings.ContainsAny(e.Message+e.Client+e.RealIP+e.PublicIP, "\r\n") {
			t.Errorf("control characters reached the event: %q", e.Message)
		}
		if len(e.Client) > MaxField+len("…") || len(e.Message) > 2*MaxField+100 {
			t.Errorf("event not bounded: client %d bytes, message %d bytes", len(e.Client), len(e.Message))
		}
	}
}
