package transport

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/presence"
)

// BenchmarkWSDeliver measures messages/s from Hub.Deliver to frames read by clients
// over loopback: targeted messages spread over conns users, in raw and bridge.v1 mode.
// Message ids follow the history's head, as a dispatched message's do, so the hub's
// tracking (feed.go) passes each one on.
func BenchmarkWSDeliver(b *testing.B) {
	for _, v1 := range []bool{false, true} {
		for _, conns := range []int{1, 50} {
			b.Run(fmt.Sprintf("v1=%v/conns=%d", v1, conns), func(b *testing.B) {
				hub := newTestHub()
				base := historyHead(b, hub)
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
					m := &presence.Message{ID: presence.FormatCursor(base + uint64(i) + 1), UserID: fmt.Sprint(i % conns), RoutingKey: "contract", Body: body}
					hub.Deliver(m)
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

// BenchmarkWSFanout measures the broadcast path from Hub.Deliver to the sockets of
// conns recipients, in raw mode, with clients that read the raw bytes into a fixed
// buffer (so the client side allocates nothing): allocs/op is what the server spends
// per message, and the difference between conns=1 and conns=N, divided by N-1, is
// what it spends per recipient.
func BenchmarkWSFanout(b *testing.B) {
	body := []byte(`{"receiveUserId":"x","amount":1234,"text":"a message of a typical size for a push"}`)
	frameLen := 2 + len(body) // raw text frame, payload under 126 bytes
	for _, conns := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			hub := newTestHub()
			base := historyHead(b, hub)
			srv := wsServer(b, hub, WSOptions{QueueLen: 1 << 20, QueueBytes: 1 << 30, Stats: &hub.Stats})
			ncs := make([]net.Conn, conns)
			for i := range ncs {
				ncs[i] = dialUser(b, srv, fmt.Sprint(i)).NetConn()
			}
			for hub.Count() < conns {
				runtime.Gosched()
			}
			msgs := make([]*presence.Message, b.N)
			for i := range msgs {
				msgs[i] = &presence.Message{ID: presence.FormatCursor(base + uint64(i) + 1), RoutingKey: "contract", Body: body}
			}
			var wg sync.WaitGroup
			for _, nc := range ncs {
				want := b.N * frameLen
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
			// Per delivery (message × recipient): the one frame each message needs,
			// shared by its recipients, is 1/conns of an allocation; anything above
			// that is spent per recipient.
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N*conns), "allocs/delivery")
		})
	}
}

// historyHead is the newest id of hub's history: where the connections it attaches
// start, so a message must have a greater id to reach them.
func historyHead(tb testing.TB, hub *presence.Hub) uint64 {
	tb.Helper()
	rp, err := hub.Replay(context.Background(), "nobody", "", 0)
	if err != nil {
		tb.Fatal(err)
	}
	head, err := presence.ParseCursor(rp.Head)
	if err != nil {
		tb.Fatal(err)
	}
	return head
}
