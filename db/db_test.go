package db_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/audit/event"
	"github.com/switchboard/switchboard/internal/pg/pgtest"
)

func TestOpenConcurrently(t *testing.T) {
	t.Parallel()
	url := pgtest.MustURL(t)
	const nodes = 4
	var wg sync.WaitGroup
	errs := make(chan error, nodes)
	for range nodes {
		wg.Go(func() {
			d, err := db.Open(t.Context(), url, nil)
			if err != nil {
				errs <- err
				return
			}
			defer d.Close()
			_, err = d.Keys(t.Context())
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestOpenReappliesNothing(t *testing.T) {
	t.Parallel()
	url := pgtest.MustURL(t)
	for range 2 {
		d, err := db.Open(t.Context(), url, nil)
		if err != nil {
			t.Fatal(err)
		}
		d.Close()
	}
}

func TestOpenBadURL(t *testing.T) {
	_, err := db.Open(t.Context(), "postgres://u:secret@[bad", nil)
	if err == nil {
		t.Fatal("Open succeeded")
	}
	if got := err.Error(); strings.Contains(got, "secret") {
		t.Errorf("error %q leaks the password", got)
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDB(t)
	ctx := t.Context()

	a, err := d.AddKey(ctx, db.Key{KeyID: "k1", Label: "office", StoredKey: []byte{1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == 0 || a.CreatedAt.IsZero() || a.KeyID != "k1" || string(a.StoredKey) != "\x01\x02\x03" {
		t.Errorf("AddKey returned %+v", a)
	}
	if _, err := d.AddKey(ctx, db.Key{KeyID: "k2", StoredKey: []byte{4}}); err != nil {
		t.Fatal(err)
	}

	t.Run("duplicate is a conflict", func(t *testing.T) {
		_, err := d.AddKey(ctx, db.Key{KeyID: "k1", StoredKey: []byte{9}})
		if !errors.Is(err, db.ErrConflict) {
			t.Errorf("AddKey duplicate = %v, want ErrConflict", err)
		}
	})

	t.Run("label updated", func(t *testing.T) {
		if err := d.UpdateKeyLabel(ctx, "k1", "branch"); err != nil {
			t.Fatal(err)
		}
		k, err := d.Key(ctx, "k1")
		if err != nil || k.Label != "branch" {
			t.Errorf("Key = %+v, %v; want label branch", k, err)
		}
	})

	t.Run("unknown key not found", func(t *testing.T) {
		if err := d.UpdateKeyLabel(ctx, "nope", "x"); !errors.Is(err, db.ErrNotFound) {
			t.Errorf("UpdateKeyLabel = %v, want ErrNotFound", err)
		}
		if err := d.RemoveKey(ctx, "nope"); !errors.Is(err, db.ErrNotFound) {
			t.Errorf("RemoveKey = %v, want ErrNotFound", err)
		}
		if _, err := d.Key(ctx, "nope"); !errors.Is(err, db.ErrNotFound) {
			t.Errorf("Key = %v, want ErrNotFound", err)
		}
	})

	t.Run("removed and listed in order", func(t *testing.T) {
		if _, err := d.AddKey(ctx, db.Key{KeyID: "k3", StoredKey: []byte{5}}); err != nil {
			t.Fatal(err)
		}
		if err := d.RemoveKey(ctx, "k2"); err != nil {
			t.Fatal(err)
		}
		keys, err := d.Keys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, k := range keys {
			ids = append(ids, k.KeyID)
		}
		if fmt.Sprint(ids) != "[k1 k3]" {
			t.Errorf("Keys = %v, want [k1 k3]", ids)
		}
	})

	t.Run("a version 1 row is converted once", func(t *testing.T) {
		// As a version 1 gateway left it, after migration 00005: a v1
		// verifier, no stored key.
		var id int64
		if err := d.Pool().QueryRow(ctx, "INSERT INTO gateway_keys (key_id, label, v1_verifier) VALUES ('v1id', 'old', '\\x0102') RETURNING id").Scan(&id); err != nil {
			t.Fatal(err)
		}
		k, err := d.Key(ctx, "v1id")
		if err != nil || k.StoredKey != nil || string(k.V1Verifier) != "\x01\x02" {
			t.Fatalf("v1 row = %+v, %v", k, err)
		}
		for i, want := range []bool{true, false} {
			got, err := d.ConvertKey(ctx, id, "v2id", []byte{7})
			if err != nil || got != want {
				t.Fatalf("ConvertKey #%d = %v, %v; want %v", i+1, got, err, want)
			}
		}
		k, err = d.Key(ctx, "v2id")
		if err != nil || string(k.StoredKey) != "\x07" || k.V1Verifier != nil || k.Label != "old" {
			t.Fatalf("converted row = %+v, %v", k, err)
		}
		if _, err := d.Key(ctx, "v1id"); !errors.Is(err, db.ErrNotFound) {
			t.Fatalf("the old key ID still finds a row: %v", err)
		}
		// The same key added again meanwhile: the v1 row goes.
		if err := d.Pool().QueryRow(ctx, "INSERT INTO gateway_keys (key_id, v1_verifier) VALUES ('v1dup', '\\x03') RETURNING id").Scan(&id); err != nil {
			t.Fatal(err)
		}
		if got, err := d.ConvertKey(ctx, id, "k1", []byte{8}); err != nil || !got {
			t.Fatalf("ConvertKey onto an existing key = %v, %v", got, err)
		}
		if _, err := d.Key(ctx, "v1dup"); !errors.Is(err, db.ErrNotFound) {
			t.Fatalf("the duplicate v1 row is still there: %v", err)
		}
		if k, err := d.Key(ctx, "k1"); err != nil || string(k.StoredKey) != "\x01\x02\x03" {
			t.Fatalf("the existing key changed: %+v, %v", k, err)
		}
		if err := d.RemoveKey(ctx, "v2id"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestSettings(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDB(t)
	ctx := t.Context()

	if _, err := d.Setting(ctx, "port"); !errors.Is(err, db.ErrNotFound) {
		t.Errorf("Setting of unset = %v, want ErrNotFound", err)
	}
	for _, v := range []string{"443", "3085"} {
		if err := d.SetSetting(ctx, "port", v); err != nil {
			t.Fatal(err)
		}
		if got, err := d.Setting(ctx, "port"); err != nil || got != v {
			t.Errorf("Setting = %q, %v; want %q", got, err, v)
		}
	}
}

func TestSettingOrCreateAgreesUnderRace(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDB(t)
	const racers = 8
	var n atomic.Int64
	got := make([]string, racers)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			got[i], errs[i] = d.SettingOrCreate(t.Context(), "salt", func() (string, error) {
				return fmt.Sprintf("salt-%d", n.Add(1)), nil
			})
		})
	}
	wg.Wait()
	for i := range racers {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if got[i] != got[0] {
			t.Fatalf("racers disagree: %q vs %q", got[i], got[0])
		}
	}
	again, err := d.SettingOrCreate(t.Context(), "salt", func() (string, error) {
		t.Error("create called for an existing setting")
		return "", nil
	})
	if err != nil || again != got[0] {
		t.Errorf("SettingOrCreate again = %q, %v; want %q", again, err, got[0])
	}

	t.Run("create error is returned", func(t *testing.T) {
		boom := errors.New("boom")
		_, err := d.SettingOrCreate(t.Context(), "other", func() (string, error) { return "", boom })
		if !errors.Is(err, boom) {
			t.Errorf("err = %v, want boom", err)
		}
	})
}

func TestEvents(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDB(t)
	ctx := t.Context()
	base := time.Date(2022, 6, 29, 16, 11, 20, 0, time.UTC)

	var batch []event.Event
	for i := range 250 {
		e := event.ClientConnected(fmt.Sprintf("c%d", i%5), "10.0.0.1", "203.0.113.9")
		if i%10 == 0 {
			e = event.SessionStarted("ctl", fmt.Sprintf("c%d", i%5), "198.51.100.1")
		}
		e.Time = base.Add(time.Duration(i) * time.Second)
		e.Node = "gw1"
		batch = append(batch, e)
	}
	if err := d.InsertEvents(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := d.InsertEvents(ctx, nil); err != nil {
		t.Errorf("InsertEvents(nil) = %v", err)
	}

	t.Run("newest first with default limit", func(t *testing.T) {
		evs, err := d.Events(ctx, db.EventFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != db.DefaultEventLimit {
			t.Fatalf("got %d events, want %d", len(evs), db.DefaultEventLimit)
		}
		last := batch[len(batch)-1]
		e := evs[0]
		if e.ID == 0 || !e.Time.Equal(last.Time) || e.Message != last.Message || e.Kind != last.Kind ||
			e.Client != last.Client || e.RealIP != last.RealIP || e.PublicIP != last.PublicIP || e.Node != "gw1" {
			t.Errorf("newest = %+v, want %+v", e, last)
		}
		for i := 1; i < len(evs); i++ {
			if evs[i].ID >= evs[i-1].ID {
				t.Fatalf("not newest first at %d", i)
			}
		}
	})

	t.Run("keyset pages cover everything once", func(t *testing.T) {
		seen := map[int64]bool{}
		f := db.EventFilter{Limit: 70}
		for {
			evs, err := d.Events(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) == 0 {
				break
			}
			for _, e := range evs {
				if seen[e.ID] {
					t.Fatalf("event %d twice", e.ID)
				}
				seen[e.ID] = true
			}
			f.BeforeID = evs[len(evs)-1].ID
		}
		if len(seen) != len(batch) {
			t.Errorf("paged %d events, want %d", len(seen), len(batch))
		}
	})

	t.Run("limit capped", func(t *testing.T) {
		evs, err := d.Events(ctx, db.EventFilter{Limit: 1_000_000})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != len(batch) { // fewer than MaxEventLimit exist
			t.Errorf("got %d", len(evs))
		}
	})

	t.Run("filters", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			f    db.EventFilter
			want int64
		}{
			{"all", db.EventFilter{}, 250},
			{"kind", db.EventFilter{Kind: event.KindSessionStart}, 25},
			{"client", db.EventFilter{Client: "c0"}, 50},
			{"control", db.EventFilter{Control: "ctl"}, 25},
			{"kind and client", db.EventFilter{Kind: event.KindSessionStart, Client: "c0"}, 25},
			{"since", db.EventFilter{Since: base.Add(200 * time.Second)}, 50},
			{"until", db.EventFilter{Until: base.Add(10 * time.Second)}, 10},
			{"window", db.EventFilter{Since: base.Add(10 * time.Second), Until: base.Add(20 * time.Second)}, 10},
			{"none", db.EventFilter{Client: "nobody"}, 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				n, err := d.CountEvents(ctx, tc.f)
				if err != nil {
					t.Fatal(err)
				}
				if n != tc.want {
					t.Errorf("CountEvents = %d, want %d", n, tc.want)
				}
				tc.f.Limit = db.MaxEventLimit
				evs, err := d.Events(ctx, tc.f)
				if err != nil {
					t.Fatal(err)
				}
				if int64(len(evs)) != tc.want {
					t.Errorf("Events returned %d, want %d", len(evs), tc.want)
				}
			})
		}
	})
}

func TestEventsAfterCancel(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDB(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := d.InsertEvents(ctx, []event.Event{event.GatewayStopped()}); err == nil {
		t.Error("InsertEvents with a cancelled context succeeded")
	}
	if n, err := d.CountEvents(t.Context(), db.EventFilter{}); err != nil || n != 0 {
		t.Errorf("CountEvents = %d, %v; want 0", n, err)
	}
}
