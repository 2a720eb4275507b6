package gateway

// Placement: where the Clients of a cluster belong (relay.Placer).

import (
	"context"

	"github.com/switchboard/switchboard/relay"
)

// placer is relay.Placer for this node.
type placer struct {
	g *Gateway
}

func newPlacer(g *Gateway) *placer { return &placer{g: g} }

// Place is relay.Placer.
func (p *placer) Place(r relay.Registration) relay.Placement { return relay.Placement{} }

// start runs the placer's loops until stopPlacer.
func (p *placer) start(ctx context.Context) {}

// stopPlacer ends the loops and waits for them; safe when they never ran.
func (p *placer) stopPlacer() {}
