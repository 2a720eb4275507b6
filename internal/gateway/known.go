package gateway

// NodeName names this node for the console's dashboard (handlers'
// nodeNamer), through the cluster links the console already holds.
//
// The known Clients and the dashboard's trend need no code here: triggers
// on the presence and nodes tables keep them (migration 00010).
func (p *peers) NodeName() string { return p.g.cfg.Node }
