package eventlog

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/audit/event"
)

// nopStore takes every batch at once, so the benchmark measures the log.
type nopStore struct{}

func (nopStore) InsertEvents(context.Context, []event.Event) error { return nil }

// BenchmarkEmit measures the event log end to end: b.N events emitted,
// spooled (with the fsync interval of the sub-benchmark) and delivered.
// The producer waits while the queue is half full, so that nothing is
// dropped and ns/op is the sustained cost of an event; emit-ns is what one
// Emit costs its caller (the relay), sampled.
//
//	go test -run '^$' -bench BenchmarkEmit -benchtime 200000x ./internal/audit/eventlog
func BenchmarkEmit(b *testing.B) {
	for _, bc := range []struct {
		name     string
		spool    bool
		interval time.Duration
	}{
		{"memory", false, 0},
		{"spool/fsync=1ms", true, time.Millisecond},
		{"spool/fsync=10ms", true, 10 * time.Millisecond},
		{"spool/fsync=100ms", true, 100 * time.Millisecond},
		{"spool/fsync=never", true, time.Hour}, // the cost of the spool without its fsyncs
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := Config{Store: nopStore{}, FsyncInterval: bc.interval}
			if bc.spool {
				cfg.SpoolPath = filepath.Join(b.TempDir(), "events.spool")
			}
			l, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- l.Run(ctx) }()
			e := event.Event{Kind: event.KindClientConnect, Message: "Client reception-pc-0042 connected",
				Client: "reception-pc-0042", RealIP: "192.168.10.42", PublicIP: "203.0.113.77", Node: "gw1"}
			half := l.cfg.MaxPendingBytes / 2
			var emitTime time.Duration
			var sampled int
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				if i%256 == 0 {
					for l.queued() > half {
						runtime.Gosched()
					}
				}
				if i%64 == 0 {
					t := time.Now()
					l.Emit(e)
					emitTime += time.Since(t)
					sampled++
					continue
				}
				l.Emit(e)
			}
			if err := l.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(emitTime.Nanoseconds())/float64(max(sampled, 1)), "emit-ns")
			if l.spool != nil {
				syncs := l.spool.syncs.Load()
				b.ReportMetric(float64(syncs)/elapsed.Seconds(), "fsyncs/s")
				if syncs > 0 {
					b.ReportMetric(float64(l.spool.syncTime.Load())/float64(syncs)/1e3, "µs/fsync")
				}
			}
			if d := l.Dropped(); d > 0 {
				b.Errorf("%d events dropped", d)
			}
		})
	}
}

// BenchmarkEmitAlone is Emit's own cost, with nothing running beside it:
// the queue is emptied (untimed) every few thousand events instead.
func BenchmarkEmitAlone(b *testing.B) {
	l, err := New(Config{Store: nopStore{}})
	if err != nil {
		b.Fatal(err)
	}
	e := event.Event{Kind: event.KindClientConnect, Message: "Client reception-pc-0042 connected",
		Client: "reception-pc-0042", RealIP: "192.168.10.42", PublicIP: "203.0.113.77", Node: "gw1"}
	b.ReportAllocs()
	for i := range b.N {
		if i%4096 == 0 {
			b.StopTimer()
			l.mu.Lock()
			clear(l.queue)
			l.queue, l.queueBytes = l.queue[:0], 0
			l.mu.Unlock()
			b.StartTimer()
		}
		l.Emit(e)
	}
	if l.Dropped() > 0 {
		b.Fatalf("%d dropped", l.Dropped())
	}
}

func (l *Log) queued() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.queueBytes
}
