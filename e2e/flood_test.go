package e2e_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The flood of TestSilentFlood.
const (
	floodEach = 2000 // connections of each kind: headers without their body, and nothing at all
	// floodDialers open the flood's connections, each in turn: about 4,000 a second
	// here, so at the low file limit a connection lives long enough to be read.
	floodDialers = 40
	// floodDeadline is BRIDGE_HANDSHAKE_TIMEOUT and BRIDGE_BODY_TIMEOUT of the server.
	floodDeadline = time.Second
	// floodSlack is how much later than its deadline a flood connection may close: the
	// server and this test share two busy cores.
	floodSlack = 5 * time.Second
	// floodSources spreads the flood over source addresses 127.0.0.2…, so it does not
	// exhaust one address's ephemeral ports beside the other tests.
	floodSources = 8
)

// TestSilentFlood: 2,000 connections that send a request's headers and never its body,
// and 2,000 that send nothing, are each closed within their deadline, while a normal
// client keeps connecting (a new WebSocket each time) and receiving, and /healthz keeps
// answering 200 — with plenty of open files (the deadlines close them) and with a
// 1,024-file limit set by prlimit (BRIDGE_MAX_CONNS is held under it, and the
// connections that waited longest for their client make room for new ones).
func TestSilentFlood(t *testing.T) {
	for _, tc := range []struct {
		name    string
		wrapper []string
	}{
		{"plenty of files", nil},
		{"1024 files", []string{"prlimit", "--nofile=1024:1024", "--"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProcUnder(t, "flooded", map[string]string{
				"BRIDGE_DEV": "1", "BRIDGE_INBOUND": "broadcast",
				"BRIDGE_HANDSHAKE_TIMEOUT": floodDeadline.String(), "BRIDGE_BODY_TIMEOUT": floodDeadline.String(),
			}, tc.wrapper...)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var rounds, probes atomic.Int64
			errs := make(chan error, 2)
			wg.Go(func() { errs <- keepTalking(p, stop, &rounds) })
			wg.Go(func() { errs <- keepProbing(p, stop, &probes) })

			late := flood(t, p)

			close(stop)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			if rounds.Load() == 0 || probes.Load() == 0 {
				t.Errorf("the normal client made %d rounds and /healthz was probed %d times during the flood, want some of each", rounds.Load(), probes.Load())
			}
			evicted := metric(t, p, "pushbridge_tcp_connections_evicted_total")
			t.Logf("%d WebSocket rounds and %d /healthz probes during the flood; latest close %s after its deadline; %v connections closed to make room",
				rounds.Load(), probes.Load(), late.Round(time.Millisecond), evicted)
			if tc.wrapper != nil && evicted == 0 {
				t.Errorf("no connection was closed to make room under the 1,024-file limit")
			}
			if log := p.stderr.String(); strings.Contains(log, "too many open files") {
				t.Errorf("the server ran out of files:\n%s", log)
			}
		})
	}
}

// flood opens floodEach connections of each kind and waits until the server has closed
// every one; it returns how long after its deadline the latest closed (negative: all
// closed before their deadline, some to make room).
func flood(t *testing.T, p *proc) (late time.Duration) {
	t.Helper()
	headers := "POST /api/send?user=flood HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
	var mu sync.Mutex
	late = -floodDeadline
	var failed []string
	var wg sync.WaitGroup
	var next atomic.Int64
	for d := 0; d < floodDialers; d++ {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= 2*floodEach {
					return
				}
				dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%floodSources))}}
				c, err := dialer.Dial("tcp", p.Addr)
				if err != nil {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("dial %d: %v", i, err))
					mu.Unlock()
					continue
				}
				if i%2 == 0 { // headers, then nothing
					if _, err := io.WriteString(c, headers); err != nil {
						c.Close() // closed already, to make room: fine
						continue
					}
				}
				wg.Go(func() {
					defer c.Close()
					start := time.Now()
					_ = c.SetReadDeadline(start.Add(floodDeadline + floodSlack))
					_, err := io.Copy(io.Discard, c)
					took := time.Since(start)
					mu.Lock()
					defer mu.Unlock()
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						failed = append(failed, fmt.Sprintf("connection %d still open after %s", i, took.Round(time.Millisecond)))
					}
					late = max(late, took-floodDeadline)
				})
			}
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of %d flood connections failed; the first: %s", len(failed), 2*floodEach, failed[0])
	}
	return late
}

// keepTalking connects a new raw WebSocket again and again until stop, says something
// and waits to hear it back as a broadcast; the first failure ends it.
func keepTalking(p *proc, stop <-chan struct{}, rounds *atomic.Int64) error {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		default:
		}
		user := fmt.Sprintf("normal%d", i)
		c, _, err := d.Dial(p.wsURL("/ws?user="+user), nil)
		if err != nil {
			return fmt.Errorf("normal client, round %d: %w", i, err)
		}
		err = talk(c, user)
		c.Close()
		if err != nil {
			return fmt.Errorf("normal client, round %d: %w", i, err)
		}
		rounds.Add(1)
	}
}

func talk(c *websocket.Conn, user string) error {
	if err := c.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	want := user + " : hello"
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			return fmt.Errorf("waiting for %q: %w", want, err)
		}
		if string(data) == want {
			return nil
		}
	}
}

// keepProbing asks /healthz on a new connection every few milliseconds until stop, as a
// platform's liveness probe would; the first answer other than 200 ends it.
func keepProbing(p *proc, stop <-chan struct{}, probes *atomic.Int64) error {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
		resp, err := client.Get(p.URL + "/healthz")
		if err != nil {
			return fmt.Errorf("/healthz during the flood: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/healthz during the flood: %d", resp.StatusCode)
		}
		probes.Add(1)
	}
}
