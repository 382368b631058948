package app_test

import (
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// The shape of TestReplayMemoryIsBoundedByTheQueue (issue 10: 32 sockets of one user
// replaying 300 × 60 KB took the heap from 28 MB to 723 MB).
const (
	hogConns      = 32       // BRIDGE_MAX_CONNS_PER_USER's default: all one user may open
	hogWindow     = 300      // broadcasts in the history
	hogBodyBytes  = 60 << 10 // each
	hogQueueBytes = 1 << 20  // BRIDGE_SEND_QUEUE_BYTES
	// hogSlack is what the heap may grow by besides the queues: the instance's cache of
	// decoded history entries (16 MiB at most, presence.entryCacheBytes; every
	// connection shares it) and 8 MiB for the rest — 32 connections' goroutines,
	// buffers and their go-redis replies, and what the runtime keeps around.
	hogSlack = 16<<20 + 8<<20
)

// TestReplayMemoryIsBoundedByTheQueue: 32 WebSockets of one user that come back with
// ?since=0 over a window of 300 broadcasts of 60 KB (18 MB) and never read grow the
// server's heap by less than 32 send queue budgets plus hogSlack: each replay reads
// one page bounded by half its queue's bytes, the rest is read only as the queue
// drains (it never does), and the entries read are decoded once for all of them.
// The server runs in this process, against the real Redis and RabbitMQ.
func TestReplayMemoryIsBoundedByTheQueue(t *testing.T) {
	tp := apptest.NewTopology(t, modeKeys...)
	env := map[string]string{
		"BRIDGE_DEV": "1", "AMQP_URL": apptest.AMQPURL(),
		"BRIDGE_SEND_QUEUE_BYTES":  strconv.Itoa(hogQueueBytes),
		"BRIDGE_MAX_MESSAGE_BYTES": strconv.Itoa(hogBodyBytes + 1024),
	}
	rds := apptest.NewRedis(t)
	for _, m := range []map[string]string{tp.Env, rds.Env} {
		for k, v := range m {
			env[k] = v
		}
	}
	s := apptest.Start(t, env)

	tp.PublishMany(t, "contract", hogBodies(), nil) // not kept: neither in the heap before nor freed during
	apptest.Eventually(t, 30*time.Second, "the window in the history", func() bool {
		return metric(t, s, "pushbridge_deliveries_acked_total") == hogWindow
	})

	before := heapInUse()
	hogs := make([]net.Conn, hogConns)
	for i := range hogs {
		hogs[i] = apptest.DialStalled(t, s.WSURL("/ws/yxd/hog?since=0"), "")
	}
	apptest.Eventually(t, 20*time.Second, "every replay queued", func() bool {
		return metric(t, s, "pushbridge_replays_total") == hogConns
	})
	// Catch-ups go on while the kernel's socket buffers take bytes; sample the heap
	// until they stop (the count of caught-up messages stays the same across a sample).
	peak, last := uint64(0), -1.0
	for deadline := time.Now().Add(20 * time.Second); ; {
		h := heapInUse()
		peak = max(peak, h)
		n := metric(t, s, "pushbridge_messages_caught_up_total")
		if n == last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("catch-ups still going after 20s (%v messages)", n)
		}
		last = n
	}
	if got := connCount(t, s); got != hogConns {
		t.Fatalf("%d connections held while measuring, want %d (the hogs were cut: the figures mean nothing)", got, hogConns)
	}
	growth := int64(peak) - int64(before)
	limit := int64(hogConns*hogQueueBytes + hogSlack)
	t.Logf("heap in use: %.1f MiB before, %.1f MiB at the peak: +%.1f MiB for %d replays of a %.1f MiB window (limit %.1f MiB); %v messages caught up after the replays",
		mib(before), mib(peak), float64(growth)/(1<<20), hogConns, float64(hogWindow*hogBodyBytes)/(1<<20), float64(limit)/(1<<20), last)
	if growth >= limit {
		t.Errorf("heap grew by %d bytes, want under %d (32 × the queue budget + %d)", growth, limit, hogSlack)
	}
	for _, c := range hogs {
		c.Close()
	}
}

// hogBodies are the window's broadcasts.
func hogBodies() [][]byte {
	pad := strings.Repeat("x", hogBodyBytes)
	bodies := make([][]byte, hogWindow)
	for i := range bodies {
		bodies[i] = fmt.Appendf(nil, `{"n":%d,"pad":%q}`, i, pad)
	}
	return bodies
}

// heapInUse is the heap's in-use bytes right after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
