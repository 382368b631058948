package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// TestBrokerCutMidFlowDeliversExactlyOnce: the server's AMQP connection is cut while
// it consumes a stream of messages that carry AMQP message ids. What it had taken but
// not acked comes back from RabbitMQ once it reconnects; what it had already handed
// off is recognised by its id and acked without a second delivery. The client gets
// every message exactly once — in memory mode and with Redis.
func TestBrokerCutMidFlowDeliversExactlyOnce(t *testing.T) {
	for _, withRedis := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "redis"}[withRedis], func(t *testing.T) {
			const n = 20000
			tp := apptest.NewTopology(t, "contract")
			proxy, amqpURL := apptest.AMQPProxy(t)
			env := map[string]string{"BRIDGE_DEV": "1", "AMQP_URL": amqpURL, "BRIDGE_SEND_QUEUE": "8192"}
			for k, v := range tp.Env {
				env[k] = v
			}
			if withRedis {
				for k, v := range apptest.NewRedis(t).Env {
					env[k] = v
				}
			}
			s := apptest.Start(t, env)
			c := apptest.DialWS(t, s.WSURL("/ws/yxd/cut"), "", nil)
			apptest.Eventually(t, 10*time.Second, "ready", func() bool { return get(t, s, "/readyz") == http.StatusOK })

			bodies := make([][]byte, n)
			for i := range bodies {
				bodies[i] = fmt.Appendf(nil, `{"receiveUserId":"cut","seq":%d}`, i)
			}
			// Published while the server consumes, so the cut below finds it mid-flow
			// whichever is faster: the publisher (the queue holds the rest) or the
			// consumer (it waits for the next publish).
			pubCh := apptest.OpenChannel(t)
			published := make(chan error, 1)
			go func() { published <- publishIDs(pubCh, tp.Exchange, "contract", bodies) }()

			seen := make([]int, n)
			got := 0
			take := func() {
				t.Helper()
				var b struct{ Seq int }
				if err := json.Unmarshal(c.Next(t, 30*time.Second).Data, &b); err != nil || b.Seq < 0 || b.Seq >= n {
					t.Fatalf("unexpected frame (%v)", err)
				}
				seen[b.Seq]++
				got++
			}
			// Cut once a tenth is acked: by the server's count, not by what the client
			// read — a queue is consumed at ~16,000 msg/s in memory, so the client can
			// be far behind while everything is acked (small frames fit the kernel's
			// buffers and the send queue).
			apptest.Eventually(t, 30*time.Second, "a tenth of the messages acked", func() bool {
				return metric(t, s, "pushbridge_deliveries_acked_total") >= n/10
			})
			proxy.Down() // mid-flow: deliveries in hand, acks on their way
			if acked := metric(t, s, "pushbridge_deliveries_acked_total"); acked >= n {
				t.Fatalf("all %d messages were acked before the cut: the test cut nothing mid-flow", n)
			} else {
				t.Logf("cut after %d of %d messages were acked", int(acked), n)
			}
			apptest.Eventually(t, 10*time.Second, "the outage noticed", func() bool { return get(t, s, "/readyz") == http.StatusServiceUnavailable })
			proxy.Up(t)
			if err := <-published; err != nil {
				t.Fatal(err)
			}
			for seen[n-1] == 0 || got < n {
				take()
				if got > n {
					break
				}
			}
			// Whatever was still on its way has arrived once a later message did.
			fence := []byte(`{"receiveUserId":"cut","seq":-1}`)
			publishWithIDs(t, tp, "contract", [][]byte{fence})
			for {
				f := c.Next(t, 30*time.Second)
				if string(f.Data) == string(fence) {
					break
				}
				var b struct{ Seq int }
				_ = json.Unmarshal(f.Data, &b)
				if b.Seq >= 0 && b.Seq < n {
					seen[b.Seq]++
				}
			}
			t.Logf("redeliveries recognised by their id: %v", metric(t, s, "pushbridge_deliveries_duplicate_total"))
			for i, k := range seen {
				if k != 1 {
					t.Fatalf("message %d arrived %d times, want exactly once", i, k)
				}
			}
		})
	}
}

// publishWithIDs publishes bodies in order, each with an AMQP message id of its own (as
// a backend should, so a redelivery is recognised), and waits for the confirms.
func publishWithIDs(t *testing.T, tp *apptest.Topology, key string, bodies [][]byte) {
	t.Helper()
	ch := apptest.OpenChannel(t)
	defer ch.Close()
	if err := publishIDs(ch, tp.Exchange, key, bodies); err != nil {
		t.Fatal(err)
	}
}

// publishIDs is publishWithIDs on ch, for any goroutine.
func publishIDs(ch *amqp.Channel, exchange, key string, bodies [][]byte) error {
	if err := ch.Confirm(false); err != nil {
		return err
	}
	dcs := make([]*amqp.DeferredConfirmation, 0, len(bodies))
	for _, b := range bodies {
		dc, err := ch.PublishWithDeferredConfirm(exchange, key, false, false,
			amqp.Publishing{Body: b, MessageId: apptest.Unique("m")})
		if err != nil {
			return err
		}
		dcs = append(dcs, dc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, dc := range dcs {
		if ok, err := dc.WaitContext(ctx); !ok || err != nil {
			return fmt.Errorf("publish not confirmed: ok=%v err=%v", ok, err)
		}
	}
	return nil
}
