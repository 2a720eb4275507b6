// Package migrations holds Switchboard's database schema as numbered goose
// SQL migrations, embedded in the binary so that every gateway node brings
// the schema it needs (db.Open applies them at start).
//
// Add a change as the next numbered file (00002_what.sql) with -- +goose Up
// and -- +goose Down sections; never edit a migration that has shipped.
package migrations

import "embed"

// FS holds the migrations, named NNNNN_description.sql.
//
//go:embed *.sql
var FS embed.FS
