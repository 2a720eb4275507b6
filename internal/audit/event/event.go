// Package event defines Switchboard's audited facts: the Event record written
// to PostgreSQL and to the GW log files, and one constructor per event whose
// text users and their log parsers rely on. The texts live here and nowhere
// else, so that the relay, the console and the tests cannot drift apart.
package event

import (
	"fmt"
	"strconv"
	"time"
)

// Kind classifies an event for filtering; the message carries the exact text.
type Kind string

// Kinds of events. They are stored as text, so renaming one is a migration.
const (
	KindGateway          Kind = "gateway"           // start, stop, listen, reload
	KindClientConnect    Kind = "client_connect"    // Client connected
	KindClientDisconnect Kind = "client_disconnect" // Client disconnected
	KindSessionStart     Kind = "session_start"     // Control connected to Client
	KindSessionEnd       Kind = "session_end"       // Control disconnected from Client
	KindLicence          Kind = "licence"           // licence limit exceeded
	KindSecurity         Kind = "security"          // a security check failed
	KindConfig           Kind = "config"            // configuration changed
	KindOperator         Kind = "operator"          // operator sign-in and friends
)

// Event is one audited fact. Empty fields are simply not known for that event.
type Event struct {
	ID       int64 // assigned by the store; zero until written
	Time     time.Time
	Kind     Kind
	Message  string
	Client   string
	Control  string
	Operator string
	RealIP   string
	PublicIP string
	Node     string
	// Reason says why a Client or session ended where the text does not
	// (the texts stay as the design words them, for log parsers).
	Reason string
	// Check names the failed security check (CheckClient, ...) for metrics;
	// it is not stored, the message says the same to people.
	Check string
}

// Security checks, as counted in metrics.
const (
	CheckClient      = "client"
	CheckBrowse      = "browse"
	CheckControl     = "control"
	CheckKeyMismatch = "key_mismatch"
	CheckUnencrypted = "unencrypted"
	CheckSignin      = "signin"
	// CheckRemote is a browser desktop or terminal refused: no permission,
	// or an SSH host key that is not the pinned one.
	CheckRemote = "remote"
)

// LogTimeLayout is the date and time of a GW log line: "29-Jun-22, 16:11:20".
const LogTimeLayout = "02-Jan-06, 15:04:05"

// LogLine renders the event as one line of a GW log file, without newline:
//
//	29-Jun-22, 16:11:20, Connectivity Server started, Max. Licensed connections: 5, Listening port: 443
func (e Event) LogLine() string {
	return e.Time.Format(LogTimeLayout) + ", " + e.Message
}

func newEvent(kind Kind, msg string) Event {
	return Event{Time: time.Now(), Kind: kind, Message: msg}
}

// Running is the first event of a start: product, version and platform.
func Running(product, version, os string) Event {
	return newEvent(KindGateway, fmt.Sprintf("%s %s, running on %s", product, version, os))
}

// GatewayStarted reports a successful start; maxClients <= 0 means unlimited.
func GatewayStarted(maxClients int) Event {
	return newEvent(KindGateway, "Gateway started. Max licensed connections: "+limitText(maxClients))
}

func limitText(n int) string {
	if n <= 0 {
		return "unlimited"
	}
	return strconv.Itoa(n)
}

// FailedToStart reports that the gateway could not start.
func FailedToStart() Event { return newEvent(KindGateway, "Failed to start Gateway") }

// GatewayStopped is the last event of an orderly stop.
func GatewayStopped() Event { return newEvent(KindGateway, "Gateway stopped") }

// ReasonAbnormalStop is the Reason of the ends recorded for a run that
// stopped without its stop event.
const ReasonAbnormalStop = "gateway stopped abnormally"

// GatewayStoppedAbnormally is recorded at a start for the previous run,
// which ended without "Gateway stopped" (killed, or the machine lost
// power); its time is that run's last recorded event.
func GatewayStoppedAbnormally(last time.Time) Event {
	e := newEvent(KindGateway, "Gateway stopped abnormally")
	e.Time, e.Reason = last, ReasonAbnormalStop
	return e
}

// GatewayStartedPrefix begins every GatewayStarted text.
const GatewayStartedPrefix = "Gateway started."

// StopTexts are the texts that end a run.
func StopTexts() []string { return []string{"Gateway stopped", "Gateway stopped abnormally"} }

// Listening reports one bound listening port.
func Listening(port int) Event {
	return newEvent(KindGateway, fmt.Sprintf("Listening on port %d", port))
}

// FailedToBind reports a listening port that could not be bound.
func FailedToBind(port int) Event {
	return newEvent(KindGateway, fmt.Sprintf("Failed to bind to listening port %d", port))
}

// ReloadingConfiguration reports that stored configuration is being applied.
func ReloadingConfiguration() Event { return newEvent(KindConfig, "Reloading configuration") }

// ListenPortChanged warns that rebinding ends every connection.
func ListenPortChanged() Event {
	return newEvent(KindConfig, "Listen port has changed. All current connections and sessions will be terminated.")
}

// ReloadingKeys reports that the set of gateway keys changed.
func ReloadingKeys() Event { return newEvent(KindConfig, "Reloading Gateway Keys") }

// NoKeys warns that Clients and Controls are refused until a key exists.
func NoKeys() Event {
	return newEvent(KindConfig, "No Gateway Keys configured. Client and Control connections are refused until a key is added")
}

// ClientConnected reports a Client that registered.
func ClientConnected(client, realIP, publicIP string) Event {
	client, realIP, publicIP = Safe(client), Safe(realIP), Safe(publicIP)
	e := newEvent(KindClientConnect, fmt.Sprintf("Client %s connected", client))
	e.Client, e.RealIP, e.PublicIP = client, realIP, publicIP
	return e
}

// ClientDisconnected reports a Client that went away, for whatever reason.
// The capital D is the design's text, kept for log parsers.
func ClientDisconnected(client, realIP, publicIP string) Event {
	client, realIP, publicIP = Safe(client), Safe(realIP), Safe(publicIP)
	e := newEvent(KindClientDisconnect, fmt.Sprintf("Client %s Disconnected", client))
	e.Client, e.RealIP, e.PublicIP = client, realIP, publicIP
	return e
}

// SessionStarted reports a Control connected to a Client.
func SessionStarted(control, client, publicIP string) Event {
	control, client, publicIP = Safe(control), Safe(client), Safe(publicIP)
	e := newEvent(KindSessionStart, fmt.Sprintf("Control %s connected to Client %s", control, client))
	e.Control, e.Client, e.PublicIP = control, client, publicIP
	return e
}

// SessionEnded reports a Control disconnected from a Client.
func SessionEnded(control, client, publicIP string) Event {
	control, client, publicIP = Safe(control), Safe(client), Safe(publicIP)
	e := newEvent(KindSessionEnd, fmt.Sprintf("Control %s disconnected from Client %s", control, client))
	e.Control, e.Client, e.PublicIP = control, client, publicIP
	return e
}

// SessionFailed reports a session a Control asked for that never started:
// the Client could not reach its service, did not answer, or its node
// could not be reached. reason says which.
func SessionFailed(control, client, publicIP, reason string) Event {
	control, client, publicIP = Safe(control), Safe(client), Safe(publicIP)
	e := newEvent(KindSessionEnd, fmt.Sprintf("Control %s could not connect to Client %s", control, client))
	e.Control, e.Client, e.PublicIP, e.Reason = control, client, publicIP, OneLine(reason)
	return e
}

// SessionTerminated reports an administrator ending a session.
func SessionTerminated(control, client, operator string) Event {
	control, client, operator = Safe(control), Safe(client), Safe(operator)
	e := newEvent(KindSessionEnd, fmt.Sprintf("Session between Control %s and Client %s terminated by operator %s", control, client, operator))
	e.Control, e.Client, e.Operator = control, client, operator
	e.Reason = "terminated by operator " + operator
	return e
}

// LicenceExceeded reports a Client rejected by the licence limit.
func LicenceExceeded(client, realIP, publicIP string) Event {
	client, realIP, publicIP = Safe(client), Safe(realIP), Safe(publicIP)
	e := newEvent(KindLicence, fmt.Sprintf("Licence exceed. Rejecting connection from Client %s (%s, %s)", client, realIP, publicIP))
	e.Client, e.RealIP, e.PublicIP = client, realIP, publicIP
	return e
}

// ClientSecurityFailed reports a Client whose key is not on the gateway.
func ClientSecurityFailed(client, realIP, publicIP string) Event {
	client, realIP, publicIP = Safe(client), Safe(realIP), Safe(publicIP)
	e := newEvent(KindSecurity, fmt.Sprintf("Security check failed for Client %s (%s). Terminating connection from %s", client, realIP, publicIP))
	e.Client, e.RealIP, e.PublicIP = client, realIP, publicIP
	e.Check = CheckClient
	return e
}

// BrowseSecurityFailed reports a Control browse with a key not on the gateway.
func BrowseSecurityFailed(publicIP string) Event {
	publicIP = Safe(publicIP)
	e := newEvent(KindSecurity, fmt.Sprintf("Security check failed for Control browse. Terminating connection from %s", publicIP))
	e.PublicIP = publicIP
	e.Check = CheckBrowse
	return e
}

// ControlSecurityFailed reports a Control connect with a key not on the gateway.
func ControlSecurityFailed(control, client, publicIP string) Event {
	control, client, publicIP = Safe(control), Safe(client), Safe(publicIP)
	e := newEvent(KindSecurity, fmt.Sprintf("Security check failed for Control %s. Rejecting connection request to Client %s from %s", control, client, publicIP))
	e.Control, e.Client, e.PublicIP = control, client, publicIP
	e.Check = CheckControl
	return e
}

// KeyMismatch reports a Control whose key is valid but not the Client's.
func KeyMismatch(control, client, publicIP string) Event {
	control, client, publicIP = Safe(control), Safe(client), Safe(publicIP)
	e := newEvent(KindSecurity, fmt.Sprintf("Client/Control security check failed for Control %s. Rejecting connection request to Client %s from %s", control, client, publicIP))
	e.Control, e.Client, e.PublicIP = control, client, publicIP
	e.Check = CheckKeyMismatch
	return e
}

// UnencryptedRefused reports a Client or Control refused for not using TLS
// while the gateway blocks unencrypted peers.
func UnencryptedRefused(publicIP string) Event {
	publicIP = Safe(publicIP)
	e := newEvent(KindSecurity, fmt.Sprintf("Unencrypted connection refused from %s. This gateway requires encrypted communications", publicIP))
	e.PublicIP = publicIP
	e.Check = CheckUnencrypted
	return e
}

// OperatorSignedIn reports an operator's successful sign-in, at the console
// or at a Control.
func OperatorSignedIn(operator, ip string) Event {
	operator, ip = Safe(operator), Safe(ip)
	e := newEvent(KindOperator, fmt.Sprintf("Operator %s signed in from %s", operator, ip))
	e.Operator, e.PublicIP = operator, ip
	return e
}

// SigninFailed reports a wrong password or second factor, an unknown
// operator, or an attempt on a locked account.
func SigninFailed(operator, ip string) Event {
	operator, ip = Safe(operator), Safe(ip)
	e := newEvent(KindOperator, fmt.Sprintf("Sign-in failed for operator %s from %s", operator, ip))
	e.Operator, e.PublicIP = operator, ip
	e.Check = CheckSignin
	return e
}

// OperatorLockedOut reports an operator refused from one address (an IPv4
// address or an IPv6 /64) after repeated failures from it; the operator's
// sign-ins from other addresses go on.
func OperatorLockedOut(operator, address, ip string) Event {
	operator, address, ip = Safe(operator), Safe(address), Safe(ip)
	e := newEvent(KindOperator, fmt.Sprintf("Operator %s locked out for %s", operator, address))
	e.Operator, e.PublicIP = operator, ip
	return e
}

// DuoFailOpen reports an operator let in without Duo because Duo could not
// be reached and an administrator chose to fail open.
func DuoFailOpen(operator, ip string) Event {
	operator, ip = Safe(operator), Safe(ip)
	e := newEvent(KindOperator, fmt.Sprintf("Duo unreachable. Operator %s admitted from %s without Duo Push (fail open)", operator, ip))
	e.Operator, e.PublicIP = operator, ip
	return e
}

// ControlTokenRevoked reports a Control sign-in ended from the console.
func ControlTokenRevoked(by, operator string) Event {
	by, operator = Safe(by), Safe(operator)
	e := newEvent(KindOperator, fmt.Sprintf("Operator %s revoked a Control sign-in of operator %s", by, operator))
	e.Operator = by
	return e
}

// TOTPEnrolled reports an operator who set up an authenticator app.
func TOTPEnrolled(operator string) Event {
	operator = Safe(operator)
	e := newEvent(KindOperator, fmt.Sprintf("Operator %s enrolled TOTP", operator))
	e.Operator = operator
	return e
}

// NodeJoined reports a gateway node that claimed its name in the node
// registry: its role (standalone, primary, secondary, balanced) and the
// URL it advertises to the other nodes.
func NodeJoined(node, role, url string) Event {
	node, role, url = Safe(node), Safe(role), Safe(url)
	return newEvent(KindGateway, fmt.Sprintf("Node %s joined the cluster as %s (%s)", node, role, url))
}

// NodeLeft reports a gateway node that stopped in order and gave its name up.
func NodeLeft(node string) Event {
	node = Safe(node)
	return newEvent(KindGateway, fmt.Sprintf("Node %s left the cluster", node))
}

// NodeLost reports a gateway node whose lease ran out without an orderly
// stop (killed, crashed, or cut off from the database); exactly one node of
// the cluster writes it.
func NodeLost(node string) Event {
	node = Safe(node)
	return newEvent(KindGateway, fmt.Sprintf("Node %s lost", node))
}

// Sink receives events. Emit must never block the caller for I/O: the relay
// calls it on its hot paths.
type Sink interface {
	Emit(Event)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(Event)

// Emit calls f(e).
func (f SinkFunc) Emit(e Event) { f(e) }
