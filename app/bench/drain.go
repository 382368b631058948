package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// openGate listens on addr and forwards every connection to the broker of amqpURL,
// so a server whose AMQP_URL names addr reaches RabbitMQ from now on (-drain). The
// returned func closes the listener and every forwarded connection.
func openGate(addr, amqpURL string) (func(), error) {
	u, err := url.Parse(amqpURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("bench: -amqp-url %q: no host to open -gate to", amqpURL)
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5672")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("bench: -gate: %w", err)
	}
	var mu sync.Mutex
	var open []net.Conn
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			open = append(open, c, t)
			mu.Unlock()
			// Each side's end closes both, which ends the other copy.
			go func() { _, _ = io.Copy(t, c); t.Close(); c.Close() }()
			go func() { _, _ = io.Copy(c, t); t.Close(); c.Close() }()
		}
	})
	return func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range open {
			c.Close()
		}
	}, nil
}

// drainFirstWait is how long -drain waits for a first delivery after the gate
// opens: the server retries RabbitMQ with a backoff of up to 10 s.
const drainFirstWait = 30 * time.Second

// awaitDrain waits until expected deliveries arrived, or none came for benchGrace
// (after the first; drainFirstWait before it).
func awaitDrain(got *atomic.Int64, expected int64) {
	last, n := time.Now(), got.Load()
	quiet := drainFirstWait
	for n < expected && time.Since(last) < quiet {
		time.Sleep(20 * time.Millisecond)
		if m := got.Load(); m != n {
			last, n, quiet = time.Now(), m, benchGrace
		}
	}
}

// drainRate is deliveries per second from the first delivery any client got to the
// last: the rate the server drained its queue at.
func drainRate(clients []*benchClient) (float64, time.Duration, error) {
	var first, last, received int64
	for _, c := range clients {
		if c == nil || c.received == 0 {
			continue
		}
		received += c.received
		if first == 0 || c.first < first {
			first = c.first
		}
		last = max(last, c.last)
	}
	span := time.Duration(last - first)
	if received < 2 || span <= 0 {
		return 0, span, errors.New("bench: -drain: fewer than two deliveries, no rate")
	}
	return float64(received-1) / span.Seconds(), span, nil
}
