package transport

import (
	"fmt"
	"net"
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
	for _, v1 := range []bool{false, true} {
		for _, conns := range []int{1, 50} {
			b.Run(fmt.Sprintf("v1=%v/conns=%d", v1, conns), func(b *testing.B) {
				hub := newTestHub()
				srv := wsServer(b, hub, WSOptions{V1: v1, QueueLen: 1 << 20, QueueBytes: 1 << 30, Stats: &hub.Stats})
				clients := make([]*websocket.Conn, conns)
				for i := range clients {
					clients[i] = dialUser(b, srv, fmt.Sprint(i))
				}
				for hub.Count() < conns { // the server registers each after its handshake
					runtime.Gosched()
				}
				body := []byte(`{"receiveUserId":"x","amount":1234,"text":"a message of a typical size for a push"}`)
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
					m := &presence.Message{UserID: fmt.Sprint(i % conns), RoutingKey: "contract", Body: body} // not recorded: sent at each connection's cursor
					hub.Deliver(m)
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

// BenchmarkWSFanout measures the broadcast path from Hub.Deliver to the sockets of
// conns recipients, in raw and bridge.v1 mode, with clients that read the raw bytes
// into a fixed buffer (so the client side allocates nothing): allocs/op is what the
// server spends per message, and the difference between conns=1 and conns=N, divided
// by N-1, is what it spends per recipient. The messages are the broadcast stream's
// seqs 1, 2, 3 …, so each connection tracks its position and, in bridge.v1, writes
// its own id into every frame.
func BenchmarkWSFanout(b *testing.B) {
	body := []byte(`{"receiveUserId":"x","amount":1234,"text":"a message of a typical size for a push"}`)
	const epoch = "benchbench"
	for _, v1 := range []bool{false, true} {
		for _, conns := range []int{1, 10, 50} {
			b.Run(fmt.Sprintf("v1=%v/conns=%d", v1, conns), func(b *testing.B) {
				hub := newTestHub()
				srv := wsServer(b, hub, WSOptions{V1: v1, QueueLen: 1 << 20, QueueBytes: 1 << 30, Stats: &hub.Stats})
				ncs := make([]net.Conn, conns)
				for i := range ncs {
					ncs[i] = dialUser(b, srv, fmt.Sprint(i)).NetConn()
				}
				for hub.Count() < conns {
					runtime.Gosched()
				}
				msgs := make([]*presence.Message, b.N)
				want := 0 // bytes each client reads
				for i := range msgs {
					msgs[i] = &presence.Message{Epoch: epoch, Seq: uint64(i) + 1, RoutingKey: "contract", Body: body}
					want += fanoutFrameLen(msgs[i], v1)
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
	}
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
	body := []byte(`{"receiveUserId":"x","amount":1234,"text":"a message of a typical size for a push"}`)
	const epoch, conns = "benchbench", 50
	hub := newTestHub()
	srv := wsServer(b, hub, WSOptions{V1: true, Stats: &hub.Stats})
	ncs := make([]net.Conn, conns)
	for i := range ncs {
		ncs[i] = dialUser(b, srv, fmt.Sprint(i)).NetConn()
	}
	for hub.Count() < conns {
		runtime.Gosched()
	}
	msgs := make([]*presence.Message, b.N)
	want := make([]int64, b.N) // bytes all clients have read once message i is through
	total := int64(0)
	for i := range msgs {
		msgs[i] = &presence.Message{Epoch: epoch, Seq: uint64(i) + 1, RoutingKey: "contract", Body: body}
		total += int64(conns * fanoutFrameLen(msgs[i], true))
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
