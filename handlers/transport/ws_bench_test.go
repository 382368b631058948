package transport

import (
	"fmt"
	"runtime"
	"sync"
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
					m := &presence.Message{ID: fmt.Sprint(i + 1), UserID: fmt.Sprint(i % conns), RoutingKey: "contract", Body: body}
					hub.Deliver(m)
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}
