package wire

// Frames of a cluster of gateway nodes on one PostgreSQL.
//
//   - Move (gateway → Client): register at Gateway instead of here. A
//     balanced node that holds more than its share sends it; the Client
//     registers there first and only then leaves (make-before-break), and
//     stays where it is when the other node does not take it.
//   - Nodes (gateway → Client): the other active nodes of the cluster that
//     the Client may register with when its own gateway is gone. Sent
//     after Welcome and whenever the list changes; each replaces the last.
//   - PrimaryAlive (secondary → Client): the primary's node renews its
//     lease again, so the Client should probe it now rather than at its
//     next probe.
//   - NodeOpen, NodeSessions, NodeEnd (node → node): the first frame on a
//     node-to-node link, asking for a session to a Client, for the list of
//     the sessions the node brokers (answered with SessionList frames), or
//     for one of them to end (answered with Ready or Error); see
//     docs/protocol.md "Node to node".
//
// A Client believes these only from the gateway it registered with, which
// proved itself by TLS; it still checks every URL and fingerprint it is
// given, since one bad value must not make it dial something odd.

import (
	"fmt"
	"net/url"
	"time"
)

// NodeProtocol is the Upgrade protocol of a node-to-node link.
const NodeProtocol = "switchboard-node/1"

// MaxURLLen bounds a gateway URL in any frame.
const MaxURLLen = 512

// MaxNodes bounds the nodes a Nodes frame lists.
const MaxNodes = 64

// Move asks a Client to register at another node of the cluster.
type Move struct {
	Gateway     string `json:"gateway"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Reason      string `json:"reason"`
}

// NodeAddr is one node a Client may register with.
type NodeAddr struct {
	Name        string `json:"name"`
	URL         string `json:"url"`
	Fingerprint string `json:"fingerprint,omitempty"`
}

// Nodes lists the other nodes a Client may fall back to.
type Nodes struct {
	Nodes []NodeAddr `json:"nodes"`
}

// PrimaryAlive tells a Client on the secondary that the primary is back.
type PrimaryAlive struct {
	Node string `json:"node"`
}

// NodeOpen asks the node holding Client for a session on behalf of a
// Control connected to the sending node. The sending node has checked the
// Control's key (KeyID is the key both hold) and signed its operator in;
// Gateway and Fingerprint are where the Client should open the accept
// connection (the sending node's advertised URL).
type NodeOpen struct {
	SessionID   string `json:"session_id"`
	Client      string `json:"client"`
	KeyID       string `json:"key_id"`
	Service     string `json:"service"`
	Control     string `json:"control"`
	ControlIP   string `json:"control_ip"`
	Operator    string `json:"operator,omitempty"`
	Gateway     string `json:"gateway,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
}

// CheckGatewayURL accepts an http or https URL with a host and nothing
// after it but an optional "/", as --advertise gives.
func CheckGatewayURL(field, s string) error {
	if s == "" || len(s) > MaxURLLen {
		return &FieldError{field, fmt.Sprintf("must be 1 to %d bytes", MaxURLLen)}
	}
	if !printableASCII(s) {
		return &FieldError{field, "must be printable ASCII"}
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return &FieldError{field, "must be an http or https URL of a host, with no path"}
	}
	return nil
}

// CheckFingerprint accepts "" or a SHA-256 fingerprint in lower-case hex.
func CheckFingerprint(field, s string) error {
	if s == "" {
		return nil
	}
	if len(s) != 64 {
		return &FieldError{field, "must be 64 hex digits"}
	}
	return checkHex(field, s)
}

// CheckSessionID accepts a session ID as the gateway makes them.
func CheckSessionID(id string) error { return checkHex("session_id", id) }

// Check validates an Open from a gateway.
func (o *Open) Check() error {
	if err := CheckSessionID(o.SessionID); err != nil {
		return err
	}
	if err := CheckName("service", o.Service); err != nil {
		return err
	}
	if err := CheckText("control", o.Control, MaxNameLen); err != nil {
		return err
	}
	if o.Gateway != "" {
		if err := CheckGatewayURL("gateway", o.Gateway); err != nil {
			return err
		}
	}
	return CheckFingerprint("fingerprint", o.Fingerprint)
}

// Check validates a Move.
func (m *Move) Check() error {
	if err := CheckGatewayURL("gateway", m.Gateway); err != nil {
		return err
	}
	return CheckFingerprint("fingerprint", m.Fingerprint)
}

// Check validates a Nodes list.
func (n *Nodes) Check() error {
	if len(n.Nodes) > MaxNodes {
		return &FieldError{"nodes", fmt.Sprintf("at most %d", MaxNodes)}
	}
	for _, a := range n.Nodes {
		if err := CheckName("node name", a.Name); err != nil {
			return err
		}
		if err := CheckGatewayURL("node url", a.URL); err != nil {
			return err
		}
		if err := CheckFingerprint("node fingerprint", a.Fingerprint); err != nil {
			return err
		}
	}
	return nil
}

// Check validates a NodeOpen. The sending node is authenticated, but a
// node of another version, or a bug, must still not put anything odd into
// events.
func (o *NodeOpen) Check() error {
	if err := checkHex("session_id", o.SessionID); err != nil {
		return err
	}
	if err := CheckName("client", o.Client); err != nil {
		return err
	}
	if err := checkHex("key_id", o.KeyID); err != nil {
		return err
	}
	if err := CheckName("service", o.Service); err != nil {
		return err
	}
	if err := CheckName("control", o.Control); err != nil {
		return err
	}
	if err := CheckText("control_ip", o.ControlIP, MaxInfoLen); err != nil {
		return err
	}
	if o.Operator != "" {
		if err := CheckText("operator", o.Operator, MaxOperatorLen); err != nil {
			return err
		}
	}
	if o.Gateway != "" {
		if err := CheckGatewayURL("gateway", o.Gateway); err != nil {
			return err
		}
	}
	return CheckFingerprint("fingerprint", o.Fingerprint)
}

// SessionInfo is one session a node brokers, for the consoles of the
// other nodes.
type SessionInfo struct {
	ID         string    `json:"id"`
	Control    string    `json:"control"`
	Operator   string    `json:"operator,omitempty"`
	ControlIP  string    `json:"control_ip"`
	Client     string    `json:"client"`
	ClientNode string    `json:"client_node,omitempty"`
	Service    string    `json:"service"`
	Started    time.Time `json:"started"`
	BytesUp    int64     `json:"bytes_up"`
	BytesDown  int64     `json:"bytes_down"`
}

// SessionList is one page of a node's sessions.
type SessionList struct {
	Sessions []SessionInfo `json:"sessions"`
	More     bool          `json:"more"`
}

// NodeEnd asks a node to end one of the sessions it brokers; By is the
// operator who asked, for its event.
type NodeEnd struct {
	SessionID string `json:"session_id"`
	By        string `json:"by"`
}

// NodeDrop asks a node to close the control channel of a Client it holds
// (a console's Disconnect on another node); By is the operator who asked.
type NodeDrop struct {
	Client string `json:"client"`
	KeyID  string `json:"key_id"`
	By     string `json:"by"`
}

// Check validates a NodeDrop.
func (d *NodeDrop) Check() error {
	if err := CheckName("client", d.Client); err != nil {
		return err
	}
	if err := checkHex("key_id", d.KeyID); err != nil {
		return err
	}
	return CheckText("by", d.By, MaxOperatorLen)
}

// Check validates a NodeEnd.
func (e *NodeEnd) Check() error {
	if err := checkHex("session_id", e.SessionID); err != nil {
		return err
	}
	return CheckText("by", e.By, MaxOperatorLen)
}
