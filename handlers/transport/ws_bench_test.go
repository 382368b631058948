package transport

import (
	"fmt"
	"net"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/presence"
)

// BenchmarkWSDeliver measures messages/s from Hub.Deliver to frames read by clients
// over loopback: targeted messages spread over conns users, in raw and bridge.v1 mode.
func BenchmarkWSDeliver(b *testing.B) {
	fanoutCases(b, []int{1, 50}, func(b *testing.B, v1 bool, conns int) {
		hub := newTestHub()
		srv := wsServer(b, hub, WSOptions{V1: v1, QueueLen: 1 << 30, QueueBytes: 1 << 40, Stats: &hub.Stats})
		clients := make([]*websocket.Conn, conns)
		for i := range clients {
			clients[i] = dialUser(b, srv, fmt.Sprint(i))
		}
		awaitConns(hub, conns)
		var wg sync.WaitGroup
		for i, c := range clients {
			want := b.N / conns
			if i < b.N%conns {
				want++
			}
			wg.Go(func() {
				for range want {
					if _, _, err := c.ReadMessage(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		b.ResetTimer()
		for i := range b.N {
			m := &presence.Message{UserID: fmt.Sprint(i % conns), RoutingKey: "contract", Body: benchBody} // not recorded: sent at each connection's cursor
			hub.Deliver(m)
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

// benchBody is what the hub benchmarks deliver: a body of a typical size for a push.
var benchBody = []byte(`{"receiveUserId":"x","amount":1234,"text":"a message of a typical size for a push"}`)

// fanoutCases runs fn as a sub-benchmark in raw and bridge.v1 mode at each number of
// connections.
func fanoutCases(b *testing.B, conns []int, fn func(b *testing.B, v1 bool, conns int)) {
	for _, v1 := range []bool{false, true} {
		for _, n := range conns {
			b.Run(fmt.Sprintf("v1=%v/conns=%d", v1, n), func(b *testing.B) { fn(b, v1, n) })
		}
	}
}

// awaitConns waits until hub holds n connections: the server registers each after
// its handshake.
func awaitConns(hub *presence.Hub, n int) {
	for hub.Count() < n {
		runtime.Gosched()
	}
}

// dialConns opens n WebSockets to srv, of users 0..n-1, and returns their sockets
// once hub holds them all.
func dialConns(b *testing.B, srv *httptest.Server, hub *presence.Hub, n int) []net.Conn {
	ncs := make([]net.Conn, n)
	for i := range ncs {
		ncs[i] = dialUser(b, srv, fmt.Sprint(i)).NetConn()
	}
	awaitConns(hub, n)
	return ncs
}

// broadcasts are n broadcasts of benchBody, the broadcast stream's seqs 1..n.
func broadcasts(n int) []*presence.Message {
	msgs := make([]*presence.Message, n)
	for i := range msgs {
		msgs[i] = &presence.Message{Epoch: "benchbench", Seq: uint64(i) + 1, RoutingKey: "contract", Body: benchBody}
	}
	return msgs
}

// BenchmarkWSFanout measures the broadcast path from Hub.Deliver to the sockets of
// conns recipients, in raw and bridge.v1 mode, with clients that read the raw bytes
// into a fixed buffer (so the client side allocates nothing): allocs/op is what the
// server spends per message, and the difference between conns=1 and conns=N, divided
// by N-1, is what it spends per recipient. The messages are the broadcast stream's
// seqs 1, 2, 3 …, so each connection tracks its position and, in bridge.v1, writes
// its own id into every frame.
func BenchmarkWSFanout(b *testing.B) {
	fanoutCases(b, []int{1, 10, 50}, func(b *testing.B, v1 bool, conns int) {
		hub := newTestHub()
		srv := wsServer(b, hub, WSOptions{V1: v1, QueueLen: 1 << 30, QueueBytes: 1 << 40, Stats: &hub.Stats})
		ncs := dialConns(b, srv, hub, conns)
		msgs := broadcasts(b.N)
		want := 0 // bytes each client reads
		for _, m := range msgs {
			want += fanoutFrameLen(m, v1)
		}
		var wg sync.WaitGroup
		for _, nc := range ncs {
			wg.Go(func() {
				buf := make([]byte, 64<<10)
				for got := 0; got < want; {
					n, err := nc.Read(buf)
					if err != nil {
						b.Error(err)
						return
					}
					got += n
				}
			})
		}
		measureFanout(b, hub, msgs, &wg, conns)
	})
}

// fanoutFrameLen is the length of the frame a connection that has every broadcast
// before m gets for m. It encodes a copy of m, so that m's shared encoding is still
// built during the benchmark.
func fanoutFrameLen(m *presence.Message, v1 bool) int {
	cp := &presence.Message{Epoch: m.Epoch, Seq: m.Seq, RoutingKey: m.RoutingKey, Body: m.Body}
	if !v1 {
		return len(rawFrame(cp))
	}
	head, hs, _, _ := appendV1Head(nil, cp, presence.Cursor{Bcast: cp.Pos()})
	return len(head) - hs + len(v1Pre) + len(v1Post(cp))
}

// BenchmarkWSWake measures one broadcast at a time to conns bridge.v1 recipients, each
// read by every client before the next is delivered: every delivery wakes an idle
// connection, so a fresh writer goroutine starts for each recipient, as on a server
// whose broadcasts are far apart. Its CPU profile shows what a wake-up costs
// (runtime.newstack when the writer outgrows its first stack).
func BenchmarkWSWake(b *testing.B) {
	const conns = 50
	hub := newTestHub()
	srv := wsServer(b, hub, WSOptions{V1: true, Stats: &hub.Stats})
	ncs := dialConns(b, srv, hub, conns)
	msgs := broadcasts(b.N)
	want := make([]int64, b.N) // bytes all clients have read once message i is through
	total := int64(0)
	for i, m := range msgs {
		total += int64(conns * fanoutFrameLen(m, true))
		want[i] = total
	}
	// The clients wake the benchmark when the message is through (spinning instead
	// would starve the network poller on 2 cores).
	var read, target atomic.Int64
	through := make(chan struct{}, 1)
	for _, nc := range ncs {
		go func() {
			buf := make([]byte, 64<<10)
			for {
				n, err := nc.Read(buf)
				if read.Add(int64(n)) >= target.Load() {
					select {
					case through <- struct{}{}:
					default:
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i, m := range msgs {
		target.Store(want[i])
		hub.Deliver(m)
		for read.Load() < want[i] {
			<-through
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*conns)/b.Elapsed().Seconds(), "deliveries/s")
}

// measureFanout delivers msgs through hub to conns connections whose readers wg waits
// for, timed, and reports deliveries/s and allocations per delivery (message ×
// recipient): the one frame each message needs, shared by its recipients, is 1/conns
// of an allocation; anything above that is spent per recipient.
func measureFanout(b *testing.B, hub *presence.Hub, msgs []*presence.Message, wg *sync.WaitGroup, conns int) {
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for _, m := range msgs {
		hub.Deliver(m)
	}
	wg.Wait()
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(b.N*conns)/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N*conns), "allocs/delivery")
}
