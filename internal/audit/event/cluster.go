package event

// Events of a cluster of gateway nodes that steer Clients between them. A
// Client that changes node keeps its own "connected" and "Disconnected"
// events on each node; these say why it changed. They are of
// KindGateway, as the node events are: a Client's connection history
// (KindClientConnect, KindClientDisconnect) pairs one connect with one
// disconnect, and these are neither.

import "fmt"

// ClientSwitchedToSecondary is written by a node of role secondary when a
// Client registers there: its primary was unreachable or refused it.
func ClientSwitchedToSecondary(client, realIP, publicIP string) Event {
	client, realIP, publicIP = Safe(client), Safe(realIP), Safe(publicIP)
	e := newEvent(KindGateway, fmt.Sprintf("Client %s switched to the Secondary", client))
	e.Client, e.RealIP, e.PublicIP = client, realIP, publicIP
	return e
}

// ClientReturnedToPrimary is written by a node of role primary when a
// Client registers there that was, as far as the node last read presence,
// on a node of role secondary.
func ClientReturnedToPrimary(client, realIP, publicIP string) Event {
	client, realIP, publicIP = Safe(client), Safe(realIP), Safe(publicIP)
	e := newEvent(KindGateway, fmt.Sprintf("Client %s returned to the Primary", client))
	e.Client, e.RealIP, e.PublicIP = client, realIP, publicIP
	return e
}

// ClientMoved is written by the balanced node that told a Client to
// register at node instead, because it held more than its share.
func ClientMoved(client, node, realIP, publicIP string) Event {
	client, node, realIP, publicIP = Safe(client), Safe(node), Safe(realIP), Safe(publicIP)
	e := newEvent(KindGateway, fmt.Sprintf("Client %s moved to node %s for load balancing", client, node))
	e.Client, e.RealIP, e.PublicIP = client, realIP, publicIP
	return e
}
