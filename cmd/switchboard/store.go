package main

import "github.com/switchboard/switchboard/internal/gateway"

// addStoreFlags adds the flags of every command that uses the database.
func addStoreFlags(fs *flagSet, s *gateway.Store) {
	fs.StringVar(&s.DatabaseURL, "database-url", "", "PostgreSQL URL; empty runs a private PostgreSQL in the data dir")
	fs.StringVar(&s.DataDir, "data-dir", gateway.DefaultDataDir(), "folder for the embedded database, event logs and spooled events")
}
