package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"sync"
	"time"
)

// writeChunk is what the bulk sender hands to Write at a time.
const writeChunk = 256 << 10

// bulk sends bytesPerStream to the sink on each of streams parallel sessions
// and returns the aggregate throughput in MB/s (10^6 bytes per second),
// timed from the first byte written to the last sink's byte count received.
// Session set-up is excluded: it has a measurement of its own.
func bulk(ctx context.Context, p path, streams int, bytesPerStream int64) (float64, error) {
	conns := make([]net.Conn, streams)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range conns {
		c, err := p.Dial(ctx, svcSink)
		if err != nil {
			return 0, err
		}
		conns[i] = c
	}
	stop := context.AfterFunc(ctx, func() {
		for _, c := range conns {
			c.Close()
		}
	})
	defer stop()

	buf := make([]byte, writeChunk)
	for i := range buf {
		buf[i] = byte(i)
	}
	errs := make([]error, streams)
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = sendAll(c, buf, bytesPerStream)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, err := range errs {
		if err != nil {
			return 0, fmt.Errorf("%s: bulk: %w", p.Name, err)
		}
	}
	return float64(bytesPerStream) * float64(streams) / elapsed.Seconds() / 1e6, nil
}

// sendAll writes n bytes, half-closes and checks the sink's count.
func sendAll(c net.Conn, buf []byte, n int64) error {
	for left := n; left > 0; {
		k := min(left, int64(len(buf)))
		if _, err := c.Write(buf[:k]); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		left -= k
	}
	if err := closeWrite(c); err != nil {
		return fmt.Errorf("half-close: %w", err)
	}
	var got [8]byte
	if _, err := io.ReadFull(c, got[:]); err != nil {
		return fmt.Errorf("read sink count: %w", err)
	}
	if g := binary.BigEndian.Uint64(got[:]); g != uint64(n) {
		return fmt.Errorf("sink received %d bytes, sent %d", g, n)
	}
	return nil
}

// latency is a distribution summary in microseconds.
type latency struct {
	P50 float64 `json:"p50_us"`
	P99 float64 `json:"p99_us"`
}

// pingPong sends n messages of size bytes to the echo service on one
// session, one at a time, and times each round trip. warm round trips run
// first and are not counted.
func pingPong(ctx context.Context, p path, n, warm, size int) (latency, error) {
	c, err := p.Dial(ctx, svcEcho)
	if err != nil {
		return latency{}, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	msg := make([]byte, size)
	back := make([]byte, size)
	samples := make([]time.Duration, 0, n)
	for i := range warm + n {
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			return latency{}, fmt.Errorf("%s: ping-pong write: %w", p.Name, err)
		}
		if _, err := io.ReadFull(c, back); err != nil {
			return latency{}, fmt.Errorf("%s: ping-pong read: %w", p.Name, err)
		}
		if i >= warm {
			samples = append(samples, time.Since(t0))
		}
	}
	return summarize(samples), nil
}

// setup opens n sessions to the echo service one after another and times
// each from the start of Dial to the first echoed byte. A path with a
// SetupDial (a relay through control.Forward's listener) is timed from a
// new local TCP connection to the first echoed byte.
func setup(ctx context.Context, p path, n int, gap time.Duration) (latency, error) {
	samples := make([]time.Duration, 0, n)
	one := []byte{42}
	dial := func() (net.Conn, error) { return p.Dial(ctx, svcEcho) }
	if p.SetupDial != nil {
		dial = func() (net.Conn, error) { return p.SetupDial(ctx) }
	}
	for range n {
		if gap > 0 {
			select {
			case <-ctx.Done():
				return latency{}, ctx.Err()
			case <-time.After(gap):
			}
		}
		t0 := time.Now()
		c, err := dial()
		if err != nil {
			return latency{}, fmt.Errorf("%s: set-up: %w", p.Name, err)
		}
		var b [1]byte
		_, err = c.Write(one)
		if err == nil {
			_, err = io.ReadFull(c, b[:])
		}
		d := time.Since(t0)
		c.Close()
		if err != nil {
			if p.SetupErr != nil {
				if why := p.SetupErr(); why != nil {
					err = fmt.Errorf("%w (%w)", err, why)
				}
			}
			return latency{}, fmt.Errorf("%s: first echoed byte: %w", p.Name, err)
		}
		samples = append(samples, d)
	}
	return summarize(samples), nil
}

func summarize(ds []time.Duration) latency {
	slices.Sort(ds)
	us := func(q float64) float64 {
		if len(ds) == 0 {
			return 0
		}
		i := int(math.Ceil(q*float64(len(ds)))) - 1
		return float64(ds[max(i, 0)].Nanoseconds()) / 1e3
	}
	return latency{P50: us(0.50), P99: us(0.99)}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
