// Package gateway assembles one gateway node from its Config: the database
// (a URL or the embedded PostgreSQL), the event log, the relay core, TLS,
// the HTTP handlers and console, and the listeners; it then keeps the node
// in step with what the console and other processes store (keys, runtime
// settings) until it is shut down. The serve command only parses flags and
// calls Start and Run, so tests start whole gateways in-process.
package gateway
