//go:build !unix

package pgembed

import (
	"context"
	"errors"
	"log/slog"
)

// errUnsupported explains what to do where the embedded server cannot run:
// it relies on Unix sockets and on switching to an unprivileged user.
var errUnsupported = errors.New("the embedded PostgreSQL runs on Linux and macOS only: pass --database-url")

// Instance is a running private PostgreSQL server; none exists here.
type Instance struct{}

// Start reports that the embedded server is not available on this system.
func Start(context.Context, string, *slog.Logger) (*Instance, error) { return nil, errUnsupported }

// URL is empty: no Instance is ever returned on this system.
func (*Instance) URL() string { return "" }

// Attached is false: no Instance is ever returned on this system.
func (*Instance) Attached() bool { return false }

// LogFile is empty: no Instance is ever returned on this system.
func (*Instance) LogFile() string { return "" }

// Stop does nothing: no Instance is ever returned on this system.
func (*Instance) Stop(context.Context) error { return nil }
