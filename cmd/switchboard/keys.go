package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/relay/wire"
)

const keysUsage = `Usage:
  switchboard keys add KEY [--label TEXT]   (KEY "-" reads it from standard input)
  switchboard keys list
  switchboard keys remove KEY|KEY-ID

Keys take effect in a running gateway within a second. Removing a key
disconnects the Clients and Controls that use it. Keys are stored as
hashes of a slow derivation (handshake version 2), which check a Client's
proof but cannot make one: list shows their IDs and labels, never the keys.
Adding or removing a key by its text takes a moment: it runs that
derivation.`

func (e *cmdEnv) keys(ctx context.Context, args []string) error {
	fs := newFlagSet("keys", keysUsage, e.stderr)
	var sf gateway.Store
	addStoreFlags(fs, &sf)
	label := fs.String("label", "", "a label for the key, shown in lists and the console")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fmt.Fprintln(e.stderr, keysUsage)
		return errUsage
	}
	verb, rest := pos[0], pos[1:]
	want := map[string]int{"add": 1, "list": 0, "remove": 1}
	n, ok := want[verb]
	if !ok {
		return fmt.Errorf("unknown keys command %q (add, list, remove)", verb)
	}
	if len(rest) != n {
		return fmt.Errorf("keys %s takes %d argument(s)", verb, n)
	}
	if verb == "add" && rest[0] != "-" {
		fmt.Fprintln(e.stderr, "warning: a key on the command line can be read by every user of this machine (ps, /proc) and stays in the shell history; give - and type or pipe it on standard input instead")
	}
	if verb == "add" && rest[0] == "-" {
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("read key from standard input: %w", err)
		}
		rest[0] = strings.TrimRight(line, "\r\n")
	}
	if verb == "add" && len(rest[0]) < wire.MinKeyLength {
		return fmt.Errorf("a gateway key must be at least %d characters", wire.MinKeyLength)
	}

	log := newLogger(e.stderr, false)
	store, closeStore, err := sf.Open(ctx, log)
	if err != nil {
		return err
	}
	defer closeStore()
	salt, err := gateway.KeySalt(ctx, store)
	if err != nil {
		return err
	}
	// Keys a version 1 gateway stored are converted here too, so that list
	// shows the key IDs peers use and remove finds a key by its text even
	// before an upgraded gateway has started.
	if _, err := gateway.UpgradeKeys(ctx, store, salt, log); err != nil {
		return err
	}
	switch verb {
	case "add":
		id, added, err := gateway.AddKey(ctx, store, salt, rest[0], *label)
		if err != nil {
			return err
		}
		if !added {
			fmt.Fprintf(e.stdout, "key %s exists already\n", id)
			return nil
		}
		fmt.Fprintf(e.stdout, "added key %s\n", id)
	case "list":
		keys, err := store.Keys(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY ID\tLABEL\tADDED")
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", k.KeyID, k.Label, k.CreatedAt.Local().Format(time.DateTime))
		}
		return tw.Flush()
	case "remove":
		id := rest[0]
		keys, err := store.Keys(ctx)
		if err != nil {
			return err
		}
		if !hasKeyID(keys, id) {
			// Not an ID: the key's text, found by its ID (this runs the
			// KDF, as a peer would).
			id, _ = gateway.KeyIDOf(salt, rest[0])
		}
		if err := store.RemoveKey(ctx, id); err != nil {
			if errors.Is(err, db.ErrNotFound) {
				return fmt.Errorf("no such key on this gateway")
			}
			return err
		}
		fmt.Fprintf(e.stdout, "removed key %s\n", id)
	}
	return nil
}

func hasKeyID(keys []db.Key, id string) bool {
	for _, k := range keys {
		if k.KeyID == id {
			return true
		}
	}
	return false
}
